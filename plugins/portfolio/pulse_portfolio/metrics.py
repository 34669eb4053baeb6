"""pulse-portfolio's own catalog metrics over pulse-etl's work items.

* ``portfolio.throughput`` (``count``): work items finished (``resolved_at``) per bucket;
* ``portfolio.cycle_time`` (``distribution``, seconds): start to finish of the items
  finished per bucket (start as :mod:`pulse_portfolio.flow` defines it), with ``samples``.

Both take the ``project`` and ``team`` filters (a team's items are its project's) and read
the refreshed facts of :mod:`pulse_portfolio.facts` (their freshness is the facts'): one
range read of one covering index, aggregated in SQL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

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
    calendar_buckets,
    invalid_field,
)
from pulse_portfolio.facts import FACTS_CACHE_TAG, PORTFOLIO_FACTS
from pulse_portfolio.flow import MAX_ITEMS

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from pulse_engine import Engine

FILTERS = (
    MetricFilter(name="project", description="Projects by id, key or name."),
    MetricFilter(name="team", description="Teams by id or name: their projects' work items."),
)
#: The facts, and the projects and teams the filters name.
CACHE_TAGS = ("etl.data", FACTS_CACHE_TAG)


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
    return [(max(lower, query.start), min(upper, query.end)) for lower, upper
            in calendar_buckets(query.start, query.end, query.interval, query.tz)]


async def _window(engine: Engine, query: MetricQuery,
                  select: str) -> tuple[list[Any], Freshness]:
    """Rows of ``select`` (``{facts}`` in it: the facts ``f`` of the items finished in the
    query's window, one range of ``ix_portfolio_work_items_resolved`` or, for projects,
    ``ix_portfolio_work_items_project``; ``:bounds``: the buckets' starts)."""
    async with engine.db.tenant_session(query.tenant_id) as session:
        # read before the facts: an answer never claims data newer than it reflects
        fresh = await PORTFOLIO_FACTS.freshness(session, query.tenant_id)
        projects = await _projects(session, query)
        facts = ("portfolio_work_items f WHERE f.tenant_id = CAST(:tenant AS uuid) "
                 "AND f.resolved_at >= :start AND f.resolved_at < :end"
                 + ("" if projects is None
                    else " AND f.project_id = ANY(CAST(:projects AS uuid[]))"))
        rows = list((await session.execute(text(select.format(facts=facts)), {
            "tenant": query.tenant_id, "start": query.start, "end": query.end,
            "projects": projects or [], "limit": MAX_ITEMS + 1,
            "bounds": [lo for lo, _ in buckets(query)]})).all())
    return rows, fresh


#: Per bucket (``width_bucket`` over the buckets' starts: 1 is the first), the count.
COUNTS = ("SELECT width_bucket(f.resolved_at, CAST(:bounds AS timestamptz[])) AS b, count(*) "
          "FROM {facts} GROUP BY 1")
#: Per bucket and for the whole window (``b`` null), the count, p50, p75, p90 (linear
#: interpolation, as :func:`pulse_engine.percentile_cont`) and mean of the cycle
#: times of the items with a start no later than their resolution.
CYCLES = ("SELECT b, count(*), percentile_cont(ARRAY[0.5, 0.75, 0.9]) WITHIN GROUP "
          "(ORDER BY cycle), avg(cycle) FROM (SELECT width_bucket(f.resolved_at, "
          "CAST(:bounds AS timestamptz[])) AS b, f.cycle_seconds AS cycle FROM {facts} "
          "AND f.cycle_seconds >= 0) x GROUP BY GROUPING SETS ((b), ())")


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
SAMPLES = "SELECT f.cycle_seconds FROM {facts} LIMIT :limit"


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
