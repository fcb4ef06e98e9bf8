"""Upstream behaviour: holding requests while no vLLM is ready, client disconnects, drain on SIGTERM, the read
timeout and an upstream restarted under a pooled connection."""

from __future__ import annotations

import contextlib
import signal
import threading
import time

import httpx

from serving import processes

from .conftest import KEY, MODEL, GatewayFactory, metric, simulator, wait_for

AUTH = {"authorization": f"Bearer {KEY}"}
COMPLETIONS = "/v1/completions"


def test_request_held_until_upstream_starts(start_gateway: GatewayFactory) -> None:
    upstream_port = processes.free_port()
    gateway = start_gateway(f"http://127.0.0.1:{upstream_port}", HOLD_TIMEOUT_S="20")
    result: dict[str, httpx.Response] = {}

    def call() -> None:
        body = {"model": MODEL, "prompt": "cold start", "max_tokens": 3}
        result["resp"] = httpx.post(gateway.url + COMPLETIONS, json=body, headers=AUTH, timeout=30)

    caller = threading.Thread(target=call)
    caller.start()
    wait_for(lambda: metric(gateway.url, "gateway_pending_requests") == 1)
    assert httpx.get(gateway.url + "/ready").status_code == 200  # holding is not a reason to leave the Service
    with simulator(port=upstream_port):
        caller.join(20)
        assert result["resp"].status_code == 200, result["resp"].text
        assert result["resp"].json()["choices"][0]["text"]
    assert metric(gateway.url, "gateway_pending_requests") == 0


def test_503_with_retry_after_when_upstream_never_comes(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(f"http://127.0.0.1:{processes.free_port()}", HOLD_TIMEOUT_S="0.5")
    started = time.monotonic()
    resp = httpx.post(gateway.url + COMPLETIONS, json={"model": MODEL, "prompt": "x"}, headers=AUTH, timeout=10)
    assert time.monotonic() - started >= 0.5  # it was held, not refused at once
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "no_upstream"
    assert int(resp.headers["retry-after"]) >= 1
    assert metric(gateway.url, "gateway_requests_total", 'status="503"') == 1
    assert metric(gateway.url, "gateway_pending_requests") == 0


def test_client_disconnect_mid_stream_aborts_upstream(start_gateway: GatewayFactory) -> None:
    with simulator("--itl-ms", "50", "--output-tokens", "200") as slow:
        gateway = start_gateway(slow.url)
        body = {"model": MODEL, "prompt": "long", "stream": True}
        with httpx.stream("POST", gateway.url + COMPLETIONS, json=body, headers=AUTH, timeout=10) as resp:
            assert resp.status_code == 200
            body_iter = resp.iter_bytes()
            assert next(body_iter).startswith(b"data: ")
            assert metric(slow.url, "vllm:num_requests_running") == 1
        wait_for(lambda: metric(slow.url, "vllm:request_success_total", 'finished_reason="abort"') == 1, timeout=5)
        assert metric(slow.url, "vllm:num_requests_running") == 0
        assert metric(slow.url, "vllm:request_success_total", 'finished_reason="length"') == 0


def test_client_disconnect_during_plain_request_aborts_upstream(start_gateway: GatewayFactory) -> None:
    with simulator("--itl-ms", "50", "--output-tokens", "200") as slow:
        gateway = start_gateway(slow.url)
        body = {"model": MODEL, "prompt": "long"}
        with contextlib.suppress(httpx.ReadTimeout):
            httpx.post(gateway.url + COMPLETIONS, json=body, headers=AUTH, timeout=0.5)
        wait_for(lambda: metric(slow.url, "vllm:request_success_total", 'finished_reason="abort"') == 1, timeout=5)


def test_sigterm_during_stream_drains_then_exits_0(start_gateway: GatewayFactory) -> None:
    with simulator("--itl-ms", "40", "--output-tokens", "40") as slow:
        gateway = start_gateway(slow.url)
        body = {"model": MODEL, "prompt": "drain me", "stream": True}
        with httpx.stream("POST", gateway.url + COMPLETIONS, json=body, headers=AUTH, timeout=10) as resp:
            body_iter = resp.iter_bytes()  # one iterator: a dropped one closes the response
            chunks = [next(body_iter)]
            gateway.send_signal(signal.SIGTERM)
            wait_for(lambda: httpx.get(gateway.url + "/ready").status_code == 503, timeout=2)
            refused = httpx.post(gateway.url + COMPLETIONS, json={"model": MODEL, "prompt": "x"}, headers=AUTH)
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "draining"
            assert gateway.process.poll() is None
            chunks.extend(body_iter)
        stream = b"".join(chunks)
        assert stream.rstrip().endswith(b"data: [DONE]")
        assert stream.count(b"data: ") == 42  # 40 tokens, the final chunk with finish_reason, [DONE]
        assert gateway.process.wait(10) == 0


def test_read_timeout_bounds_gaps_between_upstream_bytes_not_generations(start_gateway: GatewayFactory) -> None:
    with simulator("--itl-ms", "100", "--output-tokens", "8") as slow:
        gateway = start_gateway(slow.url, UPSTREAM_READ_TIMEOUT_S="0.4")
        body = {"model": MODEL, "prompt": "slow", "stream": True}
        with httpx.stream("POST", gateway.url + COMPLETIONS, json=body, headers=AUTH, timeout=10) as resp:
            stream = b"".join(resp.iter_bytes())
        assert stream.rstrip().endswith(b"data: [DONE]")  # 0.7 s in all, but never 0.4 s without a byte
        # Not streamed, the same generation sends nothing until it is done: the gap runs out.
        resp = httpx.post(gateway.url + COMPLETIONS, json={"model": MODEL, "prompt": "slow"}, headers=AUTH, timeout=10)
        assert resp.status_code == 502, resp.text
        assert resp.json()["error"]["code"] == "bad_gateway"
        # The gateway dropped the connection (vLLM aborts) and did not send the request again.
        wait_for(lambda: metric(slow.url, "vllm:request_success_total", 'finished_reason="abort"') == 1, timeout=5)
        time.sleep(0.5)
        assert metric(slow.url, "vllm:request_success_total") == 2


def test_upstream_restarted_between_requests(start_gateway: GatewayFactory) -> None:
    port = processes.free_port()
    body = {"model": MODEL, "prompt": "x", "max_tokens": 2}
    with simulator(port=port) as first:
        gateway = start_gateway(first.url)
        assert httpx.post(gateway.url + COMPLETIONS, json=body, headers=AUTH, timeout=10).status_code == 200
    # The pooled connection to the old process is dead; the next request must not fail on it.
    with simulator(port=port):
        assert httpx.post(gateway.url + COMPLETIONS, json=body, headers=AUTH, timeout=10).status_code == 200
