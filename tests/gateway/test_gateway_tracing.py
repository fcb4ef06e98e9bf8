"""OpenTelemetry: spans are exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest

from serving.processes import ManagedProcess

from .conftest import KEY, MODEL, GatewayFactory, wait_for


class _Collector(BaseHTTPRequestHandler):
    """A stand-in OTLP/HTTP receiver (the simulator has none): keeps the raw protobuf bodies posted to it."""

    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def test_spans_exported_when_endpoint_set(
    start_gateway: GatewayFactory, upstream: ManagedProcess, collector: ThreadingHTTPServer
) -> None:
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
    gateway = start_gateway(
        upstream.url,
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "gw-test", "OTEL_BSP_SCHEDULE_DELAY": "100"},
    )
    resp = httpx.post(
        gateway.url + "/v1/completions",
        json={"model": MODEL, "prompt": "trace me", "max_tokens": 1},
        headers={"authorization": f"Bearer {KEY}", "x-request-id": "trace-req-1"},
    )
    assert resp.status_code == 200
    wait_for(lambda: any(b"trace-req-1" in body for _, body in _Collector.received), timeout=10)
    path, body = next((p, b) for p, b in _Collector.received if b"trace-req-1" in b)
    assert path == "/v1/traces"
    assert b"gw-test" in body and b"POST /v1/completions" in body
