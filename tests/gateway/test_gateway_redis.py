"""Rate limits shared by gateway processes through Redis, and the response cache (hit, miss, fail-open)."""

from __future__ import annotations

import hashlib
import json
import socket
import time

import httpx

from serving import processes
from serving.processes import ManagedProcess

from .conftest import KEY, LIMITED_KEY, LIMITED_RPM, MODEL, TPM_KEY, GatewayFactory, metric

COMPLETIONS = "/v1/completions"


def _post(gateway: ManagedProcess, body: object, key: str = KEY) -> httpx.Response:
    return httpx.post(gateway.url + COMPLETIONS, json=body, headers={"authorization": f"Bearer {key}"}, timeout=10)


def _redis(port: int, *command: str) -> bytes:
    """A raw RESP command, so the test reads what reached Redis without going through the gateway's client."""
    payload = f"*{len(command)}\r\n" + "".join(f"${len(c)}\r\n{c}\r\n" for c in command)
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(payload.encode())
        time.sleep(0.05)
        return s.recv(65536)


def _cache_key(body: dict[str, object]) -> str:
    """The documented cache key: sha256 of the request with sorted keys, without stream and user."""
    normalised = {k: v for k, v in body.items() if k not in ("stream", "stream_options", "user")}
    digest = hashlib.sha256(json.dumps(normalised, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"cache:{'sse' if body.get('stream') else 'json'}:{digest}"


def _wait_away_from_minute_boundary() -> None:
    # Limits use one-minute windows; a test straddling a boundary would see its counter reset.
    if time.time() % 60 > 55:
        time.sleep(61 - time.time() % 60)


def test_rpm_limit_holds_across_two_gateways(
    start_gateway: GatewayFactory, upstream: ManagedProcess, redis_url: str, redis_server: ManagedProcess
) -> None:
    first, second = start_gateway(upstream.url, redis_url), start_gateway(upstream.url, redis_url)
    body = {"model": MODEL, "prompt": "x", "max_tokens": 1}
    _wait_away_from_minute_boundary()
    statuses = [_post(gw, body, LIMITED_KEY).status_code for gw in (first, second, first)]
    assert statuses == [200] * LIMITED_RPM
    refused = _post(second, body, LIMITED_KEY)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert _post(first, body, LIMITED_KEY).status_code == 429
    # Other keys have their own counters.
    assert _post(first, body).status_code == 200
    assert metric(second.url, "gateway_rate_limited_total", 'kind="rpm"') == 1
    window = int(time.time() // 60)
    assert b"req" in _redis(redis_server.port, "HGETALL", f"rl:limited:{window}")


def test_tpm_limit_counts_prompt_and_max_tokens(gateway: ManagedProcess) -> None:
    _wait_away_from_minute_boundary()
    assert _post(gateway, {"model": MODEL, "prompt": "x", "max_tokens": 300}, TPM_KEY).status_code == 200
    refused = _post(gateway, {"model": MODEL, "prompt": "x", "max_tokens": 300}, TPM_KEY)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_tpm"
    assert "retry-after" in refused.headers


def test_deterministic_request_cached_then_served_from_redis(
    gateway: ManagedProcess, upstream: ManagedProcess, redis_server: ManagedProcess
) -> None:
    body = {"model": MODEL, "prompt": "cache me", "max_tokens": 6, "temperature": 0}
    generated = metric(upstream.url, "vllm:generation_tokens_total")
    miss = _post(gateway, body)
    assert miss.status_code == 200 and miss.headers["x-cache"] == "miss"
    hit = _post(gateway, {**body, "user": "someone-else"})  # `user` does not change the answer
    assert hit.status_code == 200 and hit.headers["x-cache"] == "hit"
    assert hit.content == miss.content
    assert metric(upstream.url, "vllm:generation_tokens_total") == generated + 6
    stored = _redis(redis_server.port, "GET", _cache_key(body))
    assert miss.content in stored
    assert 0 < int(_redis(redis_server.port, "TTL", _cache_key(body))[1:]) <= 300
    assert metric(gateway.url, "gateway_cache_requests_total", 'result="hit"') >= 1
    # Writing the entry after the answer went out is not mistaken for the client going away.
    assert metric(gateway.url, "gateway_requests_total", 'status="499"') == 0


def test_non_deterministic_request_not_cached(gateway: ManagedProcess, redis_server: ManagedProcess) -> None:
    body = {"model": MODEL, "prompt": "random please", "max_tokens": 2, "temperature": 0.8}
    for _ in range(2):
        resp = _post(gateway, body)
        assert resp.status_code == 200 and "x-cache" not in resp.headers
    assert _redis(redis_server.port, "EXISTS", _cache_key(body)) == b":0\r\n"
    assert _redis(redis_server.port, "EXISTS", _cache_key({**body, "temperature": 0})) == b":0\r\n"


def test_fixed_seed_is_cached(gateway: ManagedProcess) -> None:
    body = {"model": MODEL, "prompt": "seeded", "max_tokens": 2, "temperature": 1.0, "seed": 7}
    assert _post(gateway, body).headers["x-cache"] == "miss"
    assert _post(gateway, body).headers["x-cache"] == "hit"


def test_streamed_request_replayed_from_cache_as_sse(gateway: ManagedProcess, upstream: ManagedProcess) -> None:
    body = {"model": MODEL, "prompt": "stream me", "max_tokens": 5, "temperature": 0, "stream": True}

    def stream() -> tuple[str, list[bytes]]:
        headers = {"authorization": f"Bearer {KEY}"}
        with httpx.stream("POST", gateway.url + COMPLETIONS, json=body, headers=headers, timeout=10) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            return resp.headers["x-cache"], list(resp.iter_bytes())

    first_cache, first = stream()
    generated = metric(upstream.url, "vllm:generation_tokens_total")
    second_cache, second = stream()
    assert (first_cache, second_cache) == ("miss", "hit")
    assert b"".join(second) == b"".join(first)
    assert b"".join(second).rstrip().endswith(b"data: [DONE]")
    assert metric(upstream.url, "vllm:generation_tokens_total") == generated


def test_cache_fails_open_when_redis_stops(start_gateway: GatewayFactory, upstream: ManagedProcess) -> None:
    with processes.start_redis(processes.free_port()) as redis_proc:
        gateway = start_gateway(upstream.url, f"redis://127.0.0.1:{redis_proc.port}/0")
        body = {"model": MODEL, "prompt": "fail open", "max_tokens": 2, "temperature": 0}
        assert _post(gateway, body).headers["x-cache"] == "miss"
        assert _post(gateway, body).headers["x-cache"] == "hit"
        assert metric(gateway.url, "gateway_cache_requests_total", 'result="error"') == 0
        redis_proc.terminate()
        for prompt in ("after stop", "after stop", "another"):
            resp = _post(gateway, {**body, "prompt": prompt})
            assert resp.status_code == 200, resp.text
            assert resp.json()["choices"][0]["text"]
    assert metric(gateway.url, "gateway_cache_requests_total", 'result="error"') >= 3


def test_without_redis_requests_are_served_uncached(start_gateway: GatewayFactory, upstream: ManagedProcess) -> None:
    gateway = start_gateway(upstream.url, "")
    resp = _post(gateway, {"model": MODEL, "prompt": "x", "max_tokens": 1, "temperature": 0})
    assert resp.status_code == 200 and "x-cache" not in resp.headers
    assert metric(gateway.url, "gateway_cache_requests_total") == 0
