"""KEDA, the NVIDIA device plugin and the metrics stack: pinned charts, monitors that find the serving pods,
alerts written against metric names that exist, and a dashboard Grafana can load."""

import json
import re
from pathlib import Path

from k8s_schemas import validate_manifest

from components import contracts, upstream
from components.observability import PROMETHEUS_URL, ObservabilityConfig, stack_values
from infra.offline import Graph
from infra.render import kubernetes_objects

RELEASE = "kubernetes:helm.sh/v3:Release"
RUNBOOK = Path(__file__).resolve().parent.parent / "docs" / "operations-alerts.md"
MONITORING = "kubernetes:monitoring.coreos.com/v1"
# vLLM V1 metric families (REFERENCE.md); counters are exposed with `_total`, histograms as `_bucket` etc.
VLLM_GAUGES = {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"}
VLLM_COUNTERS = {
    "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total",
    "vllm:num_preemptions_total", "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total",
}
VLLM_HISTOGRAMS = {
    "vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds", "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
}
GATEWAY_METRICS = {
    "gateway_requests_total", "gateway_rate_limited_total", "gateway_cache_requests_total",
    "gateway_inflight_requests", "gateway_pending_requests",
} | {
    f"{histogram}{suffix}"
    for histogram in ("gateway_request_duration_seconds", "gateway_upstream_ttfb_seconds", "gateway_overhead_seconds")
    for suffix in ("_bucket", "_sum", "_count")
}
KNOWN = VLLM_GAUGES | VLLM_COUNTERS | GATEWAY_METRICS | {
    f"{h}{suffix}" for h in VLLM_HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")
}


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(vllm:[a-z_:]+|gateway_[a-z_]+)", expr))


def rules(graph: Graph) -> dict[str, dict]:
    spec = graph.one(f"{MONITORING}:PrometheusRule", "observability-serving-alerts").inputs["spec"]
    return {rule["alert"]: rule for group in spec["groups"] for rule in group["rules"]}


def dashboard(graph: Graph) -> dict:
    config_map = graph.one("kubernetes:core/v1:ConfigMap", "observability-dashboard").inputs
    assert config_map["metadata"]["labels"] == {"grafana_dashboard": "1"}
    (document,) = config_map["data"].values()
    return json.loads(document)


def test_keda_operator_replicas_per_stack(dev_graph: Graph, prod_graph: Graph) -> None:
    assert dev_graph.one(RELEASE, "keda").inputs["values"]["operator"]["replicaCount"] == 1
    assert prod_graph.one(RELEASE, "keda").inputs["values"]["operator"]["replicaCount"] == 2


def test_device_plugin_runs_only_on_the_gpu_pool_and_tolerates_its_taint(dev_graph: Graph) -> None:
    values = dev_graph.one(RELEASE, "nvidia-device-plugin").inputs["values"]
    (term,) = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term["matchExpressions"] == [
        {"key": contracts.POOL_LABEL_KEY, "operator": "In", "values": [contracts.GPU_POOL]}
    ]
    assert {(t["key"], t["effect"]) for t in values["tolerations"]} == {("nvidia.com/gpu", "NoSchedule")}


def test_bottlerocket_gpu_nodes_get_no_second_device_plugin(prod_graph: Graph) -> None:
    """Bottlerocket's NVIDIA variant runs its own device plugin; a second one breaks GPU allocation
    (bottlerocket-os/bottlerocket#4309, components/upstream/bottlerocket.json nvidia)."""
    assert upstream.facts("bottlerocket")["nvidia"]["devicePluginBuiltIn"] is True
    assert prod_graph.config.addons.karpenter.gpu_pool.ami_alias.startswith("bottlerocket@")
    assert not [r for r in prod_graph.of_type(RELEASE) if r.name == "nvidia-device-plugin"]


def test_prometheus_selects_monitors_and_rules_from_all_namespaces(graph: Graph) -> None:
    spec = graph.one(RELEASE, "observability").inputs["values"]["prometheus"]["prometheusSpec"]
    for key in ("podMonitorSelectorNilUsesHelmValues", "serviceMonitorSelectorNilUsesHelmValues",
                "ruleSelectorNilUsesHelmValues"):
        assert spec[key] is False


def test_prometheus_volume_only_when_storage_is_configured(dev_graph: Graph) -> None:
    spec = dev_graph.one(RELEASE, "observability").inputs["values"]["prometheus"]["prometheusSpec"]
    assert "storageSpec" not in spec  # dev keeps metrics in an emptyDir: cheaper, lost on restart
    persistent = stack_values(ObservabilityConfig(storage_gib=50))["prometheus"]["prometheusSpec"]
    claim = persistent["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] == "50Gi"


def test_prometheus_url_is_the_release_service(graph: Graph) -> None:
    release = graph.one(RELEASE, "observability").inputs
    assert f"http://{release['name']}-prometheus.{release['namespace']}.svc.cluster.local:9090" == PROMETHEUS_URL
    assert graph.outputs["prometheusUrl"] == PROMETHEUS_URL


def test_monitors_find_the_serving_pods_by_app_label_and_metrics_port(graph: Graph) -> None:
    for kind, app, endpoints in (("PodMonitor", contracts.VLLM_APP, "podMetricsEndpoints"),
                                 ("ServiceMonitor", contracts.GATEWAY_APP, "endpoints")):
        spec = graph.one(f"{MONITORING}:{kind}", f"observability-{app}").inputs["spec"]
        assert spec["namespaceSelector"] == {"matchNames": [contracts.SERVING_NAMESPACE]}
        assert spec["selector"] == {"matchLabels": {contracts.APP_NAME_LABEL: app}}
        assert spec["jobLabel"] == contracts.APP_NAME_LABEL
        assert [endpoint["port"] for endpoint in spec[endpoints]] == [contracts.METRICS_PORT_NAME]


def test_alerts_cover_what_the_seeds_ask_for(graph: Graph) -> None:
    assert set(rules(graph)) == {
        "LlmGatewayHighErrorRate", "LlmVllmQueueDeep", "LlmNoGpuPodsWhileRequestsWait",
        "LlmGatewayP95LatencyHigh", "LlmProjectedMonthlyCostOverBudget",
    }


def test_alert_thresholds_come_from_config(graph: Graph) -> None:
    thresholds = graph.config.addons.observability.alerts
    alerts = rules(graph)
    assert alerts["LlmVllmQueueDeep"]["expr"].endswith(f"> {thresholds.queue_depth}")
    assert alerts["LlmGatewayHighErrorRate"]["expr"].endswith(f"> {thresholds.error_rate}")
    assert alerts["LlmGatewayP95LatencyHigh"]["expr"].endswith(f"> {thresholds.p95_latency_s}")
    assert alerts["LlmProjectedMonthlyCostOverBudget"]["expr"].endswith(f"> {graph.config.monthly_budget_usd:g}")


def test_queries_use_real_metric_names_filtered_by_job_and_namespace(graph: Graph) -> None:
    expressions = [rule["expr"] for rule in rules(graph).values()] + [
        target["expr"] for panel in dashboard(graph)["panels"] for target in panel["targets"]
    ]
    for expr in expressions:
        assert metric_names(expr) <= KNOWN, expr
        for selector in re.findall(r"(?:vllm:[a-z_:]+|gateway_[a-z_]+|\bup)\{([^}]*)\}", expr):
            assert f'namespace="{contracts.SERVING_NAMESPACE}"' in selector and "job=" in selector, expr
    assert not any("vllm_" in expr or "gpu_cache_usage_perc" in expr for expr in expressions)


def test_every_alert_has_a_runbook_entry(graph: Graph) -> None:
    text = RUNBOOK.read_text()
    for name, rule in rules(graph).items():
        assert f"## {name}" in text
        assert rule["annotations"]["runbook_url"].endswith(f"#{name.lower()}")


def test_dashboard_has_the_listed_panels(graph: Graph) -> None:
    panels = dashboard(graph)["panels"]
    assert [panel["title"] for panel in panels] == [
        "Request rate", "Latency", "Errors", "Cache hit rate", "Queue", "GPU pods", "Tokens/s"
    ]
    assert all(panel["targets"] for panel in panels)
    assert len({panel["id"] for panel in panels}) == len(panels)


def test_grafana_admin_password_is_generated_into_a_secret(graph: Graph) -> None:
    grafana = graph.one(RELEASE, "observability").inputs["values"]["grafana"]
    secret = graph.one("kubernetes:core/v1:Secret", "observability-grafana-admin").inputs
    assert grafana["admin"]["existingSecret"] == secret["metadata"]["name"]
    assert graph.one("random:index/randomString:RandomString", "observability-grafana-admin").inputs["length"] >= 32
    assert f"secret {secret['metadata']['name']}" in graph.outputs["grafanaAccess"]
    assert "port-forward" in graph.outputs["grafanaAccess"]


def test_monitoring_objects_validate(graph: Graph) -> None:
    objects = [
        o for o in kubernetes_objects(graph)
        if o.get("metadata", {}).get("namespace") == contracts.MONITORING_NAMESPACE
        or (o["kind"] == "Namespace" and o["metadata"]["name"] == contracts.MONITORING_NAMESPACE)
    ]
    assert {o["kind"] for o in objects} >= {"PodMonitor", "ServiceMonitor", "PrometheusRule", "ConfigMap", "Secret"}
    assert [problem for o in objects for problem in validate_manifest(o)] == []


def test_controllers_set_requests_and_memory_limits(graph: Graph) -> None:
    values = {r.name: r.inputs["values"] for r in graph.of_type(RELEASE)}
    for resources in (
        values["karpenter"]["controller"]["resources"],
        values["keda"]["resources"]["operator"],
        values["keda"]["resources"]["metricServer"],
        *([values["nvidia-device-plugin"]["resources"]] if "nvidia-device-plugin" in values else []),
        values["observability"]["prometheus"]["prometheusSpec"]["resources"],
    ):
        assert resources["requests"]["cpu"] and resources["requests"]["memory"]
        assert resources["limits"]["memory"]


def test_cluster_controllers_stay_on_the_system_nodes(graph: Graph) -> None:
    system = {"llm-platform/node-role": "system"}
    assert graph.one(RELEASE, "keda").inputs["values"]["nodeSelector"] == system
    stack = graph.one(RELEASE, "observability").inputs["values"]
    assert stack["prometheus"]["prometheusSpec"]["nodeSelector"] == system
    assert stack["grafana"]["nodeSelector"] == stack["kube-state-metrics"]["nodeSelector"] == system


def test_monitors_match_the_declared_serving_objects(graph: Graph) -> None:
    """The PodMonitor selects the vLLM pods and names their port; the ServiceMonitor selects the gateway
    Service and names its port; both live in the namespace the monitors watch."""
    vllm = graph.one("kubernetes:apps/v1:Deployment", "vllm-deployment").inputs
    pod_monitor = graph.one(f"{MONITORING}:PodMonitor", "observability-vllm").inputs["spec"]
    template = vllm["spec"]["template"]
    assert vllm["metadata"]["namespace"] in pod_monitor["namespaceSelector"]["matchNames"]
    assert pod_monitor["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    ports = {port["name"] for c in template["spec"]["containers"] for port in c.get("ports", [])}
    assert pod_monitor["podMetricsEndpoints"][0]["port"] in ports

    service = graph.one("kubernetes:core/v1:Service", "gateway-service").inputs
    service_monitor = graph.one(f"{MONITORING}:ServiceMonitor", "observability-gateway").inputs["spec"]
    assert service["metadata"]["namespace"] in service_monitor["namespaceSelector"]["matchNames"]
    assert service_monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service_monitor["endpoints"][0]["port"] in {port["name"] for port in service["spec"]["ports"]}


# Nested keys this project sets, as they appear in kube-prometheus-stack 82.18.0 values.yaml and its grafana
# dependency (grafana-community/helm-charts grafana-11.3.7 values.yaml).
STACK_VALUE_PATHS = {
    "prometheus.prometheusSpec.retention", "prometheus.prometheusSpec.retentionSize",
    "prometheus.prometheusSpec.storageSpec", "prometheus.prometheusSpec.replicas",
    "prometheus.prometheusSpec.nodeSelector", "prometheus.prometheusSpec.resources",
    "prometheus.prometheusSpec.podMonitorSelectorNilUsesHelmValues",
    "prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues",
    "prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues",
    "prometheusOperator.nodeSelector", "alertmanager.config", "alertmanager.alertmanagerSpec.nodeSelector",
    "alertmanager.alertmanagerSpec.secrets", "alertmanager.alertmanagerSpec.replicas",
    "alertmanager.alertmanagerSpec.storage", "alertmanager.podDisruptionBudget", "grafana.nodeSelector",
    "grafana.admin", "grafana.sidecar",
    "grafana.persistence", "grafana.deploymentStrategy", "kube-state-metrics.nodeSelector",
    "kube-state-metrics.metricLabelsAllowlist",
}


def test_stack_values_use_keys_of_the_pinned_charts(prod_graph: Graph) -> None:
    values = prod_graph.one(RELEASE, "observability").inputs["values"]

    def paths(node: dict, prefix: str = "") -> set[str]:
        found = set()
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and not any(path.startswith(p) for p in STACK_VALUE_PATHS):
                found |= paths(value, f"{path}.")
            else:
                found.add(path)
        return found

    assert paths(values) <= STACK_VALUE_PATHS
