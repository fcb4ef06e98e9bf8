"""Rate limits shared by gateway processes through Redis, and the response cache (hit, miss, fail-open)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from serving import processes
from serving.gateway.store import BACKOFF_S
from serving.processes import ManagedProcess

from .conftest import (
    KEY,
    LIMITED_KEY,
    LIMITED_RPM,
    MODEL,
    TPM_KEY,
    GatewayFactory,
    metric,
    redis_url_of,
    simulator,
    wait_for,
)

COMPLETIONS = "/v1/completions"
# Settings that send every request to Redis: no local copies of cache entries, no rate-limit leases.
EVERY_REQUEST_TO_REDIS = {"LOCAL_CACHE_MB": "0", "RATE_LIMIT_LEASE_PERCENT": "0"}
# For tests that count what Redis admits: on a busy machine a 50 ms call can time out, and the gateway then admits
# without counting (fail open, tested on its own below).
PATIENT = {"REDIS_TIMEOUT_S": "2"}


def _post(gateway: ManagedProcess, body: object, key: str = KEY) -> httpx.Response:
    return httpx.post(gateway.url + COMPLETIONS, json=body, headers={"authorization": f"Bearer {key}"}, timeout=10)


def _redis(port: int, *command: str, setup: Sequence[Sequence[str]] = ()) -> bytes:
    """A raw RESP command, so the test reads what reached Redis without going through the gateway's client; the
    `setup` commands (AUTH, SELECT) go first on the same connection and their replies lead the returned bytes."""
    payload = "".join(f"*{len(cmd)}\r\n" + "".join(f"${len(c)}\r\n{c}\r\n" for c in cmd) for cmd in (*setup, command))
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(payload.encode())
        time.sleep(0.05)
        return s.recv(65536)


def _cache_key(body: dict[str, object], route: str = "completions") -> str:
    """The documented cache key: the route, the answer's form, and sha256 of the request with sorted keys without
    `stream` and `user`."""
    normalised = {k: v for k, v in body.items() if k not in ("stream", "user")}
    digest = hashlib.sha256(json.dumps(normalised, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"cache:{route}:{'sse' if body.get('stream') else 'json'}:{digest}"


def _wait_away_from_minute_boundary() -> None:
    # Limits use one-minute windows; a test straddling a boundary would see its counter reset. 20 s: a hundred
    # requests in a row take several seconds on a busy machine.
    if time.time() % 60 > 40:
        time.sleep(61 - time.time() % 60)


def test_rpm_limit_holds_across_two_gateways(
    start_gateway: GatewayFactory, upstream: ManagedProcess, redis_url: str, redis_server: ManagedProcess
) -> None:
    first, second = (start_gateway(upstream.url, redis_url, **PATIENT) for _ in "ab")
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


def test_leases_admit_no_more_than_the_limit_across_two_gateways(
    start_gateway: GatewayFactory, upstream: ManagedProcess, own_redis: ManagedProcess
) -> None:
    limit, lease = 100, 10  # 10 % of the limit per lease
    limits = {"RATE_LIMIT_RPM": str(limit), "RATE_LIMIT_LEASE_PERCENT": "10", **PATIENT}
    gateways = [start_gateway(upstream.url, redis_url_of(own_redis), **limits) for _ in "ab"]
    body = {"model": MODEL, "prompt": "x", "max_tokens": 1}
    _wait_away_from_minute_boundary()
    statuses = [_post(gateways[i % 2], body).status_code for i in range(limit + 30)]
    counted = _redis(own_redis.port, "HGET", f"rl:team-a:{int(time.time() // 60)}", "req")
    assert set(statuses) == {200, 429}
    # Never more than the limit; less only by what a gateway holds unspent (at most a lease and a half each).
    assert limit - 2 * (lease + lease // 2) <= statuses.count(200) <= limit
    assert counted == f"${len(str(limit))}\r\n{limit}\r\n".encode()
    # Most requests were admitted from a lease, without a round trip to Redis.
    leases = sum(metric(gw.url, "gateway_rate_limit_leases_total") for gw in gateways)
    assert leases <= limit // lease + 2


def test_unspent_lease_is_given_back_at_shutdown(
    start_gateway: GatewayFactory, upstream: ManagedProcess, own_redis: ManagedProcess
) -> None:
    limits = {"RATE_LIMIT_RPM": "1000", "RATE_LIMIT_TPM": "100000", "RATE_LIMIT_LEASE_PERCENT": "10", **PATIENT}
    gateway = start_gateway(upstream.url, redis_url_of(own_redis), **limits)
    _wait_away_from_minute_boundary()
    counter = f"rl:team-a:{int(time.time() // 60)}"
    for _ in range(30):  # each costs 100 tokens: a 1-token prompt and max_tokens 99
        assert _post(gateway, {"model": MODEL, "prompt": "x", "max_tokens": 99}).status_code == 200
    # One round trip took one lease of each limit: 100 requests and 10,000 tokens.
    assert _redis(own_redis.port, "HMGET", counter, "req", "tok") == b"*2\r\n$3\r\n100\r\n$5\r\n10000\r\n"
    assert metric(gateway.url, "gateway_rate_limit_leases_total") == 1
    assert gateway.terminate() == 0
    assert _redis(own_redis.port, "HMGET", counter, "req", "tok") == b"*2\r\n$2\r\n30\r\n$4\r\n3000\r\n"
    assert 0 < int(_redis(own_redis.port, "TTL", counter)[1:]) <= 120


def test_tpm_limit_counts_prompt_and_max_tokens(gateway: ManagedProcess) -> None:
    _wait_away_from_minute_boundary()
    assert _post(gateway, {"model": MODEL, "prompt": "x", "max_tokens": 300}, TPM_KEY).status_code == 200
    refused = _post(gateway, {"model": MODEL, "prompt": "x", "max_tokens": 300}, TPM_KEY)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_tpm"
    assert "retry-after" in refused.headers


def test_deterministic_request_cached_in_redis_then_copied_locally(
    start_gateway: GatewayFactory,
    gateway: ManagedProcess,
    upstream: ManagedProcess,
    redis_url: str,
    redis_server: ManagedProcess,
) -> None:
    body = {"model": MODEL, "prompt": "cache me", "max_tokens": 6, "temperature": 0}
    generated = metric(upstream.url, "vllm:generation_tokens_total")
    miss = _post(gateway, body)
    assert miss.status_code == 200 and miss.headers["x-cache"] == "miss"
    stored = _redis(redis_server.port, "GET", _cache_key(body))
    assert miss.content in stored
    assert 0 < int(_redis(redis_server.port, "TTL", _cache_key(body))[1:]) <= 3600  # the default, one hour
    # Another gateway process finds the entry in Redis and keeps a copy: its second hit never asks Redis.
    other = start_gateway(upstream.url, redis_url)
    from_redis = _post(other, {**body, "user": "someone-else"})  # `user` does not change the answer
    assert from_redis.status_code == 200 and from_redis.headers["x-cache"] == "hit"
    assert from_redis.content == miss.content
    assert metric(other.url, "gateway_cache_local_hits_total") == 0
    from_memory = _post(other, body)
    assert from_memory.headers["x-cache"] == "hit" and from_memory.content == miss.content
    assert metric(other.url, "gateway_cache_local_hits_total") == 1
    assert metric(other.url, "gateway_cache_requests_total", 'result="hit"') == 2
    assert metric(upstream.url, "vllm:generation_tokens_total") == generated + 6
    # Writing the entry after the answer went out is not mistaken for the client going away.
    assert metric(gateway.url, "gateway_requests_total", 'status="499"') == 0


def test_local_copy_ends_with_the_redis_entry(
    start_gateway: GatewayFactory, upstream: ManagedProcess, own_redis: ManagedProcess
) -> None:
    writer, reader = (start_gateway(upstream.url, redis_url_of(own_redis), CACHE_TTL_S="2") for _ in "ab")
    body = {"model": MODEL, "prompt": "short-lived", "max_tokens": 2, "temperature": 0}
    assert _post(writer, body).headers["x-cache"] == "miss"
    wait_for(lambda: _post(writer, body).headers["x-cache"] == "hit")
    time.sleep(1.2)
    # The reader copies the entry with what is left of its TTL, not a fresh one.
    assert _post(reader, body).headers["x-cache"] == "hit"
    time.sleep(1.0)
    assert _post(reader, body).headers["x-cache"] == "miss"


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


def test_cache_fails_open_when_redis_stops(
    start_gateway: GatewayFactory, upstream: ManagedProcess, own_redis: ManagedProcess
) -> None:
    gateway = start_gateway(upstream.url, redis_url_of(own_redis))
    body = {"model": MODEL, "prompt": "fail open", "max_tokens": 2, "temperature": 0}
    assert _post(gateway, body).headers["x-cache"] == "miss"
    assert _post(gateway, body).headers["x-cache"] == "hit"
    assert metric(gateway.url, "gateway_cache_requests_total", 'result="error"') == 0
    own_redis.terminate()
    # What the worker copied from Redis is still answered from memory.
    assert _post(gateway, body).headers["x-cache"] == "hit"
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


def test_unresponsive_redis_costs_one_timeout(start_gateway: GatewayFactory, upstream: ManagedProcess) -> None:
    # Accepts connections (the kernel completes the handshake) but never answers: a hung primary.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        gateway = start_gateway(upstream.url, f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        body = {"model": MODEL, "prompt": "redis hangs", "max_tokens": 2, "temperature": 0}
        started = time.monotonic()
        resp = _post(gateway, body)
        elapsed = time.monotonic() - started
    assert resp.status_code == 200, resp.text
    assert elapsed < 0.5  # one 50 ms call timeout, then fail open
    assert metric(gateway.url, "gateway_cache_requests_total", 'result="error"') == 1


def test_admit_script_reloaded_after_script_flush(
    start_gateway: GatewayFactory, upstream: ManagedProcess, redis_url: str, redis_server: ManagedProcess
) -> None:
    gateway = start_gateway(upstream.url, redis_url, **EVERY_REQUEST_TO_REDIS)
    body = {"model": MODEL, "prompt": "after a script flush", "max_tokens": 2, "temperature": 0}
    errors = metric(gateway.url, "gateway_cache_requests_total", 'result="error"')
    assert _post(gateway, body).headers["x-cache"] == "miss"
    wait_for(lambda: _redis(redis_server.port, "EXISTS", _cache_key(body)) == b":1\r\n")
    # What a Redis restart or a failover to a fresh replica looks like: the script cache is empty.
    assert _redis(redis_server.port, "SCRIPT", "FLUSH") == b"+OK\r\n"
    assert _post(gateway, body).headers["x-cache"] == "hit"
    assert metric(gateway.url, "gateway_cache_requests_total", 'result="error"') == errors


def test_redis_password_and_database(start_gateway: GatewayFactory, upstream: ManagedProcess) -> None:
    with processes.start_redis(processes.free_port()) as redis_proc:
        assert _redis(redis_proc.port, "CONFIG", "SET", "requirepass", "s3cret") == b"+OK\r\n"
        url = f"redis://127.0.0.1:{redis_proc.port}/3"
        gateway = start_gateway(upstream.url, url, REDIS_PASSWORD="s3cret")
        body = {"model": MODEL, "prompt": "behind AUTH", "max_tokens": 2, "temperature": 0}
        assert _post(gateway, body).headers["x-cache"] == "miss"
        assert _post(gateway, body).headers["x-cache"] == "hit"
        auth = [("AUTH", "s3cret"), ("SELECT", "3")]
        assert _redis(redis_proc.port, "EXISTS", _cache_key(body), setup=auth) == b"+OK\r\n+OK\r\n:1\r\n"
        wrong = start_gateway(upstream.url, url, REDIS_PASSWORD="wrong")
        assert _post(wrong, body).status_code == 200
        assert metric(wrong.url, "gateway_cache_requests_total", 'result="error"') == 1


def test_redis_over_unix_socket(start_gateway: GatewayFactory, upstream: ManagedProcess, tmp_path: Path) -> None:
    path = tmp_path / "redis.sock"
    with processes.start_redis(processes.free_port(), "--unixsocket", str(path)) as redis_proc:
        gateway = start_gateway(upstream.url, f"unix://{path}?db=2")
        body = {"model": MODEL, "prompt": "over a unix socket", "max_tokens": 2, "temperature": 0}
        assert _post(gateway, body).headers["x-cache"] == "miss"
        assert _post(gateway, body).headers["x-cache"] == "hit"
        wait_for(
            lambda: _redis(redis_proc.port, "EXISTS", _cache_key(body), setup=[("SELECT", "2")]) == b"+OK\r\n:1\r\n"
        )


def test_rediss_checks_the_certificate(start_gateway: GatewayFactory, upstream: ManagedProcess, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    self_signed = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    names = ["-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run([*self_signed, *names, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    tls_port = processes.free_port()
    tls = ["--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    tls += ["--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
    with processes.start_redis(processes.free_port(), *tls):
        url = f"rediss://127.0.0.1:{tls_port}/0"
        body = {"model": MODEL, "prompt": "over TLS", "max_tokens": 2, "temperature": 0}
        trusting = start_gateway(upstream.url, url, env={"SSL_CERT_FILE": str(cert)})
        assert _post(trusting, body).headers["x-cache"] == "miss"
        assert _post(trusting, body).headers["x-cache"] == "hit"
        # Without the CA the self-signed certificate is refused: the gateway fails open rather than trust it.
        untrusting = start_gateway(upstream.url, url)
        assert _post(untrusting, body).status_code == 200
        assert metric(untrusting.url, "gateway_cache_requests_total", 'result="error"') == 1


class _FreezableProxy:
    """A TCP proxy to Redis whose open connections can be frozen: they stay open but forward nothing, like
    connections to a primary that vanished in a failover. Connections made after the freeze work."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.gates: list[threading.Event] = []
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            target = socket.create_connection(("127.0.0.1", self.target_port))
            gate = threading.Event()
            gate.set()
            self.gates.append(gate)
            self.sockets += [client, target]
            for src, dst in ((client, target), (target, client)):
                threading.Thread(target=self._pipe, args=(src, dst, gate), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, gate: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                gate.wait()
                dst.sendall(data)

    def freeze(self) -> None:
        for gate in self.gates:
            gate.clear()

    def close(self) -> None:
        self.server.close()
        for sock in self.sockets:
            sock.close()
        for gate in self.gates:
            gate.set()


@pytest.fixture
def freezable_redis(redis_server: ManagedProcess) -> Iterator[_FreezableProxy]:
    proxy = _FreezableProxy(redis_server.port)
    yield proxy
    proxy.close()


def test_hung_redis_connection_is_replaced(
    start_gateway: GatewayFactory,
    upstream: ManagedProcess,
    redis_server: ManagedProcess,
    freezable_redis: _FreezableProxy,
) -> None:
    gateway = start_gateway(upstream.url, f"redis://127.0.0.1:{freezable_redis.port}/0", **EVERY_REQUEST_TO_REDIS)
    body = {"model": MODEL, "prompt": "failover", "max_tokens": 2, "temperature": 0}
    assert _post(gateway, body).headers["x-cache"] == "miss"
    wait_for(lambda: _redis(redis_server.port, "EXISTS", _cache_key(body)) == b":1\r\n")
    freezable_redis.freeze()
    assert _post(gateway, body).status_code == 200  # one timeout on the hung connection, served uncached
    time.sleep(BACKOFF_S + 0.1)
    assert _post(gateway, body).headers["x-cache"] == "hit"  # through a new connection


# A TCP proxy that delivers every read `delay` seconds after it came in, in order: latency, not a throttle.
_DELAYING_PROXY = """
import asyncio, sys, time
listen, target, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
async def read(reader, queue):
    while data := await reader.read(65536):
        queue.put_nowait((time.monotonic() + delay, data))
    queue.put_nowait((0, b""))
async def write(queue, writer):
    while True:
        due, data = await queue.get()
        if not data:
            writer.close()
            return
        await asyncio.sleep(due - time.monotonic())
        writer.write(data)
async def pipe(reader, writer):
    queue = asyncio.Queue()
    await asyncio.gather(read(reader, queue), write(queue, writer))
async def handle(reader, writer):
    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    await server.serve_forever()
asyncio.run(main())
"""


async def _concurrent_statuses(gateway: ManagedProcess, clients: int, requests: int) -> list[int]:
    """`requests` requests sent by `clients` concurrent clients, each on a connection of its own."""
    body = {"model": MODEL, "prompt": "x", "max_tokens": 1}
    queue = list(range(requests))
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30, headers={"authorization": f"Bearer {KEY}"}) as client:

        async def one_client() -> None:
            while queue:
                queue.pop()
                statuses.append((await client.post(gateway.url + COMPLETIONS, json=body)).status_code)

        await asyncio.gather(*(one_client() for _ in range(clients)))
    return statuses


@pytest.fixture
def far_redis(own_redis: ManagedProcess) -> Iterator[ManagedProcess]:
    """`own_redis` 5 ms away each way, through a proxy in a process of its own."""
    port = processes.free_port()
    argv = [sys.executable, "-c", _DELAYING_PROXY, str(port), str(own_redis.port), "0.005"]
    with processes.start(argv, port, ready_path=None) as proxy:
        yield proxy


def test_concurrent_requests_wait_for_one_lease_across_two_gateways(
    start_gateway: GatewayFactory, upstream: ManagedProcess, own_redis: ManagedProcess, far_redis: ManagedProcess
) -> None:
    """The issue's case: a 1,000/minute key, leases of 1 % (10 requests). 100 concurrent requests on the first
    replica used to take 84 leases (840 of the 1,000); the second then refused most of its requests. Redis is
    5 ms away, so that requests arrive while a lease request is on its way, as they do in a busy replica."""
    limit, lease = 1000, 10
    limits = {"RATE_LIMIT_RPM": str(limit), "RATE_LIMIT_TPM": "0", "RATE_LIMIT_LEASE_PERCENT": "1", **PATIENT}
    first, second = (start_gateway(upstream.url, redis_url_of(far_redis), **limits) for _ in "ab")
    _wait_away_from_minute_boundary()  # both bursts in one window
    counter = f"rl:team-a:{int(time.time() // 60)}"

    burst = asyncio.run(_concurrent_statuses(first, clients=100, requests=100))
    assert burst == [200] * 100
    # One lease request in flight at a time: 10 leases of 10 cover the 100, plus at most one top-up ahead.
    leases_first = metric(first.url, "gateway_rate_limit_leases_total")
    assert 10 <= leases_first <= 11
    taken = int(_redis(own_redis.port, "HGET", counter, "req").split(b"\r\n")[1])
    assert taken == leases_first * lease

    rest = asyncio.run(_concurrent_statuses(second, clients=150, requests=950))
    admitted = rest.count(200)
    assert set(rest) <= {200, 429}
    # The limit holds across both; the second replica is short only of what the first still holds (at most a
    # lease and a half) and of what it holds itself.
    assert 100 + admitted <= limit
    assert admitted >= limit - 100 - 2 * (lease + lease // 2)
    assert int(_redis(own_redis.port, "HGET", counter, "req").split(b"\r\n")[1]) <= limit


def _stream(gateway: ManagedProcess, path: str, body: dict[str, object]) -> tuple[str, bytes]:
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx.stream("POST", gateway.url + path, json={**body, "stream": True}, headers=headers, timeout=10) as resp:
        assert resp.status_code == 200
        return resp.headers.get("x-cache", ""), b"".join(resp.iter_bytes())


def test_stream_with_an_error_event_is_not_cached(start_gateway: GatewayFactory, own_redis: ManagedProcess) -> None:
    """vLLM reports a failed generation in-band, then ends the stream with [DONE]: never replay that."""
    body = {"model": MODEL, "prompt": "fails mid-way", "max_tokens": 8, "temperature": 0}
    with simulator("--stream-error-after", "3") as failing:
        gateway = start_gateway(failing.url, redis_url_of(own_redis))
        first_cache, first = _stream(gateway, COMPLETIONS, body)
        assert first_cache == "miss"
        assert b'data: {"error"' in first and first.rstrip().endswith(b"data: [DONE]")
        second_cache, _ = _stream(gateway, COMPLETIONS, body)
    assert second_cache == "miss"
    assert _redis(own_redis.port, "DBSIZE") == b":1\r\n"  # the rate-limit counter, no cache entry


def test_same_body_on_both_routes_gets_each_route_its_own_answer(gateway: ManagedProcess) -> None:
    body = {"model": MODEL, "prompt": "route", "messages": [{"role": "user", "content": "route"}], "temperature": 0}
    headers = {"authorization": f"Bearer {KEY}"}
    completion = httpx.post(gateway.url + COMPLETIONS, json={**body, "max_tokens": 3}, headers=headers)
    chat = httpx.post(gateway.url + "/v1/chat/completions", json={**body, "max_tokens": 3}, headers=headers)
    assert (completion.headers["x-cache"], chat.headers["x-cache"]) == ("miss", "miss")
    assert completion.json()["object"] == "text_completion"
    assert chat.json()["object"] == "chat.completion"


def test_usage_asked_for_in_a_stream_is_never_replayed_without_it(gateway: ManagedProcess) -> None:
    body: dict[str, object] = {"model": MODEL, "prompt": "usage please", "max_tokens": 3, "temperature": 0}
    assert _stream(gateway, COMPLETIONS, body)[0] == "miss"
    assert _stream(gateway, COMPLETIONS, body)[0] == "hit"
    cache, with_usage = _stream(gateway, COMPLETIONS, {**body, "stream_options": {"include_usage": True}})
    assert cache == "miss"
    assert b'"usage"' in with_usage
    again = _stream(gateway, COMPLETIONS, {**body, "stream_options": {"include_usage": True}})
    assert again == ("hit", with_usage)
