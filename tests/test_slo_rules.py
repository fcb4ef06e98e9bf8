"""SLO recording rules and alerts: Prometheus parses them (`promtool check rules`) and, fed synthetic series,
each alert fires when its condition holds and resolves when it stops (`promtool test rules`). Expected values
are hand-computed from the inputs, not read from the code."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from promtool import promtool, write_rules

from infra.cost.estimate import gpu_node_hourly_usd
from infra.offline import Graph

RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
GATEWAY = 'job="gateway",namespace="llm-serving"'
VLLM = 'job="vllm",namespace="llm-serving"'
POD = 'namespace="llm-serving",pod="vllm-0",container="vllm"'
GPU_NODE = 'kube_node_labels{label_llm_platform_pool="gpu",node="ip-10-0-0-1"}'


def groups(graph: Graph) -> list[dict[str, Any]]:
    return [
        group for name in ("slo-rules", "observability-serving-alerts")
        for group in graph.one(RULE, name).inputs["spec"]["groups"]
    ]


def alert(graph: Graph, name: str) -> dict[str, Any]:
    (rule,) = [r for g in groups(graph) for r in g["rules"] if r.get("alert") == name]
    return rule


def fires(graph: Graph, name: str, at: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    rule = alert(graph, name)
    expected = {"exp_labels": {"severity": rule["labels"]["severity"], **(labels or {})},
                "exp_annotations": rule["annotations"]}
    return {"eval_time": at, "alertname": name, "exp_alerts": [expected]}


def quiet(name: str, at: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": name, "exp_alerts": []}


def sample(record: str, at: str, value: float) -> dict[str, Any]:
    """The recorded value at `at`, to six decimals (promtool compares floats exactly)."""
    expected = [{"labels": "{}", "value": round(value, 6)}]
    return {"expr": f"round({record}, 1e-6)", "eval_time": at, "exp_samples": expected}


def run_tests(graph: Graph, tmp_path: Path, tests: list[dict[str, Any]]) -> None:
    write_rules(groups(graph), tmp_path)
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}, sort_keys=False)
    )
    promtool("test", "rules", "tests.yaml", cwd=tmp_path)


def test_every_rule_parses(graph: Graph, tmp_path: Path) -> None:
    path = write_rules(groups(graph), tmp_path)
    output = promtool("check", "rules", path.name, cwd=tmp_path)
    assert "SUCCESS" in output


def test_availability_burn_pages_on_a_burst_of_5xx_and_resolves(dev_graph: Graph, tmp_path: Path) -> None:
    # 10 % of requests fail for an hour: 20x a 0.5 % budget, above the fast pair's 14.4x in 1 h and 5 m.
    series = [
        {"series": f'gateway_requests_total{{{GATEWAY},status="200"}}', "values": "0+90x180"},
        {"series": f'gateway_requests_total{{{GATEWAY},status="500"}}', "values": "0+10x60 600+0x120"},
    ]
    run_tests(dev_graph, tmp_path, [{
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [
            quiet("LlmAvailabilityBudgetBurnFast", "1m"),
            fires(dev_graph, "LlmAvailabilityBudgetBurnFast", "60m"),
            quiet("LlmAvailabilityBudgetBurnFast", "90m"),  # the 5 m window is clean again
            # The slow pair (3x over 1 d and 2 h) still sees the burst: a ticket stays open.
            fires(dev_graph, "LlmAvailabilityBudgetBurnSlow", "90m"),
        ],
        "promql_expr_test": [
            sample("llm:availability_errors:ratio_rate1h", "60m", 0.1),
        ],
    }])


def test_ttft_burn_fires_when_most_first_tokens_are_slow_and_resolves(dev_graph: Graph, tmp_path: Path) -> None:
    # 1 in 10 first tokens under 500 ms for an hour (90 % slow against a 5 % budget), then all fast.
    series = [
        {"series": f'vllm:time_to_first_token_seconds_bucket{{{VLLM},le="0.5"}}', "values": "0+1x60 60+10x60"},
        {"series": f"vllm:time_to_first_token_seconds_count{{{VLLM}}}", "values": "0+10x120"},
    ]
    run_tests(dev_graph, tmp_path, [{
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [
            fires(dev_graph, "LlmTtftBudgetBurnFast", "60m"),
            quiet("LlmTtftBudgetBurnFast", "100m"),
        ],
        "promql_expr_test": [
            sample("llm:ttft_slow:ratio_rate30m", "50m", 0.9),
        ],
    }])


def test_crash_loop_fires_on_restarts_and_resolves_an_hour_later(dev_graph: Graph, tmp_path: Path) -> None:
    restarts = {"series": f"kube_pod_container_status_restarts_total{{{POD}}}", "values": "0 1 2 3 4 5 6+0x120"}
    labels = {"namespace": "llm-serving", "pod": "vllm-0", "container": "vllm"}
    run_tests(dev_graph, tmp_path, [{
        "interval": "1m",
        "input_series": [restarts],
        "alert_rule_test": [fires(dev_graph, "LlmPodCrashLooping", "15m", labels), quiet("LlmPodCrashLooping", "90m")],
    }])


def test_memory_near_limit_fires_and_resolves(dev_graph: Graph, tmp_path: Path) -> None:
    series = [
        {"series": f"container_memory_working_set_bytes{{{POD}}}", "values": "950x25 500x20"},
        {"series": f'kube_pod_container_resource_limits{{{POD},resource="memory"}}', "values": "1000x45"},
    ]
    labels = {"namespace": "llm-serving", "pod": "vllm-0", "container": "vllm"}
    run_tests(dev_graph, tmp_path, [{
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [
            quiet("LlmContainerMemoryNearLimit", "5m"),  # not yet for 10 m
            fires(dev_graph, "LlmContainerMemoryNearLimit", "20m", labels),
            quiet("LlmContainerMemoryNearLimit", "35m"),
        ],
    }])


def gpu_idle_case(graph: Graph, nodes: int) -> dict[str, Any]:
    series = [{"series": 'DCGM_FI_DEV_GPU_UTIL{gpu="0",Hostname="ip-10-0-0-1"}', "values": "2x100 80x30"}] + [
        {"series": GPU_NODE.replace("0-1", f"0-{n + 1}"), "values": "1x130"} for n in range(nodes)
    ]
    return {"interval": "1m", "input_series": series, "alert_rule_test": []}


def test_idle_gpus_fire_after_an_hour_and_resolve_when_busy(dev_graph: Graph, tmp_path: Path) -> None:
    case = gpu_idle_case(dev_graph, nodes=1)  # dev's floor is zero replicas: any idle GPU node costs money
    case["alert_rule_test"] = [
        quiet("LlmGpusIdle", "30m"), fires(dev_graph, "LlmGpusIdle", "70m"), quiet("LlmGpusIdle", "110m")
    ]
    run_tests(dev_graph, tmp_path, [case])


def test_idle_gpu_at_the_replica_floor_does_not_fire(prod_graph: Graph, tmp_path: Path) -> None:
    assert prod_graph.config.serving.vllm.min_replicas == 1
    one_node = gpu_idle_case(prod_graph, nodes=1)
    one_node["alert_rule_test"] = [quiet("LlmGpusIdle", "70m")]
    two_nodes = gpu_idle_case(prod_graph, nodes=2)
    two_nodes["alert_rule_test"] = [fires(prod_graph, "LlmGpusIdle", "70m")]
    run_tests(prod_graph, tmp_path, [one_node, two_nodes])


def test_a_gpu_node_without_dcgm_series_fires_after_15_minutes(prod_graph: Graph, tmp_path: Path) -> None:
    """Two GPU nodes, one exporting: the other is blind (on Bottlerocket a broken exporter stays Ready). When its
    exporter's series arrive, the alert resolves."""
    series = [
        {"series": GPU_NODE, "values": "1x60"},
        {"series": GPU_NODE.replace("0-1", "0-2"), "values": "1x60"},
        {"series": 'DCGM_FI_DEV_GPU_UTIL{gpu="0",Hostname="ip-10-0-0-1"}', "values": "50x60"},
        {"series": 'DCGM_FI_DEV_GPU_UTIL{gpu="0",Hostname="ip-10-0-0-2"}', "values": "_x30 50x30"},
    ]
    run_tests(prod_graph, tmp_path, [{
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [
            quiet("LlmGpuMetricsMissing", "10m"),  # not yet for 15 m
            fires(prod_graph, "LlmGpuMetricsMissing", "20m"),
            quiet("LlmGpuMetricsMissing", "45m"),
        ],
    }])


def test_spot_interruptions_fire_and_resolve(dev_graph: Graph, tmp_path: Path) -> None:
    series = [{
        "series": 'karpenter_interruption_received_messages_total{message_type="spot_interrupted"}',
        "values": "0 1 2 3 4 5 6+0x120",
    }, {
        "series": 'karpenter_interruption_received_messages_total{message_type="rebalance_recommendation"}',
        "values": "0+5x120",  # rebalance hints are not interruptions
    }]
    run_tests(dev_graph, tmp_path, [{
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [
            fires(dev_graph, "LlmSpotInterruptionsHigh", "10m"), quiet("LlmSpotInterruptionsHigh", "90m")
        ],
    }])


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_cost_per_million_tokens_from_node_price_and_token_rate(
    stack: str, dev_graph: Graph, prod_graph: Graph, tmp_path: Path
) -> None:
    graph = dev_graph if stack == "dev" else prod_graph
    price = gpu_node_hourly_usd(graph.config)
    # One GPU node and 10 tokens/s (300 prompt + 300 generated a minute): 36,000 tokens an hour.
    # Then 2,000 tokens/s: the hour's rate falls and with it the cost, below $1 within minutes.
    series = [
        {"series": GPU_NODE, "values": "1x240"},
        {"series": f"vllm:prompt_tokens_total{{{VLLM}}}", "values": "0+300x150 45000+60000x90"},
        {"series": f"vllm:generation_tokens_total{{{VLLM}}}", "values": "0+300x150 45000+60000x90"},
    ]
    run_tests(graph, tmp_path, [{
        "interval": "1m",
        "input_series": series,
        "promql_expr_test": [
            sample("llm:gpu_cost_usd:per_hour", "100m", price),
            sample("llm:cost_usd_per_million_tokens:1h", "100m", price / 36_000 * 1e6),
        ],
        "alert_rule_test": [
            quiet("LlmCostPerMillionTokensHigh", "30m"),  # for: 1h
            fires(graph, "LlmCostPerMillionTokensHigh", "100m"),
            quiet("LlmCostPerMillionTokensHigh", "200m"),
        ],
    }])


def test_cost_per_million_tokens_is_absent_without_traffic(dev_graph: Graph, tmp_path: Path) -> None:
    """Idle nodes make the cost per token infinite; that is the idle-GPU alert's case, not this one's."""
    series = [{"series": GPU_NODE, "values": "1x180"},
              {"series": f"vllm:prompt_tokens_total{{{VLLM}}}", "values": "0x180"}]
    run_tests(dev_graph, tmp_path, [{
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [quiet("LlmCostPerMillionTokensHigh", "150m")],
    }])


def test_rollout_alert_is_active_while_pods_are_replaced(dev_graph: Graph, tmp_path: Path) -> None:
    deployment = 'namespace="llm-serving",deployment="vllm"'
    series = [
        {"series": f"kube_deployment_spec_replicas{{{deployment}}}", "values": "2x30"},
        {"series": f"kube_deployment_status_replicas_updated{{{deployment}}}", "values": "2x5 0x5 1x5 2x15"},
    ]
    run_tests(dev_graph, tmp_path, [{
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [
            quiet("LlmRolloutInProgress", "3m"),
            fires(dev_graph, "LlmRolloutInProgress", "8m"),
            fires(dev_graph, "LlmRolloutInProgress", "13m"),
            quiet("LlmRolloutInProgress", "20m"),
        ],
    }])


def test_every_alert_has_a_runbook_section(graph: Graph) -> None:
    runbook = (Path(__file__).resolve().parent.parent / "docs" / "operations-alerts.md").read_text()
    names = [r["alert"] for g in groups(graph) for r in g["rules"] if "alert" in r]
    assert len(names) == len(set(names)) >= 14
    for name in names:
        assert f"\n## {name}\n" in runbook, name
        assert alert(graph, name)["annotations"]["runbook_url"].endswith(f"#{name.lower()}")
