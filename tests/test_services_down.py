"""Backing services down at start: the host serves, says so, refuses to queue, recovers."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aio_pika
from fixtures.tcp_proxy import OutageProxy
from quart import Blueprint

from pulse_engine import hookimpl
from pulse_engine.auth import require_role
from pulse_engine.queue import Consumer, Message
from pulse_engine.testing import make_settings, make_tenant, running_app


class QueueProbe:
    """A route that queues work and the consumer that does it."""

    def __init__(self) -> None:
        self.queue = f"test.down.{uuid.uuid4().hex}"
        self.handled: list[dict[str, object]] = []

    @hookimpl
    def register_routes(self, engine) -> Blueprint:  # type: ignore[no-untyped-def]
        blueprint = Blueprint("queueprobe", __name__, url_prefix="/api/v1/queueprobe")

        @blueprint.post("/work")
        @require_role("viewer")
        async def enqueue() -> tuple[dict[str, str], int]:
            message_id = await engine.queue.publish(self.queue, {"n": 1})
            return {"message_id": message_id}, 202

        return blueprint

    @hookimpl
    def register_queue_consumers(self) -> list[Consumer]:
        async def handle(message: Message) -> None:
            self.handled.append(message.body)

        return [Consumer(queue=self.queue, handler=handle, retry_delay=0.1)]


async def test_broker_down_at_start_then_back(
    pulse_database_url: str, tmp_path: Path, amqp_url: str
) -> None:
    proxy = OutageProxy(target_port=5672)
    await proxy.start()
    await proxy.stop()  # the broker is "down": nothing listens on the proxy's port
    probe = QueueProbe()
    settings = make_settings(
        pulse_database_url,
        tmp_path,
        amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/",
        messaging_start_wait_seconds=0.5,
        run_consumers_in_server=True,
    )
    async with running_app(settings, plugins={"queueprobe": probe}, load_entry_points=False) as app:
        tenant = await make_tenant(app)
        client = app.test_client()
        health = await client.get("/health")
        assert health.status_code == 503
        checks = (await health.get_json())["plugins"]["pulse.engine_health"]["checks"]
        assert checks["queue"]["status"] == "unhealthy"

        refused = await tenant.viewer_client.post("/api/v1/queueprobe/work")
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "5"
        assert (await refused.get_json())["type"].endswith("/queue-unavailable")

        await proxy.start()  # the broker is back
        async with asyncio.timeout(30):
            while (await client.get("/health")).status_code != 200:
                await asyncio.sleep(0.2)
        accepted = await tenant.viewer_client.post("/api/v1/queueprobe/work")
        assert accepted.status_code == 202
        async with asyncio.timeout(10):
            while not probe.handled:
                await asyncio.sleep(0.05)
        assert probe.handled == [{"n": 1}]
    await proxy.stop()
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for name in (probe.queue, f"{probe.queue}.retry", f"{probe.queue}.dlq"):
            await channel.queue_delete(name)


async def test_the_cache_and_the_rate_limiter_share_one_redis_breaker(tmp_path: Path) -> None:
    from pulse_engine.app import PulseEngine
    from pulse_engine.plugins import PluginManager
    from pulse_engine.testing import make_settings

    settings = make_settings("postgresql://unused/db", tmp_path, redis_url="redis://127.0.0.1:1/0")
    engine = PulseEngine(settings, PluginManager())
    assert engine.cache.backend.breaker is engine.rate_limiter.breaker  # type: ignore[attr-defined]
    assert engine.redis_breaker.available
    assert await engine.cache.get("any") is None  # the cache finds Redis down...
    # ...and the limiter takes its per-process fallback without trying Redis itself
    assert not engine.redis_breaker.available
    decision = await engine.rate_limiter.hit("login:someone", limit=1, window=60)
    assert decision.allowed
    assert not (await engine.rate_limiter.hit("login:someone", limit=1, window=60)).allowed
    await engine.cache.backend.close()
    await engine.rate_limiter.aclose()
