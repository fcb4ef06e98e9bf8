"""Dev's example app (examples/flask-api, seed 000's Flask API): what the stack builds must run as the pod
expects and call the gateway the way the gateway serves."""

import importlib.util
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from components.kube import RUN_AS_USER
from stacks.loader import read_stack_file, stack_file

APP_DIR = Path(__file__).resolve().parent.parent / "examples" / "flask-api"


def _load_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flask_api_example", APP_DIR / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_gateway() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An OpenAI-compatible endpoint on 127.0.0.1 that records each request and answers one completion."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
            reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": "She has two cats."}}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(reply.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_check_asks_the_gateway_for_a_deterministic_correction(
    fake_gateway: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = fake_gateway
    monkeypatch.setenv("GATEWAY_URL", url)
    monkeypatch.setenv("GATEWAY_API_KEY", "sk-test")
    client = _load_app().app.test_client()
    response = client.post("/demo/check", json={"text": "She have two cat."})
    assert response.status_code == 200
    assert response.get_json() == {"text": "She have two cat.", "corrected": "She has two cats."}
    (request,) = seen
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test"
    # temperature 0: the gateway caches only deterministic requests.
    assert request["body"]["temperature"] == 0
    assert request["body"]["messages"][-1] == {"role": "user", "content": "She have two cat."}


def test_health_and_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_URL", "http://127.0.0.1:9")
    client = _load_app().app.test_client()
    assert client.get("/health").status_code == 200
    assert client.post("/demo/check", json={"words": "x"}).status_code == 400
    assert client.post("/demo/check", json={"text": "x"}).status_code == 502, "no gateway is a 502, not a 500"


def test_image_runs_as_the_pod_expects() -> None:
    """The Deployment enforces runAsNonRoot as uid RUN_AS_USER and probes the configured port."""
    dockerfile = (APP_DIR / "Dockerfile").read_text()
    (app,) = read_stack_file(stack_file(APP_DIR.parent.parent, "dev"))["serving"]["apps"]
    assert f"USER {RUN_AS_USER}" in dockerfile
    assert f"EXPOSE {app['port']}" in dockerfile and f"0.0.0.0:{app['port']}" in dockerfile
    assert app["build"]["context"] == "examples/flask-api"
