"""Tests for :mod:`pulse_engine.ratelimit`, against memory and a real Redis."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from fixtures.tcp_proxy import OutageProxy

from pulse_engine.ratelimit import (
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    create_rate_limiter,
)

DEAD_REDIS_URL = "redis://127.0.0.1:1/0"


def _prefix() -> str:
    """A Redis key prefix no other test uses."""
    return f"pulse:rl:test:{uuid.uuid4().hex}:"


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[RateLimiter]:
    """Each backend in turn; the Redis one under a unique key prefix."""
    if request.param == "memory":
        backend: RateLimiter = MemoryRateLimiter()
        yield backend
        await backend.aclose()
        return
    prefix = _prefix()
    backend = RedisRateLimiter(redis_url, prefix=prefix)
    yield backend
    await backend.aclose()
    client = aioredis.Redis.from_url(redis_url)
    keys = [key async for key in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_limit_respected_within_window(limiter: RateLimiter) -> None:
    """``limit`` hits pass, the next is refused with a sensible ``retry_after``."""
    for _ in range(3):
        decision = await limiter.hit("acct:a", limit=3, window=10)
        assert decision.allowed and decision.retry_after == 0
    refused = await limiter.hit("acct:a", limit=3, window=10)
    assert not refused.allowed
    assert 9 <= refused.retry_after <= 10


async def test_retry_after_is_at_least_one(limiter: RateLimiter) -> None:
    """Sub-second waits are rounded up to one second."""
    await limiter.hit("k", limit=1, window=0.3)
    refused = await limiter.hit("k", limit=1, window=0.3)
    assert not refused.allowed and refused.retry_after == 1


async def test_window_slides(limiter: RateLimiter) -> None:
    """Attempts leave the window one by one as it slides."""
    assert (await limiter.hit("k", limit=2, window=0.3)).allowed
    await asyncio.sleep(0.15)
    assert (await limiter.hit("k", limit=2, window=0.3)).allowed
    assert not (await limiter.hit("k", limit=2, window=0.3)).allowed
    await asyncio.sleep(0.2)
    assert (await limiter.hit("k", limit=2, window=0.3)).allowed
    assert not (await limiter.hit("k", limit=2, window=0.3)).allowed
    await asyncio.sleep(0.35)
    assert (await limiter.hit("k", limit=2, window=0.3)).allowed
    assert (await limiter.hit("k", limit=2, window=0.3)).allowed


async def test_refused_attempts_do_not_extend_the_lockout(limiter: RateLimiter) -> None:
    """Hammering a locked key does not push its retry time further out."""
    await limiter.hit("k", limit=1, window=0.3)
    for _ in range(5):
        assert not (await limiter.hit("k", limit=1, window=0.3)).allowed
    await asyncio.sleep(0.35)
    assert (await limiter.hit("k", limit=1, window=0.3)).allowed


async def test_check_does_not_record(limiter: RateLimiter) -> None:
    """``check`` decides without counting; it refuses once hits reach the limit."""
    for _ in range(5):
        assert (await limiter.check("k", limit=2, window=10)).allowed
    await limiter.hit("k", limit=2, window=10)
    assert (await limiter.check("k", limit=2, window=10)).allowed
    await limiter.hit("k", limit=2, window=10)
    refused = await limiter.check("k", limit=2, window=10)
    assert not refused.allowed and 9 <= refused.retry_after <= 10


async def test_reset(limiter: RateLimiter) -> None:
    """``reset`` forgets a key's attempts."""
    await limiter.hit("k", limit=1, window=10)
    assert not (await limiter.hit("k", limit=1, window=10)).allowed
    await limiter.reset("k")
    assert (await limiter.hit("k", limit=1, window=10)).allowed
    await limiter.reset("never-seen")


async def test_keys_are_independent(limiter: RateLimiter) -> None:
    """Exhausting one key leaves the others untouched."""
    await limiter.hit("ip:1.2.3.4", limit=1, window=10)
    assert not (await limiter.hit("ip:1.2.3.4", limit=1, window=10)).allowed
    assert (await limiter.hit("ip:5.6.7.8", limit=1, window=10)).allowed
    assert (await limiter.hit("acct:1.2.3.4", limit=1, window=10)).allowed


async def test_invalid_arguments_rejected(limiter: RateLimiter) -> None:
    """A non-positive limit or window is a programming error."""
    with pytest.raises(ValueError):
        await limiter.hit("k", limit=0, window=1)
    with pytest.raises(ValueError):
        await limiter.check("k", limit=1, window=0)


async def test_concurrent_hits_never_exceed_limit(limiter: RateLimiter) -> None:
    """Many simultaneous attempts admit exactly ``limit`` of them."""
    decisions = await asyncio.gather(*(limiter.hit("k", limit=5, window=10) for _ in range(40)))
    assert sum(d.allowed for d in decisions) == 5


async def test_memory_evicts_least_recently_used_key() -> None:
    """Beyond ``max_keys`` keys, the least recently used one is forgotten."""
    memory = MemoryRateLimiter(max_keys=2)
    await memory.hit("a", limit=1, window=10)
    await memory.hit("b", limit=1, window=10)
    assert not (await memory.check("a", limit=1, window=10)).allowed
    await memory.hit("c", limit=1, window=10)
    assert not (await memory.check("a", limit=1, window=10)).allowed
    assert (await memory.check("b", limit=1, window=10)).allowed
    assert not (await memory.check("c", limit=1, window=10)).allowed
    with pytest.raises(ValueError):
        MemoryRateLimiter(max_keys=0)


async def test_redis_state_is_shared_and_expires(redis_url: str) -> None:
    """Two limiters on one Redis share counts; the key expires with the window."""
    prefix = _prefix()
    first = RedisRateLimiter(redis_url, prefix=prefix)
    second = RedisRateLimiter(redis_url, prefix=prefix)
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert (await first.hit("k", limit=2, window=5)).allowed
        assert (await second.hit("k", limit=2, window=5)).allowed
        assert not (await first.hit("k", limit=2, window=5)).allowed
        assert await client.zcard(prefix + "k") == 2
        assert 0 < await client.pttl(prefix + "k") <= 5000
        await second.reset("k")
        assert not await client.exists(prefix + "k")
    finally:
        await client.delete(prefix + "k")
        await client.aclose()
        await first.aclose()
        await second.aclose()


async def test_redis_down_falls_back_to_memory(caplog: pytest.LogCaptureFixture) -> None:
    """With Redis unreachable the limiter still limits, never raises, and logs once."""
    limiter = RedisRateLimiter(DEAD_REDIS_URL, retry_interval=0)
    caplog.set_level(logging.WARNING, logger="pulse_engine.ratelimit")
    try:
        assert (await limiter.hit("k", limit=2, window=10)).allowed
        assert (await limiter.hit("k", limit=2, window=10)).allowed
        refused = await limiter.hit("k", limit=2, window=10)
        assert not refused.allowed and 9 <= refused.retry_after <= 10
        assert not (await limiter.check("k", limit=2, window=10)).allowed
        await limiter.reset("k")
        assert (await limiter.hit("k", limit=2, window=10)).allowed
    finally:
        await limiter.aclose()
    outage_logs = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(outage_logs) == 1


async def test_redis_outage_and_recovery(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Mid-run outages switch to the fallback; Redis is used again once it is back."""
    target = urlsplit(redis_url)
    proxy = OutageProxy(target.port or 6379, target.hostname or "127.0.0.1")
    await proxy.start()
    limiter = RedisRateLimiter(
        f"redis://127.0.0.1:{proxy.port}{target.path}", prefix=_prefix(), retry_interval=0.1
    )
    caplog.set_level(logging.WARNING, logger="pulse_engine.ratelimit")
    try:
        assert (await limiter.hit("k", limit=1, window=10)).allowed
        assert not (await limiter.hit("k", limit=1, window=10)).allowed
        await proxy.stop()
        assert (await limiter.hit("k", limit=1, window=10)).allowed
        assert not (await limiter.hit("k", limit=1, window=10)).allowed
        await proxy.start()
        await asyncio.sleep(0.15)
        refused = await limiter.hit("k", limit=1, window=10)
        assert not refused.allowed and 9 <= refused.retry_after <= 10
        await limiter.reset("k")
        assert (await limiter.hit("k", limit=1, window=10)).allowed
    finally:
        await limiter.reset("k")
        await limiter.aclose()
        await proxy.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in messages) == 1
    assert sum("reachable again" in m for m in messages) == 1


async def test_create_rate_limiter(redis_url: str) -> None:
    """A URL selects Redis; no URL selects memory."""
    assert isinstance(create_rate_limiter(None), MemoryRateLimiter)
    assert isinstance(create_rate_limiter(""), MemoryRateLimiter)
    backend = create_rate_limiter(redis_url)
    assert isinstance(backend, RedisRateLimiter)
    await backend.aclose()
