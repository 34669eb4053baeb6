"""The cache: both backends against the same contract, Redis outages, single flight."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from fixtures.tcp_proxy import OutageProxy

from pulse_engine.cache import (
    Cache,
    CacheBackend,
    MemoryCacheBackend,
    RedisCacheBackend,
    create_cache_backend,
)

DOWN_REDIS_URL = "redis://127.0.0.1:1/0"


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[CacheBackend]:
    """Each backend in turn; the Redis one under a unique prefix, deleted afterwards."""
    if request.param == "memory":
        yield MemoryCacheBackend()
        return
    prefix = f"pulse-test:{uuid.uuid4().hex}:"
    redis_backend = RedisCacheBackend(redis_url, prefix=prefix)
    yield redis_backend
    await redis_backend.close()
    client = aioredis.Redis.from_url(redis_url)
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def tenant() -> str:
    """A fresh tenant id."""
    return f"tenant-{uuid.uuid4().hex[:8]}"


async def test_get_set_and_ttl_expiry(backend: CacheBackend) -> None:
    key = Cache.build_key(tenant(), "test", {"q": "1"})
    assert await backend.get(key) is None
    await backend.set(key, b"value", ttl=0.2)
    assert await backend.get(key) == b"value"
    await asyncio.sleep(0.3)
    assert await backend.get(key) is None


async def test_delete(backend: CacheBackend) -> None:
    await backend.set("k", b"v", ttl=10)
    await backend.delete("k")
    assert await backend.get("k") is None


async def test_ping(backend: CacheBackend) -> None:
    assert await backend.ping() is True


async def test_memory_backend_evicts_least_recently_used_and_its_tags() -> None:
    backend = MemoryCacheBackend(max_entries=2)
    await backend.set("a", b"1", ttl=10, tags=["tag"])
    await backend.set("b", b"2", ttl=10)
    assert await backend.get("a") == b"1"  # "a" is now the most recently used
    await backend.set("c", b"3", ttl=10)
    assert await backend.get("b") is None
    assert await backend.get("a") == b"1"
    assert await backend.get("c") == b"3"
    await backend.set("d", b"4", ttl=10)  # evicts "a", which carried "tag"
    assert len(backend) == 2
    assert await backend.invalidate_tags(["tag"]) == 0


async def test_invalidation_drops_only_tagged_entries_of_the_tenant(
    backend: CacheBackend,
) -> None:
    cache = Cache(backend)
    tenant_a, tenant_b = tenant(), tenant()
    tagged_a = Cache.build_key(tenant_a, "deployments", {"page": "1"})
    other_tag_a = Cache.build_key(tenant_a, "deployments", {"page": "2"})
    untagged_a = Cache.build_key(tenant_a, "deployments", {"page": "3"})
    tagged_b = Cache.build_key(tenant_b, "deployments", {"page": "1"})
    await cache.set(tagged_a, b"a1", ttl=10, tags=["deployments", "dora"])
    await cache.set(other_tag_a, b"a2", ttl=10, tags=["github"])
    await cache.set(untagged_a, b"a3", ttl=10)
    await cache.set(tagged_b, b"b1", ttl=10, tags=["deployments"])

    assert await cache.invalidate_tags(tenant_a, ["deployments", "dora"]) == 1

    assert await cache.get(tagged_a) is None
    assert await cache.get(other_tag_a) == b"a2"
    assert await cache.get(untagged_a) == b"a3"
    assert await cache.get(tagged_b) == b"b1"
    assert await cache.invalidate_tags(tenant_a, ["deployments"]) == 0


def test_build_key_is_deterministic_and_tenant_scoped() -> None:
    key = Cache.build_key("acme", "dora.lead_time", {"start": "2024-01-01", "team": "core"})
    same = Cache.build_key("acme", "dora.lead_time", [("team", "core"), ("start", "2024-01-01")])
    assert key == same
    assert key.startswith("t:acme:dora.lead_time:")
    assert len(key.rsplit(":", 1)[1]) == 32
    parts = {"start": "2024-01-01", "team": "core"}
    assert Cache.build_key("globex", "dora.lead_time", parts) != key
    assert Cache.build_key("acme", "dora.lead_time", {**parts, "start": "2024-01-02"}) != key
    assert Cache.build_key("acme", "other", parts) != key
    assert Cache.build_key("a:b", "n", {}) != Cache.build_key("a", "b:n", {})
    assert Cache.tag_key("acme", "deployments") == "t:acme:tag:deployments"


async def test_tags_need_a_tenant_key(backend: CacheBackend) -> None:
    with pytest.raises(ValueError):
        await Cache(backend).set("raw-key", b"v", ttl=1, tags=["x"])


async def test_single_flight_computes_once_for_concurrent_misses(backend: CacheBackend) -> None:
    cache = Cache(backend)
    key = Cache.build_key(tenant(), "flight", {})
    calls = 0

    async def compute() -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return b"computed"

    results = await asyncio.gather(*(cache.get_or_compute(key, compute, 10) for _ in range(50)))
    assert calls == 1
    assert {value for value, _ in results} == {b"computed"}
    assert await cache.get_or_compute(key, compute, 10) == (b"computed", True)


async def test_single_flight_shares_a_failure_and_caches_nothing(backend: CacheBackend) -> None:
    cache = Cache(backend)
    key = Cache.build_key(tenant(), "flight", {})
    calls = 0

    async def failing() -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        raise RuntimeError("boom")

    results = await asyncio.gather(
        *(cache.get_or_compute(key, failing, 10) for _ in range(20)), return_exceptions=True
    )
    assert calls == 1
    assert all(isinstance(result, RuntimeError) for result in results)
    assert await cache.get(key) is None

    async def working() -> bytes:
        return b"ok"

    assert await cache.get_or_compute(key, working, 10) == (b"ok", False)


async def test_single_flight_across_processes_waits_for_the_lock_holder(redis_url: str) -> None:
    prefix = f"pulse-test:{uuid.uuid4().hex}:"
    first, second = (Cache(RedisCacheBackend(redis_url, prefix=prefix)) for _ in range(2))
    key = Cache.build_key(tenant(), "flight", {})
    calls = 0
    computing, release = asyncio.Event(), asyncio.Event()

    async def compute() -> bytes:
        nonlocal calls
        calls += 1
        computing.set()
        await release.wait()
        return b"shared"

    leader = asyncio.create_task(first.get_or_compute(key, compute, 10))
    await computing.wait()  # the leader holds the lock now, however slow the machine
    follower = asyncio.create_task(second.get_or_compute(key, compute, 10))
    await asyncio.sleep(0.1)
    release.set()
    assert await follower == (b"shared", True)
    assert await leader == (b"shared", False)
    assert calls == 1
    await first.backend.close()
    await second.backend.close()
    client = aioredis.Redis.from_url(redis_url)
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    assert not any(b":lock:" in key for key in keys)
    await client.delete(*keys)
    await client.aclose()


async def test_redis_outage_degrades_to_no_cache_quickly() -> None:
    backend = RedisCacheBackend(DOWN_REDIS_URL, breaker_seconds=30)
    cache = Cache(backend)
    key = Cache.build_key(tenant(), "outage", {})

    async def compute() -> bytes:
        return b"fresh"

    started = time.perf_counter()
    assert await backend.get(key) is None
    assert backend.available is False
    for _ in range(100):
        await backend.set(key, b"v", ttl=10, tags=["t"])
        assert await backend.get(key) is None
        await backend.delete(key)
        assert await backend.invalidate_tags(["t"]) == 0
        assert await cache.get_or_compute(key, compute, 10) == (b"fresh", False)
    assert time.perf_counter() - started < 1.0
    assert await backend.ping() is False
    await backend.close()


async def test_redis_breaker_recovers_after_outage(redis_url: str) -> None:
    proxy = OutageProxy(target_port=6379)
    await proxy.start()
    prefix = f"pulse-test:{uuid.uuid4().hex}:"
    backend = RedisCacheBackend(
        f"redis://127.0.0.1:{proxy.port}/15", prefix=prefix, breaker_seconds=0.3
    )
    await backend.set("k", b"before", ttl=10)
    assert await backend.get("k") == b"before"

    await proxy.stop()
    assert await backend.get("k") is None
    assert backend.available is False

    await proxy.start()
    assert await backend.get("k") is None  # breaker still open: no network call
    await asyncio.sleep(0.35)
    assert await backend.get("k") == b"before"
    assert backend.available is True
    await backend.delete("k")
    await backend.close()
    await proxy.stop()


def test_factory_picks_backend(redis_url: str) -> None:
    assert isinstance(create_cache_backend(None, max_entries=5), MemoryCacheBackend)
    assert isinstance(create_cache_backend(redis_url), RedisCacheBackend)
