"""Sliding-window rate limiting for login throttling (per account and per client address).

A key may be hit at most ``limit`` times in any ``window`` seconds. Only allowed attempts
are recorded, so a refused caller can retry exactly ``retry_after`` seconds later (when the
oldest recorded attempt leaves the window), and a key never stores more than ``limit``
timestamps.

:class:`MemoryRateLimiter` serves one process. :class:`RedisRateLimiter` shares limits
across processes through a Redis sorted set per key, updated atomically by one Lua script
that uses the Redis server clock. When Redis is unreachable it falls back to a per-process
:class:`MemoryRateLimiter` (limits keep holding within each process, never fail open) and
logs the outage once; it retries Redis after a short pause.
"""

from __future__ import annotations

import math
import time
import uuid
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from pulse_engine.redis_breaker import RedisBreaker

__all__ = [
    "MemoryRateLimiter",
    "RateLimitDecision",
    "RateLimiter",
    "RedisRateLimiter",
    "create_rate_limiter",
]



@dataclass(frozen=True)
class RateLimitDecision:
    """Whether an attempt may proceed; if not, ``retry_after`` (>= 1) seconds to wait."""

    allowed: bool
    retry_after: int


_ALLOWED = RateLimitDecision(allowed=True, retry_after=0)


def _check_args(limit: int, window: float) -> None:
    """Reject a non-positive ``limit`` or ``window``."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if not window > 0:
        raise ValueError("window must be a positive number of seconds")


def _denied(wait_seconds: float) -> RateLimitDecision:
    """A refusal telling the caller to wait ``wait_seconds``, rounded up, at least 1."""
    return RateLimitDecision(allowed=False, retry_after=max(1, math.ceil(wait_seconds)))


class RateLimiter(ABC):
    """Sliding-window limiter: at most ``limit`` recorded hits per key in ``window`` seconds."""

    @abstractmethod
    async def hit(self, key: str, *, limit: int, window: float) -> RateLimitDecision:
        """Decide on one attempt for ``key`` and record it if it is allowed."""

    @abstractmethod
    async def check(self, key: str, *, limit: int, window: float) -> RateLimitDecision:
        """Decide whether an attempt for ``key`` would be allowed, without recording it."""

    @abstractmethod
    async def reset(self, key: str) -> None:
        """Forget every recorded attempt for ``key`` (for example after a good login)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release resources; the limiter must not be used afterwards."""


class MemoryRateLimiter(RateLimiter):
    """In-process limiter: a deque of monotonic timestamps per key.

    At most ``max_keys`` keys are tracked; the least recently used key is evicted beyond
    that, so memory stays bounded however many distinct keys callers invent.
    """

    def __init__(self, *, max_keys: int = 100_000) -> None:
        """Create an empty limiter tracking at most ``max_keys`` keys."""
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._max_keys = max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def _decide(self, key: str, limit: int, window: float, record: bool) -> RateLimitDecision:
        """Prune ``key``'s expired hits, decide, and record an allowed hit if asked."""
        _check_args(limit, window)
        now = time.monotonic()
        hits = self._hits.get(key)
        if hits is not None:
            self._hits.move_to_end(key)
            cutoff = now - window
            while hits and hits[0] <= cutoff:
                hits.popleft()
            if len(hits) >= limit:
                return _denied(hits[0] + window - now)
        if record:
            if hits is None:
                hits = self._hits[key] = deque()
                while len(self._hits) > self._max_keys:
                    self._hits.popitem(last=False)
            hits.append(now)
        elif hits is not None and not hits:
            del self._hits[key]
        return _ALLOWED

    async def hit(self, key: str, *, limit: int, window: float) -> RateLimitDecision:
        """Decide on one attempt for ``key`` and record it if it is allowed."""
        return self._decide(key, limit, window, record=True)

    async def check(self, key: str, *, limit: int, window: float) -> RateLimitDecision:
        """Decide whether an attempt for ``key`` would be allowed, without recording it."""
        return self._decide(key, limit, window, record=False)

    async def reset(self, key: str) -> None:
        """Forget every recorded attempt for ``key``."""
        self._hits.pop(key, None)

    async def aclose(self) -> None:
        """Drop every recorded attempt."""
        self._hits.clear()


# KEYS[1] = sorted set; ARGV = window (ms), limit, record (0/1), unique member suffix.
# Scores are Redis server milliseconds, so every process shares one clock.
_SLIDING_WINDOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) + window - now}
end
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
end
return {1, 0}
"""


class RedisRateLimiter(RateLimiter):
    """Limiter shared by every process through Redis, with a per-process fallback.

    Each key is a sorted set ``{prefix}{key}`` of attempt timestamps that expires one window
    after its last recorded attempt. If Redis fails, decisions come from an internal
    :class:`MemoryRateLimiter` for ``retry_interval`` seconds before Redis is tried again;
    the outage and the recovery are each logged once.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "pulse:rl:",
        *,
        timeout: float = 0.5,
        retry_interval: float = 5.0,
        breaker: RedisBreaker | None = None,
    ) -> None:
        """Create the limiter; no connection is made until the first call.

        A failed command is retried once at once (to survive a stale pooled connection),
        then the fallback takes over: ``timeout`` bounds each attempt. ``breaker`` is the
        one shared with the engine's other Redis users (default: one of the limiter's own,
        open for ``retry_interval`` after an error).
        """
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), retries=1),
        )
        self._script = self._redis.register_script(_SLIDING_WINDOW_LUA)
        self._prefix = prefix
        self.breaker = breaker or RedisBreaker(retry_interval)
        self._fallback = MemoryRateLimiter()

    async def _decide(self, key: str, limit: int, window: float, record: bool) -> RateLimitDecision:
        """Run the sliding-window script for ``key``, or the fallback if Redis is down."""
        _check_args(limit, window)
        if self.breaker.available:
            window_ms = max(1, math.ceil(window * 1000))
            args = [window_ms, limit, "1" if record else "0", uuid.uuid4().hex]
            try:
                allowed, wait_ms = await self._script(keys=[self._prefix + key], args=args)
            except (RedisError, OSError) as exc:
                self.breaker.trip("rate limiter", exc)
            else:
                self.breaker.succeeded()
                return _ALLOWED if allowed else _denied(int(wait_ms) / 1000)
        if record:
            return await self._fallback.hit(key, limit=limit, window=window)
        return await self._fallback.check(key, limit=limit, window=window)

    async def hit(self, key: str, *, limit: int, window: float) -> RateLimitDecision:
        """Decide on one attempt for ``key`` and record it if it is allowed."""
        return await self._decide(key, limit, window, record=True)

    async def check(self, key: str, *, limit: int, window: float) -> RateLimitDecision:
        """Decide whether an attempt for ``key`` would be allowed, without recording it."""
        return await self._decide(key, limit, window, record=False)

    async def reset(self, key: str) -> None:
        """Forget ``key``'s attempts in Redis (when reachable) and in the fallback."""
        await self._fallback.reset(key)
        if self.breaker.available:
            try:
                await self._redis.delete(self._prefix + key)
            except (RedisError, OSError) as exc:
                self.breaker.trip("rate limiter", exc)
            else:
                self.breaker.succeeded()

    async def aclose(self) -> None:
        """Close the Redis connection pool."""
        await self._redis.aclose()


def create_rate_limiter(
    redis_url: str | None, *, breaker: RedisBreaker | None = None
) -> RateLimiter:
    """A :class:`RedisRateLimiter` for ``redis_url``, or a :class:`MemoryRateLimiter` if None."""
    if redis_url:
        return RedisRateLimiter(redis_url, breaker=breaker)
    return MemoryRateLimiter()
