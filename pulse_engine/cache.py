"""Tenant-scoped cache: one facade over an in-process LRU or a shared Redis backend.

Keys are tenant-scoped by construction (:meth:`Cache.build_key`), and so are the tags
attached to them: the facade derives a tag's tenant from the key it tags, so one tenant's
invalidation can never reach another tenant's entries. The Redis backend degrades to a
no-op cache during an outage (circuit breaker) instead of adding latency or errors.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from pulse_engine.redis_breaker import RedisBreaker

T = TypeVar("T")

#: How often a process waiting for another process's computation looks for its result.
LOCK_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class CachePolicy:
    """How the engine caches the responses of one GET endpoint.

    :param endpoint: the Quart endpoint name, ``"blueprint.view_func"``.
    :param ttl: lifetime of a cached response, in seconds.
    :param key_params: the query parameters that form the key; ``None`` means all of them.
    :param tags: invalidation tags, scoped to the caller's tenant when used.
    :param vary_role: whether the caller's role is part of the key.
    """

    endpoint: str
    ttl: float
    key_params: tuple[str, ...] | None = None
    tags: tuple[str, ...] = ()
    vary_role: bool = False


class CacheBackend(ABC):
    """Storage behind :class:`Cache`. Implementations never raise to their callers."""

    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """Return the live value stored under ``key``, or ``None``."""

    @abstractmethod
    async def set(self, key: str, value: bytes, ttl: float, tags: Iterable[str] = ()) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds, indexed under every tag."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Drop the entry stored under ``key``, if any."""

    @abstractmethod
    async def invalidate_tags(self, tags: Iterable[str]) -> int:
        """Drop every entry carrying any of ``tags``; return how many entries were dropped."""

    @abstractmethod
    async def ping(self) -> bool:
        """Return whether the backend is reachable now."""

    @abstractmethod
    async def close(self) -> None:
        """Release the backend's connections."""

    @abstractmethod
    async def acquire_lock(self, key: str, ttl: float) -> str | None:
        """Try to become the one process computing ``key`` for at most ``ttl`` seconds.

        :returns: a token to pass to :meth:`release_lock` when the caller may compute
            (it holds the lock, or the backend cannot lock), ``None`` when another
            process holds the lock.
        """

    @abstractmethod
    async def release_lock(self, key: str, token: str) -> None:
        """Release the lock on ``key`` if ``token`` still owns it."""


class MemoryCacheBackend(CacheBackend):
    """In-process LRU cache with per-entry TTL and a tag index; the embedded default."""

    def __init__(self, max_entries: int = 10_000) -> None:
        """Create an empty cache holding at most ``max_entries`` entries."""
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[bytes, float, frozenset[str]]] = OrderedDict()
        self._keys_by_tag: dict[str, set[str]] = {}

    def __len__(self) -> int:
        """Return the number of stored entries, expired ones included until touched."""
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        """Return the live value under ``key`` and mark it most recently used."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires_at, _ = entry
        if time.monotonic() >= expires_at:
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl: float, tags: Iterable[str] = ()) -> None:
        """Store ``value``, evicting least recently used entries beyond ``max_entries``."""
        self._remove(key)
        tag_set = frozenset(tags)
        self._entries[key] = (value, time.monotonic() + ttl, tag_set)
        for tag in tag_set:
            self._keys_by_tag.setdefault(tag, set()).add(key)
        while len(self._entries) > self.max_entries:
            oldest = next(iter(self._entries))
            self._remove(oldest)

    async def delete(self, key: str) -> None:
        """Drop the entry under ``key``."""
        self._remove(key)

    async def invalidate_tags(self, tags: Iterable[str]) -> int:
        """Drop every entry carrying any of ``tags``."""
        doomed: set[str] = set()
        for tag in tags:
            doomed |= self._keys_by_tag.get(tag, set())
        for key in doomed:
            self._remove(key)
        return len(doomed)

    async def ping(self) -> bool:
        """An in-process cache is always reachable."""
        return True

    async def close(self) -> None:
        """Drop every entry."""
        self._entries.clear()
        self._keys_by_tag.clear()

    async def acquire_lock(self, key: str, ttl: float) -> str | None:
        """Always grant: within one process, :class:`Cache` already shares computations."""
        return uuid.uuid4().hex

    async def release_lock(self, key: str, token: str) -> None:
        """Nothing to release."""

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        for tag in entry[2]:
            keys = self._keys_by_tag.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys_by_tag[tag]


# Tag indexes are sorted sets scored by each entry's expiry (server clock), so stale members
# are pruned on every write and a tag index lives exactly as long as its longest entry.
_SET_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local ttl = tonumber(ARGV[2])
for i = 2, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  redis.call('ZADD', KEYS[i], now + ttl, KEYS[1])
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
"""

_INVALIDATE_SCRIPT = """
local dropped = 0
for i = 1, #KEYS do
  for _, key in ipairs(redis.call('ZRANGE', KEYS[i], 0, -1)) do
    dropped = dropped + redis.call('DEL', key)
  end
  redis.call('DEL', KEYS[i])
end
return dropped
"""

_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisCacheBackend(CacheBackend):
    """Shared cache in Redis, guarded by a circuit breaker.

    Any Redis error opens the breaker (:class:`pulse_engine.redis_breaker.RedisBreaker`,
    shared with the rate limiter): meanwhile reads miss and writes are skipped without
    touching the network, so an outage costs neither latency nor errors. The first call
    after the pause probes Redis again.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "pulse:cache:",
        socket_timeout: float = 0.25,
        breaker_seconds: float = 5.0,
        breaker: RedisBreaker | None = None,
    ) -> None:
        """Prepare a client for ``url``; no connection is made until first use.

        :param breaker: the breaker shared with the engine's other Redis users (default:
            one of this backend's own, open for ``breaker_seconds`` after an error).
        """
        self.prefix = prefix
        self.breaker = breaker or RedisBreaker(breaker_seconds)
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 1),
        )
        self._set_script = self._client.register_script(_SET_SCRIPT)
        self._invalidate_script = self._client.register_script(_INVALIDATE_SCRIPT)
        self._release_script = self._client.register_script(_RELEASE_SCRIPT)

    @property
    def available(self) -> bool:
        """Whether the breaker is closed, i.e. calls currently reach Redis."""
        return self.breaker.available

    async def get(self, key: str) -> bytes | None:
        """Return the value under ``key``; ``None`` on a miss or while Redis is unavailable."""
        value = await self._guarded(self._client.get(self._entry_key(key)), None)
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl: float, tags: Iterable[str] = ()) -> None:
        """Store ``value`` and index it under ``tags``, atomically."""
        keys = [self._entry_key(key), *(self._tag_key(tag) for tag in set(tags))]
        await self._guarded(self._set_script(keys=keys, args=[value, _milliseconds(ttl)]), None)

    async def delete(self, key: str) -> None:
        """Drop the entry under ``key``."""
        await self._guarded(self._client.delete(self._entry_key(key)), 0)

    async def invalidate_tags(self, tags: Iterable[str]) -> int:
        """Drop every entry indexed under any of ``tags``, atomically."""
        keys = [self._tag_key(tag) for tag in set(tags)]
        if not keys:
            return 0
        return int(await self._guarded(self._invalidate_script(keys=keys), 0))

    async def ping(self) -> bool:
        """Probe Redis even while the breaker is open; a success closes the breaker."""
        try:
            await self._client.ping()
        except (RedisError, OSError) as error:
            self.breaker.trip("cache", error)
            return False
        self.breaker.succeeded()
        return True

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def acquire_lock(self, key: str, ttl: float) -> str | None:
        """Take the short compute lock on ``key`` (``SET NX PX``); grant it while Redis is out."""
        token = uuid.uuid4().hex
        acquired = await self._guarded(
            self._client.set(self._lock_key(key), token, nx=True, px=_milliseconds(ttl)), True
        )
        return token if acquired else None

    async def release_lock(self, key: str, token: str) -> None:
        """Delete the lock on ``key`` only if ``token`` still owns it."""
        await self._guarded(self._release_script(keys=[self._lock_key(key)], args=[token]), 0)

    async def _guarded(self, call: Awaitable[T], fallback: T) -> T:
        if not self.available:
            _discard(call)
            return fallback
        try:
            result = await call
        except (RedisError, OSError) as error:
            self.breaker.trip("cache", error)
            return fallback
        self.breaker.succeeded()
        return result

    def _entry_key(self, key: str) -> str:
        return f"{self.prefix}k:{key}"

    def _tag_key(self, tag: str) -> str:
        return f"{self.prefix}tag:{tag}"

    def _lock_key(self, key: str) -> str:
        return f"{self.prefix}lock:{key}"


def _discard(call: Awaitable[Any]) -> None:
    """Close a coroutine that will never be awaited, so Python does not warn about it."""
    close = getattr(call, "close", None)
    if close is not None:
        close()


def _milliseconds(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class Cache:
    """Tenant-scoped facade used by the engine and plugins."""

    def __init__(self, backend: CacheBackend, *, lock_ttl: float = 5.0) -> None:
        """Wrap ``backend``.

        :param lock_ttl: how long one process may hold the cross-process compute lock of a
            key, which is also how long other processes wait for its result.
        """
        self.backend = backend
        self.lock_ttl = lock_ttl
        self._inflight: dict[str, asyncio.Future[bytes]] = {}

    @staticmethod
    def build_key(
        tenant_id: str, namespace: str, parts: Mapping[str, str] | Iterable[tuple[str, str]]
    ) -> str:
        """Return the deterministic key of ``parts`` in ``namespace`` for ``tenant_id``.

        Order of ``parts`` does not matter; repeated names (multi-valued query
        parameters) are kept.
        """
        pairs = parts.items() if isinstance(parts, Mapping) else parts
        encoded = urlencode(sorted(pairs))
        digest = hashlib.sha256(encoded.encode()).hexdigest()[:32]
        return f"t:{_scope(tenant_id)}:{namespace}:{digest}"

    @staticmethod
    def tag_key(tenant_id: str, tag: str) -> str:
        """Return the tenant-scoped name of ``tag``."""
        return f"t:{_scope(tenant_id)}:tag:{tag}"

    async def get(self, key: str) -> bytes | None:
        """Return the cached value under ``key``, or ``None``."""
        return await self.backend.get(key)

    async def set(self, key: str, value: bytes, ttl: float, tags: Iterable[str] = ()) -> None:
        """Cache ``value`` under ``key`` (made by :meth:`build_key`), tagged for its tenant."""
        await self.backend.set(key, value, ttl, self._scoped_tags(key, tags))

    async def invalidate_tags(self, tenant_id: str, tags: Iterable[str]) -> int:
        """Drop ``tenant_id``'s entries carrying any of ``tags``; return how many."""
        return await self.backend.invalidate_tags(self.tag_key(tenant_id, tag) for tag in tags)

    async def get_or_compute(
        self,
        key: str,
        compute: Callable[[], Awaitable[bytes]],
        ttl: float,
        tags: Iterable[str] = (),
    ) -> tuple[bytes, bool]:
        """Return ``(value, hit)``, computing and caching the value on a miss.

        Concurrent misses of one key share a single computation: within the process
        through a shared future, across processes through a short backend lock while the
        others poll for the result. When ``compute`` raises, every waiter of that
        computation gets the exception and nothing is cached. ``hit`` is true when the
        value was read from the cache.
        """
        cached = await self.backend.get(key)
        if cached is not None:
            return cached, True
        while (inflight := self._inflight.get(key)) is not None:
            try:
                return await asyncio.shield(inflight), False
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not inflight.cancelled() or (task is not None and task.cancelling()):
                    raise
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value, hit = await self._compute_once(key, compute, ttl, tags)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: having no waiters is not an error
            raise
        else:
            future.set_result(value)
            return value, hit
        finally:
            del self._inflight[key]

    async def _compute_once(
        self,
        key: str,
        compute: Callable[[], Awaitable[bytes]],
        ttl: float,
        tags: Iterable[str],
    ) -> tuple[bytes, bool]:
        deadline = time.monotonic() + self.lock_ttl
        token = await self.backend.acquire_lock(key, self.lock_ttl)
        while token is None and time.monotonic() < deadline:
            await asyncio.sleep(LOCK_POLL_SECONDS)
            cached = await self.backend.get(key)
            if cached is not None:
                return cached, True
            token = await self.backend.acquire_lock(key, self.lock_ttl)
        try:
            value = await compute()
            await self.set(key, value, ttl, tags)
            return value, False
        finally:
            if token is not None:
                await self.backend.release_lock(key, token)

    @staticmethod
    def _scoped_tags(key: str, tags: Iterable[str]) -> list[str]:
        tag_list = list(tags)
        if not tag_list:
            return []
        prefix, _, rest = key.partition(":")
        tenant_scope, separator, _ = rest.partition(":")
        if prefix != "t" or not separator:
            raise ValueError(f"tagged cache keys must be made by Cache.build_key, got {key!r}")
        return [f"t:{tenant_scope}:tag:{tag}" for tag in tag_list]


def _scope(tenant_id: str) -> str:
    """Encode a tenant id so it can never contain the key separator."""
    return quote(tenant_id, safe="")


def create_cache_backend(
    redis_url: str | None, *, max_entries: int = 10_000, breaker: RedisBreaker | None = None
) -> CacheBackend:
    """Return a Redis backend when ``redis_url`` is set, else the in-process LRU."""
    if redis_url:
        return RedisCacheBackend(redis_url, breaker=breaker)
    return MemoryCacheBackend(max_entries=max_entries)
