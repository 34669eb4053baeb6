"""The DORA endpoints under ``/api/v1/metrics/dora/`` (any tenant role may read them)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from quart import Blueprint, request
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_dora import levels, queries
from pulse_dora.config import DoraConfig, DoraSettings, tenant_config
from pulse_dora.params import (
    BENCHMARKS,
    INTERVALS,
    Scope,
    invalid,
    parse_choice,
    parse_list,
    resolve_scope,
)
from pulse_dora.refresh import production_environments
from pulse_engine import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Problem,
    current_tenant_id,
    decode_cursor,
    encode_cursor,
    require_role,
)

if TYPE_CHECKING:
    from pulse_engine import Engine

_T = TypeVar("_T")

#: GitLab's metric names and the Pulse metric each maps to.
GITLAB_METRICS = {
    "deployment_frequency": "deployment_frequency",
    "lead_time_for_changes": "lead_time_for_changes",
    "time_to_restore_service": "time_to_restore_service",
    "change_failure_rate": "change_failure_rate",
}
GITLAB_INTERVALS = {"all": "all", "monthly": "month", "daily": "day"}
GITLAB_TIERS = ("production", "staging", "testing", "development", "other")


def metric_name(raw: str) -> str:
    """The canonical name of a metric from its URL spelling; 422 naming ``metric`` if unknown."""
    name = queries.ALIASES.get(raw)
    if name is None:
        raise invalid("metric", f"unknown metric; one of {', '.join(queries.METRICS)}")
    return name


#: The metrics the summary computes from one scan of the deployments of each window.
DEPLOYMENT_METRICS = ("deployment_frequency", "change_failure_rate", "deployment_rework_rate")


async def summary_document(
    engine: Engine, tenant_id: str, scope: Scope, benchmark: str
) -> dict[str, Any]:
    """Every metric over the window with its level and its change vs the previous window.

    Five reads run concurrently, each in its own tenant-bound transaction, so PostgreSQL
    scans with every core: the deployment totals of each window (one scan gives three
    metrics, and the current one the deployment-day medians), the lead time of each
    window, and the incident metrics of both windows.
    """
    previous = scope.previous()

    async def read(work: Callable[[AsyncSession], Awaitable[_T]]) -> _T:
        async with engine.db.tenant_session(tenant_id) as session:
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
    return {"start": scope.start.isoformat(), "end": scope.end.isoformat(), "tz": scope.tz}


def _filters(scope: Scope) -> dict[str, Any]:
    return {
        "environments": list(scope.environments),
        "environment_source": "parameter" if scope.explicit_environment else "configuration",
        **{name: values for name, values in scope.filters.items() if values},
    }


def _args() -> dict[str, str]:
    """Query parameters; a repeated parameter is joined with commas."""
    return {name: ",".join(request.args.getlist(name)) for name in request.args}


def _limit(args: Mapping[str, str]) -> int:
    raw = args.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isdigit() or int(raw) < 1:
        raise invalid("limit", "must be a positive integer")
    return min(int(raw), MAX_LIMIT)


def build_blueprint(engine: Engine, settings: DoraSettings) -> Blueprint:
    """The DORA blueprint (endpoint names ``dora.summary``, ``dora.series``...)."""
    blueprint = Blueprint("dora", __name__, url_prefix="/api/v1/metrics/dora")

    async def context() -> tuple[str, DoraConfig]:
        tenant_id = current_tenant_id()
        return tenant_id, await tenant_config(engine, tenant_id)

    @blueprint.get("/summary")
    @require_role("viewer")
    async def summary() -> dict[str, Any]:
        """Every DORA metric over the window, with performance level and change."""
        args = _args()
        benchmark = parse_choice(args.get("benchmark"), "benchmark", BENCHMARKS, "2024")
        tenant_id, config = await context()
        async with engine.db.tenant_session(tenant_id) as session:
            scope = await resolve_scope(session, tenant_id, args, config, settings)
        return await summary_document(engine, tenant_id, scope, benchmark)

    @blueprint.get("/lead-time/breakdown")
    @require_role("viewer")
    async def lead_time_breakdown() -> dict[str, Any]:
        """Coding, pickup, review and deploy time of merged pull requests per interval."""
        args = _args()
        interval = parse_choice(args.get("interval"), "interval", INTERVALS, "all")
        tenant_id, config = await context()
        async with engine.db.tenant_session(tenant_id) as session:
            scope = await resolve_scope(
                session, tenant_id, args, config, settings, interval=interval
            )
            points = await queries.breakdown(session, scope)
        return {
            "metric": "lead_time_breakdown",
            "unit": "seconds",
            "interval": interval,
            "window": _window(scope),
            "filters": _filters(scope),
            "phases": list(queries.PHASES),
            "points": points,
        }

    @blueprint.get("/gitlab")
    @require_role("viewer")
    async def gitlab() -> list[dict[str, Any]]:
        """GitLab's DORA API shape: a list of ``{"date", "value"}``."""
        args = _args()
        metric = args.get("metric", "")
        if metric not in GITLAB_METRICS:
            raise invalid("metric", f"must be one of {', '.join(GITLAB_METRICS)}")
        interval = GITLAB_INTERVALS.get(args.get("interval") or "daily")
        if interval is None:
            raise invalid("interval", f"must be one of {', '.join(GITLAB_INTERVALS)}")
        tiers = parse_list(args.get("environment_tiers"), "environment_tiers") or ["production"]
        unknown = [tier for tier in tiers if tier not in GITLAB_TIERS]
        if unknown:
            raise invalid("environment_tiers", f"must be among {', '.join(GITLAB_TIERS)}")
        tenant_id, config = await context()
        window_args = {"start": args.get("start_date") or "", "end": "", "tz": "UTC"}
        end_date = args.get("end_date") or ""
        if len(end_date) == 10:
            # GitLab's end_date is a date and includes that whole day
            try:
                window_args["end"] = (date.fromisoformat(end_date) + timedelta(days=1)).isoformat()
            except ValueError:
                raise invalid("end_date", "not an ISO 8601 date") from None
        else:
            window_args["end"] = end_date
        if not window_args["start"]:
            today = datetime.now(UTC).date()
            window_args["start"] = (today - timedelta(days=90)).isoformat()
        async with engine.db.tenant_session(tenant_id) as session:
            environments = await _tier_environments(session, tenant_id, tiers, config)
            try:
                scope = await resolve_scope(
                    session, tenant_id, window_args, config, settings, interval=interval,
                    environments=environments or ["\x00none"],
                )
            except Problem as problem:
                raise _gitlab_field(problem) from None
            rows = await queries.series(session, GITLAB_METRICS[metric], scope)
        return [
            {"date": row["start"][:10], "value": _gitlab_value(metric, row)} for row in rows
        ]

    @blueprint.get("/<metric>/drilldown")
    @require_role("viewer")
    async def drilldown(metric: str) -> dict[str, Any]:
        """The deployments, changes or incidents behind a metric, newest first, paginated."""
        name = metric_name(metric)
        args = _args()
        limit = _limit(args)
        after = decode_cursor(args.get("cursor"), str)
        tenant_id, config = await context()
        async with engine.db.tenant_session(tenant_id) as session:
            scope = await resolve_scope(session, tenant_id, args, config, settings)
            items, last = await queries.drilldown(
                session, name, scope, limit=limit, after=after
            )
        return {
            "metric": name,
            "window": _window(scope),
            "filters": _filters(scope),
            "items": items,
            "next_cursor": encode_cursor(last) if last is not None else None,
        }

    @blueprint.get("/<metric>")
    @require_role("viewer")
    async def series(metric: str) -> dict[str, Any]:
        """One metric per day, week or month (or the whole window), empty buckets included."""
        name = metric_name(metric)
        args = _args()
        interval = parse_choice(args.get("interval"), "interval", INTERVALS, "day")
        tenant_id, config = await context()
        async with engine.db.tenant_session(tenant_id) as session:
            scope = await resolve_scope(
                session, tenant_id, args, config, settings, interval=interval
            )
            points = await queries.series(session, name, scope)
        return {
            "metric": name,
            "unit": queries.UNITS[name],
            "interval": interval,
            "window": _window(scope),
            "filters": _filters(scope),
            "points": points,
        }

    return blueprint


async def _tier_environments(
    session: AsyncSession, tenant_id: str, tiers: list[str], config: DoraConfig
) -> list[str]:
    """Environments of GitLab tiers: production per the tenant's config, others by name."""
    production = await production_environments(session, tenant_id, config)
    chosen: list[str] = []
    if "production" in tiers:
        chosen += production
    others = [tier for tier in tiers if tier != "production"]
    if others:
        config_for_tiers = DoraConfig(
            production_environments=[],
            production_environment_patterns=[f"^{tier}" for tier in others],
        )
        chosen += [
            name
            for name in await production_environments(session, tenant_id, config_for_tiers)
            if name not in production
        ]
    return chosen


def _gitlab_field(error: Problem) -> Problem:
    """Rename the window parameters of a validation problem to GitLab's names."""
    renames = {"start": "start_date", "end": "end_date"}
    for item in error.extra.get("errors", []):
        item["field"] = renames.get(item["field"], item["field"])
    error.detail = error.detail.replace("'start'", "'start_date'").replace("'end'", "'end_date'")
    return error


def _gitlab_value(metric: str, row: dict[str, Any]) -> float | int | None:
    if metric == "deployment_frequency":
        return int(row["sample_size"])
    if metric == "change_failure_rate":
        return row["value"] if row["value"] is not None else None
    return row["median"]
