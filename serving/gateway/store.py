"""Redis-backed rate limits and response cache, failing open, with Redis off the path of most requests.

Rate limits: each gateway process takes a lease (a share of a key's per-minute limit) from the key's counter in
Redis and spends it locally, topping it up in the background before it runs out. Redis counts every lease, so the
processes together never admit more than the limit. A process has at most one lease request per key in flight:
requests that find the lease short while one is under way wait for it instead of taking a lease each, so what a
process holds unspent stays at about a lease and a half however many requests arrive at once; it is given back
when the process shuts down. A lease share of 0 takes exactly what each request needs, one round trip per request.

Response cache: Redis holds every entry; each process keeps a copy of the entries it wrote or read, within a byte
budget and never past the entry's Redis TTL, so a repeated request is answered from memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from cachetools import TLRUCache

from . import defaults, metrics
from .redis_client import Redis, RedisError

log = logging.getLogger("serving.gateway.store")

# One fixed one-minute window per key in one hash. ARGV: the key's limits (0 = off), then for requests and for
# tokens what this request needs and how much to take: refused (1: rpm, 2: tpm) when less than the need is left,
# else up to the amount is taken and returned. KEYS[2], when given, is a cache entry read in the same round trip.
ADMIT_LUA = """
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local need_req, take_req = tonumber(ARGV[3]), tonumber(ARGV[4])
local need_tok, take_tok = tonumber(ARGV[5]), tonumber(ARGV[6])
local got_req, got_tok = 0, 0
if take_req > 0 or take_tok > 0 then
  local used = redis.call('HMGET', KEYS[1], 'req', 'tok')
  local left_req = rpm - (tonumber(used[1]) or 0)
  local left_tok = tpm - (tonumber(used[2]) or 0)
  if need_req > left_req then return {1} end
  if need_tok > left_tok then return {2} end
  got_req = math.max(0, math.min(take_req, left_req))
  got_tok = math.max(0, math.min(take_tok, left_tok))
  if got_req > 0 then redis.call('HINCRBY', KEYS[1], 'req', got_req) end
  if got_tok > 0 then redis.call('HINCRBY', KEYS[1], 'tok', got_tok) end
  redis.call('EXPIRE', KEYS[1], 120)
end
if KEYS[2] then return {0, got_req, got_tok, redis.call('PTTL', KEYS[2]), redis.call('GET', KEYS[2])} end
return {0, got_req, got_tok}
"""
ADMIT_SHA = hashlib.sha1(ADMIT_LUA.encode()).hexdigest()
LIMIT_KINDS = {1: "rpm", 2: "tpm"}
# A dead Redis must not cost every request its call timeout: skip it for this long after an error.
BACKOFF_S = 1.0


@dataclass(slots=True)
class _Lease:
    """What this process holds of one key's limits in one window, taken from Redis and not yet spent."""

    window: int
    counter: str  # the window's Redis hash
    rpm: int
    tpm: int
    req_share: int  # one lease of each limit
    tok_share: int
    requests: int = 0
    tokens: int = 0
    # The lease request in flight to Redis (a top-up or one a request started), done when its answer is in.
    flight: asyncio.Future[None] | None = None
    # Redis had nothing left to give: no more background top-ups this window (a request that needs one still asks).
    dry: bool = False


class Store:
    def __init__(
        self,
        url: str,
        password: str,
        cache_ttl_s: int,
        *,
        timeout_s: float = defaults.REDIS_TIMEOUT_S,
        lease_percent: float = 0.0,
        local_cache_bytes: int = 0,
    ) -> None:
        self.cache_ttl_s = cache_ttl_s
        self.lease_share = lease_percent / 100
        self.client = Redis(url, password, timeout_s) if url else None
        self._down_until = 0.0
        self.caching = self.client is not None and cache_ttl_s > 0
        # Values are (response, monotonic expiry); an entry is dropped at its expiry or when the budget needs room.
        self.local: TLRUCache[str, tuple[bytes, float]] | None = (
            TLRUCache(local_cache_bytes, ttu=lambda _key, value, _now: value[1], getsizeof=lambda value: len(value[0]))
            if self.caching and local_cache_bytes > 0
            else None
        )
        self._leases: dict[str, _Lease] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _available(self) -> bool:
        return self.client is not None and time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + BACKOFF_S
        log.warning("redis unavailable, failing open for %.1fs: %r", BACKOFF_S, exc)

    async def _eval_admit(self, keys: tuple[str, ...], args: tuple[int, ...]) -> list[Any]:
        assert self.client is not None
        # EVALSHA: the script body is sent only when Redis does not know it yet (first call, restart, failover).
        try:
            return await self.client.call("EVALSHA", ADMIT_SHA, len(keys), *keys, *args)
        except RedisError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self.client.call("EVAL", ADMIT_LUA, len(keys), *keys, *args)

    def _lease(self, key_id: str, window: int, rpm: int, tpm: int) -> _Lease:
        lease = self._leases.get(key_id)
        if lease is None or lease.window != window:
            share = self.lease_share
            counter = f"rl:{key_id}:{window}"
            lease = self._leases[key_id] = _Lease(window, counter, rpm, tpm, int(rpm * share), int(tpm * share))
        return lease

    def _cached_locally(self, cache_key: str) -> bytes | None:
        if self.local is None:
            return None
        entry = self.local.get(cache_key)
        return entry[0] if entry is not None else None

    def _keep_locally(self, cache_key: str, value: bytes, ttl_s: float) -> None:
        if self.local is not None and len(value) <= self.local.maxsize:
            self.local[cache_key] = (value, time.monotonic() + ttl_s)

    async def admit(
        self, key_id: str, rpm: int, tpm: int, cost: int, cache_key: str | None
    ) -> tuple[str | None, int, bytes | None]:
        """Returns (refused limit kind or None, Retry-After seconds, cached response or None); at most one round
        trip to Redis, none when the lease covers the request and the cache entry (if any) is held locally."""
        if rpm <= 0 and tpm <= 0 and cache_key is None:
            return None, 0, None
        now = time.time()
        window = int(now // 60)
        lease = self._lease(key_id, window, rpm, tpm)
        need_req = 1 if rpm > 0 else 0
        need_tok = cost if tpm > 0 else 0
        cached = self._cached_locally(cache_key) if cache_key is not None else None
        local_hit = cached is not None
        covered = lease.requests >= need_req and lease.tokens >= need_tok
        if covered and (cache_key is None or local_hit):
            self._spend(lease, need_req, need_tok)
            return None, 0, self._counted(cache_key, cached, local_hit)
        # Single flight: while a lease for this key is on its way, wait for it rather than take another.
        while not covered and lease.flight is not None:
            await asyncio.shield(lease.flight)  # a waiter that is cancelled must not cancel the others' wait
            covered = lease.requests >= need_req and lease.tokens >= need_tok
        # For a limit the lease cannot cover, Redis is asked for what this request needs plus a new lease.
        take_req = 0 if lease.requests >= need_req else max(need_req, lease.req_share)
        take_tok = 0 if lease.tokens >= need_tok else max(need_tok, lease.tok_share)
        if not take_req and not take_tok and (cache_key is None or local_hit):
            self._spend(lease, need_req, need_tok)
            return None, 0, self._counted(cache_key, cached, local_hit)
        keys = (lease.counter,) if cache_key is None or local_hit else (lease.counter, cache_key)
        result = None
        if self._available():
            flight = self._start_flight(lease) if take_req or take_tok else None
            try:
                result = await self._eval_admit(keys, (rpm, tpm, need_req, take_req, need_tok, take_tok))
            except (RedisError, OSError) as exc:
                self._failed(exc)
            finally:
                if flight is not None:
                    self._end_flight(lease, flight)
        if result is None:
            # Fail open: the request is served; a lease that covers it is still spent.
            if not take_req and not take_tok:
                self._spend(lease, need_req, need_tok)
            if cache_key is not None and not local_hit:
                metrics.CACHE_ERROR.inc()
                return None, 0, None
            return None, 0, self._counted(cache_key, cached, local_hit)
        refused = LIMIT_KINDS.get(result[0])
        if refused:
            return refused, max(1, 60 * (window + 1) - int(now)), None
        self._add_to_lease(lease, result[1], result[2])
        self._spend(lease, need_req, need_tok)
        if len(result) > 3 and result[4] is not None:
            pttl_ms, cached = result[3], result[4]
            assert cache_key is not None
            self._keep_locally(cache_key, cached, pttl_ms / 1000 if pttl_ms > 0 else self.cache_ttl_s)
        return None, 0, self._counted(cache_key, cached, local_hit)

    @staticmethod
    def _counted(cache_key: str | None, cached: bytes | None, local_hit: bool) -> bytes | None:
        if cache_key is not None:
            (metrics.CACHE_HIT if cached is not None else metrics.CACHE_MISS).inc()
            if local_hit:
                metrics.CACHE_LOCAL_HIT.inc()
        return cached

    def _spend(self, lease: _Lease, need_req: int, need_tok: int) -> None:
        """Takes this request from the lease; below half a lease, the next one is taken in the background."""
        lease.requests -= need_req
        lease.tokens -= need_tok
        low_req = need_req and lease.req_share > 1 and lease.requests < lease.req_share // 2
        low_tok = need_tok and lease.tok_share > 1 and lease.tokens < lease.tok_share // 2
        if (low_req or low_tok) and lease.flight is None and not lease.dry and self._available():
            flight = self._start_flight(lease)
            task = asyncio.get_running_loop().create_task(
                self._refill(lease, flight, lease.req_share if low_req else 0, lease.tok_share if low_tok else 0)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _refill(self, lease: _Lease, flight: asyncio.Future[None], take_req: int, take_tok: int) -> None:
        try:
            result = await self._eval_admit((lease.counter,), (lease.rpm, lease.tpm, 0, take_req, 0, take_tok))
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return
        finally:
            self._end_flight(lease, flight)
        lease.dry = not result[1] and not result[2]
        self._add_to_lease(lease, result[1], result[2])

    @staticmethod
    def _start_flight(lease: _Lease) -> asyncio.Future[None]:
        flight = lease.flight = asyncio.get_running_loop().create_future()
        return flight

    @staticmethod
    def _end_flight(lease: _Lease, flight: asyncio.Future[None]) -> None:
        """Wakes the waiters; they run after the caller has added the answer to the lease (no await between)."""
        lease.flight = None
        flight.set_result(None)

    @staticmethod
    def _add_to_lease(lease: _Lease, requests: int, tokens: int) -> None:
        if requests or tokens:
            metrics.LEASES.inc()
        lease.requests += requests
        lease.tokens += tokens

    async def put(self, cache_key: str, value: bytes) -> None:
        if not self._available():
            return
        assert self.client is not None
        try:
            await self.client.call("SET", cache_key, value, "EX", self.cache_ttl_s)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            metrics.CACHE_ERROR.inc()
            return
        self._keep_locally(cache_key, value, self.cache_ttl_s)

    async def close(self) -> None:
        """Gives back what this process holds unspent of the current window, so a rolling restart strands
        nothing."""
        if self.client is None:
            return
        window = int(time.time() // 60)
        for key_id, lease in self._leases.items():
            if lease.window != window or (lease.requests <= 0 and lease.tokens <= 0):
                continue
            try:
                for field, unspent in (("req", lease.requests), ("tok", lease.tokens)):
                    if unspent > 0:
                        await self.client.call("HINCRBY", lease.counter, field, -unspent)
                # As the script does: a counter that Redis lost meanwhile must not come back without its expiry.
                await self.client.call("EXPIRE", lease.counter, 120)
            except (RedisError, OSError) as exc:
                log.warning("could not give back the rate-limit lease of %s: %r", key_id, exc)
                break
        await self.client.close()
