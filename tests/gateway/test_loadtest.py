"""`llm-platform loadtest` against the real gateway in front of the vLLM simulator, for a few seconds: it
reports latency and TTFT percentiles and passes; against a gateway whose upstream is down it counts every
request as dropped and fails."""

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from serving import processes
from serving.processes import ManagedProcess

from .conftest import KEY, GatewayFactory, metric, simulator

PROJECT_DIR = Path(__file__).resolve().parents[2]
# Ramp to 4 users in 2 s, hold 3 s, drop to 1 for 2 s: every stage of a real profile, in seconds.
SHORT_PROFILE = """\
name: short
stages:
  - {name: ramp, duration_s: 2, users: 4, spawn_rate: 4}
  - {name: steady, duration_s: 3, users: 4, spawn_rate: 4}
  - {name: drop, duration_s: 2, users: 1, spawn_rate: 4}
wait_min_s: 0.05
wait_max_s: 0.1
max_tokens: 16
sample_interval_s: 1
request_timeout_s: 10
acceptance: {max_error_rate: 0, ttft_p95_s: 0.5}
"""


def loadtest(url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "short.yaml"
    profile.write_text(SHORT_PROFILE)
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", "loadtest", "--url", url, "--key-env", "LOADTEST_KEY",
         "--profile", str(profile), "--out", str(tmp_path / "report"), *extra],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120,
        env={**os.environ, "LOADTEST_KEY": KEY},
    )


def test_loadtest_reports_percentiles_and_passes(gateway: ManagedProcess, tmp_path: Path) -> None:
    result = loadtest(gateway.url, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = (tmp_path / "report" / "loadtest.md").read_text()
    assert "**Result: PASS**" in report
    assert "| no dropped requests | PASS | 0 of " in report
    requests = int(re.search(r"\| (\d+) \| 0 \(0\.00%\) \|", report)[1])
    assert requests > 20  # 4 users, ~10 requests/s each for 5 s
    assert re.search(r"\| TTFT p95 < 500 ms \| PASS \| TTFT p95 \d+ ms \|", report)
    assert "| scaled up" not in report  # no Prometheus given: replica checks are not part of this profile
    svg = (tmp_path / "report" / "loadtest.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<polyline") == 3  # users, throughput, latency; no replicas


def test_loadtest_detects_dropped_requests(start_gateway: GatewayFactory, redis_url: str, tmp_path: Path) -> None:
    dead_upstream = f"http://127.0.0.1:{processes.free_port()}"  # nothing listens: the gateway answers 503
    gateway = start_gateway(dead_upstream, redis_url, hold_timeout_s="0.2")
    result = loadtest(gateway.url, tmp_path, "--model", "test-model")
    assert result.returncode == 1, result.stdout + result.stderr
    report = (tmp_path / "report" / "loadtest.md").read_text()
    assert "**Result: FAIL**" in report
    failed = re.search(r"\| no dropped requests \| FAIL \| (\d+) of (\d+) requests failed", report)
    assert failed and failed[1] == failed[2] and int(failed[1]) > 0
    assert "HTTP 503" in report


def stop_after_answers(upstream: ManagedProcess, answers: int) -> threading.Thread:
    """Stops the upstream once it has finished `answers` requests (its vllm:request_success counter)."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if metric(upstream.url, "vllm:request_success_total") >= answers:
                    break
            time.sleep(0.1)
        upstream.terminate()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_loadtest_counts_requests_dropped_when_the_upstream_stops_mid_run(
    start_gateway: GatewayFactory, redis_url: str, tmp_path: Path
) -> None:
    """The upstream stops after 5 answers: every later request is dropped (503 once the gateway's hold runs
    out), the ones before were not; the report tells them apart."""
    upstream = simulator("--itl-ms", "50")
    gateway = start_gateway(upstream.url, redis_url, hold_timeout_s="0.2")
    watcher = stop_after_answers(upstream, 5)
    try:
        result = loadtest(gateway.url, tmp_path, "--model", "test-model")
    finally:
        upstream.terminate()
        watcher.join(timeout=70)
    assert result.returncode == 1, result.stdout + result.stderr
    report = (tmp_path / "report" / "loadtest.md").read_text()
    failed = re.search(r"\| no dropped requests \| FAIL \| (\d+) of (\d+) requests failed", report)
    assert failed and 0 < int(failed[1]) < int(failed[2])
    assert "HTTP 503" in report


@pytest.mark.parametrize(("profile", "message"), [("nope", "not seed000, seed002 and no such file")])
def test_loadtest_rejects_an_unknown_profile(profile: str, message: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "infra.cli", "loadtest", "--url", "http://127.0.0.1:9", "--key-env", "LOADTEST_KEY",
         "--profile", profile, "--out", str(tmp_path)],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60, env={**os.environ, "LOADTEST_KEY": KEY},
    )
    assert result.returncode == 2 and message in result.stderr
