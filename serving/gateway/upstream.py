"""Pooled upstream client with the hold queue: while no upstream is ready, retry until the hold deadline."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from . import metrics

# Failures that mean "no vLLM is serving yet" (scaled to zero, pod starting): safe to retry, nothing was generated.
_NOT_READY = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
_FIRST_BACKOFF_S = 0.05
_MAX_BACKOFF_S = 1.0


class NoUpstream(Exception):
    """The hold timeout ran out with no upstream ready."""


class Upstream:
    def __init__(self, base_url: str, connect_timeout_s: float, read_timeout_s: float, hold_timeout_s: float) -> None:
        self.base_url = base_url
        self.hold_timeout_s = hold_timeout_s
        # No total timeout: a long generation is fine as long as bytes keep coming (sock_read bounds the gaps).
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s)
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=10, keepalive_timeout=30),
            timeout=self.timeout,
            skip_auto_headers=("User-Agent",),
            auto_decompress=False,
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def open(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> aiohttp.ClientResponse:
        """Response headers of the first attempt that reached a ready upstream; retries happen only before any
        response byte, so a generation is never run twice."""
        assert self.session is not None
        url = self.base_url + path
        deadline = time.monotonic() + self.hold_timeout_s
        backoff = _FIRST_BACKOFF_S
        held = False
        try:
            while True:
                try:
                    resp = await self.session.request(method, url, data=body, headers=headers)
                    if resp.status != 503:
                        return resp
                    resp.release()
                except _NOT_READY:
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
