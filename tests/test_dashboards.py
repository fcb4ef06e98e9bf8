"""Dashboards as code: five Grafana dashboards in ConfigMaps the sidecar loads, every panel query parsed by
promtool and naming only metrics the stack exports or records."""

import json
from pathlib import Path
from typing import Any

from exported_metrics import ALL_EXPORTED, metric_names
from promtool import check_queries

from infra.offline import Graph

CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
# kube-prometheus-stack 82.18.0 values.yaml: grafana.sidecar.dashboards.label / labelValue.
SIDECAR_LABEL = {"grafana_dashboard": "1"}


def dashboards(graph: Graph) -> dict[str, dict[str, Any]]:
    found = {}
    for config_map in graph.of_type(CONFIG_MAP):
        labels = config_map.inputs.get("metadata", {}).get("labels") or {}
        if labels.get("grafana_dashboard") is not None:
            assert labels == SIDECAR_LABEL, config_map.name
            (document,) = config_map.inputs["data"].values()
            model = json.loads(document)
            found[model["title"]] = model
    return found


def queries(graph: Graph) -> list[str]:
    return [target["expr"] for model in dashboards(graph).values() for panel in model["panels"]
            for target in panel["targets"]]


def rules(graph: Graph) -> list[dict[str, Any]]:
    return [rule for resource in graph.of_type(RULE) for group in resource.inputs["spec"]["groups"]
            for rule in group["rules"]]


def test_six_dashboards_with_unique_uids(graph: Graph) -> None:
    models = dashboards(graph)
    assert set(models) == {
        "LLM serving", "LLM GPUs", "LLM scaling", "LLM cost", "LLM user experience", "LLM cold start"
    }
    assert len({model["uid"] for model in models.values()}) == 6
    for model in models.values():
        assert model["panels"] and all(panel["targets"] for panel in model["panels"])
        assert len({panel["id"] for panel in model["panels"]}) == len(model["panels"])


def test_gpu_dashboard_shows_utilisation_memory_temperature_power_per_node_and_pod(graph: Graph) -> None:
    gpu = dashboards(graph)["LLM GPUs"]
    titles = {panel["title"] for panel in gpu["panels"]}
    for signal in ("GPU utilisation", "GPU memory used", "GPU temperature", "GPU power"):
        assert {f"{signal} per node", f"{signal} per vLLM pod"} <= titles


def test_every_panel_query_parses(graph: Graph, tmp_path: Path) -> None:
    check_queries(queries(graph), tmp_path)


def test_queries_name_only_exported_or_recorded_metrics(graph: Graph) -> None:
    recorded = {rule["record"] for rule in rules(graph) if "record" in rule}
    known = ALL_EXPORTED | recorded
    for expr in queries(graph) + [rule["expr"] for rule in rules(graph)]:
        assert metric_names(expr) <= known, f"{expr}: unknown {metric_names(expr) - known}"


def test_metric_name_extraction() -> None:
    assert metric_names(
        'sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{job="vllm",le="0.5"}[5m])) * 1e6'
        ' / on() count(kube_node_labels{a="b"}) or vector(0) and llm:x:rate1h > bool 2'
    ) == {"vllm:time_to_first_token_seconds_bucket", "kube_node_labels", "llm:x:rate1h"}
    assert metric_names("vllm_num_requests_waiting") == {"vllm_num_requests_waiting"}  # seed 000's wrong name
