"""pulse-portfolio's facts: ``portfolio_work_items``, one row per finished work item.

Each row holds the item's project, its resolution, its start (its first status change to a
status that is not one of the tenant's ``todo_statuses``, else its creation: the start of
:class:`pulse_portfolio.flow.Item` for a finished item) and its cycle time in seconds.
The throughput and cycle-time metrics read them in one range scan of a covering index.

:func:`recompute` rebuilds them from pulse-etl's ``work_items`` and
``work_item_status_changes``, set-based:

* ``since`` None (a first refresh, a configuration change such as new to-do statuses):
  every finished item of the tenant;
* ``since`` given (the earliest event time a load touched): the items created, resolved
  or with a status change at or after ``since``, and those whose stored row is resolved
  at or after it. An item's row depends only on the item and its own status history, and
  a load's ``since`` is no later than the creation of every work item it loaded (and than
  the time of every status change it loaded, when those count among its event times), so
  every row the load can have changed is among them and the result equals a full
  recompute. Their rows are upserted (an unchanged row is not written) and deleted when
  the item is no longer resolved.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from pulse_engine import FactsRefresh, analyze_if_rewritten
from pulse_portfolio.config import tenant_config

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from pulse_engine import Engine

#: The fact table.
TABLE = "portfolio_work_items"

#: Cache tag of the answers computed from the facts (dropped after each refresh).
FACTS_CACHE_TAG = "portfolio.data"

#: SQL: the columns of a row of ``portfolio_work_items`` from work item ``w`` and its first
#: start ``s.started`` (null without a change out of to-do).
_ROW = ("w.tenant_id, w.id AS work_item_id, w.project_id, w.resolved_at, "
        "coalesce(s.started, w.created_at_source) AS started_at, "
        "extract(epoch FROM w.resolved_at - coalesce(s.started, w.created_at_source))::float8 "
        "AS cycle_seconds")

_COLUMNS = ("portfolio_work_items (tenant_id, work_item_id, project_id, resolved_at, "
            "started_at, cycle_seconds)")

#: SQL: the status changes that start work (to a status that is not a to-do status).
_STARTS = ("FROM work_item_status_changes c WHERE c.tenant_id = CAST(:tenant AS uuid) "
           "AND lower(c.to_status) <> ALL(CAST(:todo AS text[]))")

#: A full recompute: every finished item (rows in key order, so the key index is appended).
FULL = [
    "DELETE FROM portfolio_work_items WHERE tenant_id = CAST(:tenant AS uuid)",
    f"INSERT INTO {_COLUMNS} SELECT {_ROW} FROM work_items w "
    f"LEFT JOIN (SELECT c.work_item_id, min(c.changed_at) AS started {_STARTS} GROUP BY 1) s "
    "ON s.work_item_id = w.id "
    "WHERE w.tenant_id = CAST(:tenant AS uuid) AND w.resolved_at IS NOT NULL ORDER BY w.id",
]

#: A recompute from ``:since``: the affected items (see the module), their starts in one
#: index-only scan of ``ix_work_item_status_changes_item``, their rows upserted and the
#: rows of those no longer finished deleted; answers the rows written and deleted.
SINCE = f"""
WITH affected AS MATERIALIZED (
    SELECT w.id FROM work_items w WHERE w.tenant_id = CAST(:tenant AS uuid)
       AND (w.created_at_source >= :since OR w.resolved_at >= :since)
    UNION
    SELECT c.work_item_id FROM work_item_status_changes c
    WHERE c.tenant_id = CAST(:tenant AS uuid) AND c.changed_at >= :since
    UNION
    SELECT f.work_item_id FROM portfolio_work_items f
    WHERE f.tenant_id = CAST(:tenant AS uuid) AND f.resolved_at >= :since
),
s AS (
    SELECT c.work_item_id, min(c.changed_at) AS started {_STARTS}
       AND c.work_item_id = ANY(ARRAY(SELECT id FROM affected)) GROUP BY 1
),
fresh AS MATERIALIZED (
    SELECT {_ROW} FROM work_items w
    LEFT JOIN s ON s.work_item_id = w.id
    WHERE w.tenant_id = CAST(:tenant AS uuid) AND w.resolved_at IS NOT NULL
      AND w.id = ANY(ARRAY(SELECT id FROM affected))
),
gone AS (
    DELETE FROM portfolio_work_items f WHERE f.tenant_id = CAST(:tenant AS uuid)
       AND f.work_item_id = ANY(ARRAY(SELECT id FROM affected))
       AND NOT EXISTS (SELECT 1 FROM fresh WHERE fresh.work_item_id = f.work_item_id)
    RETURNING 1
),
written AS (
    INSERT INTO {_COLUMNS} SELECT * FROM fresh ORDER BY work_item_id
    ON CONFLICT (tenant_id, work_item_id) DO UPDATE SET project_id = EXCLUDED.project_id,
        resolved_at = EXCLUDED.resolved_at, started_at = EXCLUDED.started_at,
        cycle_seconds = EXCLUDED.cycle_seconds
    WHERE (portfolio_work_items.project_id, portfolio_work_items.resolved_at,
           portfolio_work_items.started_at, portfolio_work_items.cycle_seconds)
          IS DISTINCT FROM (EXCLUDED.project_id, EXCLUDED.resolved_at, EXCLUDED.started_at,
                            EXCLUDED.cycle_seconds)
    RETURNING 1
)
SELECT (SELECT count(*) FROM written) + (SELECT count(*) FROM gone)
"""


async def recompute(engine: Engine, session: AsyncSession, tenant_id: str,
                    since: datetime | None) -> dict[str, int]:
    """Recompute the tenant's ``portfolio_work_items`` (all of them when ``since`` is None,
    else those a load from ``since`` on can have changed) in ``session``'s tenant-bound
    transaction; returns the rows written (and, from ``since``, deleted) by table."""
    config = await tenant_config(engine, tenant_id)
    params = {"tenant": tenant_id, "todo": config.todo_statuses, "since": since}
    if since is None:
        await session.execute(text(FULL[0]), params)
        inserted: Any = await session.execute(text(FULL[1]), params)  # a CursorResult
        written = int(inserted.rowcount or 0)
    else:
        written = int((await session.execute(text(SINCE), params)).scalar_one())
    await analyze_if_rewritten(session, TABLE, written)
    return {TABLE: written}


#: The facts and their refresh: queued after loads of work items or status changes and
#: (in full) after a configuration change of the tenant; the first full refresh of the
#: tenants with finished work items is recorded by migration ``portfolio_0002``.
PORTFOLIO_FACTS = FactsRefresh(
    name="portfolio",
    recompute=recompute,
    inputs=frozenset({"work_items", "work_item_status_changes"}),
    cache_tags=(FACTS_CACHE_TAG,),
    vacuum_tables=(TABLE,),
)
