"""Work queues: one interface over RabbitMQ and an in-process queue, same delivery semantics.

A message is acknowledged only after its handler returns. A failing message is retried
``retry_delay`` seconds later with ``attempt + 1``; after ``max_retries`` failures it moves
to the durable dead-letter queue ``{queue}.dlq`` with headers naming the last error.
Delivery is at least once: a worker that dies mid-message gets it redelivered
(``redelivered=True``), so handlers that must act once use the engine's idempotent-consumer
helper, keyed by :attr:`Message.id`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import AMQPError

logger = logging.getLogger(__name__)

#: Header naming the last handler error of a dead-lettered message: ``"Type: message"``.
ERROR_HEADER = "x-pulse-error"
ERROR_TYPE_HEADER = "x-pulse-error-type"
ERROR_MESSAGE_HEADER = "x-pulse-error-message"
TENANT_HEADER = "x-pulse-tenant"
ATTEMPT_HEADER = "x-pulse-attempt"
MAX_ERROR_LENGTH = 1000

#: Headers the transport owns; they never reach :attr:`Message.headers`.
_TRANSPORT_HEADERS = frozenset({TENANT_HEADER, ATTEMPT_HEADER, "x-death"})
_TRANSPORT_HEADER_PREFIXES = ("x-first-death-", "x-last-death-")

Handler = Callable[["Message"], Awaitable[None]]
SkipPredicate = Callable[["Message"], bool]


class QueueUnavailable(Exception):
    """The message broker cannot be reached, or did not confirm a publish in time."""


@dataclass
class Message:
    """One unit of work as a handler sees it."""

    id: str
    queue: str
    body: dict[str, Any]
    tenant_id: str | None
    headers: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    redelivered: bool = False


@dataclass
class Consumer:
    """A handler bound to a queue, as returned by ``register_queue_consumers``.

    :param max_retries: handler failures before the message is dead-lettered.
    :param retry_delay: seconds before a failed message is delivered again.
    :param plugin: the owning plugin; the engine fills it in.
    """

    queue: str
    handler: Handler
    prefetch: int = 10
    max_retries: int = 3
    retry_delay: float = 1.0
    plugin: str | None = None


class QueueBackend(ABC):
    """A durable work queue with retries and a dead-letter queue."""

    #: Whether queued messages outlive the process (a broker keeps them). When False, a
    #: plugin that records its pending work re-queues all of it at ``startup``, as
    #: ``pulse-dora`` does with its refresh requests.
    survives_restart: bool = True

    @abstractmethod
    async def connect(self) -> None:
        """Connect to the broker; raise :class:`QueueUnavailable` when it cannot be reached."""

    @abstractmethod
    async def publish(
        self,
        queue: str,
        body: dict[str, Any],
        *,
        tenant_id: str | None = None,
        headers: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> str:
        """Enqueue a JSON ``body`` and return its message id once the broker holds it.

        :raises QueueUnavailable: the broker cannot be reached or did not confirm.
        """

    @abstractmethod
    async def start_consumer(
        self, consumer: Consumer, *, should_skip: SkipPredicate | None = None
    ) -> None:
        """Start delivering ``consumer.queue`` to ``consumer.handler`` in the background.

        :param should_skip: messages for which it returns true are acknowledged and
            dropped without calling the handler (e.g. tenants with the plugin disabled).
        """

    @abstractmethod
    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - a drain deadline
        """Stop taking messages, let in-flight handlers finish for up to ``timeout``, close.

        Handlers still running after ``timeout`` are cancelled and their messages are
        delivered again later.
        """

    @abstractmethod
    async def dead_letters(self, queue: str, limit: int = 100) -> list[Message]:
        """Remove and return up to ``limit`` messages from ``{queue}.dlq``, oldest first."""

    async def wait_idle(self, seconds: float) -> bool:
        """Wait until every message of a queue consumed here has been handled.

        A broker holds queued work durably for any worker, so the default returns at once;
        the in-process backend waits, so that a short-lived process (a CLI command on the
        embedded default) does not exit with work still in memory.

        :returns: False when ``seconds`` passed first.
        """
        return True

    @abstractmethod
    async def ping(self) -> bool:
        """Return whether the broker is reachable now."""


async def _run_handler(
    consumer: Consumer, message: Message, should_skip: SkipPredicate | None
) -> Exception | None:
    """Run the handler unless skipped; return the exception it raised, if any."""
    try:
        if should_skip is not None and should_skip(message):
            logger.debug("skipping message %s on %s", message.id, message.queue)
            return None
        await consumer.handler(message)
    except Exception as error:
        logger.warning(
            "handler of %s failed on message %s (attempt %d of %d)",
            message.queue,
            message.id,
            message.attempt,
            consumer.max_retries,
            exc_info=True,
        )
        return error
    return None


def _error_headers(error: Exception) -> dict[str, str]:
    text = str(error)[:MAX_ERROR_LENGTH]
    kind = type(error).__qualname__
    return {
        ERROR_HEADER: f"{kind}: {text}"[:MAX_ERROR_LENGTH],
        ERROR_TYPE_HEADER: kind,
        ERROR_MESSAGE_HEADER: text,
    }


def _json_copy(body: dict[str, Any]) -> dict[str, Any]:
    """Round-trip ``body`` through JSON so both backends accept and deliver the same bodies."""
    copied: dict[str, Any] = json.loads(json.dumps(body))
    return copied


class MemoryQueueBackend(QueueBackend):
    """In-process queues with the same semantics as RabbitMQ; the embedded default.

    Messages live in memory only: they survive a consumer that has not started yet, not
    the process.
    """

    survives_restart = False

    def __init__(self) -> None:
        """Create a backend with no queues."""
        self._queues: dict[str, asyncio.Queue[Message]] = {}
        self._dead: dict[str, list[Message]] = {}
        self._dispatchers: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._outstanding: dict[str, int] = {}
        self._consumed: set[str] = set()

    async def connect(self) -> None:
        """Nothing to connect to."""

    async def publish(
        self,
        queue: str,
        body: dict[str, Any],
        *,
        tenant_id: str | None = None,
        headers: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> str:
        """Enqueue the message; it waits there until a consumer of ``queue`` starts."""
        message = Message(
            id=message_id or uuid.uuid4().hex,
            queue=queue,
            body=_json_copy(body),
            tenant_id=tenant_id,
            headers=_json_copy(headers or {}),
        )
        self._queue(queue).put_nowait(message)
        self._outstanding[queue] = self._outstanding.get(queue, 0) + 1
        return message.id

    async def start_consumer(
        self, consumer: Consumer, *, should_skip: SkipPredicate | None = None
    ) -> None:
        """Dispatch ``consumer.queue`` with at most ``consumer.prefetch`` concurrent handlers."""
        task = asyncio.create_task(
            self._dispatch(consumer, should_skip), name=f"pulse-queue:{consumer.queue}"
        )
        self._dispatchers.add(task)
        self._consumed.add(consumer.queue)

    async def wait_idle(self, seconds: float) -> bool:
        """Wait until the queues consumed here hold no message and no handler runs."""
        deadline = asyncio.get_running_loop().time() + seconds
        while any(self._outstanding.get(queue, 0) for queue in self._consumed):
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - a drain deadline
        """Stop dispatching and drain in-flight handlers."""
        for dispatcher in self._dispatchers:
            dispatcher.cancel()
        await asyncio.gather(*self._dispatchers, return_exceptions=True)
        self._dispatchers.clear()
        if self._handlers:
            _, pending = await asyncio.wait(self._handlers, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def dead_letters(self, queue: str, limit: int = 100) -> list[Message]:
        """Remove and return up to ``limit`` dead-lettered messages of ``queue``."""
        dead = self._dead.get(queue, [])
        taken, self._dead[queue] = dead[:limit], dead[limit:]
        return taken

    async def ping(self) -> bool:
        """An in-process queue is always reachable."""
        return True

    def _queue(self, name: str) -> asyncio.Queue[Message]:
        return self._queues.setdefault(name, asyncio.Queue())

    async def _dispatch(self, consumer: Consumer, should_skip: SkipPredicate | None) -> None:
        queue = self._queue(consumer.queue)
        slots = asyncio.Semaphore(consumer.prefetch)
        while True:
            await slots.acquire()
            try:
                message = await queue.get()
            except asyncio.CancelledError:
                slots.release()
                raise
            task = asyncio.create_task(self._deliver(consumer, message, should_skip))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
            task.add_done_callback(lambda _: slots.release())

    async def _deliver(
        self, consumer: Consumer, message: Message, should_skip: SkipPredicate | None
    ) -> None:
        queue = self._queue(consumer.queue)
        delivered = replace(message, body=_json_copy(message.body), headers=dict(message.headers))
        try:
            error = await _run_handler(consumer, delivered, should_skip)
        except asyncio.CancelledError:
            queue.put_nowait(replace(message, redelivered=True))
            raise
        if error is None:
            self._outstanding[consumer.queue] -= 1
            return
        if message.attempt < consumer.max_retries:
            retry = replace(message, attempt=message.attempt + 1, redelivered=False)
            asyncio.get_running_loop().call_later(consumer.retry_delay, queue.put_nowait, retry)
            return
        dead = replace(message, headers={**message.headers, **_error_headers(error)})
        self._dead.setdefault(consumer.queue, []).append(dead)
        self._outstanding[consumer.queue] -= 1
        logger.error(
            "message %s dead-lettered on %s.dlq: %s",
            message.id,
            message.queue,
            dead.headers[ERROR_HEADER],
        )


class AmqpQueueBackend(QueueBackend):
    """RabbitMQ queues through aio-pika: durable, persistent, confirmed, manually acked.

    Each queue ``Q`` comes with ``Q.retry`` (messages wait there for their per-message TTL,
    then RabbitMQ dead-letters them back to ``Q``) and ``Q.dlq``. A retry or dead-letter
    copy is acknowledged by the broker before the original is acked, so a crash in
    between duplicates a message (at least once) but never loses one.
    """

    def __init__(
        self,
        url: str,
        *,
        quorum: bool = False,
        connect_timeout: float = 5.0,
        publish_timeout: float = 10.0,
    ) -> None:
        """Prepare a backend for ``url``; it connects on :meth:`connect` or first use.

        :param quorum: declare quorum queues (replicated; for clusters) instead of classic
            durable queues.
        """
        self.url = url
        self.quorum = quorum
        self.connect_timeout = connect_timeout
        self.publish_timeout = publish_timeout
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._declared: set[str] = set()
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self._consumer_channels: list[AbstractChannel] = []
        self._inflight: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        """Open the robust connection (it reconnects by itself after a loss)."""
        async with self._lock:
            if self._connection is not None and not self._connection.is_closed:
                return
            try:
                self._connection = await asyncio.wait_for(
                    aio_pika.connect_robust(self.url, timeout=self.connect_timeout),
                    self.connect_timeout,
                )
                self._publish_channel = await self._connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
            except (AMQPError, OSError, TimeoutError) as error:
                raise QueueUnavailable(f"cannot connect to the message broker: {error}") from error
            self._declared.clear()
            self._stopping = False

    async def publish(
        self,
        queue: str,
        body: dict[str, Any],
        *,
        tenant_id: str | None = None,
        headers: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> str:
        """Publish persistently and return once RabbitMQ has confirmed the message."""
        channel = await self._channel()
        message_id = message_id or uuid.uuid4().hex
        payload = _encode(body, tenant_id, headers or {}, message_id, attempt=1)
        try:
            await self._declare(channel, queue)
            await channel.default_exchange.publish(
                payload, routing_key=queue, timeout=self.publish_timeout
            )
        except (AMQPError, OSError, TimeoutError) as error:
            raise QueueUnavailable(f"publish to {queue!r} was not confirmed: {error}") from error
        return message_id

    async def start_consumer(
        self, consumer: Consumer, *, should_skip: SkipPredicate | None = None
    ) -> None:
        """Consume on a channel of its own, with ``basic.qos(prefetch)``."""
        await self._channel()
        assert self._connection is not None
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=consumer.prefetch)
        await self._declare(channel, consumer.queue)
        # Declared on this robust channel, the queue and its consumer survive a reconnect.
        queue = await channel.declare_queue(
            consumer.queue, durable=True, arguments=self._queue_arguments()
        )
        self._consumer_channels.append(channel)

        async def on_message(incoming: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._inflight.add(task)
            try:
                await self._handle(channel, consumer, incoming, should_skip)
            except (AMQPError, OSError, TimeoutError) as error:
                logger.warning(
                    "lost the broker while settling a message of %s (it will be delivered "
                    "again): %s",
                    consumer.queue,
                    error,
                )
            finally:
                self._inflight.discard(task)

        tag = await queue.consume(on_message, no_ack=False)
        self._consumers.append((queue, tag))

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - a drain deadline
        """Cancel the consumers, drain in-flight handlers, close the connection."""
        self._stopping = True
        for queue, tag in self._consumers:
            try:
                await queue.cancel(tag)
            except (AMQPError, OSError) as error:
                logger.warning("cancelling consumer of %s failed: %s", queue.name, error)
        self._consumers.clear()
        if self._inflight:
            _, pending = await asyncio.wait(self._inflight, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()
        self._connection = None
        self._publish_channel = None
        self._consumer_channels.clear()

    async def dead_letters(self, queue: str, limit: int = 100) -> list[Message]:
        """Remove and return up to ``limit`` messages from ``{queue}.dlq``."""
        channel = await self._channel()
        await self._declare(channel, queue)
        dlq = await channel.get_queue(f"{queue}.dlq", ensure=False)
        messages: list[Message] = []
        while len(messages) < limit:
            incoming = await dlq.get(no_ack=False, fail=False, timeout=self.publish_timeout)
            if incoming is None:
                break
            messages.append(_decode(incoming, queue))
            await incoming.ack()
        return messages

    async def ping(self) -> bool:
        """Return whether a connection to the broker is open (connecting if needed)."""
        try:
            await self._channel()
        except QueueUnavailable:
            return False
        return self._connection is not None and not self._connection.is_closed

    async def _channel(self) -> AbstractChannel:
        if self._publish_channel is None or self._connection is None:
            await self.connect()
        assert self._publish_channel is not None
        return self._publish_channel

    def _queue_arguments(self) -> dict[str, Any]:
        return {"x-queue-type": "quorum"} if self.quorum else {}

    async def _declare(self, channel: AbstractChannel, queue: str) -> None:
        """Declare ``queue``, ``queue.retry`` and ``queue.dlq`` once per connection."""
        if queue in self._declared:
            return
        arguments = self._queue_arguments()
        await channel.declare_queue(queue, durable=True, arguments=arguments)
        await channel.declare_queue(
            f"{queue}.retry",
            durable=True,
            arguments={
                **arguments,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queue,
            },
        )
        await channel.declare_queue(f"{queue}.dlq", durable=True, arguments=arguments)
        self._declared.add(queue)

    async def _handle(
        self,
        channel: AbstractChannel,
        consumer: Consumer,
        incoming: AbstractIncomingMessage,
        should_skip: SkipPredicate | None,
    ) -> None:
        if self._stopping:
            await incoming.nack(requeue=True)
            return
        try:
            message = _decode(incoming, consumer.queue)
        except (ValueError, TypeError) as error:
            message = Message(
                id=incoming.message_id or uuid.uuid4().hex,
                queue=consumer.queue,
                body={"undecodable": incoming.body.decode("utf-8", "replace")},
                tenant_id=None,
                attempt=consumer.max_retries,
            )
            await self._dead_letter(channel, consumer, message, error)
            await incoming.ack()
            return
        failure = await _run_handler(consumer, message, should_skip)
        if failure is None:
            await incoming.ack()
        elif message.attempt < consumer.max_retries:
            retry = _encode(
                message.body,
                message.tenant_id,
                message.headers,
                message.id,
                attempt=message.attempt + 1,
                expiration=consumer.retry_delay,
            )
            await channel.default_exchange.publish(
                retry, routing_key=f"{consumer.queue}.retry", timeout=self.publish_timeout
            )
            await incoming.ack()
        else:
            await self._dead_letter(channel, consumer, message, failure)
            await incoming.ack()

    async def _dead_letter(
        self, channel: AbstractChannel, consumer: Consumer, message: Message, error: Exception
    ) -> None:
        dead = _encode(
            message.body,
            message.tenant_id,
            {**message.headers, **_error_headers(error)},
            message.id,
            attempt=message.attempt,
        )
        await channel.default_exchange.publish(
            dead, routing_key=f"{consumer.queue}.dlq", timeout=self.publish_timeout
        )
        logger.error(
            "message %s dead-lettered on %s.dlq: %s",
            message.id,
            message.queue,
            dead.headers[ERROR_HEADER],
        )


def _encode(
    body: dict[str, Any],
    tenant_id: str | None,
    headers: dict[str, Any],
    message_id: str,
    *,
    attempt: int,
    expiration: float | None = None,
) -> aio_pika.Message:
    transport_headers: dict[str, Any] = {ATTEMPT_HEADER: attempt}
    if tenant_id is not None:
        transport_headers[TENANT_HEADER] = tenant_id
    return aio_pika.Message(
        json.dumps(body).encode(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message_id,
        headers={**headers, **transport_headers},
        expiration=expiration,
    )


def _decode(incoming: AbstractIncomingMessage, queue: str) -> Message:
    raw_headers = dict(incoming.headers or {})
    body = json.loads(incoming.body)
    if not isinstance(body, dict):
        raise TypeError(f"message body must be a JSON object, got {type(body).__name__}")
    tenant = raw_headers.get(TENANT_HEADER)
    return Message(
        id=incoming.message_id or uuid.uuid4().hex,
        queue=queue,
        body=body,
        tenant_id=str(tenant) if tenant is not None else None,
        headers={
            name: value
            for name, value in raw_headers.items()
            if name not in _TRANSPORT_HEADERS and not name.startswith(_TRANSPORT_HEADER_PREFIXES)
        },
        attempt=int(raw_headers.get(ATTEMPT_HEADER, 1)),  # type: ignore[arg-type]
        redelivered=bool(incoming.redelivered),
    )


def create_queue_backend(amqp_url: str | None, *, quorum: bool = False) -> QueueBackend:
    """Return a RabbitMQ backend when ``amqp_url`` is set, else the in-process one.

    :param quorum: declare quorum queues (replicated; for clusters) instead of classic ones.
    """
    if amqp_url:
        return AmqpQueueBackend(amqp_url, quorum=quorum)
    return MemoryQueueBackend()
