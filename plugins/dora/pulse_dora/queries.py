"""The DORA metrics as SQL: one range scan of one covering index per metric and window.

Buckets are generated in SQL (``generate_series`` over local wall-clock time in the
request's zone, so a day is a calendar day across DST changes) and left-joined to the
aggregates, so an empty bucket is present with a null value and a zero sample size.
Durations are aggregated with ``percentile_cont`` (median, p75, p90) and ``avg``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_dora.params import Scope

METRICS = (
    "deployment_frequency",
    "lead_time_for_changes",
    "change_failure_rate",
    "failed_deployment_recovery_time",
    "time_to_restore_service",
    "deployment_rework_rate",
)

#: URL spellings accepted for each metric (``lead-time`` for ``lead_time_for_changes``...).
ALIASES = {
    **{name: name for name in METRICS},
    **{name.replace("_", "-"): name for name in METRICS},
    "lead-time": "lead_time_for_changes",
    "lead_time": "lead_time_for_changes",
}

UNITS = {
    "deployment_frequency": "count",
    "lead_time_for_changes": "seconds",
    "change_failure_rate": "ratio",
    "failed_deployment_recovery_time": "seconds",
    "time_to_restore_service": "seconds",
    "deployment_rework_rate": "ratio",
}

_STEPS = {"day": "1 day", "week": "7 days", "month": "1 month"}

_PERCENTILES = (
    "percentile_cont(ARRAY[0.5, 0.75, 0.9]) WITHIN GROUP (ORDER BY {value}) AS quantiles, "
    "avg({value}) AS mean"
)


@dataclass(frozen=True)
class Bucket:
    """One bucket's clipped bounds (aware, in the request's zone) and its aggregate row."""

    start: datetime
    end: datetime
    row: dict[str, Any]


def _buckets_sql(scope: Scope) -> str:
    """Buckets as local timestamps: ``bucket`` (start) and ``bucket_end``, both clipped."""
    window = (
        "CAST(:start AS timestamptz) AT TIME ZONE :tz AS local_start, "
        "CAST(:end AS timestamptz) AT TIME ZONE :tz AS local_end"
    )
    if scope.interval == "all":
        series = "SELECT w.local_start AS bucket, w.local_end AS next_bucket FROM w"
    else:
        series = (
            "SELECT g AS bucket, g + CAST(CAST(:step AS text) AS interval) AS next_bucket FROM w, "
            "generate_series(date_trunc(:unit, w.local_start), "
            "w.local_end - interval '1 microsecond', CAST(CAST(:step AS text) AS interval)) g"
        )
    return (
        f"w AS (SELECT {window}), "
        f"b AS (SELECT s.bucket, greatest(s.bucket, w.local_start) AS bucket_start, "
        f"least(s.next_bucket, w.local_end) AS bucket_end FROM ({series}) s, w)"
    )


def _bucket_of(scope: Scope, column: str) -> str:
    if scope.interval == "all":
        return "(SELECT local_start FROM w)"
    return f"date_trunc(:unit, {column} AT TIME ZONE :tz)"


def _params(scope: Scope) -> dict[str, Any]:
    return {
        "tenant": scope.tenant_id,
        "start": scope.start,
        "end": scope.end,
        "tz": scope.tz,
        "unit": scope.interval if scope.interval != "all" else "day",
        "step": _STEPS.get(scope.interval, "1 day"),
        "environments": list(scope.environments),
        "projects": list(scope.project_ids or ()),
        "repositories": list(scope.repository_ids or ()),
        "services": list(scope.services or ()),
    }


def deployment_filter(scope: Scope, alias: str = "d") -> str:
    """The WHERE clause of a scope's successful deployments (alias ``d``), window included."""
    parts = [
        f"{alias}.tenant_id = :tenant",
        f"{alias}.environment = ANY(CAST(:environments AS text[]))",
        f"{alias}.finished_at >= :start",
        f"{alias}.finished_at < :end",
        f"{alias}.result = 'success'",
    ]
    if scope.project_ids is not None:
        parts.append(f"{alias}.project_id = ANY(CAST(:projects AS uuid[]))")
    if scope.repository_ids is not None:
        parts.append(f"{alias}.repository_id = ANY(CAST(:repositories AS uuid[]))")
    return " AND ".join(parts)


def change_filter(scope: Scope, alias: str = "c") -> str:
    """The WHERE clause of a scope's changes: first shipped to one of its environments."""
    parts = [
        f"{alias}.tenant_id = :tenant",
        f"{alias}.environment = ANY(CAST(:environments AS text[]))",
        f"{alias}.deployed_at >= :start",
        f"{alias}.deployed_at < :end",
        f"NOT {alias}.is_merge",
    ]
    if scope.project_ids is not None:
        parts.append(f"{alias}.project_id = ANY(CAST(:projects AS uuid[]))")
    if scope.repository_ids is not None:
        parts.append(f"{alias}.repository_id = ANY(CAST(:repositories AS uuid[]))")
    if len(scope.environments) > 1:
        # with several production environments a change counts once, at its first one
        parts.append(
            f"NOT EXISTS (SELECT 1 FROM dora_changes e WHERE e.tenant_id = {alias}.tenant_id "
            f"AND e.repository_id = {alias}.repository_id AND e.sha = {alias}.sha "
            "AND e.environment = ANY(CAST(:environments AS text[])) "
            f"AND (e.deployed_at, e.environment) < ({alias}.deployed_at, {alias}.environment))"
        )
    return " AND ".join(parts)


def incident_filter(scope: Scope, *, linked: bool, alias: str = "i") -> str:
    """The WHERE clause of a scope's resolved incidents (all, or linked to a deployment)."""
    parts = [
        f"{alias}.tenant_id = :tenant",
        f"{alias}.resolved_at >= :start",
        f"{alias}.resolved_at < :end",
        f"{alias}.restore_seconds >= 0",
    ]
    if linked or scope.explicit_environment:
        parts.append(f"{alias}.deployment_environment = ANY(CAST(:environments AS text[]))")
    if scope.project_ids is not None:
        parts.append(f"{alias}.project_id = ANY(CAST(:projects AS uuid[]))")
    if scope.services is not None:
        parts.append(f"{alias}.service = ANY(CAST(:services AS text[]))")
    return " AND ".join(parts)


def failure_expression(scope: Scope, alias: str = "d") -> str:
    """SQL truth of "this successful deployment caused a failure" under the tenant's config.

    Reads the flags the refresh materialises (:mod:`pulse_dora.refresh`): an incident is
    linked to it, or (when the tenant counts them) the next deployment of its service and
    environment failed.
    """
    if not scope.config.failed_deployment_counts_as_failure:
        return f"{alias}.has_incident"
    return f"({alias}.has_incident OR {alias}.followed_by_failure)"


def _metric_sql(metric: str, scope: Scope, *, whole: bool = False) -> str:
    """``WITH w, b, v`` for one metric: ``v`` aggregates per bucket.

    With ``whole``, ``v`` also aggregates the whole window (the empty grouping set, in the
    same scan of the window's index), answered as a last row after the buckets.
    """
    buckets = _buckets_sql(scope)
    group = "GROUP BY GROUPING SETS ((1), ())" if whole else "GROUP BY 1"
    if metric == "deployment_frequency":
        aggregate = (
            f"SELECT {_bucket_of(scope, 'd.finished_at')} AS bucket, count(*) AS n, "
            "count(DISTINCT date_trunc('day', d.finished_at AT TIME ZONE :tz)) AS days "
            f"FROM dora_deployments d WHERE {deployment_filter(scope)} {group}"
        )
    elif metric in ("change_failure_rate", "deployment_rework_rate"):
        flag = failure_expression(scope) if metric == "change_failure_rate" else "d.is_rework"
        aggregate = (
            f"SELECT {_bucket_of(scope, 'd.finished_at')} AS bucket, count(*) AS n, "
            f"count(*) FILTER (WHERE {flag}) AS hits "
            f"FROM dora_deployments d WHERE {deployment_filter(scope)} {group}"
        )
    elif metric == "lead_time_for_changes":
        aggregate = (
            f"SELECT {_bucket_of(scope, 'c.deployed_at')} AS bucket, count(*) AS n, "
            + _PERCENTILES.format(value="c.lead_seconds")
            + f" FROM dora_changes c WHERE {change_filter(scope)} AND c.lead_seconds > 0"
            f" {group}"
        )
    else:
        linked = metric == "failed_deployment_recovery_time"
        aggregate = (
            f"SELECT {_bucket_of(scope, 'i.resolved_at')} AS bucket, count(*) AS n, "
            + _PERCENTILES.format(value="i.restore_seconds")
            + f" FROM dora_incidents i WHERE {incident_filter(scope, linked=linked)} {group}"
        )
    if not whole:
        return (
            f"WITH {buckets}, v AS ({aggregate}) "
            "SELECT b.bucket_start, b.bucket_end, v.* FROM b LEFT JOIN v ON v.bucket = b.bucket "
            "ORDER BY b.bucket"
        )
    # the window's row is the one of the empty grouping set (a bucket's is never null)
    return (
        f"WITH {buckets}, v AS MATERIALIZED ({aggregate}) "
        "SELECT * FROM (SELECT 0 AS part, b.bucket AS position, b.bucket_start, b.bucket_end, "
        "v.* FROM b LEFT JOIN v ON v.bucket = b.bucket "
        "UNION ALL SELECT 1, NULL, w.local_start, w.local_end, v.* FROM w, v "
        "WHERE v.bucket IS NULL) r ORDER BY part, position"
    )


async def buckets(session: AsyncSession, metric: str, scope: Scope, *,
                  whole: bool = False) -> list[Bucket]:
    """The per-bucket aggregate rows of ``metric`` over ``scope`` (with ``whole``, then the
    whole window's, from the same statement)."""
    rows = (await session.execute(text(_metric_sql(metric, scope, whole=whole)),
                                  _params(scope))).mappings()
    zone = ZoneInfo(scope.tz)
    return [
        Bucket(
            start=row["bucket_start"].replace(tzinfo=zone),
            end=row["bucket_end"].replace(tzinfo=zone),
            row=dict(row),
        )
        for row in rows
    ]


def _days(bucket: Bucket) -> float:
    """Calendar days in a bucket (wall-clock, so a 23-hour DST day is one day)."""
    naive_start = bucket.start.replace(tzinfo=None)
    naive_end = bucket.end.replace(tzinfo=None)
    return (naive_end - naive_start).total_seconds() / 86400


def _duration_value(row: dict[str, Any]) -> dict[str, Any]:
    count = int(row.get("n") or 0)
    quantiles = row.get("quantiles") or [None, None, None]
    return {
        "value": quantiles[0] if count else None,
        "median": quantiles[0] if count else None,
        "p75": quantiles[1] if count else None,
        "p90": quantiles[2] if count else None,
        "mean": float(row["mean"]) if count and row.get("mean") is not None else None,
        "sample_size": count,
    }


def point(metric: str, bucket: Bucket) -> dict[str, Any]:
    """The JSON of one bucket of ``metric``: value, its sample size and its parts."""
    row = bucket.row
    count = int(row.get("n") or 0)
    document: dict[str, Any] = {"start": bucket.start, "end": bucket.end}
    if metric == "deployment_frequency":
        days = _days(bucket)
        document.update(
            value=count if count else None,
            sample_size=count,
            deployments=count,
            per_day=count / days if count and days else None,
            deployment_days=int(row.get("days") or 0),
        )
    elif metric in ("change_failure_rate", "deployment_rework_rate"):
        hits = int(row.get("hits") or 0)
        name = "failed_deployments" if metric == "change_failure_rate" else "rework_deployments"
        document.update(
            {
                "value": hits / count if count else None,
                "sample_size": count,
                name: hits,
                "deployments": count,
            }
        )
    else:
        document.update(_duration_value(row))
    return document


async def series(session: AsyncSession, metric: str, scope: Scope) -> list[dict[str, Any]]:
    """Every bucket of ``metric`` over ``scope``, empty ones included."""
    return [point(metric, bucket) for bucket in await buckets(session, metric, scope)]


async def aggregate(session: AsyncSession, metric: str, scope: Scope) -> dict[str, Any]:
    """``metric`` over the whole window of ``scope``."""
    rows = await series(session, metric, scope.with_interval("all"))
    return rows[0]


#: Memory each sort of :func:`series_and_aggregate` may use before spilling to disk (its
#: transaction only): the 13 weeks of changes of the large generated tenant (230k) sort in
#: 13 MB, and spilled they took 0.43 s instead of 0.34 s.
SORT_WORK_MEM = "16MB"


async def series_and_aggregate(
    session: AsyncSession, metric: str, scope: Scope
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """:func:`series` and :func:`aggregate` of ``metric`` over ``scope`` from one statement:
    the buckets and the whole window are grouping sets of one scan of the window's index
    (the whole window's percentiles are still computed from its observations), sorted in
    memory up to :data:`SORT_WORK_MEM`."""
    await session.execute(text("SELECT set_config('work_mem', :memory, true)"),
                          {"memory": SORT_WORK_MEM})
    if scope.interval == "all":
        points = await series(session, metric, scope)
        return points, points[0]
    *points, whole = [point(metric, bucket)
                      for bucket in await buckets(session, metric, scope, whole=True)]
    return points, whole


#: The observations of each duration metric: the column and the FROM ... WHERE of a scope.
DURATIONS = ("lead_time_for_changes", "failed_deployment_recovery_time", "time_to_restore_service")


def _samples_sql(metric: str, scope: Scope) -> str:
    if metric == "lead_time_for_changes":
        return (
            f"SELECT c.lead_seconds AS v FROM dora_changes c WHERE {change_filter(scope)} "
            "AND c.lead_seconds > 0"
        )
    if metric in DURATIONS:
        linked = metric == "failed_deployment_recovery_time"
        return (
            "SELECT i.restore_seconds AS v FROM dora_incidents i "
            f"WHERE {incident_filter(scope, linked=linked)}"
        )
    raise ValueError(f"{metric} is not a duration metric")


async def samples(session: AsyncSession, metric: str, scope: Scope) -> tuple[float, ...]:
    """Every observation of a duration ``metric`` over the window of ``scope`` (the rows
    whose ``percentile_cont`` :func:`aggregate` computes), in ascending order."""
    sql = _samples_sql(metric, scope) + " ORDER BY 1"
    return tuple(float(v) for v in (await session.execute(text(sql), _params(scope))).scalars())


#: The deployment metrics of one window from one scan of the window index: the count,
#: the failures and rework deployments, the deployment days and (``{medians}``) the
#: median deployment days per week and per month that the frequency level needs.
_DEPLOYMENT_TOTALS = """
WITH w AS (SELECT CAST(:start AS timestamptz) AT TIME ZONE :tz AS local_start,
                  CAST(:end AS timestamptz) AT TIME ZONE :tz AS local_end),
d AS MATERIALIZED (
    SELECT date_trunc('day', d.finished_at AT TIME ZONE :tz) AS day,
           {failure} AS failed, d.is_rework
    FROM dora_deployments d WHERE {filter}
),
deploy_days AS MATERIALIZED (SELECT DISTINCT day FROM d)
SELECT t.n, t.failures, t.rework, (SELECT count(*) FROM deploy_days) AS days, {medians}
FROM (SELECT count(*) AS n, count(*) FILTER (WHERE failed) AS failures,
             count(*) FILTER (WHERE is_rework) AS rework FROM d) t
"""

_MEDIAN_DAYS = """
(SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY (
    SELECT count(*) FROM deploy_days x WHERE x.day >= g AND x.day < g + interval '{step}'))
 FROM w, generate_series(date_trunc('{unit}', w.local_start),
                         w.local_end - interval '1 microsecond', interval '{step}') g)
"""


@dataclass(frozen=True)
class DeploymentTotals:
    """The deployment metrics of one window (see :func:`deployment_totals`)."""

    deployments: int
    failures: int
    rework: int
    deployment_days: int
    median_days_per_week: float
    median_days_per_month: float

    def point(self, metric: str, scope: Scope) -> dict[str, Any]:
        """The whole-window point of a deployment metric, as :func:`series` gives it."""
        zone = ZoneInfo(scope.tz)
        hits = self.failures if metric == "change_failure_rate" else self.rework
        row = {"n": self.deployments, "days": self.deployment_days, "hits": hits}
        bucket = Bucket(scope.start.astimezone(zone), scope.end.astimezone(zone), row)
        return point(metric, bucket)


async def deployment_totals(
    session: AsyncSession, scope: Scope, *, medians: bool = False
) -> DeploymentTotals:
    """Deployments, failures, rework and deployment days of the window, in one scan.

    :param medians: also compute the median deployment days per week and per month
        (what the deployment frequency level is judged by); zero otherwise.
    """
    if medians:
        columns = (
            _MEDIAN_DAYS.format(unit="week", step="7 days") + " AS per_week, "
            + _MEDIAN_DAYS.format(unit="month", step="1 month") + " AS per_month"
        )
    else:
        columns = "0 AS per_week, 0 AS per_month"
    sql = _DEPLOYMENT_TOTALS.format(
        failure=failure_expression(scope), filter=deployment_filter(scope), medians=columns
    )
    row = (await session.execute(text(sql), _params(scope))).one()
    return DeploymentTotals(
        deployments=int(row.n), failures=int(row.failures), rework=int(row.rework),
        deployment_days=int(row.days), median_days_per_week=float(row.per_week or 0.0),
        median_days_per_month=float(row.per_month or 0.0),
    )


# --- drill-down ------------------------------------------------------------------------


@dataclass(frozen=True)
class SortKey:
    """Where a drill-down page ends: the row's time, id and (changes) SHA, newest first.

    Encoded in a cursor as ``YYYYMMDDHHMMSSffffff/<uuid>[/<sha>]`` (UTC).
    """

    at: datetime
    id: str
    sha: str | None = None

    _PATTERN = re.compile(r"^([0-9]{20})/([0-9a-f-]{36})(?:/([^/\x00]{1,64}))?$")

    def encode(self) -> str:
        """The key as a cursor's text."""
        text_key = f"{self.at.astimezone(UTC):%Y%m%d%H%M%S%f}/{self.id}"
        return text_key if self.sha is None else f"{text_key}/{self.sha}"

    @classmethod
    def decode(cls, raw: str) -> SortKey | None:
        """The key a cursor's text names, or None when it names none."""
        match = cls._PATTERN.match(raw)
        if match is None:
            return None
        try:
            at = datetime.strptime(match.group(1), "%Y%m%d%H%M%S%f").replace(tzinfo=UTC)
            identifier = str(uuid.UUID(match.group(2)))
        except ValueError:
            return None
        return cls(at, identifier, match.group(3))


@dataclass(frozen=True)
class _Page:
    """How one kind of drill-down row is paged: first a page of facts alone, read in key
    order (newest first, so an index scan of the window can stop after one page), then
    only that page joined to pulse-etl's tables for the item's details.

    :ivar facts: ``SELECT ... FROM <facts> <alias> WHERE {filter}``.
    :ivar key: the page's columns that order it (a :class:`SortKey`: time, id[, sha]).
    :ivar item: the item's columns, over ``page`` and ``joins``.
    """

    alias: str
    facts: str
    key: tuple[str, ...]
    item: str
    joins: str


_PAGES = {
    "deployment": _Page(
        "d",
        "SELECT d.tenant_id, d.deployment_id, d.service, d.environment, d.result, "
        "d.started_at, d.finished_at, d.is_rework, {failure} AS caused_failure "
        "FROM dora_deployments d WHERE {filter}",
        ("finished_at", "deployment_id"),
        "'deployment' AS kind, page.deployment_id AS id, src.external_id, page.service, "
        "page.environment, page.result, src.sha, src.ref, src.name, page.started_at, "
        "page.finished_at, page.is_rework, page.caused_failure, "
        "(SELECT count(*) FROM dora_changes c WHERE c.tenant_id = page.tenant_id "
        "AND c.deployment_id = page.deployment_id) AS changes, "
        "(SELECT coalesce(array_agg(li.incident_id::text ORDER BY li.incident_id), '{}') "
        "FROM dora_incidents li WHERE li.tenant_id = page.tenant_id "
        "AND li.deployment_id = page.deployment_id) AS incidents",
        "JOIN deployments src ON src.tenant_id = page.tenant_id AND src.id = page.deployment_id",
    ),
    "change": _Page(
        "c",
        "SELECT c.tenant_id, c.repository_id, c.sha, c.environment, c.deployment_id, "
        "c.authored_at, c.deployed_at, c.lead_seconds "
        "FROM dora_changes c WHERE {filter} AND c.lead_seconds > 0",
        ("deployed_at", "repository_id", "sha"),
        "'change' AS kind, m.id AS id, page.sha, page.repository_id, page.environment, "
        "page.deployment_id, m.author_name, m.message, page.authored_at, page.deployed_at, "
        "page.lead_seconds",
        "JOIN commits m ON m.tenant_id = page.tenant_id AND m.repository_id = page.repository_id "
        "AND m.sha = page.sha",
    ),
    "incident": _Page(
        "i",
        "SELECT i.tenant_id, i.incident_id, i.service, i.created_at, i.resolved_at, "
        "i.restore_seconds, i.deployment_id, i.deployment_environment, i.link_reason "
        "FROM dora_incidents i WHERE {filter}",
        ("resolved_at", "incident_id"),
        "'incident' AS kind, page.incident_id AS id, src.external_id, src.title, src.url, "
        "page.service, page.created_at, page.resolved_at, page.restore_seconds, "
        "page.deployment_id, page.deployment_environment, page.link_reason",
        "JOIN incidents src ON src.tenant_id = page.tenant_id AND src.id = page.incident_id",
    ),
}

#: The bind parameters of a :class:`SortKey`, in key order, typed.
_KEY_BOUNDS = ("CAST(:after_at AS timestamptz)", "CAST(:after_id AS uuid)", ":after_sha")


def drilldown_kind(metric: str) -> str:
    """What the rows behind ``metric`` are: deployments, changes or incidents."""
    if metric in ("deployment_frequency", "change_failure_rate", "deployment_rework_rate"):
        return "deployment"
    return "change" if metric == "lead_time_for_changes" else "incident"


def _drilldown_filter(metric: str, scope: Scope) -> str:
    if metric == "change_failure_rate":
        return f"{deployment_filter(scope)} AND {failure_expression(scope)}"
    if metric == "deployment_rework_rate":
        return f"{deployment_filter(scope)} AND d.is_rework"
    if metric == "deployment_frequency":
        return deployment_filter(scope)
    if metric == "lead_time_for_changes":
        return change_filter(scope)
    return incident_filter(scope, linked=metric == "failed_deployment_recovery_time")


async def drilldown(
    session: AsyncSession, metric: str, scope: Scope, *, limit: int, after: SortKey | None
) -> tuple[list[dict[str, Any]], SortKey | None]:
    """One page of the rows behind ``metric``, newest first; returns ``(items, last key)``.

    :param after: the key of the last row of the previous page (of the same kind).
    """
    page = _PAGES[drilldown_kind(metric)]
    facts = page.facts.format(
        failure=failure_expression(scope), filter=_drilldown_filter(metric, scope))
    params: dict[str, Any] = {**_params(scope), "limit": limit + 1}
    if after is not None:
        columns = ", ".join(f"{page.alias}.{column}" for column in page.key)
        facts += f" AND ({columns}) < ({', '.join(_KEY_BOUNDS[:len(page.key)])})"
        params.update(after_at=after.at, after_id=after.id, after_sha=after.sha)
    keys = ", ".join(f"page.{column} AS key_{position}"
                     for position, column in enumerate(page.key))
    newest = ", ".join(f"{column} DESC" for column in page.key)
    statement = (
        f"WITH page AS ({facts} ORDER BY {newest} LIMIT :limit) "
        f"SELECT {keys}, {page.item} FROM page {page.joins} "
        f"ORDER BY {', '.join(f'page.{column} DESC' for column in page.key)}"
    )
    rows = [dict(row) for row in (await session.execute(text(statement), params)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    items, last = [], None
    for row in rows:
        key = [row.pop(f"key_{position}") for position in range(len(page.key))]
        last = SortKey(key[0], str(key[1]), key[2] if len(key) > 2 else None)
        items.append({name: _json(value) for name, value in row.items()})
    return items, last if more else None


def _json(value: Any) -> Any:
    """A column value as the drill-down item carries it (ids as strings)."""
    if isinstance(value, list | tuple):
        return [_json(item) for item in value]
    if value is not None and not isinstance(value, str | int | float | bool | datetime):
        return str(value)
    return value


# --- lead-time breakdown ---------------------------------------------------------------

#: The phases of the pull requests merged in each bucket, one aggregate per bucket.
_BREAKDOWN = """
WITH {buckets},
{phases},
v AS (
    SELECT bucket, count(*) AS pull_requests, {aggregates} FROM phases GROUP BY bucket
)
SELECT b.bucket_start, b.bucket_end, v.* FROM b LEFT JOIN v ON v.bucket = b.bucket
ORDER BY b.bucket
"""

_MERGED = "p.tenant_id = :tenant AND p.merged_at >= :start AND p.merged_at < :end"

#: The tenant's production set: one range scan of ``ix_dora_pull_requests_merged``, whose
#: columns cover every phase (the deploy phase is materialised for that set).
_PRODUCTION_PHASES = f"""
phases AS (
    SELECT {{bucket_of}} AS bucket, p.coding_seconds AS coding, p.pickup_seconds AS pickup,
           p.review_seconds AS review,
           extract(epoch FROM p.deployed_at - p.merged_at) AS deploy
    FROM dora_pull_requests p WHERE {_MERGED} {{filters}}
)"""

#: Other environments (given explicitly): the first deployment to them of each merge
#: commit, from one pass over their changes, joined to the window's pull requests.
_GIVEN_PHASES = f"""
merged AS MATERIALIZED (
    SELECT {{bucket_of}} AS bucket, p.repository_id, p.merge_commit_sha, p.merged_at,
           p.coding_seconds AS coding, p.pickup_seconds AS pickup, p.review_seconds AS review
    FROM dora_pull_requests p WHERE {_MERGED} {{filters}}
),
deployments AS MATERIALIZED (
    SELECT c.repository_id, c.sha, min(c.deployed_at) AS deployed_at
    FROM dora_changes c
    WHERE c.tenant_id = :tenant AND c.environment = ANY(CAST(:environments AS text[]))
      AND (c.repository_id, c.sha) IN (SELECT repository_id, merge_commit_sha FROM merged)
    GROUP BY c.repository_id, c.sha
),
phases AS (
    SELECT p.bucket, p.coding, p.pickup, p.review,
           extract(epoch FROM d.deployed_at - p.merged_at) AS deploy
    FROM merged p LEFT JOIN deployments d
      ON d.repository_id = p.repository_id AND d.sha = p.merge_commit_sha
)"""

PHASES = ("coding", "pickup", "review", "deploy")


def _breakdown_sql(scope: Scope) -> str:
    aggregates = ", ".join(
        f"count({phase}) FILTER (WHERE {phase} >= 0) AS {phase}_n, "
        f"percentile_cont(ARRAY[0.5, 0.75, 0.9]) WITHIN GROUP (ORDER BY {phase}) "
        f"FILTER (WHERE {phase} >= 0) AS {phase}_quantiles, "
        f"avg({phase}) FILTER (WHERE {phase} >= 0) AS {phase}_mean"
        for phase in PHASES
    )
    filters = ""
    if scope.project_ids is not None:
        filters += " AND p.project_id = ANY(CAST(:projects AS uuid[]))"
    if scope.repository_ids is not None:
        filters += " AND p.repository_id = ANY(CAST(:repositories AS uuid[]))"
    phases = _PRODUCTION_PHASES if scope.production_set else _GIVEN_PHASES
    return _BREAKDOWN.format(
        buckets=_buckets_sql(scope),
        phases=phases.format(bucket_of=_bucket_of(scope, "p.merged_at"), filters=filters),
        aggregates=aggregates,
    )


async def breakdown(session: AsyncSession, scope: Scope) -> list[dict[str, Any]]:
    """Coding, pickup, review and deploy time of the pull requests merged in each bucket."""
    rows = (await session.execute(text(_breakdown_sql(scope)), _params(scope))).mappings()
    zone = ZoneInfo(scope.tz)
    points = []
    for row in rows:
        document: dict[str, Any] = {
            "start": row["bucket_start"].replace(tzinfo=zone),
            "end": row["bucket_end"].replace(tzinfo=zone),
            "pull_requests": int(row["pull_requests"] or 0),
        }
        for phase in PHASES:
            document[phase] = _duration_value(
                {"n": row[f"{phase}_n"], "quantiles": row[f"{phase}_quantiles"],
                 "mean": row[f"{phase}_mean"]}
            )
        points.append(document)
    return points
