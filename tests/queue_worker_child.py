"""A queue worker for the kill test: it records each delivery, then hangs on it forever.

Usage: ``python queue_worker_child.py AMQP_URL QUEUE RECORD_FILE``. Each delivery appends
``"<message id> <redelivered>"`` to ``RECORD_FILE`` before the handler blocks, so the test
knows the message is in flight when it kills this process.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from pulse_engine.queue import AmqpQueueBackend, Consumer, Message


async def main(amqp_url: str, queue: str, record_file: Path) -> None:
    """Consume ``queue`` until killed."""
    backend = AmqpQueueBackend(amqp_url)

    async def hang(message: Message) -> None:
        with record_file.open("a") as record:
            record.write(f"{message.id} {message.redelivered}\n")
        await asyncio.Event().wait()

    await backend.start_consumer(Consumer(queue=queue, handler=hang, prefetch=1))
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
