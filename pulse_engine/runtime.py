"""Running the engine outside the HTTP server: CLI commands and ``pulse worker``."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from pulse_engine.app import PulseEngine, create_app
from pulse_engine.settings import Settings


@asynccontextmanager
async def running_engine(
    settings: Settings | None = None,
    *,
    run_consumers: bool | None = False,
    migrate: bool = False,
    plugins: dict[str, object] | None = None,
) -> AsyncIterator[PulseEngine]:
    """A set-up and started engine (no HTTP server), stopped cleanly at the end.

    :param run_consumers: also start the registered queue consumers (``pulse worker``);
        ``None`` follows the settings (consumers run in-process only without a broker).
    :param migrate: apply migrations first even where the server would not.
    :param plugins: extra plugin objects to register by name (tests, embedding).
    """
    app = create_app(settings, plugins=plugins)
    engine: PulseEngine = app.extensions["pulse"]
    await engine.setup(app)
    if migrate:
        await engine.migrate()
    try:
        await engine.start(run_consumers=run_consumers)
        yield engine
    finally:
        await engine.stop()
        await engine.db.close()


async def run_worker(
    settings: Settings | None = None,
    *,
    plugins: dict[str, object] | None = None,
    on_ready: Callable[[PulseEngine], None] | None = None,
) -> None:
    """Run every consumer until SIGTERM or SIGINT, then drain in-flight messages and stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with running_engine(settings, run_consumers=True, plugins=plugins) as engine:
            if on_ready is not None:
                on_ready(engine)
            await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
