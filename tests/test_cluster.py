"""The EKS cluster: pinned version, private endpoint, API access entries, encrypted secrets, system nodes."""

import json

from components.versions import KUBERNETES_VERSION
from infra.offline import Graph

EKS = "eks:index:Cluster"


def test_kubernetes_version_is_the_pinned_one(graph: Graph) -> None:
    assert graph.one(EKS).inputs["version"] == KUBERNETES_VERSION


def test_endpoint_private_and_public_access_restricted(dev_graph: Graph, prod_graph: Graph) -> None:
    dev = dev_graph.one(EKS).inputs
    assert dev["endpointPrivateAccess"] is True
    assert dev["endpointPublicAccess"] is True
    assert dev["publicAccessCidrs"] == ["203.0.113.0/24"]
    prod = prod_graph.one(EKS).inputs
    assert prod["endpointPrivateAccess"] is True
    # Prod's first deploy runs from outside the VPC it creates: public endpoint, restricted to the deployers.
    assert prod["endpointPublicAccess"] is True
    assert prod["publicAccessCidrs"] == ["198.51.100.0/24"]


def test_secrets_envelope_encrypted_with_a_rotating_key(graph: Graph) -> None:
    key = graph.one("aws:kms/key:Key", "cluster-secrets")
    assert key.inputs["enableKeyRotation"] is True
    assert graph.one(EKS).inputs["encryptionConfigKeyArn"].startswith("arn:aws:kms:")


def test_api_authentication_with_access_entries(prod_graph: Graph) -> None:
    cluster = prod_graph.one(EKS).inputs
    assert cluster["authenticationMode"] == "API"
    (entry,) = cluster["accessEntries"].values()
    assert entry["principalArn"] == "arn:aws:iam::123456789012:role/platform-admins"
    policy = entry["accessPolicies"]["cluster-admin"]
    assert policy["policyArn"].endswith("AmazonEKSClusterAdminPolicy")
    assert policy["accessScope"]["type"] == "cluster"


def test_all_control_plane_logs_enabled(graph: Graph) -> None:
    assert set(graph.one(EKS).inputs["enabledClusterLogTypes"]) == {
        "api", "audit", "authenticator", "controllerManager", "scheduler"
    }


def test_no_default_node_group_and_no_public_node_ips(graph: Graph) -> None:
    cluster = graph.one(EKS).inputs
    assert cluster["skipDefaultNodeGroup"] is True
    assert cluster["nodeAssociatePublicIpAddress"] is False
    assert cluster["createOidcProvider"] is True


def test_pod_identity_agent_addon(graph: Graph) -> None:
    addon = graph.one("aws:eks/addon:Addon", "cluster-pod-identity-agent").inputs
    assert addon["addonName"] == "eks-pod-identity-agent"
    assert addon["clusterName"] == graph.outputs["clusterName"]


def test_system_node_group_sizes_per_stack(dev_graph: Graph, prod_graph: Graph) -> None:
    dev = dev_graph.one("aws:eks/nodeGroup:NodeGroup").inputs
    assert dev["capacityType"] == "ON_DEMAND"
    assert dev["scalingConfig"] == {"minSize": 1, "desiredSize": 2, "maxSize": 3}
    prod = prod_graph.one("aws:eks/nodeGroup:NodeGroup").inputs
    assert prod["scalingConfig"] == {"minSize": 3, "desiredSize": 3, "maxSize": 6}
    assert prod["instanceTypes"] == ["m6i.xlarge"]
    assert set(prod["subnetIds"]) == set(prod_graph.outputs["privateSubnetIds"])


def test_system_nodes_have_encrypted_disks_and_imdsv2(graph: Graph) -> None:
    template = graph.one("aws:ec2/launchTemplate:LaunchTemplate", "cluster-system-nodes").inputs
    (disk,) = template["blockDeviceMappings"]
    assert disk["ebs"]["encrypted"] == "true"
    assert disk["ebs"]["volumeType"] == "gp3"
    assert template["metadataOptions"]["httpTokens"] == "required"
    assert template["metadataOptions"]["httpPutResponseHopLimit"] == 1


def test_node_role_has_exactly_the_worker_policies(graph: Graph) -> None:
    role = graph.one("aws:iam/role:Role", "cluster-system-nodes")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    attached = {
        a.inputs["policyArn"].rsplit("/", 1)[-1]
        for a in graph.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.parent == role.urn
    }
    assert attached == {
        "AmazonEKSWorkerNodePolicy",
        "AmazonEKS_CNI_Policy",
        "AmazonEC2ContainerRegistryPullOnly",
        "AmazonSSMManagedInstanceCore",
    }


def test_cluster_security_group_tagged_for_karpenter(graph: Graph) -> None:
    tag = graph.one("aws:ec2/tag:Tag").inputs
    assert tag["key"] == "karpenter.sh/discovery"
    assert tag["value"] == graph.outputs["clusterName"]
    assert tag["resourceId"].startswith("sg-")


def test_kubernetes_provider_uses_the_cluster_kubeconfig(graph: Graph) -> None:
    provider = graph.one("pulumi:providers:kubernetes").inputs
    assert provider["kubeconfig"] == "[secret]"
    assert graph.outputs["kubeconfig"] and "kubeconfig" in graph.secret_outputs
