"""What the internet and other pods can reach: the ALB routes only the client API, only the gateway and Prometheus
reach vLLM, and vLLM runs without privileges it does not need."""

import pytest

from infra.offline import Graph, GraphResource
from serving.gateway.app import API_ROUTES

INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
# In-cluster only: per-key counters, and the probes the kubelet and the ALB health check call on the pod itself.
PRIVATE_PATHS = ("/metrics", "/health", "/ready")
# The prometheus-operator labels every Prometheus server pod with this (pkg/prometheus/server/statefulset.go).
PROMETHEUS_POD = {"app.kubernetes.io/name": "prometheus"}


def routed(graph: Graph, path: str) -> bool:
    """Would the ALB forward `path` to the gateway? Prefix rules match whole path segments (Ingress spec)."""
    (rule,) = graph.one(INGRESS).inputs["spec"]["rules"]
    for entry in rule["http"]["paths"]:
        prefix = entry["path"].rstrip("/")
        assert entry["pathType"] == "Prefix", entry
        if path == prefix or path.startswith(f"{prefix}/") or prefix == "":
            return True
    return False


def test_alb_routes_every_client_api_route(graph: Graph) -> None:
    assert API_ROUTES, "the gateway serves an API"
    for route in API_ROUTES:
        assert routed(graph, route), f"{route} is not reachable through {graph.one(INGRESS).urn}"


@pytest.mark.parametrize("path", PRIVATE_PATHS)
def test_alb_does_not_route_in_cluster_paths(graph: Graph, path: str) -> None:
    assert not routed(graph, path), f"{path} is reachable from the internet through {graph.one(INGRESS).urn}"


def deployment(graph: Graph, name: str) -> GraphResource:
    return next(d for d in graph.of_type(DEPLOYMENT) if d.inputs["metadata"]["name"] == name)


def pod_labels(graph: Graph, name: str) -> dict[str, str]:
    return deployment(graph, name).inputs["spec"]["template"]["metadata"]["labels"]


def test_only_the_gateway_and_prometheus_reach_vllm(graph: Graph) -> None:
    vllm_policies = [p for p in graph.of_type(POLICY) if p.inputs["metadata"]["name"] == "vllm"]
    (policy,) = vllm_policies
    spec = policy.inputs["spec"]
    assert spec["podSelector"]["matchLabels"] == pod_labels(graph, "vllm")
    assert spec["policyTypes"] == ["Ingress"]
    (vllm_port,) = deployment(graph, "vllm").inputs["spec"]["template"]["spec"]["containers"][0]["ports"]
    peers = []
    for rule in spec["ingress"]:
        assert rule["ports"] == [{"protocol": "TCP", "port": vllm_port["containerPort"]}], policy.urn
        peers += rule["from"]
    assert peers == [
        # Same namespace (no namespaceSelector): the gateway's own pods.
        {"podSelector": {"matchLabels": pod_labels(graph, "gateway")}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
         "podSelector": {"matchLabels": PROMETHEUS_POD}},
    ]
    assert policy.inputs["metadata"]["namespace"] == "llm-serving"


def test_vllm_runs_without_privilege_escalation_or_capabilities(graph: Graph) -> None:
    vllm = deployment(graph, "vllm")
    pod = vllm.inputs["spec"]["template"]["spec"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, vllm.urn
    (container,) = pod["containers"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False, vllm.urn
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}, vllm.urn
    assert not container["securityContext"].get("privileged"), vllm.urn
