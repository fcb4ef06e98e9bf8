"""The OpenAI-compatible API through the gateway, and every validation error, with real processes."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest

from serving.processes import ManagedProcess

from .conftest import KEY, MODEL, GatewayFactory, metric

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


def _client(gateway: ManagedProcess, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


def _post(
    gateway: ManagedProcess, path: str, body: object, key: str | None = KEY, headers: dict[str, str] | None = None
) -> httpx.Response:
    auth = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(gateway.url + path, json=body, headers={**auth, **(headers or {})}, timeout=10)


def _error(resp: httpx.Response, status: int) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert {"message", "type", "param", "code"} <= error.keys()
    return error


def test_models_with_openai_client(gateway: ManagedProcess) -> None:
    assert [m.id for m in _client(gateway).models.list()] == [MODEL]


def test_chat_completion_with_openai_client(gateway: ManagedProcess) -> None:
    resp = _client(gateway).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello"}], max_tokens=8
    )
    assert resp.choices[0].message.content
    assert resp.usage is not None and resp.usage.completion_tokens == 8


def test_chat_stream_with_openai_client(gateway: ManagedProcess) -> None:
    stream = _client(gateway).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello"}], max_tokens=5, stream=True
    )
    chunks = list(stream)
    assert len(chunks) >= 5
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    assert chunks[-1].choices[0].finish_reason == "length" or chunks[-2].choices[0].finish_reason == "length"


def test_completion_plain_and_stream_with_openai_client(gateway: ManagedProcess) -> None:
    client = _client(gateway)
    plain = client.completions.create(model=MODEL, prompt="Once upon", max_tokens=4)
    streamed = list(client.completions.create(model=MODEL, prompt="Once upon", max_tokens=4, stream=True))
    assert plain.choices[0].text
    assert "".join(c.choices[0].text for c in streamed) == plain.choices[0].text


def test_missing_and_wrong_key_are_401(gateway: ManagedProcess) -> None:
    body = {"model": MODEL, "prompt": "x"}
    assert _error(_post(gateway, COMPLETIONS, body, key=None), 401)["code"] == "invalid_api_key"
    assert _error(_post(gateway, COMPLETIONS, body, key="sk-wrong"), 401)["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        _client(gateway, key="sk-wrong").models.list()


def test_bad_json_is_400(gateway: ManagedProcess) -> None:
    resp = httpx.post(gateway.url + CHAT, content=b"{not json", headers={"authorization": f"Bearer {KEY}"})
    assert _error(resp, 400)["code"] == "invalid_json"
    assert _error(_post(gateway, CHAT, [1, 2]), 400)["code"] == "invalid_json"
    assert _error(_post(gateway, CHAT, {"model": MODEL}), 400)["param"] == "messages"


def test_unknown_model_is_404(gateway: ManagedProcess) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        _client(gateway).completions.create(model="no-such-model", prompt="x")
    assert exc.value.status_code == 404
    assert _error(_post(gateway, COMPLETIONS, {"model": "gpt-x", "prompt": "x"}), 404)["code"] == "model_not_found"


@pytest.mark.parametrize("max_tokens", [0, 1025, -5])
def test_max_tokens_out_of_bounds_is_422(gateway: ManagedProcess, max_tokens: int) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": max_tokens}
    assert _error(_post(gateway, CHAT, body), 422)["param"] == "max_tokens"


def test_max_tokens_wrong_type_is_400(gateway: ManagedProcess) -> None:
    body = {"model": MODEL, "prompt": "x", "max_tokens": "ten"}
    assert _error(_post(gateway, COMPLETIONS, body), 400)["param"] == "max_tokens"


def test_prompt_over_context_window_is_422_before_upstream(gateway: ManagedProcess, upstream: ManagedProcess) -> None:
    before = metric(upstream.url, "vllm:prompt_tokens_total")
    # 15,000 characters: well over 4096 tokens at ~2.9 characters per token.
    body: dict[str, object] = {"model": MODEL, "messages": [{"role": "user", "content": "word " * 3000}]}
    assert _error(_post(gateway, CHAT, body), 422)["code"] == "context_length_exceeded"
    # A prompt that fits with a large max_tokens that does not.
    body = {"model": MODEL, "prompt": "a" * 11_000, "max_tokens": 1000}
    assert _error(_post(gateway, COMPLETIONS, body), 422)["code"] == "context_length_exceeded"
    assert metric(upstream.url, "vllm:prompt_tokens_total") == before


def test_body_over_limit_is_413(gateway: ManagedProcess) -> None:
    body = {"model": MODEL, "prompt": "x" * 70_000}
    assert _error(_post(gateway, COMPLETIONS, body), 413)["code"] == "request_too_large"

    def chunks():  # no content-length: the limit holds while reading a chunked body too
        for _ in range(20):
            yield b" " * 4096

    resp = httpx.post(gateway.url + COMPLETIONS, content=chunks(), headers={"authorization": f"Bearer {KEY}"})
    assert _error(resp, 413)["code"] == "request_too_large"


def test_unknown_route_is_404_and_wrong_method_405(gateway: ManagedProcess) -> None:
    assert _error(httpx.get(gateway.url + "/v1/embeddings"), 404)["code"] == "not_found"
    assert _error(httpx.get(gateway.url + CHAT, headers={"authorization": f"Bearer {KEY}"}), 405)


def test_request_id_echoed_or_generated(gateway: ManagedProcess) -> None:
    body = {"model": MODEL, "prompt": "x", "max_tokens": 1}
    assert _post(gateway, COMPLETIONS, body, headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    generated = _post(gateway, COMPLETIONS, body).headers["x-request-id"]
    assert len(generated) >= 16
    assert _post(gateway, COMPLETIONS, body, key="bad").headers["x-request-id"]


def test_health_ready_and_metrics_names(gateway: ManagedProcess) -> None:
    assert httpx.get(gateway.url + "/health").status_code == 200
    assert httpx.get(gateway.url + "/ready").status_code == 200
    _post(gateway, COMPLETIONS, {"model": MODEL, "prompt": "x", "max_tokens": 1})
    text = httpx.get(gateway.url + "/metrics").text
    for name in (
        'gateway_requests_total{key="team-a",route="/v1/completions",status="200"}',
        'gateway_request_duration_seconds_bucket{le="0.001",route="/v1/completions"}',
        "gateway_upstream_ttfb_seconds_bucket",
        'gateway_cache_requests_total{result="error"}',
        "gateway_cache_local_hits_total 0.0",
        "gateway_rate_limit_leases_total",
        "gateway_inflight_requests ",
        "gateway_pending_requests 0.0",
        "gateway_overhead_seconds_bucket",
    ):
        assert name in text, name


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer  "])
def test_bearer_scheme_is_case_insensitive(gateway: ManagedProcess, scheme: str) -> None:
    """RFC 7235 section 2.1: the scheme is case-insensitive; one or more spaces precede the credentials."""
    body = {"model": MODEL, "prompt": "x", "max_tokens": 1}
    resp = _post(gateway, COMPLETIONS, body, key=None, headers={"authorization": f"{scheme} {KEY}"})
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": [{"type": "text", "text": 5}]}],
        [{"role": "user", "content": [{"type": "text", "text": None}]}],
        [{"role": "user", "content": ["just a string"]}],
        [{"role": "user", "content": 42}],
        ["not an object"],
    ],
)
def test_malformed_message_is_openai_400_with_request_id(gateway: ManagedProcess, messages: list[object]) -> None:
    resp = _post(gateway, CHAT, {"model": MODEL, "messages": messages}, headers={"x-request-id": "bad-part-1"})
    assert _error(resp, 400)["param"] == "messages"
    assert resp.headers["x-request-id"] == "bad-part-1"


def test_text_and_image_parts_are_accepted(gateway: ManagedProcess) -> None:
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "data:,"}}]
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 2}
    assert _post(gateway, CHAT, body).status_code == 200


def test_unexpected_exception_is_openai_500_with_request_id_and_logged(
    start_gateway: GatewayFactory, upstream: ManagedProcess, tmp_path: Path
) -> None:
    # A fault injected into the real process: validation raises for one model name.
    (tmp_path / "sitecustomize.py").write_text(
        "import serving.gateway.app as app\n"
        "validate = app.Gateway.validate\n"
        "def failing(self, route, body):\n"
        "    if body.get('model') == 'other-model':\n"
        "        raise RuntimeError('injected fault')\n"
        "    return validate(self, route, body)\n"
        "app.Gateway.validate = failing\n"
    )
    gateway = start_gateway(upstream.url, env={"PYTHONPATH": str(tmp_path)})
    body = {"model": "other-model", "prompt": "x"}
    resp = _post(gateway, COMPLETIONS, body, headers={"x-request-id": "boom-1"})
    error = _error(resp, 500)
    assert error["type"] == "server_error"
    assert resp.headers["x-request-id"] == "boom-1"
    assert resp.headers["content-type"] == "application/json"
    with pytest.raises(openai.InternalServerError):
        _client(gateway).completions.create(model="other-model", prompt="x")
    assert _post(gateway, COMPLETIONS, {"model": MODEL, "prompt": "x", "max_tokens": 1}).status_code == 200
    log = [json.loads(line) for line in gateway.stderr_tail().splitlines() if line.startswith("{")]
    (logged,) = [entry for entry in log if entry.get("request_id") == "boom-1"]
    assert logged["level"] == "error" and "injected fault" in logged["exc"]


@pytest.mark.parametrize(
    "prompt",
    [
        "a string",
        ["a batch", "of strings"],
        [1, 2, 3],
        [[1, 2, 3], [4, 5]],  # a batch of pre-tokenised prompts
    ],
)
def test_every_openai_prompt_shape_is_accepted(gateway: ManagedProcess, prompt: object) -> None:
    completion = _client(gateway).completions.create(model=MODEL, prompt=prompt, max_tokens=2)  # type: ignore[arg-type]
    assert completion.choices[0].text


@pytest.mark.parametrize(
    "prompt",
    [
        [7] * 4000,
        [[7] * 10, [7] * 4000],  # the largest prompt of the batch is the one checked
    ],
)
def test_token_id_prompts_count_exactly_against_the_context(gateway: ManagedProcess, prompt: object) -> None:
    """4,000 token ids and 96 new tokens fill the 4,096-token context exactly; one more token does not fit."""
    fits = _post(gateway, COMPLETIONS, {"model": MODEL, "prompt": prompt, "max_tokens": 96})
    assert fits.status_code == 200, fits.text
    over = _post(gateway, COMPLETIONS, {"model": MODEL, "prompt": prompt, "max_tokens": 97})
    assert _error(over, 422)["code"] == "context_length_exceeded"


@pytest.mark.parametrize("prompt", [[], [[]], [1, "a"], [[1], "a"], [-1], [True], 5])
def test_malformed_prompt_is_400(gateway: ManagedProcess, prompt: object) -> None:
    resp = _post(gateway, COMPLETIONS, {"model": MODEL, "prompt": prompt})
    assert _error(resp, 400)["param"] == "prompt"
