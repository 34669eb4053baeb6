"""Sync cursors: where a job resumes from, saved in the transaction of the batch they follow.

A cursor lives under a *scope* (the job's integration, or a digest of an ad-hoc
configuration) and a *stream* (a connector's name for one sequence it reads: ``commits``,
``issues``...).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_etl import model

if TYPE_CHECKING:
    from pulse_engine import Engine


def cursor_scope(integration_id: str | None, connector: str, config: Mapping[str, Any]) -> str:
    """Where a job's cursors live: its integration, or a digest of its ad-hoc config."""
    if integration_id:
        return str(integration_id)
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return f"{connector}:{hashlib.sha256(canonical.encode()).hexdigest()[:40]}"


async def read_cursor(engine: Engine, tenant_id: str, scope: str, stream: str
                      ) -> dict[str, Any] | None:
    """The saved cursor of ``stream`` under ``scope``, if any."""
    table = model.sync_cursors
    async with engine.db.tenant_session(tenant_id) as session:
        value = await session.scalar(
            select(table.c.cursor).where(table.c.scope == scope, table.c.stream == stream)
        )
    return value if isinstance(value, dict) else None


async def save_cursor(session: AsyncSession, tenant_id: str, scope: str, stream: str,
                      connector: str, value: Mapping[str, Any]) -> None:
    """Upsert a cursor inside the caller's transaction."""
    table = model.sync_cursors
    statement = pg_insert(table).values(
        tenant_id=tenant_id, scope=scope, stream=stream, connector=connector,
        cursor=dict(value),
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant_id", "scope", "stream"],
            set_={"cursor": statement.excluded.cursor, "updated_at": func.now()},
        )
    )
