"""The simulated week as a PNG (matplotlib, Agg backend: no display needed): traffic, replicas and GPU nodes,
queue wait p95, and GPU cost so far."""

from pathlib import Path

import matplotlib
import numpy as np

from infra.cost.estimate import gpu_node_hourly_usd
from infra.cost.simulator import HOUR_S, SimResult
from stacks.config import PlatformConfig

DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def hourly_p95(result: SimResult, hours: int) -> np.ndarray:
    """p95 queue wait of the requests that started in each hour (0 where none did)."""
    bins = (result.starts // HOUR_S).astype(int)
    values = np.zeros(hours)
    for hour in range(hours):
        waits = result.waits[bins == hour]
        values[hour] = np.percentile(waits, 95) if len(waits) else 0.0
    return values


def plot_week(result: SimResult, config: PlatformConfig, path: Path) -> None:
    matplotlib.use("Agg")  # before pyplot loads: no display on CI or a server
    import matplotlib.pyplot as plt

    samples = result.samples
    days = samples["t"] / (24 * HOUR_S)
    hours = int(np.ceil(result.horizon_s / HOUR_S))
    hourly = gpu_node_hourly_usd(config)
    figure, axes = plt.subplots(4, 1, figsize=(11, 9), sharex=True, constrained_layout=True)
    figure.suptitle(
        f"Simulated week: {result.requests:,} requests, {result.gpu_node_hours:,.0f} GPU node-hours, "
        f"TTFT p95 {np.percentile(result.ttfts, 95) if len(result.ttfts) else 0:.2f} s"
    )
    axes[0].plot(days, samples["arrivals"], lw=0.6, color="tab:blue")
    axes[0].set_ylabel("requests/s\n(gateway)")
    axes[1].step(days, samples["replicas"], where="post", lw=0.9, label="vLLM replicas (desired)")
    axes[1].step(days, samples["ready"], where="post", lw=0.9, label="vLLM pods ready")
    axes[1].step(days, samples["nodes"], where="post", lw=0.9, ls="--", label="GPU nodes")
    axes[1].set_ylabel("count")
    axes[1].legend(loc="upper right", fontsize=8, ncols=3)
    axes[2].bar(np.arange(hours) / 24, hourly_p95(result, hours), width=1 / 24, align="edge", color="tab:orange")
    axes[2].set_ylabel("queue wait\np95 per hour (s)")
    cost = np.cumsum(samples["nodes"]) * (samples["t"][1] - samples["t"][0] if len(days) > 1 else 0) / HOUR_S * hourly
    axes[3].plot(days, cost, color="tab:green")
    axes[3].set_ylabel(f"GPU cost so far\n(USD, {hourly:.3f}/h)")
    axes[3].set_xticks(range(int(np.ceil(days[-1])) if len(days) else 0))
    axes[3].set_xticklabels(DAYS[: len(axes[3].get_xticks())])
    axes[3].set_xlabel("day of the simulated week (Monday 00:00 first)")
    for axis in axes:
        axis.grid(alpha=0.3)
    figure.savefig(path, dpi=110)
    plt.close(figure)
