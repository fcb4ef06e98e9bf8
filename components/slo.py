"""Service levels: recording rules for the SLIs (availability, TTFT), multi-window burn-rate alerts on their
error budgets, and the platform alerts seed 003 asks for (crash loops, memory near limit, idle GPUs, Spot
interruptions, cost per million tokens), all in one PrometheusRule. docs/operations-alerts.md is the runbook.

Burn-rate windows and factors are the Google SRE workbook's ("Alerting on SLOs", multiwindow, multi-burn-rate):
page when 2 % of a 30-day budget burns in 1 h or 5 % in 6 h, ticket when 10 % burns in 3 days.
"""

from dataclasses import dataclass
from typing import Annotated, Any

import pulumi
import pulumi_kubernetes as k8s
from pydantic import AfterValidator, Field

from components import contracts
from components.alerting import ROLLOUT_ALERT
from components.config_base import StrictModel
from components.gpu_metrics import DCGM_NODE_LABEL
from components.karpenter import KARPENTER_NAMESPACE
from components.observability import GATEWAY, GPU_NODES, VLLM, Alert, monitoring_object

# vLLM V1's TTFT histogram bounds (vllm-project/vllm vllm/v1/metrics/loggers.py read at commit 005a810; the same
# bounds appear in /metrics recorded from vLLM 0.30; not re-read at the 0.33 tag): an SLO threshold must be one of
# them, or the "good" share cannot be read from a bucket.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)


def _ttft_bound(value: float) -> float:
    if value not in TTFT_BUCKETS:
        raise ValueError(f"must be a bound of vLLM's TTFT histogram: {', '.join(map(str, TTFT_BUCKETS))}")
    return value


def duration_s(window: str) -> int:
    """Seconds in a Prometheus duration like 5m, 6h, 3d."""
    return int(window[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[window[-1]]


# (long window, short window, burn factor, severity): the SRE workbook's four alert pairs.
BURN_WINDOWS = (
    ("1h", "5m", 14.4, "critical"),
    ("6h", "30m", 6.0, "critical"),
    ("1d", "2h", 3.0, "warning"),
    ("3d", "6h", 1.0, "warning"),
)
WINDOWS = sorted({w for pair in BURN_WINDOWS for w in pair[:2]}, key=duration_s)
SERVING = f'namespace="{contracts.SERVING_NAMESPACE}"'

AVAILABILITY_ERRORS = "llm:availability_errors:ratio_rate"
TTFT_SLOW = "llm:ttft_slow:ratio_rate"
GPU_COST_PER_HOUR = "llm:gpu_cost_usd:per_hour"
TOKENS_PER_SECOND = "llm:tokens:rate1h"
COST_PER_MILLION_TOKENS = "llm:cost_usd_per_million_tokens:1h"
REQUESTS_PER_SECOND = "llm:gateway_requests:rate1h"


class SloConfig(StrictModel):
    availability_target: float = Field(
        default=0.995, ge=0.9, lt=1, description="Share of gateway requests not answered 5xx, over 30 days."
    )
    ttft_threshold_s: Annotated[float, AfterValidator(_ttft_bound)] = Field(
        default=0.5, description="Seed 002: TTFT p95 < 500 ms. Must be a bound of vLLM's TTFT histogram."
    )
    ttft_target: float = Field(default=0.95, ge=0.5, lt=1, description="Share of requests under the threshold.")
    crash_loop_restarts: int = Field(default=3, ge=1, description="Container restarts in an hour (seed 003).")
    memory_limit_ratio: float = Field(default=0.9, gt=0, le=1, description="Working set / memory limit (seed 003).")
    gpu_idle_percent: float = Field(default=10, gt=0, le=100, description="Average GPU utilisation called idle.")
    gpu_idle_for: str = Field(default="1h", pattern=r"^[0-9]+[mh]$")
    spot_interruptions_per_hour: int = Field(default=3, ge=1)
    cost_per_million_tokens_usd: float = Field(
        default=1.0, gt=0, description="Seed 002: alert when a million tokens cost more than $1 of GPU time."
    )


def _availability_ratio(window: str) -> str:
    return (
        f'sum(rate(gateway_requests_total{{{GATEWAY},status=~"5.."}}[{window}]))'
        f" / sum(rate(gateway_requests_total{{{GATEWAY}}}[{window}]))"
    )


def _ttft_slow_ratio(window: str, threshold_s: float) -> str:
    return (
        f'1 - sum(rate(vllm:time_to_first_token_seconds_bucket{{{VLLM},le="{threshold_s}"}}[{window}]))'
        f" / sum(rate(vllm:time_to_first_token_seconds_count{{{VLLM}}}[{window}]))"
    )


def recording_rules(config: SloConfig, gpu_node_hourly_usd: float) -> list[dict[str, str]]:
    """SLI ratios per window, and the cost figures the cost dashboard and alert share."""
    rules = [
        {"record": f"{AVAILABILITY_ERRORS}{w}", "expr": _availability_ratio(w)} for w in WINDOWS
    ] + [{"record": f"{TTFT_SLOW}{w}", "expr": _ttft_slow_ratio(w, config.ttft_threshold_s)} for w in WINDOWS]
    return [
        *rules,
        {"record": GPU_COST_PER_HOUR, "expr": f"(count({GPU_NODES}) or vector(0)) * {gpu_node_hourly_usd}"},
        {
            "record": TOKENS_PER_SECOND,
            "expr": f"sum(rate(vllm:prompt_tokens_total{{{VLLM}}}[1h]))"
            f" + sum(rate(vllm:generation_tokens_total{{{VLLM}}}[1h]))",
        },
        {"record": REQUESTS_PER_SECOND, "expr": f"sum(rate(gateway_requests_total{{{GATEWAY}}}[1h]))"},
        {
            "record": COST_PER_MILLION_TOKENS,
            "expr": f"{GPU_COST_PER_HOUR} / ({TOKENS_PER_SECOND} * 3600) * 1e6 and {TOKENS_PER_SECOND} > 0",
        },
    ]


def burn_rate_alerts(name: str, ratio: str, budget: float, what: str) -> list[Alert]:
    """A fast (page) and a slow (ticket) alert, each firing when both windows of one of its pairs burn."""
    alerts = []
    for severity, speed in (("critical", "Fast"), ("warning", "Slow")):
        pairs = [
            f"({ratio}{long} > {factor * budget:.6g} and {ratio}{short} > {factor * budget:.6g})"
            for long, short, factor, level in BURN_WINDOWS
            if level == severity
        ]
        alerts.append(
            Alert(
                f"{name}BudgetBurn{speed}",
                " or ".join(pairs),
                "2m" if severity == "critical" else "15m",
                severity,
                f"{what}: the 30-day error budget is burning {'fast' if speed == 'Fast' else 'steadily'}",
            )
        )
    return alerts


# dcgm-exporter may run without exporting (on Bottlerocket it skips its start-up check: components/gpu_metrics.py).
GPU_METRICS_MISSING_ALERT = "LlmGpuMetricsMissing"


def platform_alerts(config: SloConfig, gpu_floor: int) -> list[Alert]:
    """Seed 003's alerts plus Spot interruptions and seed 002's cost per million tokens."""
    return [
        Alert(
            "LlmPodCrashLooping",
            f"increase(kube_pod_container_status_restarts_total{{{SERVING}}}[1h]) > {config.crash_loop_restarts}",
            "5m", "critical",
            f"A serving container restarted more than {config.crash_loop_restarts} times in an hour",
        ),
        Alert(
            "LlmContainerMemoryNearLimit",
            f'max by (namespace, pod, container) (container_memory_working_set_bytes{{{SERVING},container!=""}})'
            f" / max by (namespace, pod, container) "
            f'(kube_pod_container_resource_limits{{{SERVING},resource="memory"}}) > {config.memory_limit_ratio}',
            "10m", "warning",
            f"A serving container uses more than {config.memory_limit_ratio:.0%} of its memory limit",
        ),
        Alert(
            "LlmGpusIdle",
            f"avg(DCGM_FI_DEV_GPU_UTIL) < {config.gpu_idle_percent:g}"
            f" and on() count({GPU_NODES}) > {gpu_floor}",
            config.gpu_idle_for, "warning",
            f"GPU nodes above the replica floor run with GPUs under {config.gpu_idle_percent:g} % busy",
        ),
        Alert(
            GPU_METRICS_MISSING_ALERT,
            # dcgm-exporter labels each series with its node (Hostname): a GPU node none of whose series arrive.
            f"count({GPU_NODES}) > (count(count by ({DCGM_NODE_LABEL}) (DCGM_FI_DEV_GPU_UTIL)) or on() vector(0))",
            "15m", "warning",
            "A GPU node exports no dcgm-exporter metrics: GPU dashboards, the idle-GPU alert and the GPU scaling "
            "trigger are blind to it",
        ),
        Alert(
            "LlmSpotInterruptionsHigh",
            'sum(increase(karpenter_interruption_received_messages_total{message_type="spot_interrupted"}[1h]))'
            f" > {config.spot_interruptions_per_hour}",
            "0m", "warning",
            f"More than {config.spot_interruptions_per_hour} Spot interruption warnings in an hour",
        ),
        Alert(
            ROLLOUT_ALERT,
            f"count(kube_deployment_status_replicas_updated{{{SERVING}}} < kube_deployment_spec_replicas{{{SERVING}}})"
            " > 0",
            "0m", "info",
            "A serving Deployment is rolling out: rollout-transient warnings are inhibited",
        ),
        Alert(
            "LlmCostPerMillionTokensHigh",
            f"{COST_PER_MILLION_TOKENS} > {config.cost_per_million_tokens_usd:g}",
            "1h", "warning",
            f"A million tokens cost more than {config.cost_per_million_tokens_usd:g} USD of GPU time",
        ),
    ]


def rule_groups(config: SloConfig, gpu_node_hourly_usd: float, gpu_floor: int) -> list[dict[str, Any]]:
    alerts = [
        *burn_rate_alerts("LlmAvailability", AVAILABILITY_ERRORS, 1 - config.availability_target, "Availability"),
        *burn_rate_alerts("LlmTtft", TTFT_SLOW, 1 - config.ttft_target, f"TTFT under {config.ttft_threshold_s:g}s"),
        *platform_alerts(config, gpu_floor),
    ]
    return [
        {"name": "llm-slo-recording", "interval": "30s", "rules": recording_rules(config, gpu_node_hourly_usd)},
        {"name": "llm-slo-alerts", "rules": [alert.rule() for alert in alerts]},
    ]


def karpenter_monitor_spec() -> dict[str, Any]:
    """aws/karpenter-provider-aws charts/karpenter at v1.14.1: Service `karpenter` in the release namespace,
    selector app.kubernetes.io/name=karpenter, port `http-metrics`."""
    return {
        "namespaceSelector": {"matchNames": [KARPENTER_NAMESPACE]},
        "selector": {"matchLabels": {contracts.APP_NAME_LABEL: "karpenter"}},
        "endpoints": [{"port": "http-metrics", "path": "/metrics", "interval": "30s"}],
    }


@dataclass(frozen=True)
class ServiceLevelsArgs:
    config: SloConfig
    gpu_node_hourly_usd: float
    # GPU nodes the replica floor keeps up on purpose (vLLM minReplicas): only nodes above it can be "idle".
    gpu_floor: int
    kubernetes_provider: k8s.Provider
    depends_on: list[pulumi.Resource]


class ServiceLevels(pulumi.ComponentResource):
    def __init__(self, name: str, args: ServiceLevelsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:ServiceLevels", name, None, opts)
        on_cluster = pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider, depends_on=args.depends_on)
        # The Spot alert and the scaling dashboard read Karpenter's metrics; its chart's own ServiceMonitor would
        # be applied before prometheus-operator's CRDs exist (Karpenter is installed first).
        monitoring_object(
            f"{name}-karpenter-monitor", "ServiceMonitor", "karpenter", karpenter_monitor_spec(), on_cluster
        )
        groups = rule_groups(args.config, args.gpu_node_hourly_usd, args.gpu_floor)
        monitoring_object(f"{name}-rules", "PrometheusRule", "llm-slo", {"groups": groups}, on_cluster)
        self.register_outputs({})
