"""The gateway as a raw ASGI app: no middleware stack, one dispatch on the path, precomputed headers."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import math
import os
import signal
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from . import metrics
from .drain import close_listeners
from .http_client import ClientError, Response
from .keys import ApiKey, load_keys
from .logs import setup as setup_logs
from .settings import Settings
from .store import Store
from .tracing import make_tracer
from .upstream import NoUpstream, Upstream

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("serving.gateway")
access = logging.getLogger("serving.gateway.access")

# Seed 000: a 4096-token context holds about 11,900 characters of English, i.e. ~2.9 characters per token.
CHARS_PER_TOKEN = 2.9
CHAT, COMPLETIONS, MODELS = "/v1/chat/completions", "/v1/completions", "/v1/models"
API_ROUTES = {CHAT: "POST", COMPLETIONS: "POST", MODELS: "GET"}
# Fields that change neither the generated text nor the shape of the answer, left out of the cache key
# (`stream_options` stays in: `include_usage` adds a usage chunk to a stream).
_NOT_IN_CACHE_KEY = ("stream", "user")
# The route and the answer's form (JSON object or SSE stream) lead the key: the same body sent to both routes
# gets a chat.completion and a text_completion.
_CACHE_PREFIX = {
    (CHAT, False): "cache:chat:json:",
    (CHAT, True): "cache:chat:sse:",
    (COMPLETIONS, False): "cache:completions:json:",
    (COMPLETIONS, True): "cache:completions:sse:",
}
JSON = b"application/json"
SSE = b"text/event-stream"
SSE_HEADERS = [(b"content-type", SSE), (b"cache-control", b"no-cache")]
PLAIN = [(b"content-type", b"text/plain; charset=utf-8")]
BEARER = b"bearer "
INTERNAL_ERROR = orjson.dumps(
    {
        "error": {
            "message": "Internal error in the gateway",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        }
    }
)
# OpenAI's streaming error format (what vLLM sends too): the openai client raises APIError on such an event. No
# `[DONE]` after it: the stream did not complete.
STREAM_CUT = (
    b"data: "
    + orjson.dumps(
        {
            "error": {
                "message": "The upstream stream broke off before the answer was complete",
                "type": "upstream_error",
                "param": None,
                "code": "upstream_stream_cut",
            }
        }
    )
    + b"\n\n"
)
# After a full hold the cold start is already late: ask clients to come back soon rather than after another hold.
NO_UPSTREAM_RETRY_AFTER = b"10"


class Reject(Exception):
    """An error answered in OpenAI's error format."""

    def __init__(self, status: int, message: str, kind: str, code: str | None = None, param: str | None = None) -> None:
        self.status = status
        self.body = orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})
        self.headers: list[tuple[bytes, bytes]] = []


def _int_field(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Reject(400, f"'{name}' must be an integer", "invalid_request_error", "invalid_type", name)
    return value


def _invalid_type(param: str, message: str) -> Reject:
    return Reject(400, message, "invalid_request_error", "invalid_type", param)


def _text_tokens(chars: int) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN)


def _message_tokens(messages: Any) -> int:
    """Estimate of a chat prompt; every part the estimate reads must have the type the API gives it."""
    if not isinstance(messages, list) or not messages:
        raise _invalid_type("messages", "'messages' must be a non-empty list")
    chars = 0
    for message in messages:
        if not isinstance(message, dict):
            raise _invalid_type("messages", "each message must be an object")
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                text = part.get("text", "") if isinstance(part, dict) else None
                if not isinstance(text, str):
                    raise _invalid_type("messages", "a content part must be an object whose 'text' is a string")
                chars += len(text)
        elif content is not None:
            raise _invalid_type("messages", "a message's 'content' must be a string, a list of parts or null")
    return _text_tokens(chars)


def _token_ids(prompt: list[Any]) -> bool:
    return all(type(t) is int and t >= 0 for t in prompt)


def _prompt_tokens(body: dict[str, Any]) -> tuple[int, int, int]:
    """(largest prompt, all prompts, number of prompts) in tokens for a completions request, in every form the
    OpenAI and vLLM APIs take: a string, a batch of strings, token ids (counted exactly), a batch of token-id lists;
    or only `prompt_embeds` (vLLM), whose size vLLM checks itself. Each prompt of a batch is a generation."""
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        tokens = _text_tokens(len(prompt))
        return tokens, tokens, 1
    if isinstance(prompt, list) and prompt:
        if _token_ids(prompt):
            return len(prompt), len(prompt), 1
        sizes = None
        if all(isinstance(p, str) for p in prompt):
            sizes = [_text_tokens(len(p)) for p in prompt]
        elif all(isinstance(p, list) and p and _token_ids(p) for p in prompt):
            sizes = [len(p) for p in prompt]
        if sizes is not None:
            return max(sizes), sum(sizes), len(sizes)
    if prompt is None and body.get("prompt_embeds"):
        return 0, 0, 1
    raise _invalid_type(
        "prompt", "'prompt' must be a string, a list of strings, a list of token ids or a list of token-id lists"
    )


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys: dict[str, ApiKey] = load_keys(
            settings.api_keys_file, settings.rate_limit_rpm, settings.rate_limit_tpm
        )
        self.store = Store(
            settings.redis,
            settings.redis_password,
            settings.cache_ttl_s,
            timeout_s=settings.redis_timeout_s,
            lease_percent=settings.rate_limit_lease_percent,
            local_cache_bytes=settings.local_cache_mb << 20,
        )
        self.upstream = Upstream(
            settings.upstream,
            settings.upstream_connect_timeout_s,
            settings.upstream_read_timeout_s,
            settings.hold_timeout_s,
        )
        self.tracer = make_tracer()
        self.draining = False
        self.inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._hook_sigterm()
                # Startup objects (modules, pools, metrics) never die: keep them out of every later GC pass, so
                # collections stay short and do not show in the latency tail.
                gc.freeze()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.upstream.close()
                await self.store.close()
                metrics.worker_exit(os.getpid())
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _hook_sigterm(self) -> None:
        """Turn uvicorn's SIGTERM (stop listening now) into a drain: /ready fails and new requests get 503 while
        in-flight requests and streams finish, then uvicorn's own shutdown runs. uvicorn installs its handler
        before the lifespan starts and restores the original one on exit."""
        server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
        if server is None or not hasattr(server, "should_exit"):
            return
        loop = asyncio.get_running_loop()

        def on_sigterm(signum: int, frame: object) -> None:
            loop.call_soon_threadsafe(self._begin_drain, server)

        signal.signal(signal.SIGTERM, on_sigterm)

    def _begin_drain(self, server: Any) -> None:
        if self.draining:
            return
        self.draining = True
        log.info("SIGTERM: draining %d in-flight request(s)", self.inflight)
        task = asyncio.get_running_loop().create_task(self._drain(server))
        self._tasks.add(task)

    async def _drain(self, server: Any) -> None:
        deadline = time.monotonic() + self.settings.drain_timeout_s
        while self.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await close_listeners(server, deadline)
        server.should_exit = True

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path == "/health":
            await _respond(send, 200, b"ok", PLAIN)
            return
        if path == "/ready":
            await _respond(send, 503 if self.draining else 200, b"draining" if self.draining else b"ready", PLAIN)
            return
        if path == "/metrics":
            body, content_type = metrics.render()
            await _respond(send, 200, body, [(b"content-type", content_type)])
            return
        start = time.perf_counter()
        request_id = ""
        authorization = b""
        content_length = -1
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"content-length":
                content_length = int(value) if value.isdigit() else -1
        if not request_id:
            request_id = os.urandom(8).hex()
        state = _RequestState(request_id)
        route = path if path in API_ROUTES else "other"
        self.inflight += 1
        metrics.INFLIGHT.inc()
        span = self.tracer.start_span(f"{scope['method']} {route}") if self.tracer is not None else None
        try:
            await self.api(scope, receive, send, route, authorization, content_length, state)
        except Reject as rej:
            state.status = rej.status
            await _respond(send, rej.status, rej.body, [(b"content-type", JSON), *rej.headers], request_id)
        except Exception:
            log.exception("unexpected error", extra={"fields": {"request_id": request_id}})
            state.status = 500
            if state.started:
                raise  # uvicorn closes the connection: the client sees the response cut short
            await _respond(send, 500, INTERNAL_ERROR, [(b"content-type", JSON)], request_id)
        finally:
            self.inflight -= 1
            metrics.INFLIGHT.dec()
            elapsed = time.perf_counter() - start
            metrics.count_request(route, state.status, state.key, elapsed)
            metrics.OVERHEAD.observe(max(0.0, elapsed - state.upstream_s))
            if span is not None:
                span.set_attributes(
                    {"http.status_code": state.status, "gateway.key": state.key, "gateway.request_id": request_id}
                )
                span.end()
            if access.isEnabledFor(logging.INFO):
                access.info(
                    "request",
                    extra={
                        "fields": {
                            "request_id": request_id,
                            "method": scope["method"],
                            "path": path,
                            "status": state.status,
                            "key": state.key,
                            "cache": state.cache,
                            "ms": round(elapsed * 1000, 3),
                        }
                    },
                )

    async def api(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: str,
        authorization: bytes,
        content_length: int,
        state: _RequestState,
    ) -> None:
        if route == "other":
            raise Reject(404, f"Unknown route {scope['method']} {scope['path']}", "invalid_request_error", "not_found")
        if scope["method"] != API_ROUTES[route]:
            raise Reject(405, f"{route} takes {API_ROUTES[route]}", "invalid_request_error", "method_not_allowed")
        if self.draining:
            rej = Reject(503, "The gateway is shutting down; retry", "service_unavailable", "draining")
            rej.headers = [(b"retry-after", b"1"), (b"connection", b"close")]
            raise rej
        # RFC 7235: the scheme is case-insensitive, and one or more spaces separate it from the credentials.
        bearer = authorization[:7].lower() == BEARER
        key = self.keys.get(hashlib.sha256(authorization[7:].lstrip(b" ")).hexdigest()) if bearer else None
        if key is None:
            rej = Reject(401, "Missing or invalid API key", "authentication_error", "invalid_api_key")
            rej.headers = [(b"www-authenticate", b"Bearer")]
            raise rej
        state.key = key.id
        if route == MODELS:
            await self.proxy(receive, send, "GET", route, None, state, stream=False, cache_key=None)
            return
        raw = await self.read_body(receive, content_length)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise Reject(400, "The request body is not valid JSON", "invalid_request_error", "invalid_json") from None
        if not isinstance(body, dict):
            raise Reject(400, "The request body must be a JSON object", "invalid_request_error", "invalid_json")
        cost, cache_key = self.validate(route, body)
        stream = body.get("stream") is True
        refused, retry_after, cached = await self.store.admit(key.id, key.rpm, key.tpm, cost, cache_key)
        if refused:
            metrics.RATE_LIMITED.labels(key.id, refused).inc()
            rej = Reject(429, f"Rate limit exceeded ({refused})", "rate_limit_error", f"rate_limit_{refused}")
            rej.headers = [(b"retry-after", str(retry_after).encode())]
            raise rej
        if cached is not None:
            state.cache = "hit"
            state.status = 200
            state.started = True
            await _replay(send, cached, stream, state.request_id)
            return
        if cache_key is not None:
            state.cache = "miss"
        await self.proxy(receive, send, "POST", route, raw, state, stream=stream, cache_key=cache_key)

    async def read_body(self, receive: Receive, content_length: int) -> bytes:
        limit = self.settings.max_body_bytes
        # Without a Content-Length (chunked upload) the limit is checked on what has arrived so far.
        counting = content_length < 0
        size = 0 if counting else content_length
        parts: list[bytes] = []
        more = True
        while more and size <= limit:
            message = await receive()
            chunk = message.get("body", b"")
            parts.append(chunk)
            more = message.get("more_body", False)
            if counting:
                size += len(chunk)
        if size > limit:
            raise Reject(413, f"Request body over {limit} bytes", "invalid_request_error", "request_too_large")
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def validate(self, route: str, body: dict[str, Any]) -> tuple[int, str | None]:
        """Returns the token cost charged to the key's tokens-per-minute and the cache key (deterministic only)."""
        model = body.get("model")
        if not isinstance(model, str):
            raise Reject(400, "'model' must be a string", "invalid_request_error", "invalid_type", "model")
        models = self.settings.models
        context = models.get(model)
        if models and context is None:
            raise Reject(
                404, f"The model '{model}' does not exist", "invalid_request_error", "model_not_found", "model"
            )
        max_tokens = _int_field(body, "max_tokens")
        if max_tokens is None and route == CHAT:
            max_tokens = _int_field(body, "max_completion_tokens")
        if max_tokens is not None and not 1 <= max_tokens <= self.settings.max_tokens:
            raise Reject(
                422,
                f"'max_tokens' must be between 1 and {self.settings.max_tokens}",
                "invalid_request_error",
                "invalid_value",
                "max_tokens",
            )
        if route == CHAT:
            prompt_tokens = total_tokens = _message_tokens(body.get("messages"))
            prompts = 1
        else:
            prompt_tokens, total_tokens, prompts = _prompt_tokens(body)
        if context is not None and prompt_tokens + (max_tokens or 0) > context:
            raise Reject(
                422,
                f"This model's maximum context length is {context} tokens; the prompt is about {prompt_tokens} tokens"
                f" and max_tokens is {max_tokens or 0}",
                "invalid_request_error",
                "context_length_exceeded",
                "messages" if route == CHAT else "prompt",
            )
        cache_key = None
        if self.store.caching and (body.get("temperature") == 0 or isinstance(body.get("seed"), int)):
            normalised = {k: v for k, v in body.items() if k not in _NOT_IN_CACHE_KEY}
            digest = hashlib.sha256(orjson.dumps(normalised, option=orjson.OPT_SORT_KEYS)).hexdigest()
            cache_key = _CACHE_PREFIX[route, body.get("stream") is True] + digest
        # Each prompt of a batch is a generation of its own.
        return total_tokens + prompts * (max_tokens or 0), cache_key

    async def proxy(
        self,
        receive: Receive,
        send: Send,
        method: str,
        route: str,
        body: bytes | None,
        state: _RequestState,
        *,
        stream: bool,
        cache_key: str | None,
    ) -> None:
        """Forwards to the upstream; a client that goes away cancels this task, which closes the upstream
        connection (vLLM then aborts the generation)."""
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.get_running_loop().create_task(_cancel_on_disconnect(receive, task, state))
        headers = {"content-type": "application/json", "x-request-id": state.request_id}
        t0 = time.perf_counter()
        resp: Response | None = None
        try:
            try:
                resp = await self.upstream.open(method, route, body, headers)
            except NoUpstream:
                rej = Reject(503, "No model server is ready; retry later", "service_unavailable", "no_upstream")
                rej.headers = [(b"retry-after", NO_UPSTREAM_RETRY_AFTER)]
                raise rej from None
            metrics.TTFB.observe(time.perf_counter() - t0)
            state.status = resp.status
            content_type = resp.headers.get(b"content-type", JSON)
            response_headers = [(b"content-type", content_type), (b"x-request-id", state.request_id.encode())]
            if state.cache:
                response_headers.append((b"x-cache", state.cache.encode()))
            if stream and resp.status == 200 and content_type.startswith(SSE):
                state.started = True
                await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + response_headers})
                chunks: list[bytes] = []
                async for chunk in resp:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    if cache_key is not None:
                        chunks.append(chunk)
                data = b"".join(chunks)
                state.upstream_s = time.perf_counter() - t0
                # Once the response is complete uvicorn reports a disconnect: stop watching before that.
                watcher.cancel()
                await send({"type": "http.response.body", "body": b""})
                if cache_key is not None and _completed_normally(data):
                    await self.store.put(cache_key, data)
                return
            data = await resp.read()
            state.upstream_s = time.perf_counter() - t0
            watcher.cancel()
            response_headers.append((b"content-length", str(len(data)).encode()))
            state.started = True
            await send({"type": "http.response.start", "status": resp.status, "headers": response_headers})
            await send({"type": "http.response.body", "body": data})
            if cache_key is not None and resp.status == 200:
                await self.store.put(cache_key, data)
        except asyncio.CancelledError:
            if not state.disconnected:
                raise
            task.uncancel()
            state.status = 499
        except ClientError as exc:
            # After the first byte nothing is retried (the generation may have run): end the response, a stream
            # with an error event so that the client does not take the text so far for the whole answer.
            if not state.started:
                raise Reject(502, f"Upstream error: {exc!r}", "upstream_error", "bad_gateway") from None
            log.warning("upstream failed mid-response: %r", exc, extra={"fields": {"request_id": state.request_id}})
            state.status = 502
            await send({"type": "http.response.body", "body": STREAM_CUT, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()
            if resp is not None:
                if state.disconnected:
                    resp.close()  # drops the upstream connection: vLLM aborts the generation
                else:
                    resp.release()
            if not state.upstream_s:
                state.upstream_s = time.perf_counter() - t0


class _RequestState:
    __slots__ = ("cache", "disconnected", "key", "request_id", "started", "status", "upstream_s")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.status = 500
        self.key = "-"
        self.cache = ""
        self.upstream_s = 0.0
        self.disconnected = False
        self.started = False  # the response's status line went out


def _completed_normally(stream: bytes) -> bool:
    """A stream that ended with `data: [DONE]`, carried no error event (vLLM sends one, then `[DONE]`, when
    generation fails) and gave every choice it carried a finish_reason: the only kind worth replaying."""
    if not stream.rstrip().endswith(b"data: [DONE]"):
        return False
    finished: dict[Any, bool] = {}
    for line in stream.splitlines():
        if not line.startswith(b"data:") or line == b"data: [DONE]":
            continue
        try:
            event = orjson.loads(line[5:])
        except orjson.JSONDecodeError:
            return False
        choices = event.get("choices") if isinstance(event, dict) else None
        if not isinstance(choices, list) or "error" in event:
            return False
        for choice in choices:
            if not isinstance(choice, dict):
                return False
            index = choice.get("index")
            finished[index] = finished.get(index, False) or choice.get("finish_reason") is not None
    return bool(finished) and all(finished.values())


async def _cancel_on_disconnect(receive: Receive, task: asyncio.Task[Any], state: _RequestState) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    state.disconnected = True
    task.cancel()


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], request_id: str | None = None
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    if request_id is not None:
        headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _replay(send: Send, cached: bytes, stream: bool, request_id: str) -> None:
    headers = [(b"x-request-id", request_id.encode()), (b"x-cache", b"hit")]
    if stream:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + headers})
        # One body message per SSE event, as the upstream sent them.
        for event in cached.split(b"\n\n"):
            if event:
                await send({"type": "http.response.body", "body": event + b"\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await _respond(send, 200, cached, [(b"content-type", JSON), *headers])


def create_app() -> Gateway:
    """Factory for uvicorn (also in each worker process): settings come from the environment."""
    settings = Settings.from_env()
    setup_logs(settings.log_level)
    return Gateway(settings)
