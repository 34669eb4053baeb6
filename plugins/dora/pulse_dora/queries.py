"""The DORA metrics as SQL: one range scan of one covering index per metric and window.

Buckets are generated in SQL (``generate_series`` over local wall-clock time in the
request's zone, so a day is a calendar day across DST changes) and left-joined to the
aggregates, so an empty bucket is present with a null value and a zero sample size.
Durations are aggregated with ``percentile_cont`` (median, p75, p90) and ``avg``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
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


def _metric_sql(metric: str, scope: Scope) -> str:
    """``WITH w, b, v`` for one metric: ``v`` aggregates per bucket."""
    buckets = _buckets_sql(scope)
    if metric == "deployment_frequency":
        aggregate = (
            f"SELECT {_bucket_of(scope, 'd.finished_at')} AS bucket, count(*) AS n, "
            "count(DISTINCT date_trunc('day', d.finished_at AT TIME ZONE :tz)) AS days "
            f"FROM dora_deployments d WHERE {deployment_filter(scope)} GROUP BY 1"
        )
    elif metric in ("change_failure_rate", "deployment_rework_rate"):
        flag = failure_expression(scope) if metric == "change_failure_rate" else "d.is_rework"
        aggregate = (
            f"SELECT {_bucket_of(scope, 'd.finished_at')} AS bucket, count(*) AS n, "
            f"count(*) FILTER (WHERE {flag}) AS hits "
            f"FROM dora_deployments d WHERE {deployment_filter(scope)} GROUP BY 1"
        )
    elif metric == "lead_time_for_changes":
        aggregate = (
            f"SELECT {_bucket_of(scope, 'c.deployed_at')} AS bucket, count(*) AS n, "
            + _PERCENTILES.format(value="c.lead_seconds")
            + f" FROM dora_changes c WHERE {change_filter(scope)} AND c.lead_seconds > 0"
            " GROUP BY 1"
        )
    else:
        linked = metric == "failed_deployment_recovery_time"
        aggregate = (
            f"SELECT {_bucket_of(scope, 'i.resolved_at')} AS bucket, count(*) AS n, "
            + _PERCENTILES.format(value="i.restore_seconds")
            + f" FROM dora_incidents i WHERE {incident_filter(scope, linked=linked)} GROUP BY 1"
        )
    return (
        f"WITH {buckets}, v AS ({aggregate}) "
        "SELECT b.bucket_start, b.bucket_end, v.* FROM b LEFT JOIN v ON v.bucket = b.bucket "
        "ORDER BY b.bucket"
    )


async def buckets(session: AsyncSession, metric: str, scope: Scope) -> list[Bucket]:
    """The per-bucket aggregate rows of ``metric`` over ``scope``."""
    rows = (await session.execute(text(_metric_sql(metric, scope)), _params(scope))).mappings()
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

_SORT_KEY = "to_char({column} AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS') || '/' || {id}::text"


def _drilldown_sql(metric: str, scope: Scope) -> tuple[str, str]:
    """``(select without ORDER BY, sort key expression)`` of the rows behind a metric."""
    if metric in ("deployment_frequency", "change_failure_rate", "deployment_rework_rate"):
        key = _SORT_KEY.format(column="d.finished_at", id="d.deployment_id")
        extra = "true"
        if metric == "change_failure_rate":
            extra = failure_expression(scope)
        elif metric == "deployment_rework_rate":
            extra = "d.is_rework"
        sql = (
            f"SELECT {key} AS sort_key, 'deployment' AS kind, d.deployment_id AS id, "
            "src.external_id, d.service, d.environment, d.result, src.sha, src.ref, src.name, "
            "d.started_at, d.finished_at, d.is_rework, "
            f"{failure_expression(scope)} AS caused_failure, "
            "(SELECT count(*) FROM dora_changes c WHERE c.tenant_id = d.tenant_id "
            "AND c.deployment_id = d.deployment_id) AS changes, "
            "(SELECT coalesce(array_agg(li.incident_id::text ORDER BY li.incident_id), '{}') "
            "FROM dora_incidents li WHERE li.tenant_id = d.tenant_id "
            "AND li.deployment_id = d.deployment_id) AS incidents "
            "FROM dora_deployments d JOIN deployments src "
            "ON src.tenant_id = d.tenant_id AND src.id = d.deployment_id "
            f"WHERE {deployment_filter(scope)} AND {extra}"
        )
        return sql, key
    if metric == "lead_time_for_changes":
        key = _SORT_KEY.format(column="c.deployed_at", id="m.id")
        sql = (
            f"SELECT {key} AS sort_key, 'change' AS kind, m.id AS id, c.sha, c.repository_id, "
            "c.environment, c.deployment_id, m.author_name, m.message, c.authored_at, "
            "c.deployed_at, c.lead_seconds FROM dora_changes c JOIN commits m "
            "ON m.tenant_id = c.tenant_id AND m.repository_id = c.repository_id "
            f"AND m.sha = c.sha WHERE {change_filter(scope)} AND c.lead_seconds > 0"
        )
        return sql, key
    linked = metric == "failed_deployment_recovery_time"
    key = _SORT_KEY.format(column="i.resolved_at", id="i.incident_id")
    sql = (
        f"SELECT {key} AS sort_key, 'incident' AS kind, i.incident_id AS id, src.external_id, "
        "src.title, src.url, i.service, i.created_at, i.resolved_at, i.restore_seconds, "
        "i.deployment_id, i.deployment_environment, i.link_reason FROM dora_incidents i "
        "JOIN incidents src ON src.tenant_id = i.tenant_id AND src.id = i.incident_id "
        f"WHERE {incident_filter(scope, linked=linked)}"
    )
    return sql, key


async def drilldown(
    session: AsyncSession, metric: str, scope: Scope, *, limit: int, after: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the rows behind ``metric``, newest first; returns ``(items, last key)``.

    :param after: the sort key of the last row of the previous page.
    """
    sql, key = _drilldown_sql(metric, scope)
    params = {**_params(scope), "after": after, "limit": limit + 1}
    if after is not None:
        sql += f" AND {key} < :after"
    sql += " ORDER BY sort_key DESC LIMIT :limit"
    rows = [dict(row) for row in (await session.execute(text(sql), params)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1]["sort_key"] if more and rows else None
    items = []
    for row in rows:
        row.pop("sort_key")
        items.append({name: _json(value) for name, value in row.items()})
    return items, last


def _json(value: Any) -> Any:
    """A column value as the drill-down item carries it (ids as strings)."""
    if isinstance(value, list | tuple):
        return [_json(item) for item in value]
    if value is not None and not isinstance(value, str | int | float | bool | datetime):
        return str(value)
    return value


# --- lead-time breakdown ---------------------------------------------------------------

_BREAKDOWN = """
WITH {buckets},
prs AS (
    SELECT p.id, p.number, p.repository_id, p.created_at_source AS opened_at, p.merged_at,
           p.merge_commit_sha, coalesce(ai.person_id, p.author_identity_id) AS author
    FROM pull_requests p
    LEFT JOIN person_identities ai ON ai.tenant_id = p.tenant_id AND ai.id = p.author_identity_id
    LEFT JOIN repositories r ON r.tenant_id = p.tenant_id AND r.id = p.repository_id
    WHERE p.tenant_id = :tenant AND p.merged_at >= :start AND p.merged_at < :end {filters}
),
phases AS (
    SELECT prs.*, {bucket_of} AS bucket,
        (SELECT min(c.authored_at) FROM commits c WHERE c.tenant_id = :tenant
           AND c.repository_id = prs.repository_id AND c.pull_request_number = prs.number
           AND NOT c.is_merge) AS first_commit_at,
        (SELECT min(t) FROM (
            SELECT rv.submitted_at AS t FROM reviews rv
            LEFT JOIN person_identities ri
              ON ri.tenant_id = rv.tenant_id AND ri.id = rv.reviewer_identity_id
            WHERE rv.tenant_id = :tenant AND rv.pull_request_id = prs.id
              AND coalesce(ri.person_id, rv.reviewer_identity_id) IS DISTINCT FROM prs.author
            UNION ALL
            SELECT rc.created_at_source FROM review_comments rc
            LEFT JOIN person_identities ci
              ON ci.tenant_id = rc.tenant_id AND ci.id = rc.author_identity_id
            WHERE rc.tenant_id = :tenant AND rc.pull_request_id = prs.id
              AND coalesce(ci.person_id, rc.author_identity_id) IS DISTINCT FROM prs.author
        ) responses) AS first_response_at,
        (SELECT min(c.deployed_at) FROM dora_changes c WHERE c.tenant_id = :tenant
           AND c.repository_id = prs.repository_id AND c.sha = prs.merge_commit_sha
           AND c.environment = ANY(CAST(:environments AS text[]))) AS deployed_at
    FROM prs
),
durations AS (
    SELECT bucket,
        extract(epoch FROM opened_at - first_commit_at) AS coding,
        extract(epoch FROM first_response_at - opened_at) AS pickup,
        extract(epoch FROM merged_at - first_response_at) AS review,
        extract(epoch FROM deployed_at - merged_at) AS deploy
    FROM phases
),
v AS (
    SELECT bucket, count(*) AS pull_requests, {aggregates} FROM durations GROUP BY bucket
)
SELECT b.bucket_start, b.bucket_end, v.* FROM b LEFT JOIN v ON v.bucket = b.bucket
ORDER BY b.bucket
"""

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
        filters += " AND r.project_id = ANY(CAST(:projects AS uuid[]))"
    if scope.repository_ids is not None:
        filters += " AND p.repository_id = ANY(CAST(:repositories AS uuid[]))"
    return _BREAKDOWN.format(
        buckets=_buckets_sql(scope),
        bucket_of=_bucket_of(scope, "prs.merged_at"),
        filters=filters,
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
