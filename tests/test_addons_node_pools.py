"""Karpenter node pools: where GPU and CPU capacity comes from, what it costs at most, and that the serving
workloads land on the pool meant for them."""

import email
import json
import tomllib

import pytest
import yaml
from k8s_schemas import validate_manifest

from components import contracts, upstream
from components.node_pools import (
    GpuPoolConfig,
    NodeClassSpec,
    block_device_mappings,
    duration_seconds,
    ec2_node_class,
    node_class_spec,
)
from infra.offline import Graph
from infra.render import kubernetes_objects

NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"


def pool(graph: Graph, name: str) -> dict:
    return graph.one(NODE_POOL, f"node-pools-{name}-nodepool").inputs["spec"]


def requirement(spec: dict, key: str) -> list[str]:
    (match,) = [r for r in spec["template"]["spec"]["requirements"] if r["key"] == key]
    assert match["operator"] == "In"
    return match["values"]


def test_gpu_pool_capacity_types_per_stack(dev_graph: Graph, prod_graph: Graph) -> None:
    assert requirement(pool(dev_graph, "gpu"), "karpenter.sh/capacity-type") == ["spot"]
    assert requirement(pool(prod_graph, "gpu"), "karpenter.sh/capacity-type") == ["spot", "on-demand"]


def test_gpu_pool_draws_from_configured_gpu_families(graph: Graph) -> None:
    spec = pool(graph, "gpu")
    assert requirement(spec, "karpenter.k8s.aws/instance-family") == graph.config.addons.karpenter.gpu_pool.families
    assert requirement(spec, "karpenter.k8s.aws/instance-gpu-manufacturer") == ["nvidia"]


def test_gpu_pool_is_tainted_labelled_and_limited(graph: Graph) -> None:
    spec = pool(graph, "gpu")
    assert spec["template"]["spec"]["taints"] == [contracts.GPU_TAINT]
    assert spec["template"]["metadata"]["labels"] == {contracts.POOL_LABEL_KEY: contracts.GPU_POOL}
    gpu = graph.config.addons.karpenter.gpu_pool
    assert spec["limits"] == {
        "cpu": str(gpu.cpu_limit), "memory": f"{gpu.memory_limit_gib}Gi", "nvidia.com/gpu": str(gpu.gpu_limit)
    }


def test_gpu_nodes_are_not_consolidated_mid_image_pull(graph: Graph) -> None:
    disruption = pool(graph, "gpu")["disruption"]
    assert disruption["consolidationPolicy"] == "WhenEmpty"
    assert duration_seconds(disruption["consolidateAfter"]) >= 900
    assert disruption["budgets"] == [{"nodes": "1"}]


def test_cpu_pool_is_untainted_labelled_and_limited(graph: Graph) -> None:
    spec = pool(graph, "cpu")
    assert "taints" not in spec["template"]["spec"]
    assert spec["template"]["metadata"]["labels"] == {contracts.POOL_LABEL_KEY: contracts.CPU_POOL}
    assert set(spec["limits"]) == {"cpu", "memory"}


def test_node_classes_require_imdsv2_and_encrypted_fast_gp3(graph: Graph) -> None:
    for name in ("gpu", "cpu"):
        spec = graph.one(NODE_CLASS, f"node-pools-{name}-ec2nodeclass").inputs["spec"]
        assert spec["metadataOptions"]["httpTokens"] == "required"
        assert spec["role"] == graph.outputs["karpenterNodeRoleArn"].rsplit("/", 1)[-1]
        discovery = [{"tags": {"karpenter.sh/discovery": graph.outputs["clusterName"]}}]
        assert spec["subnetSelectorTerms"] == spec["securityGroupSelectorTerms"] == discovery
        for mapping in spec["blockDeviceMappings"]:
            assert mapping["ebs"]["encrypted"] is True and mapping["ebs"]["volumeType"] == "gp3"
    gpu = graph.one(NODE_CLASS, "node-pools-gpu-ec2nodeclass").inputs["spec"]
    # Images go to AL2023's root volume, or to Bottlerocket's data volume (/dev/xvdb, mounted at /local).
    (images,) = [m for m in gpu["blockDeviceMappings"] if m.get("rootVolume") or m["deviceName"] == "/dev/xvdb"]
    assert images["ebs"]["volumeSize"] == "200Gi"
    assert images["ebs"]["throughput"] >= 600 and images["ebs"]["iops"] >= 3000


def test_prod_pins_both_pools_amis_dev_follows_latest(dev_graph: Graph, prod_graph: Graph) -> None:
    def aliases(graph: Graph) -> set[str]:
        return {r.inputs["spec"]["amiSelectorTerms"][0]["alias"] for r in graph.of_type(NODE_CLASS)}

    # Which releases are real: tests/test_upstream_contracts.py against the recorded amazon-eks-ami tags.
    assert len(prod_graph.of_type(NODE_CLASS)) == 2
    assert not [alias for alias in aliases(prod_graph) if alias.endswith("@latest")]
    assert aliases(dev_graph) == {"al2023@latest"}


def test_karpenter_instances_carry_the_stacks_cost_tags(graph: Graph) -> None:
    # What every AWS resource of the stack is tagged with: the AWS provider's default tags (a JSON string input).
    provider = graph.one("pulumi:providers:aws", "aws")
    cost_tags = json.loads(provider.inputs["defaultTags"])["tags"]
    assert {"Project", "Stack", "ManagedBy"} <= set(cost_tags)
    for node_class in graph.of_type(NODE_CLASS):
        tags = node_class.inputs["spec"]["tags"]
        assert tags.items() >= cost_tags.items(), f"{node_class.urn}: {tags} lacks {cost_tags}"


def test_bottlerocket_keeps_images_on_its_data_volume() -> None:
    spec = NodeClassSpec("gpu", "bottlerocket@latest", 200, 6000, 750)
    os_volume, data_volume = block_device_mappings(spec)
    assert (os_volume["deviceName"], data_volume["deviceName"]) == ("/dev/xvda", "/dev/xvdb")
    assert data_volume["ebs"]["volumeSize"] == "200Gi" and data_volume["ebs"]["throughput"] == 750


def test_karpenter_objects_validate_against_the_pinned_crds(graph: Graph) -> None:
    objects = [o for o in kubernetes_objects(graph) if o["apiVersion"].startswith("karpenter.")]
    assert {o["kind"] for o in objects} == {"NodePool", "EC2NodeClass"}
    assert [problem for o in objects for problem in validate_manifest(o)] == []


@pytest.mark.parametrize("workload", ["vllm-deployment", "gateway-deployment"])
def test_serving_workloads_schedule_onto_a_pool(graph: Graph, workload: str) -> None:
    """The workload's node selector matches one pool's labels and it tolerates every taint of that pool."""
    pod = graph.one("kubernetes:apps/v1:Deployment", workload).inputs["spec"]["template"]["spec"]
    pools = [pool(graph, name) for name in (contracts.GPU_POOL, contracts.CPU_POOL)]
    (target,) = [p for p in pools if pod["nodeSelector"].items() <= p["template"]["metadata"]["labels"].items()]
    for taint in target["template"]["spec"].get("taints", []):
        assert any(
            t["key"] == taint["key"] and t["effect"] == taint["effect"]
            and (t.get("operator") == "Exists" or t.get("value") == taint["value"])
            for t in pod.get("tolerations", [])
        ), f"{workload} does not tolerate {taint}"


def _node_config(user_data: str) -> dict:
    """The nodeadm NodeConfig part of an AL2023 node class's MIME user data."""
    message = email.message_from_string(user_data)
    assert message.is_multipart()
    facts = upstream.facts("nodeadm")
    (part,) = [p for p in message.get_payload() if p.get_content_type() == facts["userDataContentType"]]
    return yaml.safe_load(part.get_payload())


def test_dev_gpu_nodes_pull_in_parallel_onto_local_nvme(dev_graph: Graph) -> None:
    """Dev's AL2023 GPU nodes turn on nodeadm's FastImagePull (SOCI parallel pull/unpack) and keep kubelet pulls
    parallel; containerd and SOCI live on the instance-store RAID0. Names as recorded from amazon-eks-ami at the
    pinned AMI release (components/upstream/nodeadm.json)."""
    facts = upstream.facts("nodeadm")
    node_class = dev_graph.one(NODE_CLASS, "node-pools-gpu-ec2nodeclass")
    spec = node_class.inputs["spec"]
    config = _node_config(spec["userData"])
    assert (config["apiVersion"], config["kind"]) == (facts["apiVersion"], facts["kind"]), node_class.urn
    assert set(config["spec"]) <= set(facts["specFields"]), node_class.urn
    assert config["spec"]["featureGates"] == {"FastImagePull": True}, node_class.urn
    assert set(config["spec"]["featureGates"]) <= set(facts["featureGates"]), node_class.urn
    assert config["spec"]["kubelet"] == {"config": {"serializeImagePulls": False}}, node_class.urn
    assert spec["instanceStorePolicy"] == "RAID0", node_class.urn
    assert spec["amiSelectorTerms"][0]["alias"].startswith("al2023@"), node_class.urn


def test_prod_gpu_nodes_start_from_the_image_snapshot(prod_graph: Graph) -> None:
    """Prod's Bottlerocket GPU nodes get their data volume from the configured snapshot, initialized at EBS's
    highest provisioned rate (a lazily loaded snapshot can take minutes: bottlerocket-images-cache#13). Karpenter's
    RAID0 policy is off (it would bind containerd's directory, and the snapshot's images, away); the node class's
    own bootstrap command binds only kubelet and pod logs. Checked against components/upstream/bottlerocket.json."""
    facts = upstream.facts("bottlerocket")
    node_class = prod_graph.one(NODE_CLASS, "node-pools-gpu-ec2nodeclass")
    spec = node_class.inputs["spec"]
    (data,) = [m["ebs"] for m in spec["blockDeviceMappings"] if m["deviceName"] == "/dev/xvdb"]
    assert data["snapshotID"] == "snap-1234567890abcdef0", node_class.urn  # Pulumi.prod.yaml's placeholder
    assert data["volumeInitializationRate"] == facts["ebs"]["volumeInitializationRate"]["maxMiBps"], node_class.urn
    assert "instanceStorePolicy" not in spec, node_class.urn
    settings = tomllib.loads(spec["userData"])["settings"]
    assert set(settings) == {"bootstrap-commands"}, node_class.urn
    (command,) = settings["bootstrap-commands"].values()
    assert command["mode"] in facts["bootstrapCommands"]["keys"]["mode"] and command["essential"] is True
    assert command["commands"][0] == ["apiclient", "ephemeral-storage", "init"], node_class.urn
    bind = command["commands"][1]
    assert bind[:4] == ["apiclient", "ephemeral-storage", "bind", "--dirs"], node_class.urn
    assert set(bind[4:]) == {"/var/lib/kubelet", "/var/log/pods"}, node_class.urn
    assert set(bind[4:]) <= set(facts["ephemeralStorage"]["allowedExact"]), node_class.urn
    assert facts["dataVolume"]["containerdRoot"] not in bind, node_class.urn


def test_a_snapshot_needs_bottlerocket() -> None:
    with pytest.raises(ValueError, match="imageSnapshotId snap-0123456789abcdef0 needs amiAlias bottlerocket@"):
        GpuPoolConfig(amiAlias="al2023@latest", imageSnapshotId="snap-0123456789abcdef0")
    with pytest.raises(ValueError, match="imageSnapshotId"):
        GpuPoolConfig(amiAlias="bottlerocket@latest", imageSnapshotId="ami-0123456789abcdef0")


def test_cpu_nodes_keep_karpenters_default_user_data(graph: Graph) -> None:
    spec = graph.one(NODE_CLASS, "node-pools-cpu-ec2nodeclass").inputs["spec"]
    assert "userData" not in spec and "instanceStorePolicy" not in spec


def test_bottlerocket_gpu_nodes_get_no_nodeadm_config() -> None:
    """nodeadm is AL2023's: a Bottlerocket pool gets no FastImagePull user data, and its budget no SOCI pull."""
    pool_config = GpuPoolConfig(amiAlias="bottlerocket@latest")
    spec = node_class_spec("gpu", pool_config, {})
    assert "userData" not in ec2_node_class(spec, "c", "r")["spec"]
    assert not pool_config.parallel_image_pull
