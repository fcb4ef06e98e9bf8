"""`llm-platform cost`, `simulate` and `refresh-prices`: what a stack costs and whether its GPU tier keeps up,
under its traffic profile, before anything is deployed."""

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from components.cold_start import ModelSizeUnknown
from components.pricing import UnpricedError
from infra.cost.estimate import StackInputs, load_stack, price, run_simulation
from infra.cost.model import CostReport
from infra.cost.simulator import HOUR_S, WEEK_S, SimResult, per_level
from infra.offline import build_graph
from stacks.loader import ConfigError, as_engine_config

console = Console(emoji=False, highlight=False)
errors = Console(stderr=True, emoji=False, highlight=False)
Format = Literal["table", "json", "markdown"]
# A simulation this long (simulated seconds) shows a progress bar.
PROGRESS_FROM_S = 24 * HOUR_S

StackOption = Annotated[str, typer.Option("--stack", "-s", help="Stack: reads Pulumi.<stack>.yaml.")]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="What if: key.path=value over the stack file, e.g. serving.vllm.maxReplicas=4."),
]
ProjectOption = Annotated[Path, typer.Option("--project-dir", help="Folder holding the stack files.")]
HoursOption = Annotated[float, typer.Option("--hours", min=1, max=24 * 7 * 4, help="Simulated hours.")]


@contextmanager
def exit_on_bad_input() -> Iterator[None]:
    """A wrong key, profile or missing price: one line naming it, exit code 2."""
    try:
        yield
    except (ConfigError, ModelSizeUnknown) as error:
        errors.print(str(error), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    except UnpricedError as error:
        errors.print(f"unpriced: {error}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


def with_progress(horizon_s: float, run: Callable[[Callable[[float], None] | None], SimResult]) -> SimResult:
    if horizon_s < PROGRESS_FROM_S:
        return run(None)
    columns = (TextColumn("simulating"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())
    with Progress(*columns, console=errors, transient=True) as progress:
        task = progress.add_task("simulate", total=1.0)
        result = run(lambda done: progress.update(task, completed=done))
    return result


def simulate_stack(inputs: StackInputs, horizon_s: float = WEEK_S) -> SimResult:
    return with_progress(horizon_s, lambda progress: run_simulation(inputs.config, horizon_s, progress))


def report_for(inputs: StackInputs) -> CostReport:
    graph = build_graph(inputs.config, inputs.stack, as_engine_config(inputs.values)).to_json()
    return price(graph, inputs.config, simulate_stack(inputs))


def cost(
    stack: StackOption = "dev",
    compare: Annotated[str | None, typer.Option("--compare", help="A second stack, side by side.")] = None,
    sets: SetOption = None,
    output: Annotated[str, typer.Option("--format", help="table, json or markdown.")] = "table",
    project_dir: ProjectOption = Path("."),
) -> None:
    """Monthly cost of a stack under its traffic profile: fixed and usage-driven parts per component, cost per
    1,000 requests and per million tokens, budget and headroom."""
    if output not in ("table", "json", "markdown"):
        errors.print(f"--format: {output!r}; allowed: table, json, markdown")
        raise typer.Exit(code=2)
    if compare and sets:
        errors.print("--compare and --set: use one (compare two stacks, or one stack with and without --set)")
        raise typer.Exit(code=2)
    with exit_on_bad_input():
        reports = [report_for(load_stack(project_dir, stack, sets))]
        if compare:
            reports.append(report_for(load_stack(project_dir, compare)))
        elif sets:
            reports.insert(0, report_for(load_stack(project_dir, stack)))
    labels = [stack] if len(reports) == 1 else [stack, compare] if compare else [stack, f"{stack} with --set"]
    if output == "json":
        console.print_json(json.dumps({label: report.summary() for label, report in zip(labels, reports, strict=True)}))
    else:
        render(reports, labels, markdown=output == "markdown")
    if any(report.unpriced for report in reports):
        raise typer.Exit(code=1)


def rows(report: CostReport) -> list[tuple[str, float, float]]:
    return [(name, fixed, usage) for name, (fixed, usage) in report.by_component().items()]


def totals(report: CostReport) -> list[tuple[str, str]]:
    return [
        ("monthly total", f"{report.total:,.0f}"),
        ("  fixed / usage-driven", f"{report.fixed:,.0f} / {report.variable:,.0f}"),
        ("budget / headroom", f"{report.budget:,.0f} / {report.budget - report.total:,.0f}"),
        ("GPU node, node-hours", f"{report.gpu_node}, {report.usage.gpu_node_hours:,.0f} h"),
        ("requests / month", f"{report.usage.requests:,.0f}"),
        ("USD per 1,000 requests", f"{report.per_thousand_requests():.3f}"),
        ("USD per million tokens (all in / GPU)",
         f"{report.per_million_tokens():.2f} / {report.gpu_per_million_tokens():.2f}"),
        ("unpriced types", ", ".join(report.unpriced) or "none"),
        ("estimated prices in this total", f"{len(report.estimated_prices)} (docs/cost.md; refresh-prices)"),
        ("cost alert's baseMonthlyUsd / modelled non-GPU",
         f"{report.alert_base_usd:,.0f} / {report.total - report.gpu:,.0f}"),
    ]


def render(reports: list[CostReport], labels: list[str], markdown: bool) -> None:
    components = list(dict.fromkeys(name for report in reports for name, _, _ in rows(report)))
    header = ["component"] + [f"{label} (fixed + usage, USD/month)" for label in labels]
    body = []
    for name in components:
        cells = [name]
        for report in reports:
            fixed, usage = report.by_component().get(name, (0.0, 0.0))
            cells.append(f"{fixed + usage:,.0f} ({fixed:,.0f} + {usage:,.0f})")
        body.append(cells)
    for index, (label, _) in enumerate(totals(reports[0])):
        body.append([label] + [totals(report)[index][1] for report in reports])
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        typer.echo("\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body]))
        return
    table = Table(title=f"Monthly cost in {reports[0].region} (730 h; prices: components/prices/)")
    for column in header:
        table.add_column(column, justify="left" if column == "component" else "right")
    for cells in body:
        table.add_row(*cells)
    console.print(table)


def simulate(
    stack: StackOption = "dev",
    profile: Annotated[
        Path | None, typer.Option("--profile", help="YAML/JSON traffic profile (the keys of `traffic:`).")
    ] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG: traffic, replicas, wait, cost.")] = None,
    sets: SetOption = None,
    hours: HoursOption = 24 * 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    project_dir: ProjectOption = Path("."),
) -> None:
    """Replay the traffic profile through the GPU tier as configured (KEDA, HPA, Karpenter, cold starts, Spot)
    and report replicas, GPU node-hours, queue wait and TTFT percentiles, refused and timed-out requests."""
    with exit_on_bad_input():
        overrides = list(sets or []) + profile_sets(profile)
        label = " and ".join(filter(None, ["--set" if sets else "", f"--profile {profile}" if profile else ""]))
        inputs = load_stack(project_dir, stack, overrides, label)
        horizon = hours * HOUR_S
        result = simulate_stack(inputs, horizon)
    summary = result.summary()
    levels = per_level(result, inputs.config.traffic.hourly_levels())
    if as_json:
        console.print_json(json.dumps({**summary, "levels": levels}))
    else:
        print_simulation(f"{stack}: {hours:g} simulated hours (seed {inputs.config.simulation.seed})", summary, levels)
    if plot:
        from infra.cost.plot import plot_week

        plot_week(result, inputs.config, plot)
        console.print(f"plot written to {plot}")


def print_simulation(title: str, summary: dict[str, Any], levels: dict[str, dict[str, float]]) -> None:
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key, f"{value:,.3f}" if isinstance(value, float) else f"{value:,}")
    console.print(table)
    by_level = Table(title="Per traffic level (the profile's scenarios)")
    columns = list(next(iter(levels.values())))
    for column in ["level", *columns]:
        by_level.add_column(column, justify="left" if column == "level" else "right")
    for level, values in levels.items():
        by_level.add_row(level, *(f"{values[column]:,}" for column in columns))
    console.print(by_level)


def profile_sets(profile: Path | None) -> list[str]:
    """A profile file as `--set traffic.<key>=<value>` overrides, so the same schema validates it."""
    if profile is None:
        return []
    try:
        document: Any = yaml.safe_load(profile.read_text())
    except OSError as error:
        raise ConfigError(f"--profile {profile}: cannot read it ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"--profile {profile}: not valid YAML or JSON: {' '.join(str(error).split())}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"--profile {profile}: expected a mapping of traffic keys (levels, weekday, weekend, ...)")
    return [f"traffic.{key}={json.dumps(value)}" for key, value in document.items()]


def refresh_prices(
    regions: Annotated[list[str] | None, typer.Option("--region", help="Region to rebuild (repeatable).")] = None,
) -> None:
    """Rebuild components/prices/<region>.json from the AWS Price List API and EC2 Spot price history (needs AWS
    credentials with pricing:GetProducts and ec2:DescribeSpotPriceHistory)."""
    from infra.cost.refresh import refresh_files

    for path in refresh_files(regions or ["us-east-1", "us-west-2"]):
        console.print(f"written {path}")


def register(app: typer.Typer) -> None:
    app.command()(cost)
    app.command()(simulate)
    app.command("refresh-prices")(refresh_prices)
