"""Load generators: closed loop for saturation throughput, open loop at a fixed rate for latency.

Both run on uvloop, like the servers under test, with the gateway's lean HTTP/1.1 client, so the generator's own
cost per request stays small next to what it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import os
import sys
import time
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import uvloop

from serving.gateway.http_client import ClientError, Pool

REQUEST_TIMEOUT_S = 10
_TFD_TIMER_ABSTIME = 1
_libc = ctypes.CDLL(None, use_errno=True)

T = TypeVar("T")


@dataclass
class Result:
    ok: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def merged(self, other: Result) -> Result:
        return Result(
            self.ok + other.ok,
            self.errors + other.errors,
            self.seconds + other.seconds,
            self.latencies_ms + other.latencies_ms,
        )

    def percentile(self, p: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def run(measurement: Coroutine[Any, Any, T]) -> T:
    return uvloop.run(measurement)


class _Client:
    """POSTs one body to one URL over the gateway's keep-alive pool (`serving/gateway/http_client.py`), so there is
    one lean HTTP client to maintain, not two. Its cost lands in every latency the generator reports: aiohttp's
    client took about 0.6 ms more per request at 200 requests/s (1.4 against 0.8 ms p50 to the simulator on this
    VM), this one about 0.08 ms more than a client that only found where each response ended and dropped it
    (docs/gateway-benchmark.md, Method)."""

    def __init__(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self._pool = Pool(f"{parts.scheme}://{parts.netloc}", REQUEST_TIMEOUT_S, REQUEST_TIMEOUT_S)
        self._path = parts.path
        self._body = body
        self._headers = headers

    async def send(self) -> bool:
        """True for a 200 answered in full within REQUEST_TIMEOUT_S."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                resp = await self._pool.request("POST", self._path, self._headers, self._body)
                try:
                    await resp.read()
                finally:
                    resp.release()
        except (ClientError, TimeoutError):
            return False
        return resp.status == 200

    def close(self) -> None:
        self._pool.close()


async def closed_loop(url: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float) -> Result:
    """`concurrency` clients send back to back: the throughput the server sustains at saturation."""
    ok = errors = 0
    client = _Client(url, body, headers)
    end = time.perf_counter() + seconds

    async def sender() -> None:
        nonlocal ok, errors
        while time.perf_counter() < end:
            if await client.send():
                ok += 1
            else:
                errors += 1

    start = time.perf_counter()
    try:
        await asyncio.gather(*(sender() for _ in range(concurrency)))
    finally:
        client.close()
    return Result(ok, errors, time.perf_counter() - start, [])


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


def _timespec(seconds: float) -> _Timespec:
    whole = int(seconds)
    return _Timespec(whole, round((seconds - whole) * 1e9))


def _periodic_timer(first: float, interval: float) -> int:
    """A timerfd on time.monotonic()'s clock that expires at `first`, then every `interval` seconds.

    The kernel's timer fires within microseconds of each scheduled start, where the event loops' own timers round
    to whole milliseconds: asyncio.sleep woke 0.8 ms late at p50 and 1.7 ms at p99 here (uvloop up to 1 ms early
    or late), and that error lands in every latency measured from the schedule.
    """
    fd = _libc.timerfd_create(time.CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "timerfd_create failed")
    spec = _Itimerspec(_timespec(interval), _timespec(first))
    if _libc.timerfd_settime(fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
        errno = ctypes.get_errno()
        os.close(fd)
        raise OSError(errno, "timerfd_settime failed")
    return fd


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """A collection in the generator stalls every request in flight (a full one took ~30 ms here): that is the
    instrument's noise, not the server's latency, so collect before the latency window and not during it."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _open_loop(client: _Client, rate: float, seconds: float) -> Result:
    """Requests start on a fixed schedule whatever the server does; latency counts from the scheduled start,
    so a server that falls behind shows its queueing (no coordinated omission)."""
    latencies: list[float] = []
    errors = 0
    total = int(rate * seconds)
    loop = asyncio.get_running_loop()

    async def request(scheduled: float) -> None:
        nonlocal errors
        if await client.send():
            latencies.append((time.monotonic() - scheduled) * 1000)
        else:
            errors += 1

    tasks: list[asyncio.Task[None]] = []
    all_started = loop.create_future()
    with _gc_paused():
        start = time.monotonic()
        timer = _periodic_timer(start, 1 / rate)

        def on_tick() -> None:
            try:
                expired = int.from_bytes(os.read(timer, 8), sys.byteorder)
            except BlockingIOError:
                return
            # More than one expiry when the loop was busy: the overdue requests start now, each still timed
            # from its own scheduled start.
            for _ in range(min(expired, total - len(tasks))):
                tasks.append(loop.create_task(request(start + len(tasks) / rate)))
            if len(tasks) == total and not all_started.done():
                all_started.set_result(None)

        loop.add_reader(timer, on_tick)
        try:
            if total:
                await all_started
            await asyncio.gather(*tasks)
        finally:
            loop.remove_reader(timer)
            os.close(timer)
    return Result(len(latencies), errors, time.monotonic() - start, latencies)


async def open_loop(
    cases: Sequence[tuple[str, bytes]], headers: dict[str, str], rate: float, seconds: float, rounds: int
) -> list[Result]:
    """Each (url, body) case gets `seconds` of open loop at `rate`, in `rounds` slices that take turns, so a slow
    drift of the shared machine's speed (a third between consecutive 10 s windows here) falls on every case alike
    instead of on whichever ran last. Each case keeps its own connections across its slices."""
    clients = [_Client(url, body, headers) for url, body in cases]
    results = [Result(0, 0, 0.0, []) for _ in cases]
    try:
        for _ in range(rounds):
            for i, client in enumerate(clients):
                results[i] = results[i].merged(await _open_loop(client, rate, seconds / rounds))
    finally:
        for client in clients:
            client.close()
    return results
