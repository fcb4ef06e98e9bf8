"""From a stack name (and what-if `--set`s) to a simulation and a priced report: what `llm-platform cost` and
`llm-platform simulate` run, and what the policy pack and the cost alert read (one source for both)."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from components.cold_start import weights_gb
from components.pricing import load_catalog
from infra.cost.model import Context, CostReport, Usage, price_graph
from infra.cost.simulator import WEEK_S, SimResult, SimSettings, settings_from_config, simulate
from infra.cost.throughput import model_size_b, throughput
from stacks.config import PlatformConfig
from stacks.defaults import deep_merge
from stacks.gpu_node import gpu_node, gpu_node_hourly_usd
from stacks.loader import ConfigError, read_stack_file, stack_file, validate


@dataclass(frozen=True)
class StackInputs:
    stack: str
    config: PlatformConfig
    values: dict[str, Any]  # the stack file's keys with the --set overrides merged in


def parse_set(assignment: str) -> dict[str, Any]:
    """`serving.vllm.maxModelLen=2048` as a nested mapping; the value is read as YAML (numbers, lists...)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {assignment!r}: expected key.path=value, like serving.vllm.maxReplicas=4")
    value: Any = yaml.safe_load(raw) if raw else ""
    for part in reversed(key.split(".")):
        value = {part: value}
    return value  # type: ignore[no-any-return]


def load_stack(project_dir: Path, stack: str, sets: list[str] | None = None, label: str | None = None) -> StackInputs:
    """The stack file with the overrides merged, validated by the same schema as `pulumi up` (ConfigError).
    `label` names where the overrides came from in error messages (default: --set)."""
    path = stack_file(project_dir, stack)
    values = read_stack_file(path)
    for assignment in sets or []:
        values = deep_merge(values, parse_set(assignment))
    source = path.name + (f" with {label or '--set'}" if sets else "")
    return StackInputs(stack, validate(stack, values, source), values)


def sim_settings(config: PlatformConfig) -> SimSettings:
    catalog = load_catalog(config.region)
    spec, capacity = gpu_node(config, catalog)
    if spec.gpu is None:
        raise ConfigError(f"GPU pool type {spec.name} has no GPU in the catalog")
    rates = throughput(spec.gpu, config.serving.vllm, config.simulation)
    return settings_from_config(config, rates, capacity == "spot")


def run_simulation(
    config: PlatformConfig, horizon_s: float = WEEK_S, progress: Callable[[float], None] | None = None,
    settings: SimSettings | None = None,
) -> SimResult:
    return simulate(settings or sim_settings(config), horizon_s, progress)


def model_gb(config: PlatformConfig) -> float:
    vllm = config.serving.vllm
    return weights_gb(model_size_b(vllm, config.simulation), vllm.quantization)


def price(graph: dict[str, Any], config: PlatformConfig, result: SimResult) -> CostReport:
    """Price `graph` (the `preview --json` document) for the month `result` simulates."""
    catalog = load_catalog(config.region)
    usage = Usage.from_simulation(result, config.traffic.hourly_rates())
    ctx = Context(
        graph=graph, catalog=catalog, usage=usage, model_gb=model_gb(config),
        image_gb=config.serving.cold_start.image_gb,
        huggingface=config.serving.vllm.model_source == "huggingface",
    )
    lines, unpriced = price_graph(ctx)
    spec, capacity = gpu_node(config, catalog)
    used = {key for line in lines for key in line.prices}
    return CostReport(
        stack=str(graph.get("stack", "")), region=config.region, lines=lines, unpriced=unpriced,
        budget=config.monthly_budget_usd, usage=usage, gpu_node=f"{spec.name} {capacity}",
        estimated_prices=sorted(key for key in used if catalog.price(key).estimate),
        alert_base_usd=config.addons.observability.base_monthly_usd,
    )


def floor_report(graph: dict[str, Any], config: PlatformConfig) -> CostReport:
    """The month with no traffic: every fixed cost plus the vLLM minimum replicas' GPU nodes all month. Fast (no
    simulation), so `preview` and policy checks can afford it."""
    idle = SimResult(
        horizon_s=WEEK_S, requests=0, cache_hits=0, served=0, refused=0, timed_out=0, interrupted=0,
        node_seconds=config.serving.vllm.min_replicas * WEEK_S, node_launches=0, spot_interruptions=0,
        waits=np.empty(0), ttfts=np.empty(0), starts=np.empty(0), prompt_tokens=0, output_tokens=0,
    )
    return price(graph, config, idle)


def budget_status(graph: dict[str, Any], config: PlatformConfig, result: SimResult | None = None) -> dict[str, Any]:
    """Budget, projected monthly cost and headroom, for the policy pack's cost rule and anyone else: the same
    catalog and model as `llm-platform cost`. Without `result` the projection is the floor (`floor_report`)."""
    report = price(graph, config, result) if result else floor_report(graph, config)
    return {
        "budgetUsd": config.monthly_budget_usd,
        "projectedUsd": round(report.total, 2),
        "headroomUsd": round(config.monthly_budget_usd - report.total, 2),
        "basis": "simulated traffic" if result else "fixed costs and minimum GPU replicas (no traffic)",
        "gpuNodeHourlyUsd": gpu_node_hourly_usd(config),
        "unpriced": report.unpriced,
    }


def preview_total(graph: dict[str, Any], config: PlatformConfig) -> str:
    """Two lines for `preview`: the month before traffic, and the command that prices the traffic."""
    report = floor_report(graph, config)
    return (
        f"Monthly cost before traffic: {report.total:,.0f} USD ({report.gpu:,.0f} of it for "
        f"{config.serving.vllm.min_replicas} always-on {report.gpu_node}); budget {config.monthly_budget_usd:,.0f}.\n"
        f"With the stack's traffic profile: llm-platform cost --stack {graph.get('stack', '')}"
    )
