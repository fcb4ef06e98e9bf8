"""Karpenter node pools: where GPU and CPU capacity comes from, what it costs at most, and that the serving
workloads land on the pool meant for them."""

import json

import pytest
from k8s_schemas import validate_manifest

from components import contracts
from components.node_pools import NodeClassSpec, block_device_mappings, duration_seconds
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
    (root,) = gpu["blockDeviceMappings"]
    assert root["rootVolume"] is True
    assert root["ebs"]["volumeSize"] == "200Gi"
    assert root["ebs"]["throughput"] >= 600 and root["ebs"]["iops"] >= 3000


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
