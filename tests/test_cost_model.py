"""The cost model against hand-computed figures for small graphs, priced from a test catalog of round numbers
(so the expected figures do not depend on the repository's prices), and the dev/prod graphs fully covered."""

import json
from pathlib import Path
from typing import Any

import pytest

from components.pricing import UnpricedError, load_catalog
from infra.cost.estimate import budget_status
from infra.cost.model import Context, Usage, price_graph, weekly_hours
from infra.offline import Graph

STACK = "urn:pulumi:t::p::pulumi:pulumi:Stack::p-t"
NETWORK = f"{STACK}$llm-platform:components:Network::network"
POOLS = f"{STACK}$llm-platform:components:NodePools::pools"


def write_catalog(directory: Path) -> None:
    prices = {
        "natgateway.hour": 0.05, "natgateway.gb": 0.05, "ipv4.public.hour": 0.005, "vpce.interface.az-hour": 0.01,
        "kms.key-month": 1.0, "ec2.g6.2xlarge.spot": 0.5, "ec2.g6.2xlarge.on-demand": 1.0,
        "ec2.g6.xlarge.spot": 0.3, "ecr.storage.gb-month": 0.1,
        "ebs.gp3.gb-month": 0.1, "ebs.gp3.iops-month": 0.01, "ebs.gp3.mibps-month": 0.1,
        "ebs.snapshot.gb-month": 0.05, "ebs.volume-initialization.gb": 0.01,
    }
    document = {"region": "xx-test-1", "prices": {
        key: {"price": value, "unit": "u", "date": "2026-11-30", "source": "test"} for key, value in prices.items()
    }}
    (directory / "xx-test-1.json").write_text(json.dumps(document))
    types = {
        "g6.xlarge": {"vcpu": 4, "memoryGib": 16, "gpus": 1, "gpu": "L4"},
        "g6.2xlarge": {"vcpu": 8, "memoryGib": 32, "gpus": 1, "gpu": "L4"},
    }
    (directory / "instances.json").write_text(json.dumps({"types": types}))


def resource(type_token: str, name: str, parent: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"urn": f"{parent}${type_token}::{name}", "type": type_token, "name": name, "parent": parent,
            "inputs": inputs}


def component(type_name: str, name: str) -> dict[str, Any]:
    return {"urn": f"{STACK}$llm-platform:components:{type_name}::{name}",
            "type": f"llm-platform:components:{type_name}", "name": name, "parent": STACK, "inputs": {}}


def usage(**overrides: Any) -> Usage:
    values: dict[str, Any] = {
        "requests": 0, "gpu_requests": 0, "gpu_tokens": 0, "gpu_node_hours": 0, "gpu_node_launches": 0,
        "hourly_requests": [], "prompt_tokens": 0, "output_tokens": 0,
    }
    return Usage(**{**values, **overrides})


def context(tmp_path: Path, resources: list[dict[str, Any]], month: Usage) -> Context:
    write_catalog(tmp_path)
    catalog = load_catalog("xx-test-1", tmp_path)
    graph = {"stack": "t", "resources": resources}
    return Context(graph=graph, catalog=catalog, usage=month, model_gb=14, image_gb=8, huggingface=False)


def test_network_graph_matches_hand_computed_month(tmp_path: Path) -> None:
    resources = [
        component("Network", "network"),
        resource("aws:ec2/natGateway:NatGateway", "nat-a", NETWORK, {}),
        resource("aws:ec2/eip:Eip", "nat-a", NETWORK, {"domain": "vpc"}),
        resource("aws:ec2/vpcEndpoint:VpcEndpoint", "sts", NETWORK,
                 {"vpcEndpointType": "Interface", "subnetIds": ["a", "b"]}),
        resource("aws:ec2/vpcEndpoint:VpcEndpoint", "s3", NETWORK, {"vpcEndpointType": "Gateway"}),
        resource("aws:kms/key:Key", "key", NETWORK, {}),
        resource("aws:iam/role:Role", "role", NETWORK, {}),
    ]
    lines, unpriced = price_graph(context(tmp_path, resources, usage(gpu_node_launches=10)))
    # NAT 0.05 x 730 = 36.50; EIP 0.005 x 730 = 3.65; endpoint 2 AZ x 0.01 x 730 = 14.60; key 1.00
    assert round(sum(line.fixed for line in lines), 2) == 55.75
    # 10 new GPU nodes x 8 GB image through the one NAT x 0.05/GB = 4.00
    assert round(sum(line.usage for line in lines), 2) == 4.00
    assert {line.component for line in lines} == {"network"}
    assert unpriced == []


def test_an_image_repository_is_priced_for_the_images_it_keeps(tmp_path: Path) -> None:
    resources = [
        component("Images", "images"),
        resource("aws:ecr/repository:Repository", "gateway", f"{STACK}$llm-platform:components:Images::images", {}),
        resource("docker-build:index:Image", "gateway", f"{STACK}$llm-platform:components:Images::images", {}),
    ]
    lines, unpriced = price_graph(context(tmp_path, resources, usage()))
    # 20 tagged images kept by the lifecycle policy x 0.3 GB x 0.10/GB-month = 0.60; the build itself is free
    assert round(sum(line.fixed for line in lines), 2) == 0.60
    assert unpriced == []


def gpu_pool() -> list[dict[str, Any]]:
    """A g6 Spot GPU NodePool and its EC2NodeClass (200 GiB gp3, 4000 IOPS, 225 MiB/s)."""
    requirements = [
        {"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["g6"]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]},
    ]
    template = {"metadata": {"labels": {"llm-platform/pool": "gpu"}}, "spec": {"requirements": requirements}}
    volume = {"ebs": {"volumeSize": "200Gi", "iops": 4000, "throughput": 225}}
    return [
        resource("kubernetes:karpenter.sh/v1:NodePool", "pools-gpu-nodepool", POOLS, {"spec": {"template": template}}),
        resource("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass", "pools-gpu-ec2nodeclass", POOLS,
                 {"spec": {"blockDeviceMappings": [volume]}}),
    ]


def test_gpu_pool_is_priced_from_the_simulated_node_hours(tmp_path: Path) -> None:
    pool, node_class = gpu_pool()
    vllm = resource("kubernetes:apps/v1:Deployment", "vllm", STACK, {"spec": {"replicas": 0, "template": {"spec": {
        "nodeSelector": {"llm-platform/pool": "gpu"},
        "containers": [{"resources": {"requests": {"cpu": "4", "memory": "24Gi", "nvidia.com/gpu": "1"}}}],
    }}}})
    resources = [component("NodePools", "pools"), pool, node_class, vllm]
    lines, unpriced = price_graph(context(tmp_path, resources, usage(gpu_node_hours=365)))
    # 24 Gi does not fit g6.xlarge (16 GiB), so g6.2xlarge Spot: 365 h x 0.50 = 182.50; its volume for half a
    # month (365 of 730 h): (200 GiB x 0.10 + 1000 IOPS x 0.01 + 100 MiB/s x 0.10) / 2 = 20.00
    (line,) = lines
    assert "g6.2xlarge spot" in line.item
    assert (round(line.fixed, 2), round(line.usage, 2)) == (0.0, 202.50)
    assert unpriced == []


def test_a_prefetched_image_snapshot_replaces_the_pulls_through_nat(tmp_path: Path) -> None:
    """GPU nodes whose data volume starts from a snapshot pull nothing: no NAT traffic per launch. The snapshot is
    stored all month and each launch initializes it at the provisioned rate, per GB."""
    pool, node_class = gpu_pool()
    node_class["inputs"]["spec"]["blockDeviceMappings"][0]["ebs"]["snapshotID"] = "snap-0a1b2c3d4e5f60718"
    resources = [component("Network", "network"), resource("aws:ec2/natGateway:NatGateway", "nat-a", NETWORK, {}),
                 component("NodePools", "pools"), pool, node_class]
    lines, unpriced = price_graph(context(tmp_path, resources, usage(gpu_node_launches=10)))
    by_item = {line.item: (round(line.fixed, 2), round(line.usage, 2)) for line in lines}
    assert by_item["0 GB processed (nothing per new GPU node)"] == (0.0, 0.0)
    # The 8 GB image compressed plus unpacked (x 2.5): 28 GB x 0.05 = 1.40 a month; 10 launches x 28 GB x 0.01 = 2.80
    assert by_item["image snapshot, about 28 GB stored (estimate)"] == (1.40, 0.0)
    assert by_item["280 GB of it initialized into new GPU nodes' volumes"] == (0.0, 2.80)
    assert unpriced == []


def test_a_metrics_stack_pays_for_the_volumes_its_values_ask_for(tmp_path: Path) -> None:
    claim = {"volumeClaimTemplate": {"spec": {"resources": {"requests": {"storage": "50Gi"}}}}}
    small = {"volumeClaimTemplate": {"spec": {"resources": {"requests": {"storage": "2Gi"}}}}}
    values = {
        "prometheus": {"prometheusSpec": {"replicas": 2, "storageSpec": claim}},
        "alertmanager": {"alertmanagerSpec": {"replicas": 2, "storage": small}},
        "grafana": {"persistence": {"enabled": True, "size": "10Gi"}},
    }
    resources = [resource("kubernetes:helm.sh/v3:Release", "observability", STACK, {"values": values}),
                 resource("kubernetes:helm.sh/v3:Release", "keda", STACK, {"values": {}})]
    lines, unpriced = price_graph(context(tmp_path, resources, usage()))
    # (2 x 50 + 2 x 2 + 10) GiB x 0.10 = 11.40 a month; a release without volumes costs nothing of its own
    (line,) = lines
    assert (line.resource, line.item, round(line.fixed, 2)) == ("observability", "114 GiB of gp3 persistent volumes",
                                                                 11.40)
    assert unpriced == []


def test_warm_capacity_is_priced_for_its_scheduled_gpu_node_hours(tmp_path: Path) -> None:
    pool, node_class = gpu_pool()
    on_gpu = {"nodeSelector": {"llm-platform/pool": "gpu"}}
    vllm = resource("kubernetes:apps/v1:Deployment", "vllm", STACK, {"metadata": {"name": "vllm"}, "spec": {
        "replicas": 0, "template": {"spec": {**on_gpu, "containers": [
            {"resources": {"requests": {"cpu": "4", "memory": "24Gi", "nvidia.com/gpu": "1"}}}]}}}})
    placeholder = resource("kubernetes:apps/v1:Deployment", "warm", STACK, {
        "metadata": {"name": "gpu-warm-placeholder"}, "spec": {"replicas": 0, "template": {"spec": {
            **on_gpu, "containers": [{"resources": {"requests": {"cpu": "10m", "nvidia.com/gpu": "1"}}}]}}}})
    cron = {"type": "cron", "metadata": {"timezone": "America/Los_Angeles", "start": "0 8 * * 1-5",
                                         "end": "0 18 * * 1-5", "desiredReplicas": "1"}}
    scaled = resource("kubernetes:keda.sh/v1alpha1:ScaledObject", "warm", STACK, {"spec": {
        "scaleTargetRef": {"name": "gpu-warm-placeholder"}, "triggers": [cron]}})
    queue = resource("kubernetes:keda.sh/v1alpha1:ScaledObject", "vllm", STACK, {"spec": {
        "scaleTargetRef": {"name": "vllm"}, "triggers": [{"type": "prometheus", "metadata": {}}]}})
    resources = [component("NodePools", "pools"), pool, node_class, vllm, placeholder, scaled, queue]
    lines, unpriced = price_graph(context(tmp_path, resources, usage()))
    # 10 h x 5 days = 50 h a week, 50 x 730 / 168 = 217.26 h a month of g6.2xlarge Spot (the vLLM pod's 24 Gi
    # does not fit g6.xlarge): 217.26 x 0.50 = 108.63, and its volume for 217.26 of 730 h: 40.00 x 0.2976 = 11.90.
    (warm,) = [line for line in lines if line.type.endswith("ScaledObject")]
    assert "217 h of g6.2xlarge spot" in warm.item
    assert (round(warm.fixed, 2), warm.usage) == (120.54, 0.0)
    assert unpriced == []


@pytest.mark.parametrize(("start", "end", "hours"), [
    ("0 8 * * 1-5", "0 18 * * 1-5", 50.0),  # prod's business hours
    ("30 22 * * *", "0 6 * * *", 7 * 7.5),  # overnight, every day
    ("0 9 * * 0,6", "0 17 * * 0,6", 16.0),  # weekends
])
def test_weekly_hours_of_a_cron_window(start: str, end: str, hours: float) -> None:
    assert weekly_hours(start, end) == pytest.approx(hours)


def test_a_cron_window_that_is_not_daily_is_unpriced() -> None:
    with pytest.raises(UnpricedError, match="M H"):
        weekly_hours("0 8 1 * *", "0 18 1 * *")


def test_an_unknown_type_is_reported_not_skipped(tmp_path: Path) -> None:
    resources = [
        resource("aws:newservice/thing:Thing", "thing", STACK, {}),
        resource("aws:elasticache/replicationGroup:ReplicationGroup", "redis", STACK,
                 {"nodeType": "cache.x9.huge", "numCacheClusters": 1}),
    ]
    lines, unpriced = price_graph(context(tmp_path, resources, usage()))
    assert lines == []
    assert unpriced[0] == (
        "aws:elasticache/replicationGroup:ReplicationGroup (no price for 'elasticache.cache.x9.huge' in xx-test-1 "
        "(components/prices/xx-test-1.json))"
    )
    assert unpriced[1] == "aws:newservice/thing:Thing"


def test_a_missing_region_names_the_available_ones(tmp_path: Path) -> None:
    write_catalog(tmp_path)
    with pytest.raises(UnpricedError, match="no price catalog for region eu-west-9; available: xx-test-1"):
        load_catalog("eu-west-9", tmp_path)


def test_every_type_in_both_stacks_is_priced_or_free(graph: Graph) -> None:
    catalog = load_catalog(graph.config.region)
    month = usage(requests=1e6, gpu_node_hours=100, gpu_node_launches=10, hourly_requests=[1000.0] * 730)
    ctx = Context(graph=graph.to_json(), catalog=catalog, usage=month, model_gb=14, image_gb=8, huggingface=True)
    lines, unpriced = price_graph(ctx)
    assert unpriced == [], f"{graph.stack}: unpriced resource types {unpriced}"
    priced = {line.type for line in lines}
    assert {"eks:index:Cluster", "aws:ec2/natGateway:NatGateway", "kubernetes:karpenter.sh/v1:NodePool"} <= priced


def test_every_catalog_entry_has_a_date_and_a_source_and_estimates_say_why() -> None:
    for region in ("us-east-1", "us-west-2"):
        for price in load_catalog(region).prices.values():
            assert price.date and (price.source.startswith("http") or "API" in price.source), price
            assert price.price > 0, price
            assert price.estimate is None or len(price.estimate) > 20, price


def test_the_cost_alert_and_the_budget_check_use_one_gpu_price(graph: Graph) -> None:
    status = budget_status(graph.to_json(), graph.config)
    # A vLLM pod asks for 4 CPU and 24 Gi: no xlarge of g5/g6 (16 GiB) holds it, g6.2xlarge Spot is the cheapest.
    assert status["gpuNodeHourlyUsd"] == load_catalog(graph.config.region).rate("ec2.g6.2xlarge.spot")
    rule = graph.one("kubernetes:monitoring.coreos.com/v1:PrometheusRule", "observability-serving-alerts")
    spec = rule.inputs["spec"]
    alerts = {rule.get("alert"): rule["expr"] for group in spec["groups"] for rule in group["rules"]}
    expr = alerts["LlmProjectedMonthlyCostOverBudget"]
    assert f" * {status['gpuNodeHourlyUsd']:.4g} * 730 " in expr, expr
    assert status["headroomUsd"] == round(status["budgetUsd"] - status["projectedUsd"], 2)
    assert status["unpriced"] == []
