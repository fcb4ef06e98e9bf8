"""The gateway's upstream HTTP/1.1 client against scripted servers on real sockets: what the simulator never does
(stale keep-alive connections, `Connection: close`, bodies read to the close, silent servers, malformed answers)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import pytest
import uvloop

from serving.gateway.http_client import ClientError, ConnectError, ConnectionLost, Pool, ReadTimeout

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def on_uvloop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Runs an async test on the gateway's event loop."""

    @functools.wraps(test)
    def run() -> None:
        uvloop.run(asyncio.wait_for(test(), 20))

    return run


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(2):
        while not condition():
            await asyncio.sleep(0.01)


class Server:
    """A scripted HTTP server: `handler(server, reader, writer, n)` serves the n-th connection (from 1)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.open_connections = 0
        self.closed_by_client = 0
        self.requests: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_connections += 1
        try:
            await self.handler(self, reader, writer, self.connections)
        finally:
            writer.close()
            self.open_connections -= 1

    async def request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One request (head and Content-Length body), or None once the client closed the connection."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            self.closed_by_client += 1
            return None
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        request = head + await reader.readexactly(int(length.group(1)) if length else 0)
        self.requests.append(request)
        return request


Handler = Callable[[Server, asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(handler: Handler, read_timeout_s: float = 5, path: str = "") -> AsyncIterator[tuple[Server, Pool]]:
    """The server and a pool to it; afterwards the pool is closed and must have left no connection open."""
    server = Server(handler)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    pool = Pool(f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}{path}", 1, read_timeout_s)
    async with listener:
        yield server, pool
        pool.close()
        await until(lambda: server.open_connections == 0)


async def get(pool: Pool, path: str = "/") -> tuple[int, bytes]:
    resp = await pool.request("GET", path, {"x-test": "1"})
    try:
        return resp.status, await resp.read()
    finally:
        resp.release()


async def answer_all(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    while await server.request(reader) is not None:
        writer.write(OK)


def first_answer(answer: bytes) -> Handler:
    """The first connection gets `answer` to its first request and nothing more; later ones answer OK."""

    async def handler(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n > 1:
            await answer_all(server, reader, writer, n)
            return
        await server.request(reader)
        writer.write(answer)
        await server.request(reader)

    return handler


@on_uvloop
async def test_keep_alive_reuses_a_connection_but_not_after_connection_close() -> None:
    async def handler(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while (request := await server.request(reader)) is not None:
            if request.startswith(b"GET /prefix/close "):
                # The server leaves the closing to the client, which must not send anything more on it.
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbye")
            else:
                writer.write(OK)

    async with serving(handler, path="/prefix/") as (server, pool):
        assert await get(pool, "/a") == (200, b"ok")
        assert await get(pool, "/b") == (200, b"ok")
        assert server.connections == 1
        assert await get(pool, "/close") == (200, b"bye")
        await until(lambda: server.closed_by_client == 1)
        assert await get(pool, "/c") == (200, b"ok")
        assert server.connections == 2
        first = server.requests[0].decode()
        assert first.startswith("GET /prefix/a HTTP/1.1\r\nHost: 127.0.0.1:")
        assert "\r\nx-test: 1\r\n" in first


@on_uvloop
async def test_post_body_and_content_length_chunked_and_read_to_close_responses() -> None:
    answers = {
        b"/length": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"/chunked": CHUNKED + b"3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\n\r\n",
        b"/empty": b"HTTP/1.1 204 No Content\r\n\r\n",
    }

    async def handler(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while (request := await server.request(reader)) is not None:
            path = request.split(b" ")[1]
            if path == b"/until-close":  # no length: the body ends with the connection
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhel")
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.write(b"lo")
                return
            writer.write(answers[path])

    async with serving(handler) as (server, pool):
        resp = await pool.request("POST", "/length", {"content-type": "application/json"}, b'{"a": 1}')
        assert (resp.status, await resp.read()) == (200, b"hello")
        resp.release()
        assert server.requests[0].endswith(b"\r\nContent-Length: 8\r\n\r\n" + b'{"a": 1}')
        assert await get(pool, "/chunked") == (200, b"hello")
        assert await get(pool, "/empty") == (204, b"")
        resp = await pool.request("GET", "/until-close", {})
        assert resp.headers[b"content-type"] == b"text/plain"
        assert await resp.read() == b"hello"
        resp.release()
        assert await get(pool, "/length") == (200, b"hello")
        assert server.connections == 2  # the body read to the close took its connection with it


@on_uvloop
async def test_stream_chunks_arrive_as_they_are_sent() -> None:
    first_received = asyncio.Event()

    async def handler(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await server.request(reader)
        writer.write(CHUNKED + b"9\r\ndata: 1\n\n\r\n")
        await first_received.wait()  # the second event only once the client has the first
        writer.write(b"9\r\ndata: 2\n\n\r\n0\r\n\r\n")
        await server.request(reader)

    async with serving(handler) as (_, pool):
        resp = await pool.request("GET", "/stream", {})
        chunks = []
        async for chunk in resp:
            chunks.append(chunk)
            first_received.set()
        resp.release()
        assert chunks == [b"data: 1\n\n", b"data: 2\n\n"]


@on_uvloop
async def test_stale_keep_alive_connection_is_retried_once_on_a_fresh_one() -> None:
    async def handler(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        # Answers the first request of each connection; the next one finds the connection closing under it, as
        # when a server's keep-alive timeout fires while the request is on its way.
        await server.request(reader)
        writer.write(OK)
        await server.request(reader)

    async with serving(handler) as (server, pool):
        assert await get(pool) == (200, b"ok")
        assert await get(pool) == (200, b"ok")  # retried transparently
        assert server.connections == 2
        assert len(server.requests) == 3


@on_uvloop
async def test_connection_lost_is_not_retried_twice_nor_after_a_response_byte() -> None:
    async def handler(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await server.request(reader)
        if n == 1:
            writer.write(OK)
            await server.request(reader)  # closes under the second request
        elif n == 3:
            writer.write(OK)
            await server.request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Le")  # then closes mid-headers

    async with serving(handler) as (server, pool):
        assert await get(pool) == (200, b"ok")
        with pytest.raises(ConnectionLost):  # the stale connection, then a fresh one that fails as well
            await get(pool)
        assert server.connections == 2
        assert await get(pool) == (200, b"ok")
        with pytest.raises(ConnectionLost):  # part of a response arrived: not retried
            await get(pool)
        assert server.connections == 3


@on_uvloop
async def test_read_timeout_bounds_the_gap_between_bytes_not_the_total() -> None:
    async def handler(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while (request := await server.request(reader)) is not None:
            if request.startswith(b"GET /slow "):  # 1 s in all, a byte every 0.1 s
                writer.write(CHUNKED)
                for _ in range(10):
                    await asyncio.sleep(0.1)
                    writer.write(b"1\r\nx\r\n")
                writer.write(b"0\r\n\r\n")
            elif request.startswith(b"GET /silent-body "):
                writer.write(CHUNKED)
            # /silent-headers: no answer at all

    async with serving(handler, read_timeout_s=0.4) as (server, pool):
        assert await get(pool, "/slow") == (200, b"x" * 10)
        started = time.monotonic()
        with pytest.raises(ReadTimeout):
            await pool.request("GET", "/silent-headers", {})
        with pytest.raises(ReadTimeout):
            await get(pool, "/silent-body")
        assert 0.7 < time.monotonic() - started < 2
        # A timed-out exchange closes its connection, which tells the server to stop.
        await until(lambda: server.closed_by_client == 2)
        assert server.connections == 2


@on_uvloop
async def test_slow_consumer_pauses_reading_and_loses_nothing() -> None:
    total = 32 * 1024 * 1024  # far more than the kernel's socket buffers hold on loopback
    sent = 0

    async def handler(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        nonlocal sent
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        piece = b"x" * 65536
        while sent < total:
            writer.write(piece)
            await writer.drain()
            sent += len(piece)
        await answer_all(server, reader, writer, n)

    async with serving(handler) as (server, pool):
        resp = await pool.request("GET", "/big", {})
        received = 0
        async for chunk in resp:
            if not received:
                await asyncio.sleep(0.5)  # a slow client: the server must be held back, not buffered
                assert sent < total / 2
            received += len(chunk)
        resp.release()
        assert received == total
        assert await get(pool) == (200, b"ok")
        assert server.connections == 1  # the connection carries on after pausing


@on_uvloop
async def test_request_cancelled_before_the_answer_closes_its_connection() -> None:
    async with serving(first_answer(b"")) as (server, pool):
        request = asyncio.ensure_future(pool.request("POST", "/generate", {}, b"{}"))
        await until(lambda: len(server.requests) == 1)
        request.cancel()  # the gateway's client went away: the server must learn it, to stop generating
        with pytest.raises(asyncio.CancelledError):
            await request
        await until(lambda: server.closed_by_client == 1)


@on_uvloop
async def test_cancelled_read_and_close_drop_the_connection() -> None:
    async with serving(first_answer(CHUNKED + b"5\r\nfirst\r\n")) as (server, pool):
        resp = await pool.request("GET", "/long", {})

        async def consume() -> None:
            async for _ in resp:
                pass

        consumer = asyncio.ensure_future(consume())
        await asyncio.sleep(0.1)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        resp.close()
        await until(lambda: server.closed_by_client == 1)  # the server learns the client went away
        assert await get(pool) == (200, b"ok")
        assert server.connections == 2


@on_uvloop
async def test_malformed_response_fails_and_its_connection_is_dropped() -> None:
    async with serving(first_answer(b"NOT HTTP AT ALL\r\n\r\n")) as (server, pool):
        with pytest.raises(ClientError, match="malformed"):
            await get(pool)
        assert await get(pool) == (200, b"ok")
        assert server.connections == 2


@on_uvloop
async def test_connect_refused_and_connect_timeout_are_connect_errors() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(ConnectError):
        await Pool(f"http://127.0.0.1:{port}", 1, 5).request("GET", "/", {})
    # A listener whose accept queue is full drops further handshakes, so connecting hangs until the timeout.
    with socket.socket() as listener, contextlib.ExitStack() as stack:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        for _ in range(4):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(listener.getsockname())
        started = time.monotonic()
        with pytest.raises(ConnectError, match="TimeoutError"):
            await Pool(f"http://127.0.0.1:{listener.getsockname()[1]}", 0.3, 5).request("GET", "/", {})
        assert 0.25 < time.monotonic() - started < 2


@on_uvloop
async def test_close_closes_idle_connections() -> None:
    async with serving(answer_all) as (server, pool):
        assert await get(pool) == (200, b"ok")
        assert await get(pool) == (200, b"ok")
        assert server.open_connections == 1
    assert server.closed_by_client == 1
