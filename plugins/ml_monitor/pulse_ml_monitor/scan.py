"""The scheduled anomaly scan: every metric of the catalog, per tenant and scope.

A :class:`~pulse_engine.BackgroundTask` in each process publishes, every
``PULSE_ML_SCAN_INTERVAL_SECONDS``, one message per tenant on :data:`SCAN_QUEUE` whose id is
the tenant and the interval's slot, so that the idempotent consumer runs each tenant's scan
once per slot however many processes publish it. The consumer (:func:`scan_tenant`), in a
worker:

1. computes each metric of ``engine.metrics`` (any plugin's) per day over the last
   ``PULSE_ML_SCAN_HISTORY_DAYS`` days, for the whole tenant and, for metrics that take the
   ``project`` filter, for each of up to ``PULSE_ML_SCAN_MAX_SCOPES`` projects;
2. runs the detector (:mod:`pulse_ml_monitor.detector`) on each series: a day is flagged
   when it is outside its seasonal (weekly) robust range;
3. runs an IsolationForest over the days x metrics matrix of the tenant's robust scores
   (the multivariate case: days on which several metrics move together, each within its
   own range), as the alert metric ``multivariate``;
4. merges flagged days into alerts: days a few apart are one event; an event that starts
   within ``PULSE_ML_ALERT_MERGE_GAP_DAYS`` of an open or acknowledged alert of the same
   metric and scope extends it (one alert per ongoing anomaly); events older than
   ``PULSE_ML_ALERT_RECENT_DAYS``, or not after a resolved alert's end, raise nothing;
5. publishes each new alert on the tenant's event stream (``ml.anomaly``) and records the
   scan in ``ml_scan_state`` (``/health/ml`` reports its freshness).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.ensemble import IsolationForest
from sqlalchemy import select, text

from pulse_engine import Consumer, Message, MetricQuery
from pulse_ml_monitor.config import MlSettings
from pulse_ml_monitor.detector import (
    MODEL_NAME,
    Detection,
    SeriesError,
    detect,
    group_events,
    severity,
)

if TYPE_CHECKING:
    from pulse_engine import Engine

log = logging.getLogger(__name__)

SCAN_QUEUE = "ml.scan"
#: Event type of a new alert on the WebSocket.
ALERT_EVENT = "ml.anomaly"
#: Fewest daily values a series needs to be judged.
MIN_POINTS = 21
#: Flagged days at most this far apart are one event.
EVENT_GAP_DAYS = 2
#: The multivariate model's alert metric.
MULTIVARIATE = "multivariate"
#: IsolationForest flags a day when its anomaly score is below this (scikit-learn's
#: ``score_samples`` is about -0.5 for ordinary points and nears -1 for isolated ones).
FOREST_THRESHOLD = -0.65
FOREST_MODEL = "isolation-forest"
DAY = 86_400.0


@dataclass
class Finding:
    """One event: consecutive flagged days of one metric and scope."""

    metric: str
    scope: str
    first_at: datetime
    last_at: datetime
    peak_at: datetime
    observed: float
    low: float
    high: float
    score: float
    points: int
    threshold: float
    model: str

    def as_event(self) -> dict[str, Any]:
        """The alert's fields for the event stream."""
        return {
            "metric": self.metric, "scope": self.scope,
            "first_at": self.first_at.isoformat(), "last_at": self.last_at.isoformat(),
            "observed": self.observed, "expected": [self.low, self.high],
            "score": self.score, "severity": severity(self.score, self.threshold),
        }


def _days(end: datetime, history_days: int) -> tuple[datetime, datetime]:
    today = end.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=history_days), today + timedelta(days=1)


async def metric_series(
    engine: Engine, tenant_id: str, name: str, start: datetime, end: datetime,
    filters: dict[str, tuple[str, ...]],
) -> list[tuple[datetime, float]]:
    """A metric's daily values (days without a value are left out)."""
    definition = engine.metrics.get(name)
    if definition is None:
        return []
    computation = definition.check(await definition.compute(
        engine, MetricQuery(tenant_id=tenant_id, start=start, end=end, interval="day",
                            filters=filters)))
    return [
        (point.start, float(point.value))
        for point in computation.series
        if point.start is not None and point.value is not None and math.isfinite(point.value)
    ]


def findings_of(
    metric: str, scope: str, series: list[tuple[datetime, float]], detection: Detection,
    model: str = MODEL_NAME,
) -> list[Finding]:
    """The events of a detection over a daily series."""
    flagged = detection.indices
    out: list[Finding] = []
    for event in group_events(flagged, EVENT_GAP_DAYS):
        peak = max(event, key=lambda i: abs(float(detection.score[i])))
        out.append(Finding(
            metric=metric, scope=scope,
            first_at=series[event[0]][0], last_at=series[event[-1]][0],
            peak_at=series[peak][0], observed=series[peak][1],
            low=float(detection.low[peak]), high=float(detection.high[peak]),
            score=float(detection.score[peak]), points=len(event),
            threshold=detection.threshold, model=model,
        ))
    return out


def multivariate_findings(
    days: list[datetime], scores: dict[str, dict[datetime, float]]
) -> list[Finding]:
    """IsolationForest over the days x metrics matrix of robust scores (tenant scope)."""
    metrics = sorted(name for name, by_day in scores.items() if len(by_day) >= MIN_POINTS)
    if len(metrics) < 3 or len(days) < MIN_POINTS:
        return []
    matrix = np.array([[scores[m].get(day, 0.0) for m in metrics] for day in days])
    forest = IsolationForest(n_estimators=200, random_state=0).fit(matrix)
    samples = forest.score_samples(matrix)
    flagged = [int(i) for i in np.flatnonzero(samples < FOREST_THRESHOLD)]
    out: list[Finding] = []
    for event in group_events(flagged, EVENT_GAP_DAYS):
        peak = min(event, key=lambda i: float(samples[i]))
        contributors = np.abs(matrix[peak])
        out.append(Finding(
            metric=MULTIVARIATE, scope="tenant",
            first_at=days[event[0]], last_at=days[event[-1]], peak_at=days[peak],
            observed=float(-samples[peak]), low=0.0, high=float(-FOREST_THRESHOLD),
            score=float(contributors.max()), points=len(event), threshold=3.0,
            model=FOREST_MODEL,
        ))
    return out


async def _projects(engine: Engine, tenant_id: str, limit: int) -> list[str]:
    if limit <= 0:
        return []
    async with engine.db.tenant_session(tenant_id) as session:
        if not await session.scalar(text("SELECT to_regclass('public.projects') IS NOT NULL")):
            return []
        rows = await session.execute(
            text("SELECT CAST(id AS text) FROM projects ORDER BY name, id LIMIT :n"),
            {"n": limit})
        return [row[0] for row in rows]


async def record_findings(
    engine: Engine, tenant_id: str, findings: list[Finding], settings: MlSettings,
    now: datetime,
) -> list[dict[str, Any]]:
    """Merge findings into the tenant's alerts; returns the alerts created (as events)."""
    created: list[dict[str, Any]] = []
    recent = now - timedelta(days=settings.alert_recent_days)
    gap = timedelta(days=settings.alert_merge_gap_days)
    async with engine.db.tenant_session(tenant_id) as session:
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('pulse.ml.alerts'), hashtext(:t))"),
            {"t": tenant_id})
        for finding in findings:
            if finding.last_at < recent:
                continue
            resolved_until = await session.scalar(
                text("SELECT max(last_at) FROM ml_anomaly_alerts WHERE metric = :m "
                     "AND scope = :s AND status = 'resolved'"),
                {"m": finding.metric, "s": finding.scope})
            if resolved_until is not None and finding.last_at <= resolved_until:
                continue
            ongoing = (await session.execute(
                text("SELECT id, first_at, last_at, score FROM ml_anomaly_alerts "
                     "WHERE metric = :m AND scope = :s AND status <> 'resolved' "
                     "AND last_at >= :from AND first_at <= :to ORDER BY last_at DESC LIMIT 1"),
                {"m": finding.metric, "s": finding.scope,
                 "from": finding.first_at - gap, "to": finding.last_at + gap},
            )).first()
            fields = {
                "observed": finding.observed, "low": finding.low, "high": finding.high,
                "score": finding.score, "peak": finding.peak_at,
                "severity": severity(finding.score, finding.threshold),
            }
            if ongoing is not None:
                stronger = abs(finding.score) > abs(float(ongoing.score))
                await session.execute(
                    text("UPDATE ml_anomaly_alerts SET first_at = least(first_at, :first), "
                         "last_at = greatest(last_at, :last), "
                         "points = greatest(points, :points), updated_at = now()"
                         + (", peak_at = :peak, observed = :observed, expected_low = :low, "
                            "expected_high = :high, score = :score, severity = :severity"
                            if stronger else "")
                         + " WHERE id = :id"),
                    {"first": finding.first_at, "last": finding.last_at,
                     "points": finding.points, "id": ongoing.id,
                     **(fields if stronger else {})})
                continue
            new_id = await session.scalar(
                text("INSERT INTO ml_anomaly_alerts (tenant_id, metric, scope, first_at, "
                     "last_at, peak_at, observed, expected_low, expected_high, score, "
                     "direction, severity, points, model) VALUES (CAST(:t AS uuid), :m, :s, "
                     ":first, :last, :peak, :observed, :low, :high, :score, :direction, "
                     ":severity, :points, :model) RETURNING id"),
                {"t": tenant_id, "m": finding.metric, "s": finding.scope,
                 "first": finding.first_at, "last": finding.last_at,
                 "direction": "above" if finding.score >= 0 else "below",
                 "points": finding.points, "model": finding.model, **fields})
            created.append({"id": str(new_id), **finding.as_event()})
    return created


async def scan_tenant(
    engine: Engine, tenant_id: str, settings: MlSettings, *, now: datetime | None = None,
) -> dict[str, int]:
    """Scan every metric of the catalog for one tenant; see the module's doc."""
    now = now or datetime.now(UTC)
    started = time.perf_counter()
    start, end = _days(now, settings.scan_history_days)
    projects = await _projects(engine, tenant_id, settings.scan_max_scopes)
    findings: list[Finding] = []
    tenant_scores: dict[str, dict[datetime, float]] = {}
    scanned = errors = 0
    for name in engine.metrics.names():
        definition = engine.metrics.get(name)
        if definition is None:
            continue
        scopes: list[tuple[str, dict[str, tuple[str, ...]]]] = [("tenant", {})]
        if any(f.name == "project" for f in definition.filters):
            scopes += [(f"project={p}", {"project": (p,)}) for p in projects]
        for scope, filters in scopes:
            try:
                series = await metric_series(engine, tenant_id, name, start, end, filters)
            except Exception:
                errors += 1
                log.warning("metric %s (%s) failed in the anomaly scan", name, scope,
                            exc_info=True)
                continue
            if len(series) < MIN_POINTS:
                continue
            times = np.array([at.timestamp() for at, _ in series])
            values = np.array([value for _, value in series])
            if np.ptp(values) == 0:  # a constant series (no data: zeros) has nothing to judge
                continue
            try:
                detection = detect(times, values, interval_seconds=DAY)
            except SeriesError:
                continue
            scanned += 1
            findings += findings_of(name, scope, series, detection)
            if scope == "tenant":
                tenant_scores[name] = {
                    at: float(detection.score[i]) for i, (at, _) in enumerate(series)}
    days = sorted({day for by_day in tenant_scores.values() for day in by_day})
    findings += multivariate_findings(days, tenant_scores)
    created = await record_findings(engine, tenant_id, findings, settings, now)
    for alert in created:
        await engine.events.publish(tenant_id, ALERT_EVENT, alert)
    async with engine.db.tenant_session(tenant_id) as session:
        await session.execute(
            text("INSERT INTO ml_scan_state (tenant_id, scanned_at, series_scanned, anomalies, "
                 "errors) VALUES (CAST(:t AS uuid), now(), :n, :a, :e) ON CONFLICT (tenant_id) "
                 "DO UPDATE SET scanned_at = now(), series_scanned = excluded.series_scanned, "
                 "anomalies = excluded.anomalies, errors = excluded.errors"),
            {"t": tenant_id, "n": scanned, "a": len(created), "e": errors})
    log.info("anomaly scan of tenant %s: %d series, %d new alerts in %.1fs", tenant_id,
             scanned, len(created), time.perf_counter() - started)
    return {"series": scanned, "alerts": len(created), "errors": errors}


def scan_consumer(engine: Engine, settings_of: Any) -> Consumer:
    """The consumer of :data:`SCAN_QUEUE`: a message of an interval slot the tenant was
    already scanned in (another process published it too), or a request made before the
    tenant's last scan finished (a burst of ``POST /anomalies/scan``), is skipped."""

    async def handle(message: Message) -> None:
        if message.tenant_id is None:
            return
        settings: MlSettings = settings_of()
        body = message.body if isinstance(message.body, dict) else {}
        covered_from: datetime | None = None
        slot = body.get("slot")
        if isinstance(slot, int) and not isinstance(slot, bool):
            covered_from = datetime.fromtimestamp(slot * settings.scan_interval_seconds, UTC)
        requested = body.get("requested_at")
        if isinstance(requested, str):
            try:
                covered_from = datetime.fromisoformat(requested)
            except ValueError:
                covered_from = None
        if covered_from is not None:
            async with engine.db.tenant_session(message.tenant_id) as session:
                scanned_at = await session.scalar(text("SELECT scanned_at FROM ml_scan_state"))
            if scanned_at is not None and scanned_at >= covered_from:
                return  # a scan finished after this was asked for: nothing new to do
        await scan_tenant(engine, message.tenant_id, settings)

    return Consumer(SCAN_QUEUE, handle, prefetch=1, max_retries=2, retry_delay=5.0)


async def tenants_to_scan(engine: Engine) -> list[str]:
    """Active tenants (ids) for which pulse-ml-monitor is enabled."""
    tenants = engine.core_tables["tenants"]
    async with engine.db.system_session() as session:
        ids = [str(row[0]) for row in await session.execute(
            select(tenants.c.id).where(tenants.c.active.is_(True)).order_by(tenants.c.id))]
    return [t for t in ids if await engine.capabilities.is_enabled(t, "ml_monitor")]


async def schedule_forever(engine: Engine, settings: MlSettings) -> None:
    """Queue each tenant's scan at the start of every interval slot (every process does;
    the consumer skips a slot already scanned). The first scans wait for the next slot's
    start, so a process that starts (a test, a deploy) does not scan every tenant at once."""
    interval = settings.scan_interval_seconds
    while True:
        next_slot = (time.time() // interval + 1) * interval
        await asyncio.sleep(max(0.0, next_slot - time.time()))
        slot = int(round(next_slot / interval))
        try:
            for tenant_id in await tenants_to_scan(engine):
                await engine.queue.publish(SCAN_QUEUE, {"slot": slot}, tenant_id=tenant_id,
                                           message_id=f"ml-scan-{tenant_id}-{slot}")
        except Exception:
            log.warning("could not queue the anomaly scans", exc_info=True)
