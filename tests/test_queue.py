"""The work queue: both backends against the same delivery semantics, on real RabbitMQ."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import pytest

from pulse_engine.queue import (
    ERROR_HEADER,
    ERROR_MESSAGE_HEADER,
    ERROR_TYPE_HEADER,
    AmqpQueueBackend,
    Consumer,
    MemoryQueueBackend,
    Message,
    QueueBackend,
    QueueUnavailable,
    create_queue_backend,
)

DOWN_AMQP_URL = "amqp://guest:guest@127.0.0.1:1/"
CHILD = Path(__file__).with_name("queue_worker_child.py")


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until ``predicate()`` holds, failing the test after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def ready_count(amqp_url: str, queue: str) -> int:
    """The number of messages ready in a RabbitMQ queue (unacked ones not included)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count
        return count if count is not None else 0


async def delete_queues(amqp_url: str, names: list[str]) -> None:
    """Delete every queue of the topology of each of ``names``."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for name in names:
            for suffix in ("", ".retry", ".dlq"):
                await channel.queue_delete(f"{name}{suffix}")


@dataclass
class Harness:
    """A backend under test plus the unique queue names it used."""

    backend: QueueBackend
    amqp_url: str | None
    names: list[str] = field(default_factory=list)

    def queue(self) -> str:
        """A fresh queue name, deleted after the test."""
        name = f"pulse-test.{uuid.uuid4().hex}"
        self.names.append(name)
        return name

    async def queue_is_empty(self, name: str) -> bool:
        """Whether nothing is left ready in ``name`` (trivially true in memory)."""
        return self.amqp_url is None or await ready_count(self.amqp_url, name) == 0


@pytest.fixture(params=["memory", "amqp"])
async def harness(request: pytest.FixtureRequest, amqp_url: str) -> AsyncIterator[Harness]:
    """Each backend in turn; stopped and its queues deleted afterwards."""
    if request.param == "memory":
        subject = Harness(MemoryQueueBackend(), None)
    else:
        subject = Harness(AmqpQueueBackend(amqp_url), amqp_url)
    await subject.backend.connect()
    yield subject
    await subject.backend.stop(timeout=1)
    if subject.amqp_url is not None and subject.names:
        await delete_queues(subject.amqp_url, subject.names)


async def test_roundtrip_preserves_message(harness: Harness) -> None:
    queue = harness.queue()
    received: asyncio.Queue[Message] = asyncio.Queue()
    message_id = await harness.backend.publish(
        queue,
        {"job": 42, "tags": ["a", "b"], "nested": {"x": None}},
        tenant_id="acme",
        headers={"trace": "abc"},
        message_id="fixed-id",
    )
    assert message_id == "fixed-id"
    await harness.backend.start_consumer(Consumer(queue=queue, handler=received.put))
    generated_id = await harness.backend.publish(queue, {"job": 43})

    first = await asyncio.wait_for(received.get(), 5)
    assert first.id == "fixed-id"
    assert first.queue == queue
    assert first.body == {"job": 42, "tags": ["a", "b"], "nested": {"x": None}}
    assert first.tenant_id == "acme"
    assert first.headers == {"trace": "abc"}
    assert (first.attempt, first.redelivered) == (1, False)
    second = await asyncio.wait_for(received.get(), 5)
    assert second.id == generated_id and len(generated_id) == 32
    assert (second.tenant_id, second.headers) == (None, {})
    await asyncio.sleep(0.05)
    assert await harness.queue_is_empty(queue)


async def test_failing_twice_then_succeeding_is_retried(harness: Harness) -> None:
    queue = harness.queue()
    attempts: list[tuple[str, int]] = []
    done = asyncio.Event()

    async def flaky(message: Message) -> None:
        attempts.append((message.id, message.attempt))
        if message.attempt < 3:
            raise RuntimeError("transient")
        done.set()

    await harness.backend.start_consumer(
        Consumer(queue=queue, handler=flaky, max_retries=3, retry_delay=0.05)
    )
    message_id = await harness.backend.publish(queue, {"n": 1}, tenant_id="acme")
    await asyncio.wait_for(done.wait(), 5)
    assert attempts == [(message_id, 1), (message_id, 2), (message_id, 3)]
    assert await harness.backend.dead_letters(queue) == []
    await asyncio.sleep(0.1)
    assert len(attempts) == 3


async def test_always_failing_message_is_dead_lettered(harness: Harness) -> None:
    queue = harness.queue()
    calls: list[int] = []

    async def broken(message: Message) -> None:
        calls.append(message.attempt)
        raise ValueError("cannot parse " + "x" * 5000)

    await harness.backend.start_consumer(
        Consumer(queue=queue, handler=broken, max_retries=2, retry_delay=0.05)
    )
    message_id = await harness.backend.publish(
        queue, {"n": 1}, tenant_id="acme", headers={"trace": "t1"}
    )
    dead: list[Message] = []
    deadline = time.monotonic() + 5
    while not dead:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
        dead = await harness.backend.dead_letters(queue)

    [letter] = dead
    assert (letter.id, letter.body, letter.tenant_id) == (message_id, {"n": 1}, "acme")
    assert letter.headers["trace"] == "t1"
    assert letter.headers[ERROR_TYPE_HEADER] == "ValueError"
    assert letter.headers[ERROR_HEADER].startswith("ValueError: cannot parse x")
    assert len(letter.headers[ERROR_MESSAGE_HEADER]) <= 1000
    await asyncio.sleep(0.2)
    assert calls == [1, 2]
    assert await harness.backend.dead_letters(queue) == []
    assert await harness.queue_is_empty(queue)
    assert await harness.queue_is_empty(f"{queue}.retry")


async def test_skipped_messages_are_dropped_without_the_handler(harness: Harness) -> None:
    queue = harness.queue()
    handled: list[str | None] = []

    async def handler(message: Message) -> None:
        handled.append(message.tenant_id)

    await harness.backend.publish(queue, {"n": 1}, tenant_id="disabled")
    await harness.backend.publish(queue, {"n": 2}, tenant_id="enabled")
    await harness.backend.start_consumer(
        Consumer(queue=queue, handler=handler, prefetch=1),
        should_skip=lambda message: message.tenant_id == "disabled",
    )
    await eventually(lambda: handled == ["enabled"])
    await asyncio.sleep(0.1)
    assert handled == ["enabled"]
    assert await harness.backend.dead_letters(queue) == []
    assert await harness.queue_is_empty(queue)


async def test_prefetch_limits_concurrent_handlers(harness: Harness) -> None:
    queue = harness.queue()
    running = 0
    peak = 0
    finished = 0

    async def slow(message: Message) -> None:
        nonlocal running, peak, finished
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        finished += 1

    for index in range(8):
        await harness.backend.publish(queue, {"n": index})
    await harness.backend.start_consumer(Consumer(queue=queue, handler=slow, prefetch=2))
    await eventually(lambda: finished == 8)
    assert peak == 2


async def test_stop_waits_for_in_flight_handler(harness: Harness) -> None:
    queue = harness.queue()
    started = asyncio.Event()
    finished: list[str] = []

    async def slow(message: Message) -> None:
        started.set()
        await asyncio.sleep(0.3)
        finished.append(message.id)

    await harness.backend.start_consumer(Consumer(queue=queue, handler=slow))
    message_id = await harness.backend.publish(queue, {"n": 1})
    await asyncio.wait_for(started.wait(), 5)
    await harness.backend.stop(timeout=5)
    assert finished == [message_id]
    await asyncio.sleep(0.1)
    assert await harness.queue_is_empty(queue)


async def test_ping(harness: Harness) -> None:
    assert await harness.backend.ping() is True


async def test_unreachable_broker_fails_fast() -> None:
    backend = AmqpQueueBackend(DOWN_AMQP_URL, connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(QueueUnavailable):
        await backend.publish("anything", {"n": 1})
    assert time.monotonic() - started < 3
    assert await backend.ping() is False


def test_factory_picks_backend(amqp_url: str) -> None:
    assert isinstance(create_queue_backend(None), MemoryQueueBackend)
    assert isinstance(create_queue_backend(amqp_url), AmqpQueueBackend)


async def test_worker_killed_mid_message_is_redelivered(amqp_url: str, tmp_path: Path) -> None:
    queue = f"pulse-test.{uuid.uuid4().hex}"
    record_file = tmp_path / "deliveries.txt"
    record_file.touch()
    publisher = AmqpQueueBackend(amqp_url)
    message_id = await publisher.publish(queue, {"job": "long"}, tenant_id="acme")
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), amqp_url, queue, str(record_file)
    )
    try:
        deadline = time.monotonic() + 15
        while not record_file.read_text():
            assert child.returncode is None, "worker exited early"
            assert time.monotonic() < deadline, "worker never started the message"
            await asyncio.sleep(0.05)
        assert record_file.read_text().split() == [message_id, "False"]
        child.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(child.wait(), 5) == -signal.SIGKILL
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()

    completed: list[Message] = []

    async def finish(message: Message) -> None:
        completed.append(message)

    successor = AmqpQueueBackend(amqp_url)
    try:
        await successor.start_consumer(Consumer(queue=queue, handler=finish))
        await eventually(lambda: len(completed) == 1, within=10)
        await asyncio.sleep(0.2)
        [message] = completed
        assert (message.id, message.redelivered, message.attempt) == (message_id, True, 1)
        assert message.body == {"job": "long"}
    finally:
        await successor.stop(timeout=2)
    assert await ready_count(amqp_url, queue) == 0
    await publisher.stop(timeout=1)
    await delete_queues(amqp_url, [queue])
