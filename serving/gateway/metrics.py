"""Prometheus metrics of the gateway (multiprocess-aware when PROMETHEUS_MULTIPROC_DIR is set before import)."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# Sub-millisecond buckets: the gateway's own cost is what we watch, upstream time goes up to minutes.
_FAST = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
_SLOW = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

REQUESTS = Counter("gateway_requests", "Requests answered", ("route", "status", "key"))
DURATION = Histogram("gateway_request_duration_seconds", "Request duration", ("route",), buckets=_SLOW)
TTFB = Histogram("gateway_upstream_ttfb_seconds", "Upstream time to first byte", buckets=_SLOW)
CACHE = Counter("gateway_cache_requests", "Response cache lookups", ("result",))
CACHE_LOCAL_HIT = Counter("gateway_cache_local_hits", "Cache hits answered from the worker's memory, without Redis")
LEASES = Counter("gateway_rate_limit_leases", "Shares of a key's rate limit taken from Redis")
RATE_LIMITED = Counter("gateway_rate_limited", "Requests refused by a rate limit", ("key", "kind"))
OVERHEAD = Histogram("gateway_overhead_seconds", "Time spent in the gateway, upstream excluded", buckets=_FAST)
# livesum: the sum over live worker processes is the meaningful value for KEDA and dashboards.
INFLIGHT = Gauge("gateway_inflight_requests", "Requests being served", multiprocess_mode="livesum")
PENDING = Gauge(
    "gateway_pending_requests",
    "Requests held while no upstream is ready (KEDA activation)",
    multiprocess_mode="livesum",
)

CACHE_HIT = CACHE.labels("hit")
CACHE_MISS = CACHE.labels("miss")
CACHE_ERROR = CACHE.labels("error")
for _child in (CACHE_HIT, CACHE_MISS, CACHE_ERROR):
    _child.inc(0)

_request_children: dict[tuple[str, int, str], Counter] = {}
_duration_children: dict[str, Histogram] = {}


def count_request(route: str, status: int, key: str, seconds: float) -> None:
    """Pre-bound label children: .labels() hashes and locks on every call, a dict lookup does not."""
    child = _request_children.get((route, status, key))
    if child is None:
        child = _request_children[(route, status, key)] = REQUESTS.labels(route, str(status), key)
    child.inc()
    hist = _duration_children.get(route)
    if hist is None:
        hist = _duration_children[route] = DURATION.labels(route)
    hist.observe(seconds)


def render() -> tuple[bytes, bytes]:
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST.encode()
    return generate_latest(), CONTENT_TYPE_LATEST.encode()


def worker_exit(pid: int) -> None:
    if MULTIPROCESS:
        multiprocess.mark_process_dead(pid)
