"""pulse-ai-validation's learning-feedback hooks, answered from ``ai_learning_memory``.

pulse-ai-validation declares ``ai_learning_record_feedback`` and ``ai_learning_find_feedback``
(``firstresult``) and implements them itself, ``trylast``, on a table of its own; with this
plugin installed these implementations answer first, so feedback from SQL validation and
feedback sent to ``/api/v1/ml/learning-memory`` live in one table. A validation record is
stored with ``source = "ai_validation"``: ``failed_sql`` as ``ai_output``,
``corrected_sql`` as ``correction``; ``find`` returns the records of that source only (the
API's other feedback is not SQL).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import insert, select

from pulse_ml_monitor.schemas import LearningIn
from pulse_ml_monitor.tables import ai_learning_memory

if TYPE_CHECKING:
    from pulse_engine import Engine

SOURCE = "ai_validation"
#: Most records ``find`` returns (the contract's bound).
MAX_FIND = 500


def validated(feedback: dict[str, Any]) -> LearningIn:
    """The feedback as a learning-memory record (``ValueError`` naming what is wrong)."""
    try:
        return LearningIn.model_validate({
            "question": feedback.get("question"), "ai_output": feedback.get("failed_sql"),
            "error": feedback.get("error"), "error_kind": feedback.get("error_kind"),
            "correction": feedback.get("corrected_sql"), "outcome": feedback.get("outcome"),
            "source": SOURCE,
        })
    except ValidationError as error:
        raise ValueError(f"invalid learning feedback: {error.errors(include_input=False)}") \
            from None


async def store(
    engine: Engine, tenant_id: str, record: LearningIn, recorded_by: str | None
) -> str:
    """Store one validated feedback record; returns its id."""
    async with engine.db.tenant_session(tenant_id) as session:
        new_id = await session.scalar(
            insert(ai_learning_memory).values(
                tenant_id=tenant_id, recorded_by=recorded_by, **record.model_dump())
            .returning(ai_learning_memory.c.id))
    return str(new_id)


async def find_feedback(
    engine: Engine, tenant_id: str, error_kind: str | None, limit: int
) -> list[dict[str, Any]]:
    """The tenant's newest validation feedback records (of ``error_kind`` when given)."""
    t = ai_learning_memory
    query = select(t).where(t.c.source == SOURCE)
    if error_kind is not None:
        query = query.where(t.c.error_kind == error_kind)
    query = query.order_by(t.c.id.desc()).limit(max(0, min(int(limit), MAX_FIND)))
    async with engine.db.tenant_session(tenant_id) as session:
        rows = (await session.execute(query)).all()
    return [
        {"id": str(row.id), "recorded_at": row.recorded_at.isoformat(),
         "question": row.question, "failed_sql": row.ai_output, "error": row.error,
         "error_kind": row.error_kind, "corrected_sql": row.correction,
         "outcome": row.outcome, "recorded_by": row.recorded_by}
        for row in rows
    ]
