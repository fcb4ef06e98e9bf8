"""A pooled keep-alive HTTP/1.1 client on asyncio Protocols and httptools' response parser (uvicorn's parser).

The hop to vLLM is a large part of what the gateway adds per request, and aiohttp's client cost about 0.7 ms more
per request than this one on this VM (docs/gateway.md). It does only what that hop needs: one request at a time per
connection, request bodies with Content-Length, responses with Content-Length, chunked or read to the close, a
connect timeout, a timeout on the gap between bytes (none on the total: generations are long) and back-pressure on
streamed bodies. The benchmark's load generator uses it too.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Awaitable, Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools

# Body bytes the consumer has not taken yet before the socket stops being read, so a slow client pushes back on
# the server through TCP instead of filling the gateway's memory.
HIGH_WATER_BYTES = 256 * 1024


class ClientError(Exception):
    """The exchange with the server failed."""


class ConnectError(ClientError):
    """No connection could be opened (refused, unreachable, timed out, TLS): the request was not sent."""


class ConnectionLost(ClientError):
    """The server closed the connection before the response was complete."""


class ReadTimeout(ClientError):
    """No byte from the server for longer than the read timeout."""


class _Connection(asyncio.Protocol):
    """One connection carrying one exchange at a time; it holds the state of the response being read. Waits and
    wake-ups are inline rather than helpers: every Python call here lands in every proxied request's latency."""

    def __init__(self, read_timeout_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._read_timeout_s = read_timeout_s
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_read = 0.0
        self._paused = False
        self._body: list[bytes] = []
        self._buffered = 0
        self._error: ClientError | None = None
        self.streaming = False  # the consumer takes the body as it comes, so reading may pause for it
        self.closed = False
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.received = False  # any byte of the current response
        self.headers_complete = False
        self.complete = True  # no response outstanding
        self.keep_alive = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self._timer = self._loop.call_later(self._read_timeout_s, self._check_read_gap)

    async def exchange(self, request: bytes) -> None:
        """Sends the request and returns once the response's headers are in; on failure (or cancellation) the
        connection is closed: half an exchange leaves it out of step, and the close tells the server to stop."""
        assert self._transport is not None
        if self._paused:  # the previous body was left unread
            self._resume()
        self._body = []
        self._buffered = 0
        self._error = None
        self.status = 0
        self.headers = {}
        self.streaming = self.received = self.headers_complete = self.complete = self.keep_alive = False
        self._transport.write(request)
        self._last_read = self._loop.time()
        try:
            while not self.headers_complete:
                if self._error is not None:
                    raise self._error
                self._waiter = self._loop.create_future()
                await self._waiter
        except BaseException:
            self.close()
            raise

    async def read(self) -> bytes:
        while not self.complete:
            if self._error is not None:
                raise self._error
            self._waiter = self._loop.create_future()
            await self._waiter
        body = self._body
        self._body = []  # not kept alive by an idle connection in the pool
        return body[0] if len(body) == 1 else b"".join(body)

    async def next_chunk(self) -> bytes:
        """The body bytes that arrived since the last call (Response.__anext__)."""
        while not self._body:
            if self.complete:
                raise StopAsyncIteration
            if self._error is not None:
                raise self._error
            self._waiter = self._loop.create_future()
            await self._waiter
        body = self._body
        self._body = []
        self._buffered = 0
        if self._paused:
            self._resume()
        return body[0] if len(body) == 1 else b"".join(body)

    def _fail(self, error: ClientError) -> None:
        if not self.complete and self._error is None:
            self._error = error
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.complete:  # bytes nobody asked for: the connection is out of step
            self.close()
            return
        self._last_read = self._loop.time()
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ClientError(f"malformed response: {exc!r}"))
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:  # httptools callback
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:  # httptools callback
        self.status = self._parser.get_status_code()
        self.headers_complete = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def on_body(self, body: bytes) -> None:  # httptools callback
        self._body.append(body)
        if self.streaming:
            self._buffered += len(body)
            if self._buffered > HIGH_WATER_BYTES and not self._paused:
                self._pause()
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)

    def on_message_complete(self) -> None:  # httptools callback
        self.keep_alive = self._parser.should_keep_alive()
        self.complete = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        if exc is None and self.headers_complete and not self.complete and self._ends_at_close():
            self.complete = True
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)
        else:
            self._fail(ConnectionLost(f"connection lost: {exc!r}" if exc else "connection closed by the server"))

    def _ends_at_close(self) -> bool:
        """Neither Content-Length nor chunked: the body is whatever comes until the server closes."""
        encoding = self.headers.get(b"transfer-encoding", b"").lower()
        return b"content-length" not in self.headers and b"chunked" not in encoding

    def _pause(self) -> None:
        assert self._transport is not None
        self._paused = True
        self._transport.pause_reading()

    def _resume(self) -> None:
        assert self._transport is not None
        self._paused = False
        self._last_read = self._loop.time()  # the gap counts from here: while paused the consumer was slow
        if not self.closed:
            self._transport.resume_reading()

    def _check_read_gap(self) -> None:
        # One timer for the connection's life that moves itself on, rather than one per request or chunk: the
        # gap counts from the last byte, or from when the request went out.
        now = self._loop.time()
        if self.complete or self._paused:  # idle, or held back by a slow consumer: no gap of the server's
            self._timer = self._loop.call_at(now + self._read_timeout_s, self._check_read_gap)
            return
        due = self._last_read + self._read_timeout_s
        if now < due:
            self._timer = self._loop.call_at(due, self._check_read_gap)
            return
        self._timer = None
        self._fail(ReadTimeout(f"no bytes from the server for {self._read_timeout_s:g} s"))
        self.close()

    def close(self) -> None:
        self.closed = True  # at once: connection_lost only runs on a later turn of the loop
        if self._transport is not None:
            self._transport.close()


class Response:
    """Status and headers (lower-case names) of a response whose body is yet to be read, with `read()` or with
    `async for chunk in response`. Each one must end with `release()` (the connection goes back to the pool if it
    can carry another request) or `close()`."""

    __slots__ = ("_conn", "_pool", "headers", "status")

    def __init__(self, pool: Pool, conn: _Connection) -> None:
        self._pool = pool
        self._conn = conn
        self.status = conn.status
        self.headers = conn.headers

    def read(self) -> Awaitable[bytes]:
        """The whole body."""
        return self._conn.read()  # the connection's own coroutine: one frame fewer per request

    def __aiter__(self) -> Response:
        """The body as it arrives; the socket is not read while more than HIGH_WATER_BYTES wait for the consumer.
        (Not an async generator: one dropped mid-way would be closed by a task of its own.)"""
        self._conn.streaming = True
        return self

    def __anext__(self) -> Awaitable[bytes]:
        return self._conn.next_chunk()

    def release(self) -> None:
        self._pool._release(self._conn)

    def close(self) -> None:
        """Drops the connection, which is how the server learns to stop (vLLM aborts the generation)."""
        self._conn.close()


class Pool:
    """Keep-alive connections to the server of an http:// or https:// base URL, whose path prefixes every request's.
    Requests take the most recently idle connection or open one; there is no cap."""

    def __init__(self, base_url: str, connect_timeout_s: float, read_timeout_s: float) -> None:
        parts = urlsplit(base_url)
        tls = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if tls else 80)
        self._host_header = parts.netloc.rpartition("@")[2]
        self._prefix = parts.path.rstrip("/")
        self._ssl = ssl.create_default_context() if tls else None
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._idle: collections.deque[_Connection] = collections.deque()
        self._closed = False

    async def request(self, method: str, path: str, headers: Mapping[str, str], body: bytes | None = None) -> Response:
        """The response once its headers are in. Raises ConnectError when no connection could be opened (nothing
        was sent) and ClientError for any other failure."""
        head = f"{method} {self._prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
        for name, value in headers.items():
            head += f"{name}: {value}\r\n"
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n"
        request = (head + "\r\n").encode("latin-1") + (body or b"")
        conn = self._take_idle()
        if conn is not None:
            try:
                await conn.exchange(request)
                return Response(self, conn)
            except ConnectionLost:
                if conn.received:
                    raise
            # The server closed the idle connection as the request went out, before answering any of it: vLLM
            # aborts whatever a closed connection had started, so the request goes once more on a fresh one.
        conn = await self._connect()
        await conn.exchange(request)
        return Response(self, conn)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._read_timeout_s), self._host, self._port, ssl=self._ssl
                )
        except OSError as exc:  # refused, unreachable, DNS, TLS, and TimeoutError
            raise ConnectError(f"cannot connect to {self._host}:{self._port}: {exc!r}") from exc
        return conn

    def _take_idle(self) -> _Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed:  # else the server closed it while idle (vLLM's keep-alive timeout is 5 s)
                return conn
        return None

    def _release(self, conn: _Connection) -> None:
        """Back to the pool only after a complete response the server did not mark `Connection: close`."""
        if not (conn.complete and conn.keep_alive) or conn.closed or self._closed:
            conn.close()
            return
        idle = self._idle
        idle.append(conn)
        # Requests take from the right, so connections left over from a burst sit at the left until the server
        # closes them: let them go then.
        while idle[0].closed:
            idle.popleft()

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()
