"""A full engine worker for the kill tests: consumes one queue with an idempotent handler.

Usage: ``python engine_worker_child.py DATABASE_URL AMQP_URL QUEUE MODE MARKER_FILE``.
MODE is ``before-commit`` (hang inside the transaction), ``after-commit`` (hang after the
commit, before the acknowledgement) or ``normal``. A line is written to MARKER_FILE when
the handler reaches the hanging point, so the test knows when to kill this process.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from sqlalchemy import text

from pulse_engine import hookimpl
from pulse_engine.queue import Consumer, Message
from pulse_engine.runtime import run_worker
from pulse_engine.testing import make_settings


class WorkerProbe:
    """Registers the consumer under test."""

    def __init__(self, queue: str, mode: str, marker: Path) -> None:
        self.queue, self.mode, self.marker = queue, mode, marker

    @hookimpl
    def register_queue_consumers(self, engine: object) -> list[Consumer]:
        async def handle(message: Message) -> None:
            async with engine.db.process_once(self.queue, message.id, None) as session:  # type: ignore[attr-defined]
                if session is None:
                    return
                await session.execute(
                    text("INSERT INTO worker_effects (message_id) VALUES (:id)"), {"id": message.id}
                )
                if self.mode == "before-commit":
                    self.marker.write_text("in transaction\n")
                    await asyncio.Event().wait()
            if self.mode == "after-commit":
                self.marker.write_text("committed\n")
                await asyncio.Event().wait()

        return [Consumer(queue=self.queue, handler=handle, prefetch=1, retry_delay=0.1)]


async def main(database_url: str, amqp_url: str, queue: str, mode: str, marker: Path) -> None:
    """Run the worker until killed."""
    settings = make_settings(
        database_url, Path(tempfile.mkdtemp()), amqp_url=amqp_url, auto_migrate=False
    )
    probe = WorkerProbe(queue, mode, marker)
    ready_file = marker.parent / f"{marker.name}.ready"
    await run_worker(
        settings,
        plugins={"workerprobe": probe},
        on_ready=lambda _engine: ready_file.write_text("ready\n"),
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], Path(sys.argv[5])))
