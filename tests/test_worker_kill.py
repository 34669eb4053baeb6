"""A worker killed mid-message: the message is redelivered and its effect happens once."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from pulse_engine.db import to_async_url
from pulse_engine.queue import AmqpQueueBackend
from pulse_engine.testing import running_app

CHILD = Path(__file__).with_name("engine_worker_child.py")


async def wait_for(predicate: Callable[[], Awaitable[bool]], seconds: float = 30.0) -> None:
    """Poll an async predicate until it holds."""
    async with asyncio.timeout(seconds):
        while not await predicate():
            await asyncio.sleep(0.1)


async def spawn(database_url: str, amqp_url: str, queue: str, mode: str, marker: Path):  # type: ignore[no-untyped-def]
    """Start a worker process."""
    return await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), database_url, amqp_url, queue, mode, str(marker)
    )


@pytest.mark.parametrize("crash_point", ["before-commit", "after-commit"])
async def test_killed_worker_message_is_processed_exactly_once(
    crash_point: str, pulse_database_url: str, amqp_url: str, pulse_settings, tmp_path: Path
) -> None:
    async with running_app(pulse_settings):  # migrated schema
        pass
    database = create_async_engine(to_async_url(pulse_database_url))
    async with database.begin() as connection:
        await connection.execute(
            text("CREATE TABLE IF NOT EXISTS worker_effects (message_id text NOT NULL)")
        )
        await connection.execute(text("GRANT ALL ON worker_effects TO pulse_app"))
    queue = f"test.worker.{uuid.uuid4().hex}"
    publisher = AmqpQueueBackend(amqp_url)
    await publisher.connect()
    message_id = await publisher.publish(queue, {"work": 1})

    async def effects() -> int:
        async with database.connect() as connection:
            return int(
                await connection.scalar(
                    text("SELECT count(*) FROM worker_effects WHERE message_id = :id"),
                    {"id": message_id},
                )
            )

    marker = tmp_path / "marker"
    first = await spawn(pulse_database_url, amqp_url, queue, crash_point, marker)
    try:
        await wait_for(lambda: asyncio.sleep(0, marker.exists()))
        first.send_signal(signal.SIGKILL)
        await first.wait()
        assert await effects() == (1 if crash_point == "after-commit" else 0)

        second_marker = tmp_path / "second"
        second = await spawn(pulse_database_url, amqp_url, queue, "normal", second_marker)
        try:
            await wait_for(lambda: asyncio.sleep(0, (tmp_path / "second.ready").exists()))

            async def processed() -> bool:
                async with database.connect() as connection:
                    return bool(
                        await connection.scalar(
                            text(
                                "SELECT count(*) FROM processed_messages "
                                "WHERE consumer = :queue AND message_id = :id"
                            ),
                            {"queue": queue, "id": message_id},
                        )
                    )

            await wait_for(processed)
            await asyncio.sleep(0.5)  # room for a wrong second delivery to show up
            assert await effects() == 1
        finally:
            second.send_signal(signal.SIGTERM)
            await asyncio.wait_for(second.wait(), 30)
        assert second.returncode == 0
    finally:
        if first.returncode is None:
            first.kill()
        await publisher.stop()
        await database.dispose()
