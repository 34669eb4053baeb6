"""Revocations from PostgreSQL: every process hears them at commit, and catches up itself.

The database is the one place a revocation lives (``revoked_access_tokens``; an API key's
``revoked_at``; a tenant's ``active``; its plugin switches), and its triggers NOTIFY
``pulse_auth`` in the same transaction (migration ``core_0002``). Each process holds one
LISTEN connection:

- a notice updates this process's memory at once (no bus, no Redis, in the path);
- when the connection is lost the feed is *not live*: the authenticator and the capability
  switches then read the database on every request and the cache fast path (memory only)
  stands aside;
- on reconnecting, the feed LISTENs first, then reloads the whole list, so nothing
  committed during the gap is missed, and only then is live again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

import asyncpg

from pulse_engine.background import BackgroundTask

if TYPE_CHECKING:
    from pulse_engine.auth import Authenticator
    from pulse_engine.capabilities import Capabilities

log = logging.getLogger(__name__)

CHANNEL = "pulse_auth"
MAX_RECONNECT_DELAY = 5.0


class RevocationFeed:
    """The LISTEN connection of one process and whether its notices can be trusted."""

    def __init__(self, authenticator: Authenticator, capabilities: Capabilities) -> None:
        self.authenticator = authenticator
        self.capabilities = capabilities
        self.dsn = ""
        self._connection: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._task: BackgroundTask | None = None
        self.live = False

    async def start(self, dsn: str) -> None:
        """Listen on the database at ``dsn`` (once here, so a start with the database up is
        live at once) and keep listening in the background."""
        self.dsn = dsn
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            await self._listen()
        self._task = BackgroundTask("pulse-revocations", self._keep_listening())

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            await self._task.stop()
        await self._close()
        self.live = False

    async def _listen(self) -> None:
        connection = await asyncpg.connect(self.dsn, timeout=5)
        connection.add_termination_listener(lambda _connection: self._mark_lost())
        await connection.add_listener(CHANNEL, self._on_notice)
        self._connection = connection
        self._lost.clear()
        # after LISTEN, so that nothing committed in between is missed
        await self.authenticator.load_revocations()
        self.authenticator.forget_cached_credentials()
        self.capabilities.forget_all()
        self.live = True

    async def _keep_listening(self) -> None:
        delay = 0.1
        while True:
            if self.live:
                await self._lost.wait()
                self.live = False
                log.warning("revocation notices lost; checking the database per request")
                await self._close()
                delay = 0.1
            try:
                await self._listen()
            except (OSError, asyncpg.PostgresError, TimeoutError) as error:
                log.warning("cannot listen for revocations yet (%s); retrying", error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY)
            else:
                log.warning("revocation notices back, the list reloaded")

    def _mark_lost(self) -> None:
        self.live = False
        self._lost.set()

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            with contextlib.suppress(Exception):  # it is already broken, or closing anyway
                await connection.close(timeout=2)

    def _on_notice(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            notice = json.loads(payload)
            kind = notice["kind"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed revocation notice")
            return
        if kind == "revoked":
            self.authenticator.note_revoked(str(notice["jti"]), float(notice["expires_at"]))
        elif kind == "api_key":
            self.authenticator.forget_api_key(str(notice["prefix"]))
        elif kind == "tenant":
            self.authenticator.forget_tenant(str(notice["tenant_id"]))
        elif kind == "capabilities":
            self.capabilities.forget(str(notice["tenant_id"]))
        self.authenticator.changed()
