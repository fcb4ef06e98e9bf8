"""Durable metrics: the EBS CSI driver add-on with its Pod Identity role, an encrypted gp3 StorageClass, and
prod's Prometheus and Grafana on volumes of that class, so a pod restart keeps the data."""

import json
import re

from deploy_order import release_of, waits_for

from infra.offline import Graph

RELEASE = "kubernetes:helm.sh/v3:Release"
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
# prometheus-operator's ByteSize pattern for retentionSize (monitoring.coreos.com_prometheuses.yaml).
BYTE_SIZE = r"(^0|([0-9]*[.])?[0-9]+((K|M|G|T|E|P)i?)?B)$"


def prometheus_spec(graph: Graph) -> dict:
    return graph.one(RELEASE, "observability").inputs["values"]["prometheus"]["prometheusSpec"]


def test_ebs_csi_driver_addon_with_pod_identity_and_the_managed_policy(graph: Graph) -> None:
    addon = graph.one("aws:eks/addon:Addon", "block-storage-ebs-csi-driver").inputs
    assert addon["addonName"] == "aws-ebs-csi-driver"
    (association,) = addon["podIdentityAssociations"]
    assert association["serviceAccount"] == "ebs-csi-controller-sa"
    role = graph.one("aws:iam/role:Role", "block-storage-ebs-csi")
    assert ":role/block-storage-ebs-csi" in association["roleArn"]
    trust = json.loads(role.inputs["assumeRolePolicy"])
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert set(statement["Action"]) == {"sts:AssumeRole", "sts:TagSession"}
    attachment = graph.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "block-storage-ebs-csi").inputs
    assert attachment["policyArn"] == "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"


def test_storage_class_is_encrypted_gp3_on_the_ebs_csi_driver(graph: Graph) -> None:
    storage_class = graph.one(STORAGE_CLASS).inputs
    assert storage_class["provisioner"] == "ebs.csi.aws.com"
    assert storage_class["parameters"] == {"type": "gp3", "encrypted": "true"}
    assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"  # the volume follows the pod's zone


def test_prod_prometheus_survives_a_restart_on_a_persistent_volume(prod_graph: Graph) -> None:
    spec = prometheus_spec(prod_graph)
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"] == prod_graph.one(STORAGE_CLASS).inputs["metadata"]["name"]
    assert claim["accessModes"] == ["ReadWriteOnce"]
    size_gib = prod_graph.config.addons.observability.storage_gib
    assert claim["resources"]["requests"]["storage"] == f"{size_gib}Gi"
    # 100 GiB volume: 85 GiB of blocks, so compaction and the WAL never fill it.
    assert spec["retentionSize"] == "85GiB" and re.fullmatch(BYTE_SIZE, spec["retentionSize"])
    assert spec["retention"] == "15d"


def test_prod_grafana_keeps_its_database_on_a_volume(prod_graph: Graph, dev_graph: Graph) -> None:
    grafana = prod_graph.one(RELEASE, "observability").inputs["values"]["grafana"]
    assert grafana["persistence"] == {"enabled": True, "type": "pvc", "storageClassName": "gp3-encrypted",
                                      "size": "10Gi"}
    assert grafana["deploymentStrategy"] == {"type": "Recreate"}  # a RWO volume cannot roll to another node
    assert "persistence" not in dev_graph.one(RELEASE, "observability").inputs["values"]["grafana"]


def test_metrics_stack_waits_for_its_storage_class_which_waits_for_the_driver(graph: Graph) -> None:
    """A claim on a class that does not exist yet stays Pending and Helm's wait on Grafana times out."""
    release = release_of(graph, "kube-prometheus-stack")
    storage_class = graph.one(STORAGE_CLASS)
    assert waits_for(graph, release, storage_class)
    assert waits_for(graph, storage_class, graph.one("aws:eks/addon:Addon", "block-storage-ebs-csi-driver"))


def test_prod_alertmanager_survives_a_node_loss_and_a_restart(prod_graph: Graph, dev_graph: Graph) -> None:
    """Two gossiping Alertmanagers (kube-prometheus-stack 82.18.0 spreads them with its default soft anti-affinity),
    a disruption budget keeping one, and silences and the notification log on a volume each."""
    values = prod_graph.one(RELEASE, "observability").inputs["values"]["alertmanager"]
    spec = values["alertmanagerSpec"]
    assert spec["replicas"] == 2
    claim = spec["storage"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"] == prod_graph.one(STORAGE_CLASS).inputs["metadata"]["name"]
    assert claim["accessModes"] == ["ReadWriteOnce"] and claim["resources"]["requests"]["storage"] == "2Gi"
    assert values["podDisruptionBudget"] == {"enabled": True, "minAvailable": 1}
    assert spec["secrets"]  # the routing secret is still mounted beside them
    dev = dev_graph.one(RELEASE, "observability").inputs["values"]["alertmanager"]
    assert dev["alertmanagerSpec"]["replicas"] == 1 and "storage" not in dev["alertmanagerSpec"]
    assert "podDisruptionBudget" not in dev
