"""pulse-portfolio's own catalog metrics over pulse-etl's work items.

* ``portfolio.throughput`` (``count``): work items finished (``resolved_at``) per bucket;
* ``portfolio.cycle_time`` (``distribution``, seconds): start to finish of the items
  finished per bucket (start as :mod:`pulse_portfolio.flow` defines it), with ``samples``.

Both take the ``project`` and ``team`` filters (a team's items are its project's).
"""

from __future__ import annotations

from bisect import bisect_left
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
from pulse_portfolio.aggregate import percentile
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


async def _finished(engine: Engine, query: MetricQuery, cycles: bool = True
                    ) -> tuple[list[tuple[datetime, float]], Freshness]:
    """(finish time, cycle seconds; -1 without a start) of every item finished in the
    query's window, from one scan in SQL (the start as :class:`pulse_portfolio.flow.Item`
    defines it for a finished item: its first change out of the to-do statuses, else its
    creation)."""
    config = await tenant_config(engine, query.tenant_id)
    async with engine.db.tenant_session(query.tenant_id) as session:
        projects = await _projects(session, query)
        cycle = (
            "extract(epoch FROM w.resolved_at - coalesce(("
            "SELECT min(c.changed_at) FROM work_item_status_changes c "
            "WHERE c.tenant_id = w.tenant_id AND c.work_item_id = w.id "
            "AND lower(c.to_status) <> ALL(CAST(:todo AS text[]))), w.created_at_source))"
        ) if cycles else "0.0"
        rows = (await session.execute(text(
            f"SELECT w.resolved_at, {cycle} AS cycle FROM work_items w "
            "WHERE w.resolved_at >= :start AND w.resolved_at < :end"
            + ("" if projects is None else " AND w.project_id = ANY(CAST(:projects AS uuid[]))")
            + " ORDER BY w.resolved_at LIMIT :limit"),
            {"todo": config.todo_statuses, "start": query.start, "end": query.end,
             "projects": projects or [], "limit": MAX_ITEMS + 1})).all()
        # the newest resolution: what a count or cycle time of finished items reflects
        # (read backwards from the end of ix_work_items_resolved, not a scan of the items)
        newest = (await session.execute(text(
            "SELECT max(resolved_at) FROM work_items"))).scalar()
    if len(rows) > MAX_ITEMS:
        raise Problem(422, "too-many-work-items",
                      f"More than {MAX_ITEMS} work items in the window.", limit=MAX_ITEMS)
    done = [(moment, float(cycle) if cycle is not None and cycle >= 0 else -1.0)
            for moment, cycle in rows]
    return done, Freshness(data_until=newest, refresh_pending=False)


def _slice(rows: list[tuple[datetime, float]], lo: datetime,
           hi: datetime) -> list[tuple[datetime, float]]:
    """The rows (ordered by time) in ``[lo, hi)``."""
    first = bisect_left(rows, lo, key=lambda row: row[0])
    last = bisect_left(rows, hi, key=lambda row: row[0])
    return rows[first:last]


def _count(rows: list[tuple[datetime, float]], lo: datetime, hi: datetime) -> MetricValue:
    n = len(_slice(rows, lo, hi))
    return MetricValue(start=lo, end=hi, value=float(n), sample_size=n)


def _cycles(rows: list[tuple[datetime, float]], lo: datetime, hi: datetime) -> list[float]:
    return sorted(c for _, c in _slice(rows, lo, hi) if c >= 0)


def _distribution(values: list[float], lo: datetime, hi: datetime) -> MetricValue:
    if not values:
        return MetricValue(start=lo, end=hi, value=None, sample_size=0,
                           percentiles={"p50": None, "p75": None, "p90": None}, mean=None)
    p: dict[str, float | None] = {
        f"p{int(f * 100)}": percentile(values, f) for f in (0.5, 0.75, 0.9)}
    return MetricValue(start=lo, end=hi, value=p["p50"], sample_size=len(values),
                       percentiles=p, mean=sum(values) / len(values))


async def throughput(engine: Engine, query: MetricQuery) -> MetricComputation:
    """Work items finished over the window and per bucket."""
    rows, fresh = await _finished(engine, query, cycles=False)
    return MetricComputation(
        value=_count(rows, query.start, query.end),
        series=[_count(rows, lo, hi) for lo, hi in buckets(query)], freshness=fresh)


async def cycle_time(engine: Engine, query: MetricQuery) -> MetricComputation:
    """Cycle time of the items finished over the window and per bucket."""
    rows, fresh = await _finished(engine, query)
    return MetricComputation(
        value=_distribution(_cycles(rows, query.start, query.end), query.start, query.end),
        series=[_distribution(_cycles(rows, lo, hi), lo, hi) for lo, hi in buckets(query)],
        freshness=fresh)


async def cycle_time_samples(engine: Engine, query: MetricQuery) -> MetricSamples:
    """The cycle times the distribution is computed from."""
    rows, fresh = await _finished(engine, query)
    return MetricSamples(values=tuple(_cycles(rows, query.start, query.end)), freshness=fresh)


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
