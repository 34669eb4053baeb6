"""A long-running task that a plugin or the engine owns: started once, stopped cleanly.

Plugins start one in ``startup`` and stop it in ``shutdown`` (keep it on ``engine.stash``);
stopping cancels the task and waits for it, so nothing it does outlives its engine::

    FOLLOWER = StashKey[BackgroundTask]()

    @hookimpl
    def startup(engine):
        engine.stash[FOLLOWER] = BackgroundTask("my-plugin-follower", follow(engine))

    @hookimpl
    async def shutdown(engine):
        await engine.stash[FOLLOWER].stop()
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


class BackgroundTask:
    """Runs ``work`` as an asyncio task named ``name`` until :meth:`stop`."""

    def __init__(self, name: str, work: Coroutine[Any, Any, Any]) -> None:
        self.name = name
        self._task: asyncio.Task[Any] | None = asyncio.create_task(work, name=name)

    @property
    def running(self) -> bool:
        """Whether the task is still running."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Cancel the task and wait for it to end (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
