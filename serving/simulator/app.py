"""Raw ASGI vLLM fake: OpenAI-shaped responses, a latency model and vLLM's Prometheus metric names.

Raw ASGI rather than a framework because with a zero latency model it is the benchmark's "fast fake upstream",
so its own per-request cost must stay far below the gateway's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima")
CHARS_PER_TOKEN = 4  # rough tokenizer stand-in, the same ratio REFERENCE.md uses for context-window checks


@dataclass(frozen=True)
class Settings:
    model: str = "Qwen/Qwen2.5-7B-Instruct"
    max_model_len: int = 4096
    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    output_tokens: int = 16
    max_concurrency: int = 0  # 0 = unlimited
    # Faults of a stream after this many tokens (-1 = none), for the gateway's tests: vLLM's in-band error event
    # followed by `data: [DONE]`, or the connection dropped mid-body (an engine crash, a pod killed).
    stream_error_after: int = -1
    stream_drop_after: int = -1

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            model=env.get("SIMULATOR_MODEL", cls.model),
            max_model_len=int(env.get("SIMULATOR_MAX_MODEL_LEN", cls.max_model_len)),
            ttft_ms=float(env.get("SIMULATOR_TTFT_MS", cls.ttft_ms)),
            itl_ms=float(env.get("SIMULATOR_ITL_MS", cls.itl_ms)),
            output_tokens=int(env.get("SIMULATOR_OUTPUT_TOKENS", cls.output_tokens)),
            max_concurrency=int(env.get("SIMULATOR_MAX_CONCURRENCY", cls.max_concurrency)),
            stream_error_after=int(env.get("SIMULATOR_STREAM_ERROR_AFTER", cls.stream_error_after)),
            stream_drop_after=int(env.get("SIMULATOR_STREAM_DROP_AFTER", cls.stream_drop_after)),
        )

    def to_env(self) -> dict[str, str]:
        return {
            "SIMULATOR_MODEL": self.model,
            "SIMULATOR_MAX_MODEL_LEN": str(self.max_model_len),
            "SIMULATOR_TTFT_MS": str(self.ttft_ms),
            "SIMULATOR_ITL_MS": str(self.itl_ms),
            "SIMULATOR_OUTPUT_TOKENS": str(self.output_tokens),
            "SIMULATOR_MAX_CONCURRENCY": str(self.max_concurrency),
            "SIMULATOR_STREAM_ERROR_AFTER": str(self.stream_error_after),
            "SIMULATOR_STREAM_DROP_AFTER": str(self.stream_drop_after),
        }


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type_

    def body(self) -> bytes:
        return orjson.dumps({"error": {"message": self.message, "type": self.type, "param": None, "code": self.status}})


class ClientGone(Exception):
    pass


class StreamDropped(Exception):
    """Raised mid-stream on purpose: uvicorn then closes the connection without ending the chunked body."""


class Metrics:
    def __init__(self, model: str) -> None:
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        r = self.registry
        self.running = Gauge("vllm:num_requests_running", "Requests in model execution", labels, registry=r)
        self.waiting = Gauge("vllm:num_requests_waiting", "Requests waiting to be processed", labels, registry=r)
        self.kv_cache = Gauge("vllm:kv_cache_usage_perc", "KV-cache usage, 1 = 100%", labels, registry=r)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Prefill tokens processed", labels, registry=r)
        self.generation_tokens = Counter("vllm:generation_tokens", "Generation tokens processed", labels, registry=r)
        self.success = Counter("vllm:request_success", "Finished requests", [*labels, "finished_reason"], registry=r)
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Time to first token", labels, registry=r)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds", "End-to-end request latency", labels, registry=r)
        self.running_m = self.running.labels(model)
        self.waiting_m = self.waiting.labels(model)
        self.kv_cache_m = self.kv_cache.labels(model)
        self.prompt_m = self.prompt_tokens.labels(model)
        self.gen_m = self.generation_tokens.labels(model)
        self.ttft_m = self.ttft.labels(model)
        self.e2e_m = self.e2e.labels(model)
        self.model = model
        self.kv_cache_m.set(0)
        for reason in ("stop", "length", "abort"):
            self.success.labels(model, reason)


def _prompt_text(body: dict[str, Any], chat: bool) -> str:
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "messages must be a non-empty list", "BadRequestError")
        parts = []
        for m in messages:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, list):  # content parts
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            parts.append(str(content or ""))
        return "\n".join(parts)
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = " ".join(map(str, prompt))
    if not isinstance(prompt, str):
        raise ApiError(400, "prompt must be a string", "BadRequestError")
    return prompt


def output_tokens(prompt: str, n: int) -> list[str]:
    """Deterministic in the prompt, so cache tests can compare a replay with a fresh answer."""
    start = zlib.crc32(prompt.encode())
    return [("" if i == 0 else " ") + WORDS[(start + i) % len(WORDS)] for i in range(n)]


class Simulator:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.metrics = Metrics(settings.model)
        self._slots: asyncio.Semaphore | None = None
        self._models_body = orjson.dumps(
            {
                "object": "list",
                "data": [
                    {
                        "id": settings.model,
                        "object": "model",
                        "created": int(time.time()),
                        "owned_by": "vllm",
                        "root": settings.model,
                        "parent": None,
                        "max_model_len": settings.max_model_len,
                        "permission": [],
                    }
                ],
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        try:
            if path == "/health" and method == "GET":
                await _respond(send, 200, b"", b"text/plain")
            elif path == "/v1/models" and method == "GET":
                await _respond(send, 200, self._models_body)
            elif path == "/metrics" and method == "GET":
                await _respond(send, 200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST.encode())
            elif path in ("/v1/chat/completions", "/v1/completions") and method == "POST":
                await self._completion(path == "/v1/chat/completions", receive, send)
            else:
                raise ApiError(404, f"Not Found: {method} {path}", "NotFoundError")
        except ApiError as e:
            await _respond(send, e.status, e.body())

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.s.max_concurrency > 0:
                    self._slots = asyncio.Semaphore(self.s.max_concurrency)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _completion(self, chat: bool, receive: Receive, send: Send) -> None:
        raw = await _read_body(receive)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise ApiError(400, f"invalid JSON body: {e}", "BadRequestError") from e
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object", "BadRequestError")
        model = body.get("model")
        if model != self.s.model:
            raise ApiError(404, f"The model `{model}` does not exist.", "NotFoundError")
        prompt = _prompt_text(body, chat)
        prompt_tokens = max(1, len(prompt) // CHARS_PER_TOKEN)
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or self.s.output_tokens
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ApiError(400, "max_tokens must be a positive integer", "BadRequestError")
        if prompt_tokens + max_tokens > self.s.max_model_len:
            raise ApiError(
                400,
                f"This model's maximum context length is {self.s.max_model_len} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the "
                "completion). Please reduce the length of the messages or completion.",
                "BadRequestError",
            )
        n = min(max_tokens, self.s.output_tokens)
        finish = "length" if max_tokens < self.s.output_tokens else "stop"
        gen = _Generation(self, chat, body, prompt, prompt_tokens, n, finish)
        if self._slots is None and self.s.ttft_ms <= 0 and self.s.itl_ms <= 0:
            await gen.run(send)  # fast path: nothing to wait for, so no disconnect watcher either
            return
        # Watch for the client going away while queued or generating, like vLLM aborting the request.
        task = asyncio.ensure_future(gen.run(send))
        watcher = asyncio.ensure_future(_wait_disconnect(receive))
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            watcher.cancel()
            task.result()
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ClientGone):
            await task


class _Generation:
    def __init__(
        self, sim: Simulator, chat: bool, body: dict[str, Any], prompt: str, prompt_tokens: int, n: int, finish: str
    ) -> None:
        self.sim, self.chat, self.body = sim, chat, body
        self.prompt, self.prompt_tokens, self.n, self.finish = prompt, prompt_tokens, n, finish
        self.stream = bool(body.get("stream"))
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())

    async def run(self, send: Send) -> None:
        m = self.sim.metrics
        start = time.perf_counter()
        slots = self.sim._slots
        if slots is not None:
            m.waiting_m.inc()
            try:
                await slots.acquire()
            finally:
                m.waiting_m.dec()
        m.running_m.inc()
        m.prompt_m.inc(self.prompt_tokens)
        produced = 0
        try:
            produced = await (self._stream(send, start) if self.stream else self._whole(send, start))
            m.success.labels(m.model, self.finish).inc()
            m.e2e_m.observe(time.perf_counter() - start)
        except (asyncio.CancelledError, ClientGone, OSError):
            m.success.labels(m.model, "abort").inc()
            raise
        finally:
            m.gen_m.inc(produced)
            m.running_m.dec()
            if slots is not None:
                slots.release()

    @property
    def _chunk_object(self) -> str:
        return "chat.completion.chunk" if self.chat else "text_completion"

    def _envelope(self, object_: str, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": object_,
            "created": self.created,
            "model": self.sim.s.model,
            "choices": choices,
            **extra,
        }

    def _usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.n,
            "total_tokens": self.prompt_tokens + self.n,
        }

    async def _whole(self, send: Send, start: float) -> int:
        s = self.sim.s
        if s.ttft_ms > 0:
            await asyncio.sleep(s.ttft_ms / 1000)
        self.sim.metrics.ttft_m.observe(time.perf_counter() - start)
        if s.itl_ms > 0 and self.n > 1:
            await asyncio.sleep(s.itl_ms * (self.n - 1) / 1000)
        text = "".join(output_tokens(self.prompt, self.n))
        if self.chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text, "tool_calls": []},
                "logprobs": None,
                "finish_reason": self.finish,
                "stop_reason": None,
            }
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": self.finish, "stop_reason": None}
        payload = self._envelope("chat.completion" if self.chat else "text_completion", [choice], usage=self._usage())
        await _respond(send, 200, orjson.dumps(payload))
        return self.n

    def _chunk(self, delta: str | None, finish: str | None, role: bool = False) -> bytes:
        if self.chat:
            d: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if delta is not None:
                d["content"] = delta
            choice: dict[str, Any] = {"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": delta or "", "logprobs": None, "finish_reason": finish}
        if finish is not None:
            choice["stop_reason"] = None
        return b"data: " + orjson.dumps(self._envelope(self._chunk_object, [choice])) + b"\n\n"

    async def _stream(self, send: Send, start: float) -> int:
        s = self.sim.s
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")],
            }
        )
        if s.ttft_ms > 0:
            await asyncio.sleep(s.ttft_ms / 1000)
        produced = 0
        if self.chat:
            await _send_chunk(send, self._chunk(None, None, role=True))
        for i, token in enumerate(output_tokens(self.prompt, self.n)):
            if i == 0:
                self.sim.metrics.ttft_m.observe(time.perf_counter() - start)
            elif s.itl_ms > 0:
                await asyncio.sleep(s.itl_ms / 1000)
            await _send_chunk(send, self._chunk(token, None))
            produced += 1
            if produced == s.stream_drop_after:
                raise StreamDropped
            if produced == s.stream_error_after:
                # vllm/entrypoints/openai/completion/serving.py (and chat_completion/serving.py): an exception in
                # the stream generator yields `data: {"error": {...}}` and then `data: [DONE]`.
                error = {
                    "error": {"message": "engine failed", "type": "InternalServerError", "param": None, "code": 500}
                }
                await _send_chunk(send, b"data: " + orjson.dumps(error) + b"\n\ndata: [DONE]\n\n")
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return produced
        tail = self._chunk("" if not self.chat else None, self.finish)
        options = self.body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            usage = self._envelope(self._chunk_object, [], usage=self._usage())
            tail += b"data: " + orjson.dumps(usage) + b"\n\n"
        await _send_chunk(send, tail + b"data: [DONE]\n\n")
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return produced


async def _send_chunk(send: Send, data: bytes) -> None:
    try:
        await send({"type": "http.response.body", "body": data, "more_body": True})
    except OSError as e:  # uvicorn raises on a closed connection (ClientDisconnected subclasses OSError)
        raise ClientGone from e


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app() -> Simulator:
    """Factory for uvicorn (`--factory`), reading settings the CLI put in the environment."""
    return Simulator(Settings.from_env())
