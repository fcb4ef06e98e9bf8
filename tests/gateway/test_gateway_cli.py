"""The command line: --help, settings validation (exit 2 naming the setting), hash-key, --workers."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from components.gateway import GatewayConfig
from infra.offline import Graph
from serving.bench.__main__ import gateway_command
from serving.gateway.settings import OPTIONS, Settings, parse
from serving.processes import ManagedProcess

from .conftest import KEY, MODEL, GatewayFactory, metric, wait_for

GATEWAY = [sys.executable, "-m", "serving.gateway"]


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}


def _run(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GATEWAY, *args], input=stdin, capture_output=True, text=True, timeout=30, env=env)


def test_help_lists_every_flag_and_its_env_var() -> None:
    out = _run("--help").stdout
    for flag, env in (
        ("--host", "GATEWAY_HOST"),
        ("--port", "GATEWAY_PORT"),
        ("--upstream", "GATEWAY_UPSTREAM"),
        ("--redis", "GATEWAY_REDIS_URL"),
        ("--api-keys-file", "GATEWAY_API_KEYS_FILE"),
        ("--workers", "GATEWAY_WORKERS"),
        ("--models", "GATEWAY_MODELS"),
        ("--hold-timeout-s", "GATEWAY_HOLD_TIMEOUT_S"),
        ("--drain-timeout-s", "GATEWAY_DRAIN_TIMEOUT_S"),
    ):
        assert flag in out and env in out, flag
    assert "hash-key" in out


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--port", "http"], {}, "--port / GATEWAY_PORT"),
        (["--workers", "0"], {}, "--workers / GATEWAY_WORKERS"),
        ([], {"GATEWAY_LOG_LEVEL": "loud"}, "GATEWAY_LOG_LEVEL='loud': must be one of debug, info, warning, error"),
        ([], {"GATEWAY_MODELS": "qwen"}, "GATEWAY_MODELS"),
        (["--upstream", "vllm:8000"], {}, "--upstream / GATEWAY_UPSTREAM"),
        (["--redis", "http://x"], {}, "--redis / GATEWAY_REDIS_URL"),
        (
            ["--rate-limit-lease-percent", "20"],
            {},
            "--rate-limit-lease-percent / GATEWAY_RATE_LIMIT_LEASE_PERCENT='20': must be a number 0-10",
        ),
    ],
)
def test_bad_setting_exits_2_naming_it(args: list[str], env: dict[str, str], named: str, tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text('{"keys": []}')
    result = _run(*args, "--api-keys-file", str(keys), env={**_base_env(), **env})
    assert result.returncode == 2
    assert named in result.stderr


def test_missing_or_malformed_keys_file_exits_2(tmp_path: Path) -> None:
    assert "GATEWAY_API_KEYS_FILE is required" in _run(env=_base_env()).stderr
    result = _run("--api-keys-file", str(tmp_path / "absent.json"), env=_base_env())
    assert result.returncode == 2
    assert "--api-keys-file" in result.stderr
    malformed = tmp_path / "keys.json"
    malformed.write_text('{"keys": [{"id": "team-a", "sha256": "plaintext-key"}]}')
    result = _run("--api-keys-file", str(malformed), env=_base_env())
    assert result.returncode == 2
    assert "keys[0] needs an 'id' and a 64-hex-digit 'sha256'" in result.stderr


def test_hash_key_prints_a_keys_file_entry() -> None:
    result = _run("hash-key", stdin="sk-secret\n")
    assert result.returncode == 0
    assert json.loads(result.stdout)["sha256"] == hashlib.sha256(b"sk-secret").hexdigest()
    assert "sk-secret" not in result.stdout


def test_workers_share_metrics_and_drain(start_gateway: GatewayFactory, upstream: ManagedProcess) -> None:
    gateway = start_gateway(upstream.url, WORKERS="2")
    for _ in range(6):
        resp = httpx.post(
            gateway.url + "/v1/completions",
            json={"model": MODEL, "prompt": "x", "max_tokens": 1},
            headers={"authorization": f"Bearer {KEY}"},
        )
        assert resp.status_code == 200
    # Each scrape lands on one worker; the multiprocess collector still sums them all (a worker counts a request
    # just after its response went out, hence the wait).
    wait_for(lambda: metric(gateway.url, "gateway_requests_total", 'status="200"') == 6, timeout=5)
    gateway.send_signal(signal.SIGTERM)
    assert gateway.process.wait(15) == 0


# What each deployment sets for itself (addresses, secrets, models, process count), not a default.
PER_DEPLOYMENT = {"host", "port", "upstream", "redis", "redis_password", "api_keys_file", "models", "workers"}
# Derived per stack from its cold-start budget; the benchmark's upstream is always ready, so nothing is held.
PER_STACK = {"hold_timeout_s"}


def test_gateway_and_stack_share_their_defaults() -> None:
    """A gateway started with nothing but its keys file is configured as the stack deploys it by default."""
    own = Settings.resolve({}, {"GATEWAY_API_KEYS_FILE": "keys.json"})
    stack = GatewayConfig()
    # Settings the stack has no key for (the Redis call timeout) are deployed at the gateway's own default; the
    # hold timeout is each stack's, derived from its cold-start budget (tests/test_cold_start.py).
    shared = (
        {opt.name for opt in OPTIONS} & set(GatewayConfig.model_fields) - PER_DEPLOYMENT - {"log_level", *PER_STACK}
    )
    assert len(shared) == 10
    for name in shared:
        assert getattr(own, name) == getattr(stack, name), name
    assert own.log_level == stack.log_level.lower()
    assert own.workers == stack.workers


def test_benchmark_runs_the_gateway_the_stack_deploys(graph: Graph, tmp_path: Path) -> None:
    """The benchmark's gateway, resolved by the gateway's own parser, has every setting of the Deployment's
    container except those each deployment sets for itself."""
    (container,) = graph.one("kubernetes:apps/v1:Deployment", "gateway-deployment").inputs["spec"]["template"]["spec"][
        "containers"
    ]
    deployed = Settings.resolve({}, {item["name"]: item["value"] for item in container["env"] if "value" in item})
    argv, env = gateway_command("http://127.0.0.1:1", "redis://127.0.0.1:2/0", tmp_path / "k.json", 3, workers=1)
    benchmarked = parse(argv[3:], {**_base_env(), **env})
    for name in {opt.name for opt in OPTIONS} - PER_DEPLOYMENT - PER_STACK:
        assert getattr(benchmarked, name) == getattr(deployed, name), name
