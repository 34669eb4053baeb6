"""The :class:`Engine` protocol: what a plugin may touch on the engine it is handed.

Every hook that takes ``engine`` receives the running host; plugins type it as
:class:`Engine` and use only what is listed here. The concrete class
(``pulse_engine.app.PulseEngine``) has more, all of it internal.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy import Table

    from pulse_engine.cache import Cache
    from pulse_engine.capabilities import Capabilities
    from pulse_engine.db import Database
    from pulse_engine.events import EventBus
    from pulse_engine.metrics import MetricRegistry
    from pulse_engine.queue import QueueBackend
    from pulse_engine.settings import Settings
    from pulse_engine.stash import Stash


class Engine(Protocol):
    """The running host, as plugins see it.

    :ivar settings: the host's settings (``api_v1_prefix``, ``data_dir``...; read-only).
    :ivar db: ``tenant_session(tenant_id)``, ``system_session()``, ``process_once(...)``,
        ``vacuum_analyze(tables)``, ``time_zones()``, and ``app_engine`` for
        connection-level work.
    :ivar cache: ``get_or_compute``, ``invalidate_tags(tenant_id, tags)``.
    :ivar queue: ``publish(queue, body, tenant_id=..., message_id=...)``.
    :ivar events: ``publish(tenant_id, type, data)`` and ``subscribe(tenant_id)``.
    :ivar metrics: every registered :class:`~pulse_engine.metrics.MetricDefinition`.
    :ivar capabilities: ``is_enabled(tenant_id, plugin)`` and ``config(tenant_id, plugin)``.
    :ivar stash: per-engine plugin state under typed keys (:class:`~pulse_engine.Stash`).
    :ivar core_tables: the host's tables (``tenants``, ``users``...) for read-only joins.
    """

    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> Database: ...

    @property
    def cache(self) -> Cache: ...

    @property
    def queue(self) -> QueueBackend: ...

    @property
    def events(self) -> EventBus: ...

    @property
    def metrics(self) -> MetricRegistry: ...

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def stash(self) -> Stash: ...

    @property
    def core_tables(self) -> Mapping[str, Table]: ...

    async def announce_data_loaded(
        self,
        tenant_id: str,
        stats: dict[str, dict[str, int]],
        since: datetime | None = None,
    ) -> None:
        """Call every plugin's ``data_loaded`` hook for a committed load of one tenant."""

    async def call_hook(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call a hook (a plugin's own, added with ``add_hookspecs``) through pluggy.

        Awaitable results are awaited; an implementation that raises fails its plugin.

        :returns: ``(plugin name, result)`` for each implementation that returned a value.
        """
        ...

    def call_hook_sync(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Like :meth:`call_hook` for hooks whose implementations are all synchronous."""
        ...
