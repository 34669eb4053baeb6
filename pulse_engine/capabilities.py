"""Per-tenant capabilities: which plugins a tenant has switched on, and their config.

Every installed plugin is enabled for a tenant until that tenant's admin disables it. The
state lives in the ``tenant_plugins`` table; each process keeps a copy per tenant, loaded
on first use and dropped when PostgreSQL announces a change of them
(:mod:`pulse_engine.revocations`), so a change takes effect at once on every process; while
those notices may be missed, every read goes to the database. ``capabilities.changed`` is
still published on the event bus for plugins that react to a configuration change.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from pulse_engine.events import CAPABILITY_CHANGED_EVENT

if TYPE_CHECKING:
    from pulse_engine.app import PulseEngine

log = logging.getLogger(__name__)


class Capabilities:
    """The per-tenant plugin switches, cached per process."""

    def __init__(self, engine: PulseEngine) -> None:
        self.engine = engine
        self._by_tenant: dict[str, dict[str, tuple[bool, dict[str, Any]]]] = {}

    def cached_enabled(self, tenant_id: str, plugin: str) -> bool | None:
        """The fast path: True/False when this tenant's switches are cached, else None."""
        if not self.engine.notices.live:
            return None  # notices may have been missed: only the database knows
        switches = self._by_tenant.get(tenant_id)
        if switches is None:
            return None
        state = switches.get(plugin)
        return True if state is None else state[0]

    async def is_enabled(self, tenant_id: str, plugin: str) -> bool:
        """Whether a plugin is enabled for a tenant (built-in features always are)."""
        record = self.engine.plugins.records.get(plugin)
        if record is not None and record.builtin:
            return True
        switches = await self._switches(tenant_id)
        state = switches.get(plugin)
        return True if state is None else state[0]

    async def config(self, tenant_id: str, plugin: str) -> dict[str, Any]:
        """The tenant's validated config for a plugin (``{}`` when none was set)."""
        state = (await self._switches(tenant_id)).get(plugin)
        return dict(state[1]) if state else {}

    async def listing(self, tenant_id: str) -> list[dict[str, Any]]:
        """Every non-built-in plugin with its state for the tenant."""
        switches = await self._switches(tenant_id)
        listing = []
        for name, record in sorted(self.engine.plugins.records.items()):
            if record.builtin:
                continue
            enabled, config = switches.get(name, (True, {}))
            listing.append(
                {
                    "plugin": name,
                    "enabled": enabled,
                    "config": config,
                    "status": record.status,
                    "version": record.version,
                }
            )
        return listing

    async def set(
        self,
        tenant_id: str,
        plugin: str,
        enabled: bool,
        config: dict[str, Any],
        updated_by: str | None,
    ) -> None:
        """Store a switch, then tell every process to reload this tenant's switches."""
        table = self.engine.core_tables["tenant_plugins"]
        values = {
            "tenant_id": tenant_id,
            "plugin": plugin,
            "enabled": enabled,
            "config": config,
            "updated_at": datetime.now(UTC),
            "updated_by": updated_by if updated_by and ":" not in updated_by else None,
        }
        statement = insert(table).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.tenant_id, table.c.plugin],
            set_={
                key: statement.excluded[key]
                for key in ("enabled", "config", "updated_at", "updated_by")
            },
        )
        async with self.engine.db.system_session() as session:
            await session.execute(statement)
        self.forget(tenant_id)
        await self.engine.events.publish(None, CAPABILITY_CHANGED_EVENT, {"tenant_id": tenant_id})

    def forget(self, tenant_id: str) -> None:
        """Drop this process's copy of a tenant's switches."""
        self._by_tenant.pop(tenant_id, None)

    def forget_all(self) -> None:
        """Drop every tenant's copy (after missing notices while disconnected)."""
        self._by_tenant.clear()

    async def _switches(self, tenant_id: str) -> dict[str, tuple[bool, dict[str, Any]]]:
        cached = self._by_tenant.get(tenant_id)
        if cached is not None and self.engine.notices.live:
            return cached
        table = self.engine.core_tables["tenant_plugins"]
        async with self.engine.db.system_session() as session:
            rows = (
                await session.execute(
                    select(table.c.plugin, table.c.enabled, table.c.config).where(
                        table.c.tenant_id == tenant_id
                    )
                )
            ).all()
        switches = {plugin: (enabled, config or {}) for plugin, enabled, config in rows}
        self._by_tenant[tenant_id] = switches
        return switches
