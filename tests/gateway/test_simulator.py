"""The vLLM simulator as a real process, checked with the official openai client and its /metrics."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
import time
import urllib.request
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from serving import processes
from serving.processes import ManagedProcess

MODEL = "sim/test-model"


def _metric(url: str, name: str, labels: str = "") -> float:
    text = urllib.request.urlopen(url + "/metrics").read().decode()
    match = re.search(rf"^{re.escape(name)}{{[^}}]*{re.escape(labels)}[^}}]*}} (\S+)$", text, re.M)
    assert match, f"{name} {labels} missing from /metrics"
    return float(match.group(1))


def _simulator(*extra: str, timeout: float = 20) -> ManagedProcess:
    port = processes.free_port()
    argv = [sys.executable, "-m", "serving.simulator", "--port", str(port), "--model", MODEL, *extra]
    return processes.start(argv, port, timeout=timeout)


@pytest.fixture(scope="module")
def fast() -> Iterator[ManagedProcess]:
    with _simulator("--max-model-len", "512", "--output-tokens", "8") as sim:
        yield sim


@pytest.fixture(scope="module")
def slow() -> Iterator[ManagedProcess]:
    with _simulator("--ttft-ms", "50", "--itl-ms", "50", "--output-tokens", "20", "--max-concurrency", "1") as sim:
        yield sim


def _client(sim: ManagedProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.url + "/v1", api_key="unused", max_retries=0)


def test_models_lists_model_with_context_window(fast: ManagedProcess) -> None:
    (model,) = _client(fast).models.list().data
    assert model.id == MODEL
    assert model.model_dump()["max_model_len"] == 512


def test_chat_completion_shape_usage_and_deterministic_text(fast: ManagedProcess) -> None:
    client = _client(fast)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say something"}]
    first = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)
    again = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)
    assert first.object == "chat.completion"
    assert first.choices[0].message.role == "assistant"
    assert first.choices[0].finish_reason == "length"
    assert first.usage is not None and first.usage.completion_tokens == 4
    assert first.usage.total_tokens == first.usage.prompt_tokens + 4
    assert first.choices[0].message.content == again.choices[0].message.content
    assert first.id != again.id


def test_text_completion_finishes_with_stop(fast: ManagedProcess) -> None:
    done = _client(fast).completions.create(model=MODEL, prompt="Once upon a time", max_tokens=100)
    assert done.object == "text_completion"
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.completion_tokens == 8
    assert len(done.choices[0].text.split()) == 8


def test_chat_stream_chunks_match_whole_answer(fast: ManagedProcess) -> None:
    client = _client(fast)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Stream please"}]
    whole = client.chat.completions.create(model=MODEL, messages=messages)
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8


def test_stream_wire_format_ends_with_done(fast: ManagedProcess) -> None:
    body = {"model": MODEL, "prompt": "x", "stream": True}
    r = httpx.post(fast.url + "/v1/completions", json=body)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = r.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(e.startswith("data: {") for e in events[:-2])


def test_unknown_model_is_404_error_json(fast: ManagedProcess) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        _client(fast).chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.body["type"] == "NotFoundError"  # type: ignore[index]
    assert "nope" in exc.value.body["message"]  # type: ignore[index]


def test_prompt_over_context_window_is_400(fast: ManagedProcess) -> None:
    with pytest.raises(openai.BadRequestError, match="maximum context length is 512"):
        _client(fast).completions.create(model=MODEL, prompt="word " * 600, max_tokens=10)


def test_token_counters_count_prompt_and_generation(fast: ManagedProcess) -> None:
    before = _metric(fast.url, "vllm:generation_tokens_total", MODEL)
    _client(fast).completions.create(model=MODEL, prompt="count me", max_tokens=3)
    assert _metric(fast.url, "vllm:generation_tokens_total", MODEL) == before + 3
    assert _metric(fast.url, "vllm:prompt_tokens_total", MODEL) > 0
    assert _metric(fast.url, "vllm:request_success_total", 'finished_reason="length"') >= 1


def test_queue_beyond_max_concurrency_shows_in_metrics(slow: ManagedProcess) -> None:
    async def load() -> tuple[float, float]:
        client = openai.AsyncOpenAI(base_url=slow.url + "/v1", api_key="unused", max_retries=0)
        calls = [client.completions.create(model=MODEL, prompt=f"q{i}", max_tokens=5) for i in range(3)]
        tasks = [asyncio.ensure_future(c) for c in calls]
        await asyncio.sleep(0.1)  # the first is generating (~250 ms), the other two wait for its slot
        seen = await asyncio.to_thread(
            lambda: (
                _metric(slow.url, "vllm:num_requests_running", MODEL),
                _metric(slow.url, "vllm:num_requests_waiting", MODEL),
            )
        )
        await asyncio.gather(*tasks)
        return seen

    running, waiting = asyncio.run(load())
    assert (running, waiting) == (1, 2)
    assert _metric(slow.url, "vllm:num_requests_waiting", MODEL) == 0


def test_client_disconnect_mid_stream_counts_abort(slow: ManagedProcess) -> None:
    before = _metric(slow.url, "vllm:request_success_total", 'finished_reason="abort"')
    body = {"model": MODEL, "messages": [{"role": "user", "content": "long"}], "stream": True}
    with httpx.stream("POST", slow.url + "/v1/chat/completions", json=body) as r:
        next(r.iter_lines())  # first chunk arrived, then the client goes away
    deadline = time.monotonic() + 5
    while _metric(slow.url, "vllm:request_success_total", 'finished_reason="abort"') == before:
        assert time.monotonic() < deadline, "abort was never counted"
        time.sleep(0.05)
    assert _metric(slow.url, "vllm:num_requests_running", MODEL) == 0


def test_client_disconnect_while_waiting_non_streaming_counts_abort(slow: ManagedProcess) -> None:
    before = _metric(slow.url, "vllm:request_success_total", 'finished_reason="abort"')
    body = {"model": MODEL, "prompt": "slow", "max_tokens": 20}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(slow.url + "/v1/completions", json=body, timeout=httpx.Timeout(5, read=0.2))
    deadline = time.monotonic() + 5
    while _metric(slow.url, "vllm:request_success_total", 'finished_reason="abort"') == before:
        assert time.monotonic() < deadline, "abort was never counted"
        time.sleep(0.05)


def test_startup_delay_binds_port_only_after_delay() -> None:
    port = processes.free_port()
    argv = [sys.executable, "-m", "serving.simulator", "--port", str(port), "--startup-delay-s", "1.5"]
    with ManagedProcess(argv, port) as sim:
        time.sleep(0.7)  # interpreter started, still "loading the model"
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            pass
        sim.wait_ready("/health", timeout=20)
        assert urllib.request.urlopen(sim.url + "/health").status == 200


def test_managed_process_reports_stderr_of_a_dead_child() -> None:
    port = processes.free_port()
    argv = [sys.executable, "-c", "import sys; sys.stderr.write('boom-marker'); sys.exit(3)"]
    with pytest.raises(processes.ProcessError, match="boom-marker"):
        processes.start(argv, port, timeout=10)


def test_start_redis_answers_ping_and_stops() -> None:
    port = processes.free_port()
    with processes.start_redis(port) as redis_proc, socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"SET k v\r\n")
        assert s.recv(16) == b"+OK\r\n"
    assert redis_proc.process.poll() is not None
