"""Pooled upstream client with the hold queue: while no upstream is ready, retry until the hold deadline."""

from __future__ import annotations

import asyncio
import time

from . import metrics
from .http_client import ConnectError, Pool, Response

_FIRST_BACKOFF_S = 0.05
_MAX_BACKOFF_S = 1.0


class NoUpstream(Exception):
    """The hold timeout ran out with no upstream ready."""


class Upstream:
    def __init__(self, base_url: str, connect_timeout_s: float, read_timeout_s: float, hold_timeout_s: float) -> None:
        self.hold_timeout_s = hold_timeout_s
        # No total timeout: a long generation is fine as long as bytes keep coming (the read timeout bounds gaps).
        self.pool = Pool(base_url, connect_timeout_s, read_timeout_s)

    def close(self) -> None:
        self.pool.close()

    async def open(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Response:
        """Response headers of the first attempt that reached a ready upstream; retries happen only before any
        response byte, so a generation is never run twice."""
        deadline = time.monotonic() + self.hold_timeout_s
        backoff = _FIRST_BACKOFF_S
        held = False
        try:
            while True:
                try:
                    resp = await self.pool.request(method, path, headers, body)
                    if resp.status != 503:
                        return resp
                    resp.release()
                except ConnectError:  # "no vLLM is serving yet" (scaled to zero, pod starting): nothing was sent
                    pass
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NoUpstream
                if not held:
                    held = True
                    metrics.PENDING.inc()
                await asyncio.sleep(min(backoff, remaining))
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
        finally:
            if held:
                metrics.PENDING.dec()
