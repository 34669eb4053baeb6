"""Learning feedback: stored through the ``ai_learning_*`` hooks.

pulse-ml-monitor answers them with its ``ai_learning_memory``; the implementations here
are ``trylast`` and use :data:`pulse_ai_validation.tables.feedback` when no other plugin
answers (both hooks are ``firstresult``).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from pulse_ai_validation.tables import feedback as feedback_table

if TYPE_CHECKING:
    from pulse_engine import Engine

FEEDBACK_KEYS = ("question", "failed_sql", "error", "error_kind", "corrected_sql", "outcome",
                 "recorded_by")
MAX_FIND = 500


async def store_own(engine: Engine, tenant_id: str, feedback: dict[str, Any]) -> str:
    """Write one record into ``ai_validation_feedback``; its id."""
    record_id = str(uuid.uuid4())
    values = {key: feedback.get(key) for key in FEEDBACK_KEYS}
    async with engine.db.tenant_session(tenant_id) as session:
        await session.execute(
            insert(feedback_table).values(tenant_id=tenant_id, id=record_id, **values)
        )
    return record_id


async def find_own(
    engine: Engine, tenant_id: str, error_kind: str | None, limit: int
) -> list[dict[str, Any]]:
    """The tenant's newest records from ``ai_validation_feedback``."""
    query = select(feedback_table).order_by(feedback_table.c.recorded_at.desc()).limit(
        max(1, min(limit, MAX_FIND))
    )
    if error_kind is not None:
        query = query.where(feedback_table.c.error_kind == error_kind)
    async with engine.db.tenant_session(tenant_id) as session:
        rows = (await session.execute(query)).mappings().all()
    return [
        {**{key: row[key] for key in FEEDBACK_KEYS}, "id": str(row["id"]),
         "recorded_at": row["recorded_at"].isoformat()}
        for row in rows
    ]


async def record_feedback(
    engine: Engine, tenant_id: str, feedback: dict[str, Any]
) -> tuple[str, str]:
    """Store ``feedback`` through the hook; ``(record id, plugin that stored it)``."""
    answers = await engine.call_hook(
        "ai_learning_record_feedback", engine=engine, tenant_id=tenant_id, feedback=feedback
    )
    for plugin, record_id in answers:
        return str(record_id), plugin
    raise RuntimeError("no plugin stored the feedback")


async def find_feedback(
    engine: Engine, tenant_id: str, error_kind: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """The tenant's recorded feedback through the hook (newest first)."""
    answers = await engine.call_hook(
        "ai_learning_find_feedback", engine=engine, tenant_id=tenant_id,
        error_kind=error_kind, limit=limit,
    )
    for _plugin, records in answers:
        return [dict(record) for record in records if isinstance(record, dict)]
    return []
