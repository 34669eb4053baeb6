"""Tenant-scoped event fan-out to every process (WebSocket pushes, progress, capability changes).

Every bus delivers an event once to each matching subscriber of every process, the
publishing one included: local subscribers get it directly, and each process ignores the
copy of its own events that comes back from Redis or RabbitMQ. Delivery is best effort,
like the WebSockets it feeds: publishing never blocks and never fails because a
subscriber is slow or the shared service is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import aio_pika
import redis.asyncio as aioredis
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)
from aio_pika.exceptions import AMQPError
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

DEFAULT_BUFFER = 1000

#: System event (tenant None): a tenant's plugin switches or configuration changed;
#: ``data = {"tenant_id": ...}``.
CAPABILITY_CHANGED_EVENT = "capabilities.changed"
MAX_RECONNECT_DELAY = 5.0
SUBSCRIBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class Event:
    """Something that happened, for one tenant (or for the system when ``tenant_id`` is None)."""

    tenant_id: str | None
    type: str
    data: dict[str, Any]
    id: str
    at: str


class Subscription:
    """The events of one tenant, as an async iterator; use it as an async context manager.

    It buffers at most ``maxsize`` events: when the subscriber falls behind, the oldest
    are dropped and counted in :attr:`dropped`, so publishers never wait.
    """

    def __init__(self, bus: EventBus, tenant_id: str | None, maxsize: int) -> None:
        """Create a subscription; :meth:`EventBus.subscribe` registers it."""
        self.tenant_id = tenant_id
        self.dropped = 0
        self._bus = bus
        self._buffer: deque[Event] = deque(maxlen=maxsize)
        self._wakeup = asyncio.Event()
        self._closed = False

    def deliver(self, event: Event) -> None:
        """Buffer ``event``, dropping the oldest buffered one when full."""
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append(event)
        self._wakeup.set()

    def close(self) -> None:
        """Stop receiving; iteration ends once the buffer is drained."""
        if not self._closed:
            self._closed = True
            self._bus._unsubscribe(self)
            self._wakeup.set()

    async def __aenter__(self) -> Subscription:
        """Return the subscription itself."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Unsubscribe."""
        self.close()

    def __aiter__(self) -> Subscription:
        """Iterate over the events as they arrive."""
        return self

    async def __anext__(self) -> Event:
        """Return the next event, waiting for one if needed."""
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._buffer.popleft()


class EventBus(ABC):
    """Publishes events and fans them out to subscribers in every process."""

    def __init__(self, *, subscriber_buffer: int = DEFAULT_BUFFER) -> None:
        """Create a bus whose subscriptions buffer ``subscriber_buffer`` events each."""
        self.subscriber_buffer = subscriber_buffer
        self.origin = uuid.uuid4().hex
        self._subscriptions: dict[str | None, set[Subscription]] = {}

    @abstractmethod
    async def start(self) -> None:
        """Start receiving events from other processes."""

    @abstractmethod
    async def ping(self) -> bool:
        """Return whether the shared transport is reachable now."""

    async def stop(self) -> None:
        """Stop receiving and end every subscription's iteration."""
        for subscriptions in list(self._subscriptions.values()):
            for subscription in list(subscriptions):
                subscription.close()

    async def publish(self, tenant_id: str | None, type: str, data: dict[str, Any]) -> Event:
        """Deliver a new event to this process's subscribers and send it to the others."""
        event = Event(
            tenant_id=tenant_id,
            type=type,
            data=data,
            id=uuid.uuid4().hex,
            at=datetime.now(UTC).isoformat(),
        )
        self._dispatch(event)
        await self._send(json.dumps({"origin": self.origin, "event": asdict(event)}).encode())
        return event

    def subscribe(self, tenant_id: str | None) -> Subscription:
        """Subscribe to the events of exactly ``tenant_id`` (``None``: system events)."""
        subscription = Subscription(self, tenant_id, self.subscriber_buffer)
        self._subscriptions.setdefault(tenant_id, set()).add(subscription)
        return subscription

    @abstractmethod
    async def _send(self, payload: bytes) -> None:
        """Send an encoded event to the other processes; log, never raise, on failure."""

    def _receive(self, payload: bytes | str) -> None:
        """Dispatch an encoded event from the transport, unless this process sent it."""
        try:
            envelope = json.loads(payload)
            if envelope["origin"] == self.origin:
                return
            event = Event(**envelope["event"])
        except (ValueError, KeyError, TypeError) as error:
            logger.warning("ignoring malformed event: %s", error)
            return
        self._dispatch(event)

    def _dispatch(self, event: Event) -> None:
        for subscription in list(self._subscriptions.get(event.tenant_id, ())):
            subscription.deliver(event)

    def _unsubscribe(self, subscription: Subscription) -> None:
        subscriptions = self._subscriptions.get(subscription.tenant_id)
        if subscriptions is not None:
            subscriptions.discard(subscription)
            if not subscriptions:
                del self._subscriptions[subscription.tenant_id]


class MemoryEventBus(EventBus):
    """In-process fan-out; the embedded default for a single process."""

    async def start(self) -> None:
        """Nothing to connect to."""

    async def ping(self) -> bool:
        """An in-process bus is always reachable."""
        return True

    async def _send(self, payload: bytes) -> None:
        """There are no other processes."""


class RedisEventBus(EventBus):
    """Fan-out over Redis pub/sub: one subscriber connection per process on one channel.

    A background reader dispatches incoming events; when Redis goes away it reconnects
    with exponential backoff. Events published elsewhere during the outage are lost.
    """

    def __init__(
        self,
        url: str,
        *,
        channel: str = "pulse:events",
        subscriber_buffer: int = DEFAULT_BUFFER,
    ) -> None:
        """Prepare a bus on ``channel`` of the Redis at ``url``."""
        super().__init__(subscriber_buffer=subscriber_buffer)
        self.channel = channel
        self._client = aioredis.Redis.from_url(url, socket_connect_timeout=2.0)
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe (if Redis is up) and start the background reader."""
        pubsub = await self._subscribe()
        self._reader = asyncio.create_task(self._read_forever(pubsub), name="pulse-events")

    async def stop(self) -> None:
        """Stop the reader, close the connections, end the subscriptions."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        await self._client.aclose()
        await super().stop()

    async def ping(self) -> bool:
        """Return whether Redis answers."""
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False

    async def _send(self, payload: bytes) -> None:
        try:
            await self._client.publish(self.channel, payload)
        except (RedisError, OSError) as error:
            logger.warning("event not sent to other processes, Redis unavailable: %s", error)

    async def _subscribe(self) -> PubSub | None:
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            # Wait for Redis to confirm, so events published once start() returns arrive.
            confirmation = await pubsub.get_message(timeout=SUBSCRIBE_TIMEOUT)
            if confirmation is None or confirmation["type"] != "subscribe":
                raise TimeoutError("Redis did not confirm the subscription")
        except (RedisError, OSError) as error:
            logger.warning("cannot subscribe to Redis events: %s", error)
            await pubsub.aclose()
            return None
        return pubsub

    async def _read_forever(self, pubsub: PubSub | None) -> None:
        delay = 0.1
        while True:
            if pubsub is None:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY)
                pubsub = await self._subscribe()
                continue
            try:
                delay = 0.1
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        self._receive(message["data"])
            except (RedisError, OSError) as error:
                logger.warning("lost the Redis event subscription, reconnecting: %s", error)
            finally:
                await pubsub.aclose()
            pubsub = None


class AmqpEventBus(EventBus):
    """Fan-out over RabbitMQ: a fanout exchange, and an exclusive queue per process.

    The robust connection re-declares the queue and its binding after a reconnect.
    """

    def __init__(
        self,
        url: str,
        *,
        exchange: str = "pulse.events",
        subscriber_buffer: int = DEFAULT_BUFFER,
        connect_timeout: float = 5.0,
    ) -> None:
        """Prepare a bus on the fanout ``exchange`` of the broker at ``url``."""
        super().__init__(subscriber_buffer=subscriber_buffer)
        self.url = url
        self.exchange_name = exchange
        self.connect_timeout = connect_timeout
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None

    async def start(self) -> None:
        """Connect, declare the exchange and this process's queue, start consuming.

        Raises when the broker cannot be reached at start; later losses are healed by
        the robust connection.
        """
        self._connection = await aio_pika.connect_robust(self.url, timeout=self.connect_timeout)
        self._channel = await self._connection.channel(publisher_confirms=False)
        self._exchange = await self._channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.FANOUT, durable=True
        )
        queue = await self._channel.declare_queue(
            f"{self.exchange_name}.{self.origin}", exclusive=True, auto_delete=True
        )
        await queue.bind(self._exchange)
        await queue.consume(self._on_message, no_ack=True)

    async def stop(self) -> None:
        """Close the connection (which deletes this process's queue), end the subscriptions."""
        if self._connection is not None:
            await self._connection.close()
        self._connection = self._channel = self._exchange = None
        await super().stop()

    async def ping(self) -> bool:
        """Return whether the connection to the broker is open."""
        return self._connection is not None and not self._connection.is_closed

    async def _send(self, payload: bytes) -> None:
        if self._exchange is None:
            logger.warning("event not sent to other processes: the AMQP bus is not started")
            return
        try:
            await self._exchange.publish(
                aio_pika.Message(payload, content_type="application/json"), routing_key=""
            )
        except (AMQPError, OSError) as error:
            logger.warning("event not sent to other processes, broker unavailable: %s", error)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._receive(message.body)


def create_event_bus(redis_url: str | None, amqp_url: str | None) -> EventBus:
    """Return a Redis bus when ``redis_url`` is set, else an AMQP one, else in-process."""
    if redis_url:
        return RedisEventBus(redis_url)
    if amqp_url:
        return AmqpEventBus(amqp_url)
    return MemoryEventBus()
