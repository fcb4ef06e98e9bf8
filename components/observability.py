"""Metrics for the serving layer: kube-prometheus-stack (pinned), the monitors that scrape vLLM and the gateway,
the alert rules, and the Grafana dashboard, all as data."""

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from pydantic import Field

from components import contracts
from components.alerting import AlertingConfig, routing_secret, with_alerting
from components.cluster import SYSTEM_NODE_LABEL
from components.config_base import StrictModel
from components.helm import pinned_release
from components.storage import STORAGE_CLASS
from components.versions import KUBE_PROMETHEUS_STACK

NAMESPACE = contracts.MONITORING_NAMESPACE
# The chart names its objects after the release when the release name contains the chart name.
RELEASE_NAME = KUBE_PROMETHEUS_STACK.name
PROMETHEUS_URL = f"http://{RELEASE_NAME}-prometheus.{NAMESPACE}.svc.cluster.local:9090"
GRAFANA_SERVICE = f"{RELEASE_NAME}-grafana"
GRAFANA_ADMIN_SECRET = "grafana-admin"
DASHBOARD_LABEL = {"grafana_dashboard": "1"}
HOURS_PER_MONTH = 730
# Share of the Prometheus volume its TSDB may fill (the rest: WAL growth and compaction headroom).
RETENTION_SIZE_SHARE = 0.85

# Monitors set `job` to the pod's app label, so every query can say which exporter it means: the gateway may
# re-export vllm: gauges, and an unfiltered sum() would count them twice.
VLLM = f'job="{contracts.VLLM_APP}",namespace="{contracts.SERVING_NAMESPACE}"'
GATEWAY = f'job="{contracts.GATEWAY_APP}",namespace="{contracts.SERVING_NAMESPACE}"'
# kube-state-metrics turns the node label llm-platform/pool into label_llm_platform_pool.
_POOL_METRIC_LABEL = "label_" + re.sub(r"[^a-zA-Z0-9_]", "_", contracts.POOL_LABEL_KEY)
GPU_NODES = f'kube_node_labels{{{_POOL_METRIC_LABEL}="{contracts.GPU_POOL}"}}'


class AlertThresholds(StrictModel):
    error_rate: float = Field(default=0.05, gt=0, lt=1, description="Share of gateway requests answered 5xx.")
    queue_depth: int = Field(default=20, ge=1, description="Requests waiting in vLLM, summed over pods.")
    p95_latency_s: float = Field(default=10, gt=0, description="Gateway p95 request duration.")
    for_duration: str = Field(default="5m", pattern=r"^[0-9]+[smh]$", description="How long before firing.")
    cold_start_grace: str = Field(
        default="10m", pattern=r"^[0-9]+[smh]$",
        description="How long requests may wait for a first vLLM pod (node, image pull, model load) before alerting.",
    )


class ObservabilityConfig(StrictModel):
    retention: str = Field(default="7d", pattern=r"^[0-9]+[hdwy]$")
    storage_gib: int | None = Field(
        default=None, ge=5, le=16384,
        description=f"Prometheus volume on StorageClass {STORAGE_CLASS}. Unset: emptyDir, lost on restart.",
    )
    grafana_storage_gib: int | None = Field(
        default=None, ge=1, le=1024, description="Grafana volume (users, edits). Unset: dashboards from code only."
    )
    prometheus_replicas: int = Field(default=1, ge=1, le=3)
    alertmanager_replicas: int = Field(
        default=1, ge=1, le=5,
        description="Alertmanager instances; from 2 they gossip, so a node loss neither drops nor repeats a page.",
    )
    alertmanager_storage_gib: int | None = Field(
        default=None, ge=1, le=100,
        description=f"Alertmanager volume on {STORAGE_CLASS} (silences, notification log). Unset: lost on restart, "
        "so silences end and sent notifications may be sent again.",
    )
    alerts: AlertThresholds = Field(default_factory=AlertThresholds)
    base_monthly_usd: float = Field(
        default=300, ge=0, description="Everything but GPU nodes (control plane, system nodes, NAT, cache)."
    )


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str

    def rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity},
            "annotations": {
                "summary": self.summary,
                "runbook_url": f"docs/operations-alerts.md#{self.name.lower()}",
            },
        }


def alerts(
    thresholds: AlertThresholds, monthly_budget_usd: float, config: ObservabilityConfig, gpu_node_hourly_usd: float
) -> list[Alert]:
    """The serving alerts; docs/operations-alerts.md says what each means and what to do. The GPU node-hour price
    comes from the cost catalog (infra/cost/), the one the cost preview uses."""
    wait = thresholds.for_duration
    projected_cost = (
        f"avg_over_time((count({GPU_NODES}) or vector(0))[1d:5m]) * {gpu_node_hourly_usd:.4g} * {HOURS_PER_MONTH}"
        f" + {config.base_monthly_usd}"
    )
    return [
        Alert(
            "LlmGatewayHighErrorRate",
            f'sum(rate(gateway_requests_total{{{GATEWAY},status=~"5.."}}[5m]))'
            f" / sum(rate(gateway_requests_total{{{GATEWAY}}}[5m])) > {thresholds.error_rate}",
            wait, "critical",
            f"More than {thresholds.error_rate:.0%} of gateway requests fail with 5xx",
        ),
        Alert(
            "LlmVllmQueueDeep",
            f"sum(vllm:num_requests_waiting{{{VLLM}}}) > {thresholds.queue_depth}",
            wait, "warning",
            f"More than {thresholds.queue_depth} requests wait in vLLM's queue",
        ),
        Alert(
            "LlmNoGpuPodsWhileRequestsWait",
            f"sum(gateway_pending_requests{{{GATEWAY}}}) > 0 unless on() sum(up{{{VLLM}}} == 1) > 0",
            thresholds.cold_start_grace, "critical",
            "The gateway holds requests but no vLLM pod has come up",
        ),
        Alert(
            "LlmGatewayP95LatencyHigh",
            f"histogram_quantile(0.95, sum by (le) (rate(gateway_request_duration_seconds_bucket{{{GATEWAY}}}[5m])))"
            f" > {thresholds.p95_latency_s}",
            wait, "warning",
            f"Gateway p95 request duration is above {thresholds.p95_latency_s:g}s",
        ),
        Alert(
            "LlmProjectedMonthlyCostOverBudget",
            f"{projected_cost} > {monthly_budget_usd:g}",
            "1h", "warning",
            f"At the last day's GPU node count the month costs more than the {monthly_budget_usd:g} USD budget",
        ),
    ]


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    targets: dict[str, str]  # legend -> PromQL


DASHBOARD_PANELS = (
    Panel("Request rate", "reqps", {"{{status}}": f"sum by (status) (rate(gateway_requests_total{{{GATEWAY}}}[5m]))"}),
    Panel(
        "Latency",
        "s",
        {
            f"gateway p{q}": f"histogram_quantile(0.{q}, sum by (le) "
            f"(rate(gateway_request_duration_seconds_bucket{{{GATEWAY}}}[5m])))"
            for q in (50, 95, 99)
        }
        | {
            "vLLM TTFT p95": "histogram_quantile(0.95, sum by (le) "
            f"(rate(vllm:time_to_first_token_seconds_bucket{{{VLLM}}}[5m])))",
        },
    ),
    Panel(
        "Errors",
        "percentunit",
        {
            "5xx share": f'sum(rate(gateway_requests_total{{{GATEWAY},status=~"5.."}}[5m]))'
            f" / sum(rate(gateway_requests_total{{{GATEWAY}}}[5m]))",
            "rate limited/s": f"sum(rate(gateway_rate_limited_total{{{GATEWAY}}}[5m]))",
        },
    ),
    Panel(
        "Cache hit rate",
        "percentunit",
        {
            "response cache": f'sum(rate(gateway_cache_requests_total{{{GATEWAY},result="hit"}}[5m]))'
            f" / sum(rate(gateway_cache_requests_total{{{GATEWAY}}}[5m]))",
            "vLLM prefix cache": f"sum(rate(vllm:prefix_cache_hits_total{{{VLLM}}}[5m]))"
            f" / sum(rate(vllm:prefix_cache_queries_total{{{VLLM}}}[5m]))",
        },
    ),
    Panel(
        "Queue",
        "short",
        {
            "vLLM waiting": f"sum(vllm:num_requests_waiting{{{VLLM}}})",
            "vLLM running": f"sum(vllm:num_requests_running{{{VLLM}}})",
            "gateway pending (no backend)": f"sum(gateway_pending_requests{{{GATEWAY}}})",
        },
    ),
    Panel(
        "GPU pods",
        "short",
        {"vLLM pods up": f"sum(up{{{VLLM}}} == 1) or vector(0)", "GPU nodes": f"count({GPU_NODES}) or vector(0)"},
    ),
    Panel(
        "Tokens/s",
        "short",
        {
            "generated": f"sum(rate(vllm:generation_tokens_total{{{VLLM}}}[5m]))",
            "prompt": f"sum(rate(vllm:prompt_tokens_total{{{VLLM}}}[5m]))",
        },
    ),
)


def dashboard(
    panels: tuple[Panel, ...] = DASHBOARD_PANELS, uid: str = "llm-serving", title: str = "LLM serving"
) -> dict[str, Any]:
    """A Grafana dashboard model: one time series per panel, two panels a row."""
    return {
        "uid": uid,
        "title": title,
        "tags": ["llm-platform"],
        "timezone": "browser",
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "schemaVersion": 39,
        "panels": [
            {
                "id": index + 1,
                "type": "timeseries",
                "title": panel.title,
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "targets": [
                    {"refId": chr(ord("A") + position), "expr": expr, "legendFormat": legend}
                    for position, (legend, expr) in enumerate(panel.targets.items())
                ],
            }
            for index, panel in enumerate(panels)
        ],
    }


def volume_claim(storage_class: str, gib: int) -> dict[str, Any]:
    """A Prometheus-operator StorageSpec: one ReadWriteOnce volume per instance."""
    return {"volumeClaimTemplate": {"spec": {
        "storageClassName": storage_class, "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": f"{gib}Gi"}},
    }}}


def alertmanager_values(config: ObservabilityConfig) -> dict[str, Any]:
    """kube-prometheus-stack 82.18.0 values.yaml: alertmanager.alertmanagerSpec.replicas and .storage (the
    Alertmanager CR's), alertmanager.podDisruptionBudget (enabled, minAvailable); podAntiAffinity defaults to soft,
    which spreads the instances over the system nodes."""
    spec: dict[str, Any] = {"nodeSelector": SYSTEM_NODE_LABEL, "replicas": config.alertmanager_replicas}
    if config.alertmanager_storage_gib:
        spec["storage"] = volume_claim(STORAGE_CLASS, config.alertmanager_storage_gib)
    values: dict[str, Any] = {"alertmanagerSpec": spec}
    if config.alertmanager_replicas > 1:
        values["podDisruptionBudget"] = {"enabled": True, "minAvailable": 1}
    return values


def stack_values(config: ObservabilityConfig) -> dict[str, Any]:
    """kube-prometheus-stack values: pick up monitors and rules from every namespace, not only the release's."""
    prometheus: dict[str, Any] = {
        "replicas": config.prometheus_replicas,
        "retention": config.retention,
        "podMonitorSelectorNilUsesHelmValues": False,
        "serviceMonitorSelectorNilUsesHelmValues": False,
        "ruleSelectorNilUsesHelmValues": False,
        "nodeSelector": SYSTEM_NODE_LABEL,
        "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
    }
    if config.storage_gib:
        prometheus["storageSpec"] = volume_claim(STORAGE_CLASS, config.storage_gib)
        # Size-based retention below the volume, so a full disk drops old blocks instead of crashing Prometheus.
        prometheus["retentionSize"] = f"{int(config.storage_gib * RETENTION_SIZE_SHARE)}GiB"
    return {
        "prometheus": {"prometheusSpec": prometheus},
        "prometheusOperator": {"nodeSelector": SYSTEM_NODE_LABEL},
        "alertmanager": alertmanager_values(config),
        "grafana": {
            **_grafana_persistence(config),
            "nodeSelector": SYSTEM_NODE_LABEL,
            "admin": {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": "admin-user", "passwordKey": "admin-password"},
            "sidecar": {
                "dashboards": {
                    "enabled": True,
                    "label": next(iter(DASHBOARD_LABEL)),
                    "labelValue": DASHBOARD_LABEL["grafana_dashboard"],
                    "searchNamespace": "ALL",
                }
            },
        },
        # The cost alert counts GPU nodes by their pool label, which kube-state-metrics only exports if listed.
        "kube-state-metrics": {
            "nodeSelector": SYSTEM_NODE_LABEL,
            "metricLabelsAllowlist": [
                f"nodes=[{contracts.POOL_LABEL_KEY},karpenter.sh/capacity-type,node.kubernetes.io/instance-type]"
            ]
        },
    }


def _grafana_persistence(config: ObservabilityConfig) -> dict[str, Any]:
    """grafana chart 11.3.7 values: persistence.*, deploymentStrategy. A ReadWriteOnce volume cannot follow a
    rolling update to another node, so the pod is recreated instead."""
    if not config.grafana_storage_gib:
        return {}
    return {
        "persistence": {"enabled": True, "type": "pvc", "storageClassName": STORAGE_CLASS,
                        "size": f"{config.grafana_storage_gib}Gi"},
        "deploymentStrategy": {"type": "Recreate"},
    }


def monitoring_object(
    name: str, kind: str, object_name: str, spec: dict[str, Any], opts: pulumi.ResourceOptions
) -> k8s.apiextensions.CustomResource:
    """A prometheus-operator object (ServiceMonitor, PodMonitor, PrometheusRule) in the monitoring namespace;
    `opts` must wait for the metrics stack's release, which installs the CRDs."""
    return k8s.apiextensions.CustomResource(
        name,
        api_version="monitoring.coreos.com/v1",
        kind=kind,
        metadata={"name": object_name, "namespace": NAMESPACE},
        spec=spec,
        opts=opts,
    )


def monitor_spec(app: str, endpoint_key: str) -> dict[str, Any]:
    """Scrape `app`'s pods in the serving namespace on the metrics port; job = the app label."""
    return {
        "jobLabel": contracts.APP_NAME_LABEL,
        "namespaceSelector": {"matchNames": [contracts.SERVING_NAMESPACE]},
        "selector": {"matchLabels": {contracts.APP_NAME_LABEL: app}},
        endpoint_key: [{"port": contracts.METRICS_PORT_NAME, "path": "/metrics", "interval": "15s"}],
    }


@dataclass(frozen=True)
class ObservabilityArgs:
    config: ObservabilityConfig
    monthly_budget_usd: float
    gpu_node_hourly_usd: float
    kubernetes_provider: k8s.Provider
    # The system node group and the Pod Identity agent: what its pods need to run and get AWS credentials.
    system_ready: list[pulumi.Resource]
    alerting: AlertingConfig
    # Reads the alert-routing secret from Secrets Manager.
    aws_provider: pulumi.ProviderResource
    # The StorageClass the volumes claim (BlockStorage), so Helm's wait does not time out on a Pending claim.
    depends_on: list[pulumi.Resource] = field(default_factory=list)


class Observability(pulumi.ComponentResource):
    prometheus_url: str
    release: k8s.helm.v3.Release
    grafana_access: pulumi.Output[str]

    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:Observability", name, None, opts)
        on_cluster = pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider)

        namespace = k8s.core.v1.Namespace(f"{name}-namespace", metadata={"name": NAMESPACE}, opts=on_cluster)
        on_cluster = pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=args.depends_on))
        in_namespace = pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=[namespace]))
        # A RandomString kept secret in state (the stack's one RandomPassword is the cache's auth token).
        password = random.RandomString(
            f"{name}-grafana-admin",
            length=32,
            special=False,
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["result"]),
        )
        admin_secret = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata={"name": GRAFANA_ADMIN_SECRET, "namespace": NAMESPACE},
            string_data={"admin-user": "admin", "admin-password": password.result},
            opts=in_namespace,
        )
        routing = routing_secret(name, args.alerting, NAMESPACE, in_namespace, args.aws_provider)
        self.release = pinned_release(
            name,
            KUBE_PROMETHEUS_STACK,
            NAMESPACE,
            with_alerting(stack_values(args.config), args.alerting),
            pulumi.ResourceOptions.merge(
                in_namespace,
                pulumi.ResourceOptions(
                    depends_on=[admin_secret, *args.system_ready, *([routing] if routing else [])]
                ),
            ),
            # Operator (with its admission-webhook certificate jobs), Prometheus, Alertmanager, Grafana,
            # kube-state-metrics and node exporters: a dozen images on nodes that just joined.
            timeout_s=900,
        )
        after_crds = pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=[self.release]))

        for app, kind, endpoint_key in (
            (contracts.VLLM_APP, "PodMonitor", "podMetricsEndpoints"),
            (contracts.GATEWAY_APP, "ServiceMonitor", "endpoints"),
        ):
            monitoring_object(f"{name}-{app}", kind, app, monitor_spec(app, endpoint_key), after_crds)
        monitoring_object(
            f"{name}-serving-alerts",
            "PrometheusRule",
            "llm-serving",
            {
                "groups": [
                    {
                        "name": "llm-serving",
                        "rules": [
                            alert.rule()
                            for alert in alerts(
                                args.config.alerts, args.monthly_budget_usd, args.config, args.gpu_node_hourly_usd
                            )
                        ],
                    }
                ]
            },
            after_crds,
        )
        k8s.core.v1.ConfigMap(
            f"{name}-dashboard",
            metadata={"name": "llm-serving-dashboard", "namespace": NAMESPACE, "labels": DASHBOARD_LABEL},
            data={"llm-serving.json": json.dumps(dashboard(), indent=2)},
            opts=in_namespace,
        )

        self.prometheus_url = PROMETHEUS_URL
        self.grafana_access = pulumi.Output.from_input(
            f"kubectl -n {NAMESPACE} port-forward svc/{GRAFANA_SERVICE} 3000:80, then http://localhost:3000; "
            f"user and password: kubectl -n {NAMESPACE} get secret {GRAFANA_ADMIN_SECRET} "
            "-o jsonpath='{.data.admin-password}' | base64 -d"
        )
        self.register_outputs({"prometheus_url": self.prometheus_url, "grafana_access": self.grafana_access})
