"""Runs the locust plan in this process against a gateway and samples users, throughput, latency, errors and
(given Prometheus) vLLM replicas while it runs."""

import json
import time
import urllib.request

import gevent
from locust.env import Environment
from locust.runners import STATE_STOPPED
from locust.stats import StatsEntry

from infra.loadtest.locustfile import E2E, TTFT, chat_user, stages_shape
from infra.loadtest.profiles import Profile
from infra.loadtest.results import DESIRED_REPLICAS, PERCENTILES, READY_REPLICAS, RunResult, Sample, prometheus_value


def _percentiles(entry: StatsEntry) -> dict[float, float | None]:
    return {p: (entry.get_response_time_percentile(p) if entry.num_requests else None) for p in PERCENTILES}


def served_model(url: str, api_key: str) -> str:
    request = urllib.request.Request(f"{url.rstrip('/')}/v1/models", headers={"Authorization": f"Bearer {api_key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.load(response)["data"][0]["id"])


def _sample(env: Environment, start: float, prometheus_url: str | None) -> Sample:
    chat, e2e = env.stats.get("chat", "POST"), env.stats.get("chat", E2E)
    return Sample(
        elapsed_s=time.monotonic() - start,
        users=env.runner.user_count if env.runner else 0,
        rps=chat.current_rps,
        p95_ms=e2e.get_current_response_time_percentile(0.95) if e2e.num_requests else None,
        requests=chat.num_requests,
        failures=chat.num_failures,
        ready_replicas=prometheus_value(prometheus_url, READY_REPLICAS) if prometheus_url else None,
        desired_replicas=prometheus_value(prometheus_url, DESIRED_REPLICAS) if prometheus_url else None,
    )


def run(url: str, api_key: str, model: str, profile: Profile, prometheus_url: str | None = None) -> RunResult:
    env = Environment(
        user_classes=[chat_user(profile, api_key, model)],
        shape_class=stages_shape(profile)(),
        host=url.rstrip("/"),
        stop_timeout=profile.request_timeout_s,  # a dropping stage lets users finish the request in flight
    )
    runner = env.create_local_runner()
    samples: list[Sample] = []
    start = time.monotonic()
    runner.start_shape()
    gevent.sleep(0)
    while runner.state != STATE_STOPPED:
        samples.append(_sample(env, start, prometheus_url))
        gevent.sleep(profile.sample_interval_s)
    samples.append(_sample(env, start, prometheus_url))
    runner.quit()
    chat = env.stats.get("chat", "POST")
    return RunResult(
        profile=profile,
        url=url,
        model=model,
        duration_s=time.monotonic() - start,
        requests=chat.num_requests,
        failures=chat.num_failures,
        latency_ms=_percentiles(env.stats.get("chat", E2E)),
        ttft_ms=_percentiles(env.stats.get("chat", TTFT)),
        errors={str(error.error): error.occurrences for error in env.stats.errors.values()},
        samples=samples,
    )
