"""Redis-backed rate limits and response cache: one round trip per request, failing open."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from . import metrics
from .redis_client import Redis, RedisError

log = logging.getLogger("serving.gateway.store")

# Fixed one-minute window per key in one hash: checks both limits, then counts the request only if admitted, so
# refused requests do not push a client's own window further over. KEYS[2], when given, is the cache entry read in
# the same round trip.
ADMIT_LUA = """
local rpm, tpm, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if rpm > 0 or tpm > 0 then
  local used = redis.call('HMGET', KEYS[1], 'req', 'tok')
  if rpm > 0 and (tonumber(used[1]) or 0) + 1 > rpm then return {1} end
  if tpm > 0 and (tonumber(used[2]) or 0) + cost > tpm then return {2} end
  redis.call('HINCRBY', KEYS[1], 'req', 1)
  redis.call('HINCRBY', KEYS[1], 'tok', cost)
  redis.call('EXPIRE', KEYS[1], 120)
end
if KEYS[2] then return {0, redis.call('GET', KEYS[2])} end
return {0}
"""
ADMIT_SHA = hashlib.sha1(ADMIT_LUA.encode()).hexdigest()
LIMIT_KINDS = {1: "rpm", 2: "tpm"}
# A dead Redis must not cost every request its call timeout: skip it for this long after an error.
BACKOFF_S = 1.0
CALL_TIMEOUT_S = 0.05


class Store:
    def __init__(self, url: str, password: str, cache_ttl_s: int) -> None:
        self.cache_ttl_s = cache_ttl_s
        self.client = Redis(url, password, CALL_TIMEOUT_S) if url else None
        self._down_until = 0.0
        self.caching = self.client is not None and cache_ttl_s > 0

    def _available(self) -> bool:
        return self.client is not None and time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + BACKOFF_S
        log.warning("redis unavailable, failing open for %.1fs: %r", BACKOFF_S, exc)

    async def _eval_admit(self, keys: tuple[str, ...], args: tuple[int, int, int]) -> list[Any]:
        assert self.client is not None
        # EVALSHA: the script body is sent only when Redis does not know it yet (first call, restart, failover).
        try:
            return await self.client.call("EVALSHA", ADMIT_SHA, len(keys), *keys, *args)
        except RedisError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self.client.call("EVAL", ADMIT_LUA, len(keys), *keys, *args)

    async def admit(
        self, key_id: str, rpm: int, tpm: int, cost: int, cache_key: str | None
    ) -> tuple[str | None, int, bytes | None]:
        """Returns (refused limit kind or None, Retry-After seconds, cached response or None) in one round trip."""
        if rpm <= 0 and tpm <= 0 and cache_key is None:
            return None, 0, None
        now = time.time()
        window = int(now // 60)
        keys = (f"rl:{key_id}:{window}",) if cache_key is None else (f"rl:{key_id}:{window}", cache_key)
        result = None
        if self._available():
            try:
                result = await self._eval_admit(keys, (rpm, tpm, cost))
            except (RedisError, OSError) as exc:
                self._failed(exc)
        if result is None:
            if cache_key is not None:
                metrics.CACHE_ERROR.inc()
            return None, 0, None
        refused = LIMIT_KINDS.get(result[0])
        cached = result[1] if len(result) > 1 else None
        if refused:
            return refused, max(1, 60 * (window + 1) - int(now)), None
        if cache_key is not None:
            (metrics.CACHE_HIT if cached is not None else metrics.CACHE_MISS).inc()
        return None, 0, cached

    async def put(self, cache_key: str, value: bytes) -> None:
        if not self._available():
            return
        assert self.client is not None
        try:
            await self.client.call("SET", cache_key, value, "EX", self.cache_ttl_s)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            metrics.CACHE_ERROR.inc()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
