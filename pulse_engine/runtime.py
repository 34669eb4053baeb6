"""Running the engine outside the HTTP server: CLI commands and ``pulse worker``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pulse_engine.app import PulseEngine, create_app
from pulse_engine.settings import Settings


@asynccontextmanager
async def running_engine(
    settings: Settings | None = None, *, run_consumers: bool = False, migrate: bool = False
) -> AsyncIterator[PulseEngine]:
    """A set-up and started engine (no HTTP server), stopped cleanly at the end.

    :param run_consumers: also start the registered queue consumers (``pulse worker``).
    :param migrate: apply migrations first even where the server would not.
    """
    app = create_app(settings)
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
