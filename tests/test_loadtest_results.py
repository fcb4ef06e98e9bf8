"""The load test's judgement and report, on recorded samples: replicas read from a Prometheus HTTP API (a local
stand-in on 127.0.0.1), scale-up and scale-down checks, dropped requests failing the run."""

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from exported_metrics import ALL_EXPORTED, metric_names

from infra.loadtest.profiles import BUILT_IN, ProfileError, load_profile
from infra.loadtest.report import write_report
from infra.loadtest.results import DESIRED_REPLICAS, READY_REPLICAS, RunResult, Sample, prometheus_value


@pytest.fixture
def prometheus() -> Iterator[tuple[str, list[str]]]:
    """Answers every instant query with 3, as Prometheus's /api/v1/query does; records the queries."""
    queries: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)["query"][0]
            queries.append(query)
            body = {"status": "success", "data": {"resultType": "vector",
                                                  "result": [{"metric": {}, "value": [1700000000, "3"]}]}}
            payload = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", queries
    server.shutdown()


def result(ready: list[float | None], failures: int = 0) -> RunResult:
    samples = [Sample(float(i * 15), 50, 10.0, 800.0, 100 * i, 0, r, r) for i, r in enumerate(ready)]
    return RunResult(
        profile=BUILT_IN["seed002"], url="https://llm.example.com", model="m", duration_s=1200,
        requests=1000, failures=failures, latency_ms={0.5: 900, 0.95: 1500, 0.99: 2000},
        ttft_ms={0.5: 120, 0.95: 400, 0.99: 700}, errors={"HTTP 503": failures} if failures else {}, samples=samples,
    )


def verdicts(run: RunResult) -> dict[str, bool | None]:
    return {check.name: check.passed for check in run.checks()}


def test_replicas_come_from_prometheus_instant_queries(prometheus: tuple[str, list[str]]) -> None:
    url, queries = prometheus
    assert prometheus_value(url, READY_REPLICAS) == 3.0
    assert 'deployment="vllm"' in queries[0] and 'namespace="llm-serving"' in queries[0]
    assert prometheus_value("http://127.0.0.1:9", READY_REPLICAS) is None  # unreachable: no sample, no crash
    assert metric_names(READY_REPLICAS) | metric_names(DESIRED_REPLICAS) <= ALL_EXPORTED


def test_seed002_acceptance_scale_up_then_down_without_drops() -> None:
    assert verdicts(result([1, 2, 4, 4, 2, 1])) == {
        "no dropped requests": True, "TTFT p95 < 500 ms": True,
        "scaled up under load": True, "scaled down after the drop": True,
    }
    assert result([1, 2, 4, 4, 2, 1]).passed


def test_no_scale_up_or_a_dropped_request_fails_the_run() -> None:
    flat = verdicts(result([1, 1, 1]))
    assert flat["scaled up under load"] is False and flat["scaled down after the drop"] is False
    dropped = result([1, 3, 1], failures=1)
    assert verdicts(dropped)["no dropped requests"] is False and not dropped.passed


def test_without_prometheus_replica_checks_are_not_evaluated() -> None:
    run = result([None, None])
    assert verdicts(run)["scaled up under load"] is None and run.passed


def test_report_has_the_checks_and_a_plot_with_replicas(tmp_path: Path) -> None:
    report = write_report(result([1, 2, 4, 4, 2, 1]), tmp_path).read_text()
    assert "**Result: PASS**" in report and "| scaled down after the drop | PASS | max 4 -> 1 at the end |" in report
    assert (tmp_path / "loadtest.svg").read_text().count("<polyline") == 4


def test_profiles_follow_the_seeds() -> None:
    seed002 = BUILT_IN["seed002"]
    assert [(s.name, s.users) for s in seed002.stages] == [("ramp", 50), ("steady", 50), ("drop", 5)]
    assert seed002.stages[0].duration_s == 300 and seed002.max_tokens == 50
    assert seed002.acceptance.ttft_p95_s == 0.5 and seed002.acceptance.max_error_rate == 0
    assert max(s.users for s in BUILT_IN["seed000"].stages) == 1000
    with pytest.raises(ProfileError, match="no such file"):
        load_profile("seed003")
