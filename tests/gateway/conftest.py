"""Real processes for the gateway tests: one redis-server, simulators and gateways over real HTTP."""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from serving import processes
from serving.processes import ManagedProcess

MODEL = "test-model"
CONTEXT = 4096
KEY = "sk-team-a"
LIMITED_KEY = "sk-limited"  # 3 requests per minute
TPM_KEY = "sk-tokens"  # 500 tokens per minute
LIMITED_RPM = 3

GatewayFactory = Callable[..., ManagedProcess]


def metric(url: str, name: str, labels: str = "") -> float:
    """Sum of the samples of `name` whose labels contain `labels` (e.g. 'result="hit"')."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:{{([^}}]*)}})? (\S+)$", text, re.M):
        if labels in (m.group(1) or ""):
            total += float(m.group(2))
    return total


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def simulator(*extra: str, port: int | None = None, timeout: float = 20) -> ManagedProcess:
    port = port or processes.free_port()
    argv = [sys.executable, "-m", "serving.simulator", "--port", str(port), "--model", MODEL, *extra]
    return processes.start(argv, port, env={"PYTHONUNBUFFERED": "1"}, timeout=timeout)


@pytest.fixture(scope="session")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    entries = [
        {"id": "team-a", "sha256": hashlib.sha256(KEY.encode()).hexdigest()},
        {"id": "limited", "sha256": hashlib.sha256(LIMITED_KEY.encode()).hexdigest(), "rpm": LIMITED_RPM},
        {"id": "tokens", "sha256": hashlib.sha256(TPM_KEY.encode()).hexdigest(), "tpm": 500},
    ]
    path = tmp_path_factory.mktemp("gateway") / "keys.json"
    path.write_text(json.dumps({"keys": entries}))
    return path


@pytest.fixture(scope="session")
def redis_server() -> Iterator[ManagedProcess]:
    with processes.start_redis(processes.free_port()) as proc:
        yield proc


def redis_url_of(server: ManagedProcess) -> str:
    return f"redis://127.0.0.1:{server.port}/0"


@pytest.fixture(scope="session")
def redis_url(redis_server: ManagedProcess) -> str:
    return redis_url_of(redis_server)


@pytest.fixture
def own_redis() -> Iterator[ManagedProcess]:
    """A Redis for one test, for counters no other test touches or a Redis the test stops."""
    with processes.start_redis(processes.free_port()) as proc:
        yield proc


@pytest.fixture(scope="session")
def upstream() -> Iterator[ManagedProcess]:
    with simulator("--max-model-len", str(CONTEXT)) as proc:
        yield proc


@pytest.fixture(scope="session")
def start_gateway(keys_file: Path) -> Iterator[GatewayFactory]:
    """Starts gateways with test-sized timeouts; every one is stopped at the end of the session at the latest."""
    started: list[ManagedProcess] = []

    def start(
        upstream_url: str, redis_url: str = "", env: dict[str, str] | None = None, **settings: str
    ) -> ManagedProcess:
        port = processes.free_port()
        full_env = {
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(port),
            "GATEWAY_UPSTREAM": upstream_url,
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_API_KEYS_FILE": str(keys_file),
            "GATEWAY_WORKERS": "1",
            "GATEWAY_MODELS": f"{MODEL}={CONTEXT},other-model=8192",
            "GATEWAY_MAX_TOKENS": "1024",
            "GATEWAY_MAX_BODY_BYTES": "65536",
            "GATEWAY_HOLD_TIMEOUT_S": "1",
            "GATEWAY_DRAIN_TIMEOUT_S": "10",
            "GATEWAY_LOG_LEVEL": "warning",
            **{f"GATEWAY_{name.upper()}": value for name, value in settings.items()},
            **(env or {}),
        }
        proc = processes.start([sys.executable, "-m", "serving.gateway"], port, env=full_env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.terminate()


@pytest.fixture(scope="session")
def gateway(start_gateway: GatewayFactory, upstream: ManagedProcess, redis_url: str) -> ManagedProcess:
    return start_gateway(upstream.url, redis_url)
