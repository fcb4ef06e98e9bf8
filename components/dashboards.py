"""Grafana dashboards as code, beside the "LLM serving" overview of components/observability.py: GPU, scaling,
cost and user experience. Each is a ConfigMap with the label Grafana's dashboard sidecar watches
(kube-prometheus-stack 82.18.0 values: grafana.sidecar.dashboards.label/labelValue, searchNamespace ALL).

Cost panels read the recording rules of components/slo.py, so a panel and the cost alert use one price."""

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import contracts
from components.gpu_metrics import DCGM_NODE_LABEL
from components.observability import (
    DASHBOARD_LABEL,
    GATEWAY,
    GPU_NODES,
    HOURS_PER_MONTH,
    NAMESPACE,
    VLLM,
    Panel,
    dashboard,
)
from components.slo import (
    AVAILABILITY_ERRORS,
    COST_PER_MILLION_TOKENS,
    GPU_COST_PER_HOUR,
    REQUESTS_PER_SECOND,
    TTFT_SLOW,
)

SERVING = f'namespace="{contracts.SERVING_NAMESPACE}"'
VLLM_HPA = f'horizontalpodautoscaler="{contracts.VLLM_HPA}",{SERVING}'
VLLM_DEPLOYMENT = f'deployment="{contracts.VLLM_APP}",{SERVING}'
# dcgm-exporter maps each GPU to the pod using it (pod/namespace labels; honorLabels keeps them, see gpu_metrics).
GPU_BY_POD = f'{SERVING},pod=~"{contracts.VLLM_APP}-.+"'


def _quantiles(metric: str, selector: str, quantiles: tuple[int, ...], prefix: str) -> dict[str, str]:
    return {
        f"{prefix} p{q}": f"histogram_quantile(0.{q}, sum by (le) (rate({metric}_bucket{{{selector}}}[5m])))"
        for q in quantiles
    }


def _per_node_and_pod(title: str, unit: str, metric: str) -> tuple[Panel, Panel]:
    return (
        Panel(f"{title} per node", unit, {f"{{{{{DCGM_NODE_LABEL}}}}}": f"avg by ({DCGM_NODE_LABEL}) ({metric})"}),
        Panel(f"{title} per vLLM pod", unit, {"{{pod}}": f"avg by (pod) ({metric}{{{GPU_BY_POD}}})"}),
    )


GPU_PANELS = (
    *_per_node_and_pod("GPU utilisation", "percent", "DCGM_FI_DEV_GPU_UTIL"),
    *_per_node_and_pod("GPU memory used", "decmbytes", "DCGM_FI_DEV_FB_USED"),
    *_per_node_and_pod("GPU temperature", "celsius", "DCGM_FI_DEV_GPU_TEMP"),
    *_per_node_and_pod("GPU power", "watt", "DCGM_FI_DEV_POWER_USAGE"),
    Panel("vLLM KV cache usage", "percentunit", {"{{pod}}": f"max by (pod) (vllm:kv_cache_usage_perc{{{VLLM}}})"}),
    Panel(
        "GPU memory free",
        "decmbytes",
        {f"{{{{{DCGM_NODE_LABEL}}}}}": f"sum by ({DCGM_NODE_LABEL}) (DCGM_FI_DEV_FB_FREE)"},
    ),
)

SCALING_PANELS = (
    Panel(
        "vLLM replicas",
        "short",
        {
            "desired (HPA)": f"max(kube_horizontalpodautoscaler_status_desired_replicas{{{VLLM_HPA}}})",
            "maximum": f"max(kube_horizontalpodautoscaler_spec_max_replicas{{{VLLM_HPA}}})",
            "ready": f"max(kube_deployment_status_replicas_ready{{{VLLM_DEPLOYMENT}}})",
        },
    ),
    Panel(
        "Demand",
        "short",
        {
            "vLLM waiting": f"sum(vllm:num_requests_waiting{{{VLLM}}})",
            "vLLM running": f"sum(vllm:num_requests_running{{{VLLM}}})",
            "gateway pending (no backend)": f"sum(gateway_pending_requests{{{GATEWAY}}})",
        },
    ),
    Panel(
        "GPU nodes by capacity type",
        "short",
        {"{{label_karpenter_sh_capacity_type}}": f"count by (label_karpenter_sh_capacity_type) ({GPU_NODES})"},
    ),
    Panel(
        "Node launches (per hour)",
        "short",
        {"{{nodepool}}": "sum by (nodepool) (increase(karpenter_nodeclaims_created_total[1h]))"},
    ),
    Panel(
        "Interruption messages (per hour)",
        "short",
        {"{{message_type}}": "sum by (message_type) (increase(karpenter_interruption_received_messages_total[1h]))"},
    ),
    Panel(
        "GPU utilisation (average)",
        "percent",
        {"all GPUs": "avg(DCGM_FI_DEV_GPU_UTIL)"},
    ),
)


def cost_panels(base_monthly_usd: float) -> tuple[Panel, ...]:
    return (
        Panel("GPU burn rate", "currencyUSD", {"USD per hour": GPU_COST_PER_HOUR}),
        Panel(
            "GPU node-hours (last 24 h)",
            "short",
            {"node-hours": f"avg_over_time((count({GPU_NODES}) or vector(0))[1d:5m]) * 24"},
        ),
        Panel(
            "Projected month",
            "currencyUSD",
            {
                "GPU at the last day's average + base": f"avg_over_time({GPU_COST_PER_HOUR}[1d]) * {HOURS_PER_MONTH}"
                f" + {base_monthly_usd:g}"
            },
        ),
        Panel(
            "Cost per 1,000 requests",
            "currencyUSD",
            {"USD": f"{GPU_COST_PER_HOUR} / ({REQUESTS_PER_SECOND} * 3600) * 1000 and {REQUESTS_PER_SECOND} > 0"},
        ),
        Panel("Cost per million tokens", "currencyUSD", {"USD (seed 002 target < 0.60)": COST_PER_MILLION_TOKENS}),
        Panel(
            "Response cache hit rate",
            "percentunit",
            {
                "hits": f'sum(rate(gateway_cache_requests_total{{{GATEWAY},result="hit"}}[1h]))'
                f" / sum(rate(gateway_cache_requests_total{{{GATEWAY}}}[1h]))"
            },
        ),
    )


UX_PANELS = (
    Panel(
        "Time to first token",
        "s",
        _quantiles("vllm:time_to_first_token_seconds", VLLM, (50, 95, 99), "TTFT"),
    ),
    Panel(
        "Time per output token",
        "s",
        _quantiles("vllm:inter_token_latency_seconds", VLLM, (50, 95), "TPOT"),
    ),
    Panel(
        "SLIs (1 h)",
        "percentunit",
        {
            "availability": f"1 - {AVAILABILITY_ERRORS}1h",
            "first tokens under the threshold": f"1 - {TTFT_SLOW}1h",
        },
    ),
    Panel(
        "End-to-end latency",
        "s",
        _quantiles("gateway_request_duration_seconds", GATEWAY, (50, 95, 99), "gateway"),
    ),
    Panel(
        "Requests per key",
        "reqps",
        {"{{key}}": f"sum by (key) (rate(gateway_requests_total{{{GATEWAY}}}[5m]))"},
    ),
    Panel(
        "Rate-limited per key",
        "reqps",
        {"{{key}} {{kind}}": f"sum by (key, kind) (rate(gateway_rate_limited_total{{{GATEWAY}}}[5m]))"},
    ),
)


def dashboards(base_monthly_usd: float) -> dict[str, dict[str, Any]]:
    """uid -> Grafana dashboard model; the overview ("LLM serving") stays with the Observability component."""
    return {
        "llm-gpu": dashboard(GPU_PANELS, "llm-gpu", "LLM GPUs"),
        "llm-scaling": dashboard(SCALING_PANELS, "llm-scaling", "LLM scaling"),
        "llm-cost": dashboard(cost_panels(base_monthly_usd), "llm-cost", "LLM cost"),
        "llm-user-experience": dashboard(UX_PANELS, "llm-user-experience", "LLM user experience"),
    }


@dataclass(frozen=True)
class DashboardsArgs:
    base_monthly_usd: float
    kubernetes_provider: k8s.Provider
    depends_on: list[pulumi.Resource]


class Dashboards(pulumi.ComponentResource):
    def __init__(self, name: str, args: DashboardsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:Dashboards", name, None, opts)
        on_cluster = pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider, depends_on=args.depends_on)
        for uid, model in dashboards(args.base_monthly_usd).items():
            k8s.core.v1.ConfigMap(
                f"{name}-{uid}",
                metadata={"name": f"{uid}-dashboard", "namespace": NAMESPACE, "labels": DASHBOARD_LABEL},
                data={f"{uid}.json": json.dumps(model, indent=2)},
                opts=on_cluster,
            )
        self.register_outputs({})
