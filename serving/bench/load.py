"""Load generators: closed loop for saturation throughput, open loop at a fixed rate for latency."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

REQUEST_TIMEOUT_S = 10


@dataclass
class Result:
    ok: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def _one(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            await resp.read()  # whole body, so a stream counts only once its last chunk arrived
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, force_close=False),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
    )


async def closed_loop(url: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float) -> Result:
    """`concurrency` clients send back to back: the throughput the server sustains at saturation."""
    ok = errors = 0
    async with _session() as session:
        end = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal ok, errors
            while time.perf_counter() < end:
                if await _one(session, url, body, headers):
                    ok += 1
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return Result(ok, errors, time.perf_counter() - start, [])


async def open_loop(url: str, body: bytes, headers: dict[str, str], rate: float, seconds: float) -> Result:
    """Requests start on a fixed schedule whatever the server does; latency counts from the scheduled start,
    so a server that falls behind shows its queueing (no coordinated omission)."""
    latencies: list[float] = []
    errors = 0
    async with _session() as session:

        async def request(scheduled: float) -> None:
            nonlocal errors
            if await _one(session, url, body, headers):
                latencies.append((time.perf_counter() - scheduled) * 1000)
            else:
                errors += 1

        start = time.perf_counter()
        tasks = []
        for i in range(int(rate * seconds)):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(request(scheduled)))
        await asyncio.gather(*tasks)
        return Result(len(latencies), errors, time.perf_counter() - start, latencies)
