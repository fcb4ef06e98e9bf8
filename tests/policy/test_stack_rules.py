"""Each stack rule fed a compliant and a non-compliant synthetic graph, in the `preview --json` format with the
dependencies and options of agreement 1 (missing keys treated as empty)."""

import json
from typing import Any

import pytest

from .conftest import entry, stack_violations

URN = "urn:pulumi:test::llm-platform::"
KEY_ARN = "arn:aws:kms:us-west-2:123456789012:key/k"


def bucket_graph(**overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """A bucket and its companions, each linked to it by a property dependency on `bucket`."""
    bucket = entry("aws:s3/bucket:Bucket", "models", {"bucket": "models"})
    linked = {"propertyDependencies": {"bucket": [bucket["urn"]]}, "dependencies": [bucket["urn"]]}
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": ["arn:aws:s3:::models/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    companions = {
        "encryption": ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                       {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms",
                                                                          "kmsMasterKeyId": KEY_ARN}}]}),
        "versioning": ("aws:s3/bucketVersioning:BucketVersioning", {"versioningConfiguration": {"status": "Enabled"}}),
        "public": ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
                   dict.fromkeys(("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                  "restrictPublicBuckets"), True)),
        "policy": ("aws:s3/bucketPolicy:BucketPolicy", {"policy": json.dumps({"Statement": [deny]})}),
        "lifecycle": ("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                      {"rules": [{"status": "Enabled", "noncurrentVersionExpiration": {"noncurrentDays": 30}}]}),
    }
    graph = [bucket]
    for name, (kind, inputs) in companions.items():
        if overrides.get(name) != {"absent": True}:
            graph.append(entry(kind, f"models-{name}", {**inputs, **overrides.get(name, {})}, **linked))
    return graph


S3_CASES = [
    ("s3-encryption-kms", {"encryption": {"rules": [{"applyServerSideEncryptionByDefault": {
        "sseAlgorithm": "AES256"}}]}}, "not SSE-KMS"),
    ("s3-encryption-kms", {"encryption": {"absent": True}}, "has no server-side encryption configuration"),
    ("s3-versioning", {"versioning": {"versioningConfiguration": {"status": "Suspended"}}}, "'Suspended'"),
    ("s3-public-access-blocked", {"public": {"blockPublicPolicy": False}}, "blockPublicPolicy not true"),
    ("s3-public-access-blocked", {"public": {"absent": True}}, "has no public access block"),
    ("s3-tls-only", {"policy": {"policy": json.dumps({"Statement": []})}}, "does not deny s3:*"),
    ("s3-noncurrent-version-lifecycle", {"lifecycle": {"rules": [{"status": "Enabled", "noncurrentVersionExpiration":
                                                                   {"noncurrentDays": 365}}]}}, "365 days"),
]


@pytest.mark.parametrize(("rule", "change", "expected"), S3_CASES)
def test_bucket_rules(rule: str, change: dict, expected: str) -> None:
    assert stack_violations(rule, bucket_graph()) == []
    found = stack_violations(rule, bucket_graph(**change))
    assert any(expected in message and "models" in message for message, _ in found), found


def test_companions_of_another_bucket_do_not_count() -> None:
    other = entry("aws:s3/bucket:Bucket", "logs")
    found = stack_violations("s3-versioning", [*bucket_graph(), other])
    assert found == [("bucket logs has no versioning", other["urn"])]


def cache_graph(public_subnet: bool) -> list[dict[str, Any]]:
    igw_table = entry("aws:ec2/routeTable:RouteTable", "public", {"routes": [{"cidrBlock": "0.0.0.0/0",
                                                                              "gatewayId": "igw-1"}]})
    subnet = entry("aws:ec2/subnet:Subnet", "a", {"availabilityZone": "us-west-2a"})
    association = entry("aws:ec2/routeTableAssociation:RouteTableAssociation", "a",
                        propertyDependencies={"subnetId": [subnet["urn"]], "routeTableId": [igw_table["urn"]]})
    group = entry("aws:elasticache/subnetGroup:SubnetGroup", "cache", propertyDependencies={
        "subnetIds": [subnet["urn"]]})
    redis = entry("aws:elasticache/replicationGroup:ReplicationGroup", "redis",
                  propertyDependencies={"subnetGroupName": [group["urn"]]})
    return [igw_table, subnet, group, redis] + ([association] if public_subnet else [])


def test_redis_private_subnets() -> None:
    assert stack_violations("redis-private-subnets", cache_graph(public_subnet=False)) == []
    ((message, urn),) = stack_violations("redis-private-subnets", cache_graph(public_subnet=True))
    assert "public subnet a" in message and urn.endswith("::redis")


def network_graph(nats: int, flow_log: bool) -> list[dict[str, Any]]:
    vpc = entry("aws:ec2/vpc:Vpc", "vpc")
    graph = [vpc] + [entry("aws:ec2/subnet:Subnet", f"s{zone}", {"availabilityZone": f"us-west-2{zone}"})
                     for zone in "abc"]
    graph += [entry("aws:ec2/natGateway:NatGateway", f"nat{i}") for i in range(nats)]
    if flow_log:
        graph.append(entry("aws:ec2/flowLog:FlowLog", "flow", {"trafficType": "ALL"},
                           propertyDependencies={"vpcId": [vpc["urn"]]}))
    return graph


def test_flow_logs() -> None:
    assert stack_violations("vpc-flow-logs", network_graph(3, flow_log=True)) == []
    assert stack_violations("vpc-flow-logs", network_graph(3, flow_log=False)) == [
        ("VPC vpc has no flow log", f"{URN}aws:ec2/vpc:Vpc::vpc")
    ]


def test_flow_log_in_an_older_graph_without_dependencies() -> None:
    """Graphs written before dependencies were recorded: a sibling under the same component counts."""
    component = entry("llm-platform:components:Network", "network")
    vpc = entry("aws:ec2/vpc:Vpc", "vpc", parent=component["urn"])
    log = entry("aws:ec2/flowLog:FlowLog", "flow", {"trafficType": "ALL"}, parent=component["urn"])
    assert stack_violations("vpc-flow-logs", [component, vpc, log]) == []


def test_nat_per_az() -> None:
    assert stack_violations("nat-per-az", network_graph(3, flow_log=True)) == []
    ((message, _),) = stack_violations("nat-per-az", network_graph(1, flow_log=True))
    assert "1 NAT gateway(s) for 3 availability zones" in message
    assert stack_violations("nat-per-az", network_graph(1, flow_log=True), {"required": False}) == []


def gpu_pool(name: str, capacity: list[str]) -> dict[str, Any]:
    requirements = [{"key": "karpenter.k8s.aws/instance-gpu-manufacturer", "operator": "In", "values": ["nvidia"]},
                    {"key": "karpenter.sh/capacity-type", "operator": "In", "values": capacity}]
    return entry("kubernetes:karpenter.sh/v1:NodePool", name, {"spec": {
        "template": {"spec": {"requirements": requirements}}, "limits": {"cpu": "64", "nvidia.com/gpu": "4"}}})


def test_gpu_on_demand_fallback() -> None:
    spot = gpu_pool("gpu-spot", ["spot"])
    assert stack_violations("karpenter-gpu-on-demand-fallback", [spot, gpu_pool("gpu-od", ["on-demand"])]) == []
    ((message, urn),) = stack_violations("karpenter-gpu-on-demand-fallback", [spot])
    assert "no GPU pool may launch on-demand" in message and urn == spot["urn"]


VLLM_LABELS = {"app.kubernetes.io/name": "vllm"}
GATEWAY_LABELS = {"app.kubernetes.io/name": "gateway"}


def vllm(max_num_seqs: str | None = "8", labels: dict | None = None) -> dict[str, Any]:
    args = ["Qwen/Qwen2.5-7B-Instruct"] + (["--max-num-seqs", max_num_seqs] if max_num_seqs else [])
    container = {"name": "vllm", "image": "vllm/vllm-openai:v0.33.0", "args": args,
                 "resources": {"limits": {"nvidia.com/gpu": "1"}}}
    return entry("kubernetes:apps/v1:Deployment", "vllm", {
        "metadata": {"name": "vllm", "namespace": "llm-serving"},
        "spec": {"template": {"metadata": {"labels": labels or VLLM_LABELS}, "spec": {"containers": [container]}}}})


def network_policy(peers: list[dict[str, Any]]) -> dict[str, Any]:
    return entry("kubernetes:networking.k8s.io/v1:NetworkPolicy", "vllm", {
        "metadata": {"name": "vllm", "namespace": "llm-serving"},
        "spec": {"podSelector": {"matchLabels": VLLM_LABELS}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": peers}]}})


GATEWAY_PEER = {"podSelector": {"matchLabels": GATEWAY_LABELS}}
MONITORING_PEER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}


@pytest.mark.parametrize(("policies", "ok"), [
    ([network_policy([GATEWAY_PEER, MONITORING_PEER])], True),
    ([], False),
    ([network_policy([GATEWAY_PEER, {"ipBlock": {"cidr": "0.0.0.0/0"}}])], False),
    ([network_policy([{"podSelector": {}}])], False),
])
def test_vllm_network_policy(policies: list, ok: bool) -> None:
    found = stack_violations("k8s-vllm-network-policy", [vllm(), *policies])
    assert (found == []) is ok, found
    assert all(urn.endswith("::vllm") for _, urn in found)


def test_pod_disruption_budget() -> None:
    budget = entry("kubernetes:policy/v1:PodDisruptionBudget", "vllm", {
        "metadata": {"namespace": "llm-serving"}, "spec": {"selector": {"matchLabels": VLLM_LABELS}}})
    assert stack_violations("k8s-pod-disruption-budget", [vllm(), budget]) == []
    ((message, _),) = stack_violations("k8s-pod-disruption-budget", [vllm()])
    assert "Deployment vllm has no PodDisruptionBudget" in message


def ingress_graph(paths: list[dict[str, Any]], scraped_port: str = "http") -> list[dict[str, Any]]:
    service = entry("kubernetes:core/v1:Service", "gateway", {
        "metadata": {"name": "gateway", "namespace": "llm-serving", "labels": GATEWAY_LABELS}})
    monitor = entry("kubernetes:monitoring.coreos.com/v1:ServiceMonitor", "gateway", {
        "metadata": {"namespace": "monitoring"}, "spec": {
            "selector": {"matchLabels": GATEWAY_LABELS}, "namespaceSelector": {"matchNames": ["llm-serving"]},
            "endpoints": [{"port": scraped_port, "path": "/metrics"}]}})
    ingress = entry("kubernetes:networking.k8s.io/v1:Ingress", "gateway", {
        "metadata": {"namespace": "llm-serving",
                     "annotations": {"alb.ingress.kubernetes.io/scheme": "internet-facing"}},
        "spec": {"ingressClassName": "alb", "rules": [{"http": {"paths": paths}}]}})
    return [service, monitor, ingress]


def path(value: str, port: str = "http", service: str = "gateway") -> dict[str, Any]:
    return {"path": value, "pathType": "Prefix", "backend": {"service": {"name": service, "port": {"name": port}}}}


@pytest.mark.parametrize(("graph", "ok"), [
    (ingress_graph([path("/v1")]), True),
    (ingress_graph([path("/")], scraped_port="metrics"), True),
    (ingress_graph([path("/metrics", "use-annotation", "block-metrics"), path("/")]), True),
    (ingress_graph([path("/")]), False),
    (ingress_graph([path("/metrics")]), False),
])
def test_metrics_not_routed_by_public_ingress(graph: list, ok: bool) -> None:
    found = stack_violations("k8s-metrics-not-public", graph)
    assert (found == []) is ok, found


def scaled_object(target: str) -> dict[str, Any]:
    return entry("kubernetes:keda.sh/v1alpha1:ScaledObject", "vllm", {
        "metadata": {"name": "vllm", "namespace": "llm-serving"},
        "spec": {"scaleTargetRef": {"name": "vllm"}, "maxReplicaCount": 6,
                 "advanced": {"scalingModifiers": {"formula": "running + waiting * 10", "target": target}}}})


def test_keda_target_within_max_num_seqs() -> None:
    assert stack_violations("keda-target-matches-max-num-seqs", [vllm("8"), scaled_object("6")]) == []
    ((message, _),) = stack_violations("keda-target-matches-max-num-seqs", [vllm("8"), scaled_object("12")])
    assert "per-pod target 12.0" in message and "--max-num-seqs 8" in message
    ((message, _),) = stack_violations("keda-target-matches-max-num-seqs", [vllm(None), scaled_object("6")])
    assert "does not set --max-num-seqs" in message


def release(name: str, chart: str, **extra: Any) -> dict[str, Any]:
    return entry("kubernetes:helm.sh/v3:Release", name, {"chart": chart}, **extra)


def test_custom_resources_wait_for_their_crd_release() -> None:
    component = entry("llm-platform:components:Karpenter", "karpenter")
    crds = release("karpenter-crd", "oci://public.ecr.aws/karpenter/karpenter-crd", parent=component["urn"])
    node_class = entry("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass", "gpu", dependencies=[crds["urn"]])
    # Waits transitively (through the node class), and through a dependency on the component itself.
    pool = entry("kubernetes:karpenter.sh/v1:NodePool", "gpu", dependencies=[node_class["urn"]])
    monitor = entry("kubernetes:monitoring.coreos.com/v1:ServiceMonitor", "gateway", dependencies=[])
    other = entry("kubernetes:karpenter.sh/v1:NodePool", "cpu", options={"dependsOn": [component["urn"]]},
                  dependencies=[component["urn"]])
    graph = [component, crds, node_class, pool, other, monitor]
    found = stack_violations("order-crds-before-custom-resources", graph)
    assert found == [(
        "ServiceMonitor gateway does not wait for the release that installs its CRD (kube-prometheus-stack)",
        monitor["urn"],
    )]


def test_ingress_waits_for_the_load_balancer_controller() -> None:
    controller = release("edge-lb-controller", "aws-load-balancer-controller")
    waiting = entry("kubernetes:networking.k8s.io/v1:Ingress", "gateway", {"spec": {"ingressClassName": "alb"}},
                    dependencies=[controller["urn"]])
    assert stack_violations("order-ingress-after-lb-controller", [controller, waiting]) == []
    hasty = {**waiting, "dependencies": []}
    ((message, urn),) = stack_violations("order-ingress-after-lb-controller", [controller, hasty])
    assert "gateway does not wait for the load balancer controller" in message and urn == waiting["urn"]


def test_stateful_prod_resources_are_protected() -> None:
    protected = [entry(kind, "data", options={"protect": True}) for kind in
                 ("aws:s3/bucket:Bucket", "aws:kms/key:Key", "aws:elasticache/replicationGroup:ReplicationGroup")]
    assert stack_violations("protect-stateful-resources", protected) == []
    unprotected = [{**resource, "options": {}} for resource in protected]
    assert len(stack_violations("protect-stateful-resources", unprotected)) == 3
    assert stack_violations("protect-stateful-resources", unprotected, {"required": False}) == []


def test_cost_bound_on_gpu_max_replicas_times_price() -> None:
    """6 vLLM pods x 1 GPU at 0.9 USD/GPU-hour = 5.40 USD/hour; the pool's 4-GPU limit caps it at 3.60."""
    graph = [vllm(), scaled_object("6")]
    assert stack_violations("cost-within-budget", graph, {"gpuHourlyUsd": 0.9, "maxGpuHourlyUsd": 5.4}) == []
    ((message, urn),) = stack_violations("cost-within-budget", graph, {"gpuHourlyUsd": 0.9, "maxGpuHourlyUsd": 5})
    assert "6 GPUs cost 5.40 USD/hour" in message and urn is None
    capped = [*graph, gpu_pool("gpu", ["spot"])]
    assert stack_violations("cost-within-budget", capped, {"gpuHourlyUsd": 0.9, "maxGpuHourlyUsd": 3.6}) == []


def test_cost_uses_the_cost_models_projection_when_given() -> None:
    found = stack_violations("cost-within-budget", [], {"projectedMonthlyUsd": 1800, "monthlyBudgetUsd": 1500})
    assert found == [("projected monthly cost 1,800 USD exceeds the budget of 1,500 USD", None)]
