"""What a load test run measured, and how it is judged against the profile's acceptance checks (no locust here:
tests import this without gevent's monkey-patching)."""

import json
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from components import contracts
from infra.loadtest.profiles import Profile

SERVING = f'namespace="{contracts.SERVING_NAMESPACE}"'
READY_REPLICAS = f'sum(kube_deployment_status_replicas_ready{{{SERVING},deployment="{contracts.VLLM_APP}"}})'
DESIRED_REPLICAS = (
    f'max(kube_horizontalpodautoscaler_status_desired_replicas{{{SERVING},horizontalpodautoscaler="{contracts.VLLM_HPA}"}})'
)
PERCENTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True)
class Sample:
    elapsed_s: float
    users: int
    rps: float
    p95_ms: float | None
    requests: int
    failures: int
    ready_replicas: float | None
    desired_replicas: float | None


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool | None  # None: not evaluated (no Prometheus URL, no target)
    detail: str


@dataclass
class RunResult:
    profile: Profile
    url: str
    model: str
    duration_s: float
    requests: int
    failures: int
    latency_ms: dict[float, float | None]
    ttft_ms: dict[float, float | None]
    errors: dict[str, int]
    samples: list[Sample] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    def checks(self) -> list[Check]:
        acceptance = self.profile.acceptance
        allowed = acceptance.max_error_rate
        checks = [
            Check(
                "no dropped requests" if allowed == 0 else f"errors <= {allowed:.1%}",
                self.requests > 0 and self.error_rate <= allowed,
                f"{self.failures} of {self.requests} requests failed ({self.error_rate:.2%})",
            )
        ]
        if acceptance.ttft_p95_s is not None:
            p95 = self.ttft_ms.get(0.95)
            checks.append(Check(
                f"TTFT p95 < {acceptance.ttft_p95_s * 1000:g} ms",
                None if p95 is None else p95 < acceptance.ttft_p95_s * 1000,
                "no streamed answer" if p95 is None else f"TTFT p95 {p95:.0f} ms",
            ))
        replicas = [s.ready_replicas for s in self.samples if s.ready_replicas is not None]
        if acceptance.expect_scale_up:
            checks.append(Check(
                "scaled up under load",
                None if not replicas else max(replicas) > replicas[0],
                "no Prometheus samples" if not replicas else f"ready replicas {replicas[0]:g} -> max {max(replicas):g}",
            ))
        if acceptance.expect_scale_down:
            checks.append(Check(
                "scaled down after the drop",
                None if not replicas else replicas[-1] < max(replicas),
                "no Prometheus samples" if not replicas else f"max {max(replicas):g} -> {replicas[-1]:g} at the end",
            ))
        return checks

    @property
    def passed(self) -> bool:
        return all(check.passed is not False for check in self.checks())


def prometheus_value(prometheus_url: str, query: str) -> float | None:
    """One instant-query value, or None when Prometheus is unreachable or has no sample."""
    url = f"{prometheus_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            result = json.load(response)["data"]["result"]
    except (OSError, ValueError, KeyError):
        return None
    return float(result[0]["value"][1]) if result else None


