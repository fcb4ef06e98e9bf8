"""Upstream behaviour: holding requests while no vLLM is ready, client disconnects, drain on SIGTERM, the read
timeout and an upstream restarted under a pooled connection."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time

import httpx
import openai
import pytest

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


def test_stream_cut_by_the_upstream_ends_with_an_error_event(start_gateway: GatewayFactory) -> None:
    """vLLM dies mid-stream (the connection drops): the official client must raise, not return partial text."""
    with simulator("--stream-drop-after", "3", "--output-tokens", "10") as dying:
        gateway = start_gateway(dying.url)
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEY, max_retries=0)
        texts: list[str] = []
        with pytest.raises(openai.APIError) as raised:
            for chunk in client.completions.create(model=MODEL, prompt="cut short", max_tokens=10, stream=True):
                texts.append(chunk.choices[0].text)
        assert len(texts) == 3
        assert raised.value.body["code"] == "upstream_stream_cut"  # type: ignore[index]
        with httpx.stream(
            "POST",
            gateway.url + COMPLETIONS,
            json={"model": MODEL, "prompt": "x", "stream": True},
            headers=AUTH,
            timeout=10,
        ) as resp:
            stream = b"".join(resp.iter_bytes())
        # OpenAI's streaming error format, and no [DONE]: the answer is not complete.
        assert stream.rstrip().splitlines()[-1].startswith(b'data: {"error":{"message":')
        assert b"[DONE]" not in stream


class _Hammer:
    """Clients opening a new connection for every request until stopped, recording what each connection that
    was accepted (connect() succeeded) got back: the raw response, or b"" when it was closed unanswered."""

    def __init__(self, port: int, clients: int) -> None:
        self.port = port
        self.answers: list[bytes] = []
        self.refused = 0
        self.stop = threading.Event()
        body = json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 1}).encode()
        self.request = (
            f"POST {COMPLETIONS} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            except OSError:  # refused, or no handshake: never accepted
                self.refused += 1
                time.sleep(0.01)
                continue
            received = b""
            with sock, contextlib.suppress(OSError):
                sock.settimeout(10)
                sock.sendall(self.request)
                while data := sock.recv(65536):
                    received += data
            self.answers.append(received)

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)


def test_drain_with_workers_answers_every_accepted_connection(start_gateway: GatewayFactory) -> None:
    """One worker streams, the other has nothing in flight, while clients keep connecting through SIGTERM: every
    connection the gateway accepted gets an answer, the real one or 503 `draining` with `Connection: close`."""
    with simulator("--itl-ms", "40", "--output-tokens", "30") as slow:
        gateway = start_gateway(slow.url, WORKERS="2")
        body = {"model": MODEL, "prompt": "in flight", "stream": True}
        with httpx.stream("POST", gateway.url + COMPLETIONS, json=body, headers=AUTH, timeout=20) as resp:
            chunks = resp.iter_bytes()
            first = next(chunks)
            hammer = _Hammer(gateway.port, clients=4)
            time.sleep(0.3)
            gateway.send_signal(signal.SIGTERM)
            stream = first + b"".join(chunks)
            assert gateway.process.wait(20) == 0
        hammer.join()
    assert stream.rstrip().endswith(b"data: [DONE]")
    assert hammer.answers, "no connection was accepted"
    unanswered = [answer for answer in hammer.answers if b"\r\n\r\n" not in answer]
    assert not unanswered, f"{len(unanswered)} of {len(hammer.answers)} accepted connections got no answer"
    for answer in hammer.answers:
        head, _, payload = answer.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        assert status == b"200" or (status == b"503" and b"connection: close" in head.lower()), head
        if status == b"503":
            assert json.loads(payload)["error"]["code"] == "draining"
