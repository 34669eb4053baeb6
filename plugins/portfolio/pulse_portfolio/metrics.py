"""pulse-portfolio's own catalog metrics over pulse-etl's work items.

* ``portfolio.throughput`` (``count``): work items finished (``resolved_at``) per bucket;
* ``portfolio.cycle_time`` (``distribution``, seconds): start to finish of the items
  finished per bucket (start as :mod:`pulse_portfolio.flow` defines it), with ``samples``.

Both take the ``project`` and ``team`` filters (a team's items are its project's).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from pulse_engine import (
    Freshness,
    MetricComputation,
    MetricDefinition,
    MetricFilter,
    MetricQuery,
    MetricSamples,
    MetricValue,
    Problem,
    invalid_field,
)
from pulse_portfolio.config import tenant_config
from pulse_portfolio.flow import MAX_ITEMS

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from pulse_engine import Engine

FILTERS = (
    MetricFilter(name="project", description="Projects by id, key or name."),
    MetricFilter(name="team", description="Teams by id or name: their projects' work items."),
)
CACHE_TAGS = ("etl.data",)


async def _projects(session: AsyncSession, query: MetricQuery) -> list[str] | None:
    chosen: set[str] | None = None
    for name, sql in (
        ("project", "SELECT CAST(id AS text) FROM projects WHERE CAST(id AS text) = ANY(:v) "
                    "OR key = ANY(:v) OR name = ANY(:v)"),
        ("team", "SELECT CAST(project_id AS text) FROM teams WHERE (CAST(id AS text) = ANY(:v) "
                 "OR name = ANY(:v)) AND project_id IS NOT NULL"),
    ):
        values = list(query.filters.get(name, ()))
        if not values:
            continue
        found = set((await session.execute(text(sql), {"v": values})).scalars())
        if not found:
            raise invalid_field(name, f"no {name} among {values}", type="unknown_scope")
        chosen = found if chosen is None else chosen & found
    return sorted(chosen) if chosen is not None else None


def buckets(query: MetricQuery) -> list[tuple[datetime, datetime]]:
    """The query's buckets (local calendar days, ISO weeks or months), clipped to it."""
    if query.interval == "all":
        return [(query.start, query.end)]
    zone = ZoneInfo(query.tz)
    local = query.start.astimezone(zone).replace(tzinfo=None)
    if query.interval == "day":
        cursor = local.replace(hour=0, minute=0, second=0, microsecond=0)
    elif query.interval == "week":
        cursor = (local - timedelta(days=local.weekday())).replace(
            hour=0, minute=0, second=0, microsecond=0)
    else:
        cursor = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    out = []
    while True:
        if query.interval == "day":
            following = cursor + timedelta(days=1)
        elif query.interval == "week":
            following = cursor + timedelta(days=7)
        else:
            following = (cursor.replace(day=28) + timedelta(days=4)).replace(day=1)
        lo = max(cursor.replace(tzinfo=zone), query.start)
        hi = min(following.replace(tzinfo=zone), query.end)
        if lo >= query.end:
            break
        if hi > lo:
            out.append((lo, hi))
        cursor = following
    return out


def _cycled(select: str, *, limit: bool = False) -> str:
    """``select`` over ``x``: the items finished in the window (at most ``:limit`` of them
    with ``limit``), each with its bucket ``b`` and cycle time ``cycle``, the seconds from
    its start (its first change out of the to-do statuses, else its creation, as
    :class:`pulse_portfolio.flow.Item` defines it) to its resolution.

    The starts are read in one index-only scan of ``ix_work_item_status_changes_item``
    (etl_0006) for all the items at once (``= ANY`` of their ids: neighbouring ids share
    a descent of the index), not one look-up per item.
    """
    return ("WITH w AS MATERIALIZED (SELECT w.id, w.resolved_at, w.created_at_source FROM "
            "{items}" + (" LIMIT :limit" if limit else "") + "), "
            "s AS (SELECT c.work_item_id, min(c.changed_at) AS started "
            "FROM work_item_status_changes c WHERE c.tenant_id = CAST(:tenant AS uuid) "
            "AND c.work_item_id = ANY(ARRAY(SELECT id FROM w)) "
            "AND lower(c.to_status) <> ALL(CAST(:todo AS text[])) GROUP BY 1), "
            "x AS MATERIALIZED (SELECT width_bucket(w.resolved_at, "
            "CAST(:bounds AS timestamptz[])) AS b, extract(epoch FROM w.resolved_at - "
            "coalesce(s.started, w.created_at_source))::float8 AS cycle "
            "FROM w LEFT JOIN s ON s.work_item_id = w.id) " + select)


async def _window(engine: Engine, query: MetricQuery,
                  select: str) -> tuple[list[Any], Freshness]:
    """Rows of ``select`` (``{items}`` in it: the items ``w`` finished in the query's
    window, read through ``ix_work_items_resolved``; ``:bounds``: the buckets' starts)."""
    config = await tenant_config(engine, query.tenant_id)
    async with engine.db.tenant_session(query.tenant_id) as session:
        projects = await _projects(session, query)
        items = ("work_items w WHERE w.resolved_at >= :start AND w.resolved_at < :end"
                 + ("" if projects is None
                    else " AND w.project_id = ANY(CAST(:projects AS uuid[]))"))
        rows = list((await session.execute(text(select.format(items=items)), {
            "tenant": query.tenant_id, "todo": config.todo_statuses, "start": query.start,
            "end": query.end, "projects": projects or [], "limit": MAX_ITEMS + 1,
            "bounds": [lo for lo, _ in buckets(query)]})).all())
        # the newest resolution: what a count or cycle time of finished items reflects
        # (read backwards from the end of ix_work_items_resolved, not a scan of the items)
        newest = (await session.execute(text(
            "SELECT max(resolved_at) FROM work_items"))).scalar()
    return rows, Freshness(data_until=newest, refresh_pending=False)


#: Per bucket (``width_bucket`` over the buckets' starts: 1 is the first), the count.
COUNTS = ("SELECT width_bucket(w.resolved_at, CAST(:bounds AS timestamptz[])) AS b, count(*) "
          "FROM {items} GROUP BY 1")
#: Per bucket and for the whole window (``b`` null), the count, p50, p75, p90 (linear
#: interpolation, as :func:`pulse_portfolio.aggregate.percentile`) and mean of the cycle
#: times of the items with a start no later than their resolution.
#: (``x`` is materialized: a filter on ``cycle`` pushed into it would read the starts
#: twice, once to filter and once to aggregate.)
CYCLES = _cycled("SELECT b, count(*), percentile_cont(ARRAY[0.5, 0.75, 0.9]) WITHIN GROUP "
                 "(ORDER BY cycle), avg(cycle) FROM x WHERE cycle >= 0 "
                 "GROUP BY GROUPING SETS ((b), ())")


def _distribution(row: Any, lo: datetime, hi: datetime) -> MetricValue:
    if row is None or not row[1]:  # no bucket row; the whole window's row counts 0
        return MetricValue(start=lo, end=hi, value=None, sample_size=0,
                           percentiles={"p50": None, "p75": None, "p90": None}, mean=None)
    _, n, (p50, p75, p90), mean = row
    return MetricValue(start=lo, end=hi, value=p50, sample_size=n,
                       percentiles={"p50": p50, "p75": p75, "p90": p90}, mean=mean)


async def throughput(engine: Engine, query: MetricQuery) -> MetricComputation:
    """Work items finished over the window and per bucket (counted in SQL)."""
    rows, fresh = await _window(engine, query, COUNTS)
    counts = {b: n for b, n in rows}
    series = [MetricValue(start=lo, end=hi, value=float(counts.get(i, 0)),
                          sample_size=counts.get(i, 0))
              for i, (lo, hi) in enumerate(buckets(query), start=1)]
    total = sum(counts.values())
    return MetricComputation(
        value=MetricValue(start=query.start, end=query.end, value=float(total),
                          sample_size=total), series=series, freshness=fresh)


async def cycle_time(engine: Engine, query: MetricQuery) -> MetricComputation:
    """Cycle time of the items finished over the window and per bucket (its percentiles
    computed in SQL, so the items never leave the database)."""
    rows, fresh = await _window(engine, query, CYCLES)
    found = {row[0]: row for row in rows}
    return MetricComputation(
        value=_distribution(found.get(None), query.start, query.end),
        series=[_distribution(found.get(i), lo, hi)
                for i, (lo, hi) in enumerate(buckets(query), start=1)],
        freshness=fresh)


#: The cycle time of every item finished in the window (at most ``MAX_ITEMS`` + 1 items).
SAMPLES = _cycled("SELECT cycle FROM x", limit=True)


async def cycle_time_samples(engine: Engine, query: MetricQuery) -> MetricSamples:
    """The cycle times the distribution is computed from (422 beyond ``MAX_ITEMS`` items)."""
    rows, fresh = await _window(engine, query, SAMPLES)
    if len(rows) > MAX_ITEMS:
        raise Problem(422, "too-many-work-items",
                      f"More than {MAX_ITEMS} work items in the window.", limit=MAX_ITEMS)
    return MetricSamples(values=tuple(sorted(c for c, in rows if c is not None and c >= 0)),
                         freshness=fresh)


def definitions() -> list[MetricDefinition]:
    """``portfolio.throughput`` and ``portfolio.cycle_time``."""
    compute: dict[str, Callable[[Any, MetricQuery], Awaitable[MetricComputation]]] = {
        "throughput": throughput, "cycle_time": cycle_time}
    return [
        MetricDefinition(
            name="portfolio.throughput", unit="count", kind="count",
            description="Work items finished (resolved).", higher_is_better=True,
            compute=compute["throughput"], filters=FILTERS, cache_tags=CACHE_TAGS),
        MetricDefinition(
            name="portfolio.cycle_time", unit="seconds", kind="distribution",
            description="Seconds from a work item's start (first status out of to-do) to "
            "its resolution (median; p75, p90, mean).", higher_is_better=False,
            compute=compute["cycle_time"], filters=FILTERS, cache_tags=CACHE_TAGS,
            samples=cycle_time_samples),
    ]
