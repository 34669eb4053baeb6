"""The DORA endpoints under ``{api_v1_prefix}/metrics/dora/`` (any tenant role may read them).

Every view reads its query string through a model of :mod:`pulse_dora.params` and
declares its answer with a model of :mod:`pulse_dora.schemas` (and its problems), so
``/openapi.json`` describes each parameter and each answer exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from quart import Blueprint
from quart_schema import validate_querystring, validate_response
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_dora import levels, queries
from pulse_dora.config import DoraSettings
from pulse_dora.params import (
    BreakdownQuery,
    DrilldownQuery,
    FilterRequest,
    GitLabQuery,
    Scope,
    ScopedRequest,
    ScopeQuery,
    SeriesQuery,
    SummaryQuery,
    open_scope,
)
from pulse_dora.schemas import Breakdown, Drilldown, GitLabSeries, Series, Summary
from pulse_engine import (
    current_tenant_id,
    decode_cursor,
    encode_cursor,
    invalid_cursor,
    invalid_field,
    problem_responses,
    require_role,
)

if TYPE_CHECKING:
    from pulse_engine import Engine

_T = TypeVar("_T")

GITLAB_INTERVALS = {"all": "all", "monthly": "month", "daily": "day"}

def metric_name(raw: str) -> str:
    """The canonical name of a metric from its URL spelling; 422 naming ``metric`` if unknown."""
    name = queries.ALIASES.get(raw)
    if name is None:
        raise invalid_field("metric", f"unknown metric; one of {', '.join(queries.METRICS)}")
    return name


def drilldown_cursor(metric: str, cursor: str | None) -> queries.SortKey | None:
    """Where a drill-down page starts; 400 for a cursor that is not one of ``metric``'s."""
    raw = decode_cursor(cursor, str)
    if raw is None:
        return None
    key = queries.SortKey.decode(raw)
    if key is None or (key.sha is not None) != (queries.drilldown_kind(metric) == "change"):
        raise invalid_cursor()
    return key


#: The metrics the summary computes from one scan of the deployments of each window.
DEPLOYMENT_METRICS = ("deployment_frequency", "change_failure_rate", "deployment_rework_rate")


async def summary_document(
    engine: Engine, scoped: ScopedRequest, benchmark: str
) -> dict[str, Any]:
    """Every metric over the window with its level and its change vs the previous window.

    Five reads run concurrently, each in its own tenant-bound transaction, so PostgreSQL
    scans with every core: the deployment totals of each window (one scan gives three
    metrics, and the current one the deployment-day medians), the lead time of each
    window, and the incident metrics of both windows.
    """
    scope = scoped.scope
    previous = scope.previous()

    async def read(work: Callable[[AsyncSession], Awaitable[_T]]) -> _T:
        async with engine.db.tenant_session(scope.tenant_id) as session:
            return await work(session)

    async def incident_points(session: AsyncSession) -> dict[str, list[dict[str, Any]]]:
        return {
            metric: [await queries.aggregate(session, metric, window)
                     for window in (scope, previous)]
            for metric in ("failed_deployment_recovery_time", "time_to_restore_service")
        }

    totals, totals_before, lead, lead_before, incidents = await asyncio.gather(
        read(lambda session: queries.deployment_totals(session, scope, medians=True)),
        read(lambda session: queries.deployment_totals(session, previous)),
        read(lambda session: queries.aggregate(session, "lead_time_for_changes", scope)),
        read(lambda session: queries.aggregate(session, "lead_time_for_changes", previous)),
        read(incident_points),
    )
    windows: dict[str, list[dict[str, Any]]] = {
        "lead_time_for_changes": [lead, lead_before],
        **incidents,
        **{metric: [totals.point(metric, scope), totals_before.point(metric, previous)]
           for metric in DEPLOYMENT_METRICS},
    }
    metrics: dict[str, Any] = {}
    for metric in queries.METRICS:
        current, before = windows[metric]
        for window in (current, before):
            window.pop("start")
            window.pop("end")
        document: dict[str, Any] = {"unit": queries.UNITS[metric], **current}
        document["previous"] = before
        document["change"] = _change(current.get("value"), before.get("value"))
        document["performance"] = _performance(metric, scope, current, totals, benchmark)
        metrics[metric] = document
    return {
        "window": _window(scope),
        "previous_window": _window(previous),
        "filters": _filters(scope),
        "benchmark": benchmark,
        "metrics": metrics,
        "freshness": scoped.freshness,
    }


def _performance(
    metric: str, scope: Scope, value: dict[str, Any], totals: queries.DeploymentTotals,
    benchmark: str,
) -> dict[str, Any]:
    if metric == "deployment_frequency":
        window_days = (scope.end - scope.start).total_seconds() / 86400
        return levels.classify_frequency(
            totals.median_days_per_week, totals.median_days_per_month,
            totals.deployment_days, window_days, benchmark,
        )
    if metric == "change_failure_rate":
        return levels.classify_failure_rate(value.get("value"), benchmark)
    if metric == "deployment_rework_rate":
        return {"level": None, "method": "none", "reason": "no published benchmark"}
    return levels.classify_duration(metric, value.get("median"), benchmark)


def _change(current: float | None, previous: float | None) -> dict[str, Any]:
    if current is None or previous is None:
        return {"absolute": None, "relative": None}
    return {
        "absolute": current - previous,
        "relative": (current - previous) / previous if previous else None,
    }


def _window(scope: Scope) -> dict[str, Any]:
    return {"start": scope.start, "end": scope.end, "tz": scope.tz}


def _filters(scope: Scope) -> dict[str, Any]:
    return {
        "environments": list(scope.environments),
        "environment_source": "parameter" if scope.explicit_environment else "configuration",
        "team": list(scope.filters.team),
        "project": list(scope.filters.project),
        "repository": list(scope.filters.repository),
    }


def build_blueprint(engine: Engine, settings: DoraSettings) -> Blueprint:
    """The DORA blueprint (endpoint names ``dora.summary``, ``dora.series``...)."""
    blueprint = Blueprint(
        "dora", __name__, url_prefix=f"{engine.settings.api_v1_prefix}/metrics/dora"
    )

    async def scoped(query: ScopeQuery, interval: str = "all") -> ScopedRequest:
        return await open_scope(
            engine, settings, current_tenant_id(), query.window(), query.filters(),
            interval=interval,
        )

    @blueprint.get("/summary")
    @require_role("viewer")
    @validate_querystring(SummaryQuery)
    @validate_response(Summary)
    @problem_responses(503)
    async def summary(query_args: SummaryQuery) -> dict[str, Any]:
        """Every DORA metric over the window, with performance level and change."""
        return await summary_document(engine, await scoped(query_args), query_args.benchmark)

    @blueprint.get("/lead-time/breakdown")
    @require_role("viewer")
    @validate_querystring(BreakdownQuery)
    @validate_response(Breakdown)
    @problem_responses(503)
    async def lead_time_breakdown(query_args: BreakdownQuery) -> dict[str, Any]:
        """Coding, pickup, review and deploy time of merged pull requests per interval."""
        request = await scoped(query_args, query_args.interval)
        scope = request.scope
        async with engine.db.tenant_session(scope.tenant_id) as session:
            points = await queries.breakdown(session, scope)
        return {
            "metric": "lead_time_breakdown",
            "unit": "seconds",
            "interval": query_args.interval,
            "window": _window(scope),
            "filters": _filters(scope),
            "phases": list(queries.PHASES),
            "points": points,
            "freshness": request.freshness,
        }

    @blueprint.get("/gitlab")
    @require_role("viewer")
    @validate_querystring(GitLabQuery)
    @validate_response(GitLabSeries)
    @problem_responses(503)
    async def gitlab(query_args: GitLabQuery) -> list[dict[str, Any]]:
        """GitLab's DORA API shape: a list of ``{"date", "value"}``."""
        scope = (await open_scope(
            engine, settings, current_tenant_id(), query_args.window(), FilterRequest(),
            interval=GITLAB_INTERVALS[query_args.interval],
            tiers=query_args.environment_tiers or ["production"],
        )).scope
        async with engine.db.tenant_session(scope.tenant_id) as session:
            rows = await queries.series(session, query_args.metric, scope)
        return [
            {"date": row["start"].date(), "value": _gitlab_value(query_args.metric, row)}
            for row in rows
        ]

    @blueprint.get("/<metric>/drilldown")
    @require_role("viewer")
    @validate_querystring(DrilldownQuery)
    @validate_response(Drilldown)
    @problem_responses(503)
    async def drilldown(metric: str, query_args: DrilldownQuery) -> dict[str, Any]:
        """The deployments, changes or incidents behind a metric, newest first, paginated."""
        name = metric_name(metric)
        after = drilldown_cursor(name, query_args.cursor)
        request = await scoped(query_args)
        scope = request.scope
        async with engine.db.tenant_session(scope.tenant_id) as session:
            items, last = await queries.drilldown(
                session, name, scope, limit=query_args.capped_limit, after=after
            )
        return {
            "metric": name,
            "window": _window(scope),
            "filters": _filters(scope),
            "items": items,
            "next_cursor": encode_cursor(last.encode()) if last is not None else None,
            "freshness": request.freshness,
        }

    @blueprint.get("/<metric>")
    @require_role("viewer")
    @validate_querystring(SeriesQuery)
    @validate_response(Series)
    @problem_responses(503)
    async def series(metric: str, query_args: SeriesQuery) -> dict[str, Any]:
        """One metric per day, week or month (or the whole window), empty buckets included."""
        name = metric_name(metric)
        request = await scoped(query_args, query_args.interval)
        scope = request.scope
        async with engine.db.tenant_session(scope.tenant_id) as session:
            points = await queries.series(session, name, scope)
        return {
            "metric": name,
            "unit": queries.UNITS[name],
            "interval": query_args.interval,
            "window": _window(scope),
            "filters": _filters(scope),
            "points": points,
            "freshness": request.freshness,
        }

    return blueprint


def _gitlab_value(metric: str, row: dict[str, Any]) -> float | int | None:
    if metric == "deployment_frequency":
        return int(row["sample_size"])
    if metric == "change_failure_rate":
        return row["value"] if row["value"] is not None else None
    return row["median"]
