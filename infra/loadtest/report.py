"""The load test's report: markdown (summary, acceptance checks, errors, timeline) and an SVG plot of users,
throughput, p95 latency and replicas over time, written by hand so the CLI needs no plotting library."""

from collections.abc import Callable
from pathlib import Path

from infra.loadtest.results import RunResult, Sample

PLOT_WIDTH, PANEL_HEIGHT, MARGIN = 720, 110, 50
SERIES: tuple[tuple[str, Callable[[Sample], float | None], str], ...] = (
    ("users", lambda s: s.users, "#1f77b4"),
    ("requests/s", lambda s: s.rps, "#2ca02c"),
    ("p95 latency (ms)", lambda s: s.p95_ms, "#d62728"),
    ("vLLM ready replicas", lambda s: s.ready_replicas, "#9467bd"),
)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _verdict(passed: bool | None) -> str:
    return "n/a" if passed is None else "PASS" if passed else "FAIL"


def _panel(index: int, label: str, points: list[tuple[float, float]], color: str, end_s: float) -> str:
    top = MARGIN + index * (PANEL_HEIGHT + 30)
    peak = max((v for _, v in points), default=0) or 1
    width = PLOT_WIDTH - 2 * MARGIN
    coords = " ".join(
        f"{MARGIN + t / (end_s or 1) * width:.1f},{top + PANEL_HEIGHT - v / peak * PANEL_HEIGHT:.1f}" for t, v in points
    )
    return (
        f'<text x="{MARGIN}" y="{top - 6}" font-size="12">{label} (max {peak:g})</text>'
        f'<rect x="{MARGIN}" y="{top}" width="{PLOT_WIDTH - 2 * MARGIN}" height="{PANEL_HEIGHT}" fill="none" '
        'stroke="#ccc"/>'
        + (f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{coords}"/>' if points else "")
    )


def plot_svg(result: RunResult) -> str:
    end_s = result.samples[-1].elapsed_s if result.samples else 0
    panels = []
    for index, (label, value, color) in enumerate(SERIES):
        points = [(s.elapsed_s, v) for s in result.samples if (v := value(s)) is not None]
        panels.append(_panel(index, label, points, color, end_s))
    height = MARGIN * 2 + len(SERIES) * (PANEL_HEIGHT + 30)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{PLOT_WIDTH}" height="{height}" font-family="sans-serif">'
        f'<text x="{MARGIN}" y="24" font-size="14">Load test {result.profile.name}: {end_s:.0f} s</text>'
        + "".join(panels) + "</svg>\n"
    )


def markdown(result: RunResult, plot_name: str) -> str:
    checks = result.checks()
    lines = [
        f"# Load test: {result.profile.name}",
        "",
        f"Target {result.url}, model `{result.model}`, {result.duration_s:.0f} s, "
        f"stages: {', '.join(f'{s.name} {s.duration_s:g} s to {s.users} users' for s in result.profile.stages)}.",
        "",
        f"**Result: {_verdict(result.passed)}**",
        "",
        "| check | result | detail |",
        "|---|---|---|",
        *[f"| {c.name} | {_verdict(c.passed)} | {c.detail} |" for c in checks],
        "",
        "| requests | failed (dropped) | whole answer p50 / p95 / p99 (ms) | TTFT p50 / p95 / p99 (ms) |",
        "|---|---|---|---|",
        f"| {result.requests} | {result.failures} ({result.error_rate:.2%}) | "
        f"{' / '.join(_ms(v) for v in result.latency_ms.values())} | "
        f"{' / '.join(_ms(v) for v in result.ttft_ms.values())} |",
        "",
    ]
    if result.errors:
        lines += ["## Errors", "", "| error | count |", "|---|---|"]
        lines += [f"| {error} | {count} |" for error, count in sorted(result.errors.items(), key=lambda e: -e[1])]
        lines.append("")
    lines += [
        "## Over time",
        "",
        f"![users, throughput, latency and replicas]({plot_name})",
        "",
        "| s | users | req/s | p95 ms | requests | failed | ready replicas | desired replicas |",
        "|---|---|---|---|---|---|---|---|",
        *[
            f"| {s.elapsed_s:.0f} | {s.users} | {s.rps:.1f} | {_ms(s.p95_ms)} | {s.requests} | {s.failures} | "
            f"{'n/a' if s.ready_replicas is None else f'{s.ready_replicas:g}'} | "
            f"{'n/a' if s.desired_replicas is None else f'{s.desired_replicas:g}'} |"
            for s in result.samples
        ],
        "",
    ]
    return "\n".join(lines)


def write_report(result: RunResult, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    plot = directory / "loadtest.svg"
    plot.write_text(plot_svg(result))
    report = directory / "loadtest.md"
    report.write_text(markdown(result, plot.name))
    return report
