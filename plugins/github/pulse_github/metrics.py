"""The GitHub analytics under the engine's metric contract (:class:`MetricDefinition`).

``compute`` resolves the scope the way the routes do (the caller's role plays no part:
these are aggregates) and reads the same SQL, so its values equal the routes' for the
same window, zone, interval and filters:

* ``github.pr_cycle_time``, ``github.pr_time_to_merge`` (distributions, seconds): the
  ``cycle_time`` and ``time_to_merge`` of ``pull-requests/cycle-time``;
* ``github.pr_time_to_first_review`` (distribution, seconds): ``pull-requests/reviews``;
* ``github.prs_merged_without_review`` (ratio): numerator the merged pull requests without
  a review, denominator the merged ones (``pull-requests/outcomes``);
* ``github.commits`` (count): every commit authored in the window (``contributors``'
  ``total_commits``, ``commit-patterns``' ``total``);
* ``github.contributor_absence_factor`` (gauge): ``contributor-absence-factor``'s value.

Distributions also give their observations (``samples``), so a median over several scopes
is recomputed from them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from pulse_engine import (
    Freshness,
    MetricComputation,
    MetricDefinition,
    MetricFilter,
    MetricKind,
    MetricQuery,
    MetricSamples,
    MetricValue,
)
from pulse_github import flow, queries
from pulse_github.config import GithubSettings
from pulse_github.params import Scope, ScopeQuery, open_scope
from pulse_github.refresh import GITHUB_FACTS

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from pulse_engine import Engine

FILTERS = (
    MetricFilter(name="team", description="Teams by id or name: the repositories of their "
                 "projects."),
    MetricFilter(name="project", description="Projects by id, key or name."),
    MetricFilter(name="repository", description="Repositories by id or name."),
)


async def metric_scope(engine: Engine, settings: GithubSettings, query: MetricQuery) -> Scope:
    """The scope of a metric query (aggregates: no role needed)."""
    written = ScopeQuery.model_validate({
        "start": query.start, "end": query.end, "tz": query.tz,
        **{name: list(values) for name, values in query.filters.items()}})
    return await open_scope(engine, settings, query.tenant_id, written,
                            interval=query.interval, role="viewer")


async def freshness(session: AsyncSession, scope: Scope) -> Freshness:
    """The newest commit or pull request of the scope's repositories, and whether a load
    has arrived that pulse-github's facts (which the pull-request and file answers read)
    do not reflect yet (a refresh recorded and not run)."""
    newest = await session.scalar(text("""
SELECT greatest(
    (SELECT max(authored_at) FROM commits WHERE tenant_id = CAST(:tenant AS uuid)
       AND repository_id = ANY(CAST(:repos AS uuid[]))),
    (SELECT max(created_at_source) FROM pull_requests WHERE tenant_id = CAST(:tenant AS uuid)
       AND repository_id = ANY(CAST(:repos AS uuid[]))))"""), scope.params())
    facts = await GITHUB_FACTS.freshness(session, scope.tenant_id)
    return Freshness(data_until=newest, refresh_pending=facts.refresh_pending)


def _distribution(stats: dict[str, Any], start: datetime, end: datetime) -> MetricValue:
    return MetricValue(start=start, end=end, value=stats["median"],
                       sample_size=stats["sample_size"],
                       percentiles={"p50": stats["median"], "p75": stats["p75"],
                                    "p90": stats["p90"]}, mean=stats["mean"])


Reader = Callable[["AsyncSession", Scope], Awaitable[tuple[MetricValue, list[MetricValue]]]]


async def _cycle(session: AsyncSession, scope: Scope, field: str
                 ) -> tuple[MetricValue, list[MetricValue]]:
    series = [_distribution(point[field], point["start"], point["end"])
              for point in await flow.cycle_time(session, scope)]
    whole = series[0] if scope.interval == "all" else [
        _distribution(point[field], point["start"], point["end"])
        for point in await flow.cycle_time(session, _all(scope))][0]
    return whole, series


async def _first_review(session: AsyncSession, scope: Scope
                        ) -> tuple[MetricValue, list[MetricValue]]:
    def values(found: dict[str, Any]) -> list[MetricValue]:
        return [_distribution(point, point["start"], point["end"])
                for point in found["time_to_first_review"]]

    series = values(await flow.review_times(session, scope))
    whole = series[0] if scope.interval == "all" else values(
        await flow.review_times(session, _all(scope)))[0]
    return whole, series


async def _unreviewed(session: AsyncSession, scope: Scope
                      ) -> tuple[MetricValue, list[MetricValue]]:
    def value(point: dict[str, Any]) -> MetricValue:
        return MetricValue(start=point["start"], end=point["end"],
                           value=point["merged_without_review_rate"],
                           sample_size=point["merged"],
                           numerator=point["merged_without_review"],
                           denominator=point["merged"])

    series = [value(point) for point in await flow.outcomes(session, scope)]
    whole = series[0] if scope.interval == "all" else value(
        (await flow.outcomes(session, _all(scope)))[0])
    return whole, series


async def _commits(session: AsyncSession, scope: Scope) -> tuple[MetricValue, list[MetricValue]]:
    sql = f"""
SELECT {queries.bucket_sql(scope, 'c.authored_at')} AS bucket, count(*) AS commits
{queries._commits(scope, merges=True)} GROUP BY 1
"""
    counts = {queries.bucket_key(row.bucket): int(row.commits)
              for row in await session.execute(text(sql), scope.params())}
    series = []
    for start, end in scope.bucket_bounds:
        lower, upper = queries.clip(scope, start, end)
        count = counts.get(queries.bucket_key(start), 0)
        series.append(MetricValue(start=lower, end=upper, value=count, sample_size=count))
    total = sum(value.sample_size for value in series)
    return MetricValue(start=scope.start, end=scope.end, value=total, sample_size=total), series


async def _absence(session: AsyncSession, scope: Scope) -> tuple[MetricValue, list[MetricValue]]:
    series = []
    for start, end in scope.bucket_bounds:
        lower, upper = queries.clip(scope, start, end)
        found = await queries.absence_factor(session, scope.with_window(lower, upper), "commits")
        series.append(MetricValue(start=lower, end=upper, value=found["value"],
                                  sample_size=found["commits"]))
    if scope.interval == "all":
        return series[0], series
    found = await queries.absence_factor(session, scope, "commits")
    return MetricValue(start=scope.start, end=scope.end, value=found["value"],
                       sample_size=found["commits"]), series


def _all(scope: Scope) -> Scope:
    return replace(scope, interval="all")


#: The observations of each distribution, as SQL over the ``facts`` of an anchor.
SAMPLES: dict[str, tuple[str, str]] = {
    "pr_cycle_time": ("merged_at", flow.CYCLE),
    "pr_time_to_merge": ("merged_at", flow.TO_MERGE),
    "pr_time_to_first_review": (
        "created_at_source",
        queries.at_least_zero(queries.seconds("first_review", "opened"))),
}


def definitions(settings: GithubSettings, cache_tags: tuple[str, ...]) -> list[MetricDefinition]:
    """The GitHub metric definitions (names ``github.<metric>``)."""

    def computer(read: Reader) -> Callable[[Engine, MetricQuery], Awaitable[MetricComputation]]:
        async def compute(engine: Engine, query: MetricQuery) -> MetricComputation:
            """The metric over the query's window and, per bucket, its interval."""
            scope = await metric_scope(engine, settings, query)
            async with engine.db.tenant_session(query.tenant_id) as session:
                fresh = await freshness(session, scope)
                whole, series = await read(session, scope)
            return MetricComputation(value=whole, series=series, freshness=fresh)

        return compute

    def sampler(name: str) -> Callable[[Engine, MetricQuery], Awaitable[MetricSamples]]:
        anchor, expression = SAMPLES[name]

        async def samples(engine: Engine, query: MetricQuery) -> MetricSamples:
            """Every observation of the window."""
            scope = _all(await metric_scope(engine, settings, query))
            sql = (f"WITH {flow.facts_sql(scope, anchor)} SELECT {expression} AS value "
                   f"FROM facts WHERE {expression} IS NOT NULL")
            async with engine.db.tenant_session(query.tenant_id) as session:
                fresh = await freshness(session, scope)
                rows = await session.execute(text(sql), scope.params())
                values = tuple(float(row.value) for row in rows)
            return MetricSamples(values=values, freshness=fresh)

        return samples

    def cycle_field(field: str) -> Reader:
        async def read(session: AsyncSession, scope: Scope
                       ) -> tuple[MetricValue, list[MetricValue]]:
            return await _cycle(session, scope, field)

        return read

    specs: list[tuple[str, str, MetricKind, str, bool, Reader]] = [
        ("pr_cycle_time", "seconds", "distribution",
         "Seconds from a merged pull request's first commit (or opening) to the first "
         "successful production deployment that shipped it.", False, cycle_field("cycle_time")),
        ("pr_time_to_merge", "seconds", "distribution",
         "Seconds from a merged pull request's first commit (or opening) to its merge.",
         False, cycle_field("time_to_merge")),
        ("pr_time_to_first_review", "seconds", "distribution",
         "Seconds from a pull request's opening to the first review or review comment by "
         "someone else (pull requests opened in the window).", False, _first_review),
        ("prs_merged_without_review", "ratio", "ratio",
         "Share of the pull requests merged in the window that no one else reviewed or "
         "commented on before the merge.", False, _unreviewed),
        ("commits", "count", "count", "Commits authored in the window (merges included).",
         True, _commits),
        ("contributor_absence_factor", "people", "gauge",
         "The fewest people whose non-merge commits make at least half of the window's "
         "(CHAOSS contributor absence factor).", True, _absence),
    ]
    return [
        MetricDefinition(
            name=f"github.{name}", unit=unit, kind=kind, description=description,
            higher_is_better=higher, compute=computer(read), filters=FILTERS,
            cache_tags=cache_tags,
            samples=sampler(name) if name in SAMPLES else None,
        )
        for name, unit, kind, description, higher, read in specs
    ]
