"""The event bus: tenant scoping, fan-out across processes, slow subscribers, on real services."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import pytest

from pulse_engine.events import (
    AmqpEventBus,
    Event,
    EventBus,
    MemoryEventBus,
    RedisEventBus,
    Subscription,
    create_event_bus,
)

BusFactory = Callable[..., Awaitable[EventBus]]


@pytest.fixture(params=["memory", "redis", "amqp"])
async def make_bus(
    request: pytest.FixtureRequest, redis_url: str, amqp_url: str
) -> AsyncIterator[BusFactory]:
    """A factory of started buses of one backend, sharing a channel unique to the test.

    Each bus stands for one process; all are stopped afterwards.
    """
    channel = f"pulse-test.events.{uuid.uuid4().hex}"
    buses: list[EventBus] = []

    async def make(subscriber_buffer: int = 1000) -> EventBus:
        bus: EventBus
        if request.param == "memory":
            bus = MemoryEventBus(subscriber_buffer=subscriber_buffer)
        elif request.param == "redis":
            bus = RedisEventBus(redis_url, channel=channel, subscriber_buffer=subscriber_buffer)
        else:
            bus = AmqpEventBus(amqp_url, exchange=channel, subscriber_buffer=subscriber_buffer)
        await bus.start()
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.stop()
    if request.param == "amqp":
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            await (await connection.channel()).exchange_delete(channel)


async def next_event(subscription: Subscription) -> Event:
    """The next event of ``subscription``, failing the test after 3 seconds."""
    return await asyncio.wait_for(anext(subscription), 3.0)


async def nothing_more(subscription: Subscription, wait: float = 0.2) -> bool:
    """Whether no further event arrives within ``wait`` seconds."""
    try:
        await asyncio.wait_for(anext(subscription), wait)
    except TimeoutError:
        return True
    return False


async def test_subscriber_sees_only_its_tenant(make_bus: BusFactory) -> None:
    bus = await make_bus()
    tenant_a, tenant_b = uuid.uuid4().hex, uuid.uuid4().hex
    async with bus.subscribe(tenant_a) as events_a, bus.subscribe(None) as system:
        await bus.publish(tenant_b, "etl.job.progress", {"percent": 10})
        await bus.publish(None, "capability.changed", {"plugin": "dora"})
        published = await bus.publish(tenant_a, "etl.job.progress", {"percent": 50})

        received = await next_event(events_a)
        assert received == published
        assert received.tenant_id == tenant_a and received.data == {"percent": 50}
        assert len(received.id) == 32 and received.at.endswith("+00:00")
        assert await nothing_more(events_a)
        system_event = await next_event(system)
        assert (system_event.tenant_id, system_event.type) == (None, "capability.changed")


@pytest.mark.parametrize("make_bus", ["redis", "amqp"], indirect=True)
async def test_fan_out_across_processes_exactly_once(make_bus: BusFactory) -> None:
    publisher, other = await make_bus(), await make_bus()
    tenant = uuid.uuid4().hex
    async with publisher.subscribe(tenant) as local, other.subscribe(tenant) as remote:
        published = await publisher.publish(tenant, "etl.job.done", {"job": 7})
        assert await next_event(remote) == published
        assert await next_event(local) == published
        assert await nothing_more(local)
        assert await nothing_more(remote)


async def test_slow_subscriber_drops_oldest_without_blocking(make_bus: BusFactory) -> None:
    bus = await make_bus(subscriber_buffer=5)
    tenant = uuid.uuid4().hex
    async with bus.subscribe(tenant) as slow:
        started = time.perf_counter()
        for index in range(50):
            await bus.publish(tenant, "tick", {"n": index})
        assert time.perf_counter() - started < 1.0
        assert slow.dropped == 45
        assert [(await next_event(slow)).data["n"] for _ in range(5)] == [45, 46, 47, 48, 49]


async def test_exiting_the_context_unsubscribes(make_bus: BusFactory) -> None:
    bus = await make_bus()
    tenant = uuid.uuid4().hex
    async with bus.subscribe(tenant) as subscription:
        pass
    await bus.publish(tenant, "tick", {})
    assert [event async for event in subscription] == []
    assert tenant not in bus._subscriptions


async def test_stop_ends_iteration(make_bus: BusFactory) -> None:
    bus = await make_bus()
    subscription = bus.subscribe("t")
    waiter = asyncio.create_task(anext(subscription))
    await asyncio.sleep(0.01)
    await bus.stop()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiter, 1)


async def test_ping(make_bus: BusFactory) -> None:
    assert await (await make_bus()).ping() is True


async def test_redis_bus_survives_an_unreachable_redis() -> None:
    bus = RedisEventBus("redis://127.0.0.1:1/0")
    await bus.start()
    async with bus.subscribe("t") as events:
        published = await bus.publish("t", "tick", {})
        assert await next_event(events) == published
    assert await bus.ping() is False
    await bus.stop()


def test_factory_prefers_redis_then_amqp(redis_url: str, amqp_url: str) -> None:
    assert isinstance(create_event_bus(redis_url, amqp_url), RedisEventBus)
    assert isinstance(create_event_bus(None, amqp_url), AmqpEventBus)
    assert isinstance(create_event_bus(None, None), MemoryEventBus)
