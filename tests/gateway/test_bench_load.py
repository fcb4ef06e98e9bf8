"""The benchmark's load generator: a schedule kept by a kernel timer, and latency cases measured in turns."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
import orjson

from serving.bench.__main__ import HEADERS, _body, _endpoint, start_gateway
from serving.bench.__main__ import MODEL as BENCH_MODEL
from serving.bench.load import _periodic_timer, closed_loop, open_loop, run
from serving.processes import ManagedProcess

from .conftest import MODEL, metric, simulator, wait_for

TICKS = 300
INTERVAL_S = 0.003


async def _tick_lateness_ms() -> list[float]:
    loop = asyncio.get_running_loop()
    first = time.monotonic() + 0.01
    timer = _periodic_timer(first, INTERVAL_S)
    lateness: list[float] = []
    done = loop.create_future()

    def on_tick() -> None:
        expired = int.from_bytes(os.read(timer, 8), sys.byteorder)
        now = time.monotonic()
        for _ in range(expired):
            lateness.append((now - (first + len(lateness) * INTERVAL_S)) * 1000)
        if len(lateness) >= TICKS and not done.done():
            done.set_result(None)

    loop.add_reader(timer, on_tick)
    try:
        await done
    finally:
        loop.remove_reader(timer)
        os.close(timer)
    return lateness


def test_schedule_never_runs_early_and_stays_close() -> None:
    # The event loops' own timers work in whole milliseconds: asyncio.sleep woke 0.8 ms late at the median, and
    # uvloop's call_at up to 1 ms early, which would start requests before their slot.
    lateness = run(_tick_lateness_ms())
    assert min(lateness) >= 0
    assert statistics.median(lateness) < 0.5


def test_open_loop_gives_every_case_its_rate_in_turns(upstream: ManagedProcess) -> None:
    url = upstream.url + "/v1/completions"
    headers = {"Content-Type": "application/json"}
    # Plain and streamed (chunked) answers: each counts once its last byte arrived.
    cases = [(url, orjson.dumps({"model": MODEL, "prompt": "a", "max_tokens": 2, "stream": s})) for s in (False, True)]
    started = time.monotonic()
    results = run(open_loop(cases, headers, rate=100, seconds=0.6, rounds=3))
    elapsed = time.monotonic() - started
    assert [(r.ok, r.errors, len(r.latencies_ms)) for r in results] == [(60, 0, 60), (60, 0, 60)]
    assert elapsed >= 1.1  # the cases took turns (6 of 0.2 s), not both at once
    assert all(0 < latency < 1000 for r in results for latency in r.latencies_ms)


def test_closed_loop_counts_answers_and_errors(upstream: ManagedProcess) -> None:
    url = upstream.url + "/v1/completions"
    headers = {"Content-Type": "application/json"}
    good = run(closed_loop(url, orjson.dumps({"model": MODEL, "prompt": "a", "max_tokens": 2}), headers, 4, 0.3))
    assert good.ok > 10 and good.errors == 0 and good.rps > 0
    unknown_model = orjson.dumps({"model": "nope", "prompt": "a", "max_tokens": 2})
    refused = run(closed_loop(url, unknown_model, headers, 4, 0.3))
    assert refused.ok == 0 and refused.errors > 10


def test_benchmark_gateway_runs_with_the_settings_given(tmp_path: Path) -> None:
    with (
        simulator("--model", BENCH_MODEL) as upstream,
        start_gateway(upstream.url, 1, tmp_path, {"GATEWAY_LOCAL_CACHE_MB": "0"}) as gateway,
    ):
        body = _body(False, 0.0)

        def answer() -> httpx.Response:
            return httpx.post(_endpoint(gateway.url), content=body, headers=HEADERS)

        first = answer()
        assert (first.status_code, first.headers["x-cache"]) == (200, "miss")
        wait_for(lambda: answer().headers["x-cache"] == "hit")  # the entry is written after the answer went out
        assert metric(gateway.url, "gateway_cache_local_hits_total") == 0  # the hit came from Redis
