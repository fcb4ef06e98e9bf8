"""The cold start as measured in the cluster: a recording rule for each vLLM pod's scale-up-to-ready time (from
kube-state-metrics' pod created and Ready timestamps), an alert when a new pod takes longer than the cold-start
budget, and a dashboard panel of both. Kept apart from components/observability.py, whose release runs the
Prometheus operator that loads these rules and the Grafana sidecar that loads the dashboard."""

import json
import math
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import contracts
from components.cold_start import ColdStartBudget
from components.observability import DASHBOARD_LABEL, Alert, Panel, dashboard

START_RECORD = "llm:vllm_pod_start_seconds"
ALERT_NAME = "LlmColdStartOverBudget"
# kube-state-metrics: kube_pod_created (creation time, unix seconds) and kube_pod_status_ready_time (when the Ready
# condition last became true), both per namespace and pod (kubernetes/kube-state-metrics internal/store/pod.go).
_PODS = f'namespace="{contracts.SERVING_NAMESPACE}",pod=~"vllm-.+"'
# A pod's start is news for a while, not for its whole life: only recent ones alert.
RECENT_S = 1800


def start_seconds_expr() -> str:
    return (f"max by (namespace, pod) (kube_pod_status_ready_time{{{_PODS}}} "
            f"- on (namespace, pod) kube_pod_created{{{_PODS}}})")


def over_budget_alert(budget: ColdStartBudget) -> Alert:
    """A pod created within RECENT_S that took longer than a start from no GPU node is budgeted to take."""
    limit = math.ceil(budget.cold_s)
    return Alert(
        ALERT_NAME,
        f"{START_RECORD} > {limit} and on (namespace, pod) (time() - kube_pod_created{{{_PODS}}} < {RECENT_S})",
        "0m",
        "warning",
        f"vLLM pod {{{{ $labels.pod }}}} took {{{{ $value | humanizeDuration }}}} from scale-up to ready, over "
        f"the cold-start budget of {limit} s (docs/cold-start.md)",
    )


def start_panel(budget: ColdStartBudget) -> Panel:
    return Panel(
        "vLLM scale-up to ready",
        "s",
        {"{{pod}}": START_RECORD, "budget, no GPU node": f"vector({budget.cold_s:.0f})",
         "budget, warm node": f"vector({budget.warm_s:.0f})"},
    )


@dataclass(frozen=True)
class ColdStartMonitoringArgs:
    budget: ColdStartBudget
    namespace: str
    kubernetes_provider: k8s.Provider
    # The metrics stack's release: it installs the PrometheusRule CRD.
    metrics_release: pulumi.Resource


class ColdStartMonitoring(pulumi.ComponentResource):
    def __init__(self, name: str, args: ColdStartMonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:ColdStartMonitoring", name, None, opts)
        on_cluster = pulumi.ResourceOptions(
            parent=self, provider=args.kubernetes_provider, depends_on=[args.metrics_release]
        )
        rules: list[dict[str, Any]] = [
            {"record": START_RECORD, "expr": start_seconds_expr()},
            over_budget_alert(args.budget).rule(),
        ]
        k8s.apiextensions.CustomResource(
            f"{name}-rules",
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata={"name": "llm-cold-start", "namespace": args.namespace},
            spec={"groups": [{"name": "llm-cold-start", "rules": rules}]},
            opts=on_cluster,
        )
        model = {**dashboard((start_panel(args.budget),)), "uid": "llm-cold-start", "title": "LLM cold start"}
        k8s.core.v1.ConfigMap(
            f"{name}-dashboard",
            metadata={"name": "llm-cold-start-dashboard", "namespace": args.namespace, "labels": DASHBOARD_LABEL},
            data={"llm-cold-start.json": json.dumps(model, indent=2)},
            opts=on_cluster,
        )
        self.register_outputs({})
