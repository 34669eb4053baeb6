"""Anomaly detection: the detector's precision and recall on injected anomalies, the
stateless detect endpoint (50,000 points), the alert list, acknowledge and resolve, and the
scheduled scan over the metric catalog (merging, the WebSocket event)."""

from __future__ import annotations

import asyncio
import json
import math
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pulse_ml_monitor import detector
from pulse_ml_monitor.config import MlSettings
from pulse_ml_monitor.scan import ALERT_EVENT, scan_tenant
from quart import Quart
from sqlalchemy import text

from pulse_engine import (
    Freshness,
    MetricComputation,
    MetricDefinition,
    MetricFilter,
    MetricQuery,
    MetricValue,
    hookimpl,
)
from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture, make_settings, make_tenant, running_app

API = "/api/v1/ml"
BENCH = Path(__file__).resolve().parents[3] / "bench"


async def ok(response: Any, status: int = 200) -> Any:
    """The JSON body of a response that must have ``status``."""
    body = await response.get_json()
    assert response.status_code == status, body
    return body


# --- the detector itself ----------------------------------------------------------------


def test_running_median_equals_the_naive_one() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=300)
    for window in (1, 5, 16, 31):
        fast = detector.running_median(values, window)
        if window // 16 <= 1:  # stride 1: every centre is computed exactly
            half = window // 2
            naive = [np.median(values[min(max(0, i - half), 300 - window):
                                      min(max(0, i - half), 300 - window) + window])
                     for i in range(300)]
            assert np.allclose(fast, naive)
        else:
            assert fast.shape == values.shape


def test_esd_critical_value_is_rosners() -> None:
    # Rosner's example in the NIST/SEMATECH handbook (1.3.5.17.3), n=54, alpha=0.05
    assert detector.esd_critical_value(54, 1, 0.05) == pytest.approx(3.158, abs=0.001)
    assert detector.esd_critical_value(54, 10, 0.05) == pytest.approx(3.085, abs=0.001)


def test_interval_and_periods_are_inferred() -> None:
    rng = np.random.default_rng(2)
    n = 24 * 7 * 6
    t = np.arange(n)
    values = 10 * np.sin(2 * np.pi * t / 24) + 3 * np.where((t // 24) % 7 >= 5, -1, 0.4) + \
        rng.normal(size=n)
    found = detector.detect(t * 3600.0, values)
    assert found.interval_seconds == 3600.0
    assert found.periods == (24, 168)
    noise = detector.detect(t * 60.0, rng.normal(size=n))
    assert noise.periods == ()
    daily = detector.detect(np.arange(120) * 86400.0,
                            np.tile([5, 6, 5, 6, 7, 1, 1], 18)[:120] + rng.normal(0, 0.2, 120))
    assert daily.periods == (7,)


def test_detector_finds_injected_anomalies_with_high_precision() -> None:
    """The benchmark's synthetic series (spikes, level shifts, trend changes, changed
    seasonal patterns), scored by events: the detector must beat the rolling z-score by
    the issue's margin, on a seed the detector was not tuned on."""
    sys.path.insert(0, str(BENCH))
    try:
        import ml_anomaly_bench as bench
    finally:
        sys.path.remove(str(BENCH))
    rng = np.random.default_rng(23)
    ours, baseline = bench.Score(), bench.Score()
    for _ in range(12):
        series = bench.make_series(rng, 60)
        found = detector.detect(np.arange(series.values.size) * 3600.0, series.values)
        ours.add(found.indices, series.windows, 3, 3)
        baseline.add(bench.rolling_zscore(series.values, 48, 3.0), series.windows, 3, 3)
    assert ours.precision >= 0.75, (ours.precision, ours.recall)
    assert ours.recall >= 0.85, (ours.precision, ours.recall)
    assert ours.f1 >= 1.3 * baseline.f1
    for kind, (hit, total) in ours.hits_by_kind.items():
        assert hit / total >= 0.75, kind


def test_tiny_intervals_do_not_overflow() -> None:
    values = np.arange(20, dtype=float)
    found = detector.detect(np.arange(20) * 1e-6, values, interval_seconds=1e-6)
    assert found.periods == ()
    with pytest.raises(detector.SeriesError):
        detector.detect(np.arange(20.0), values, interval_seconds=float("inf"))


def test_expected_range_holds_every_unflagged_point() -> None:
    rng = np.random.default_rng(4)
    values = rng.normal(50, 2, 500)
    values[100] = 90
    found = detector.detect(np.arange(500) * 600.0, values, periods=())
    assert found.indices == [100]
    inside = (values >= found.low) & (values <= found.high)
    assert not inside[100]
    # a point outside its range goes unreported only when it is alone and under the
    # lone-point bar
    for i in np.flatnonzero(~inside & ~found.anomalous):
        assert abs(found.score[i]) < detector.ISOLATED_FACTOR * found.threshold
        assert inside[max(0, i - 1)] and inside[min(499, i + 1)]


# --- the detect endpoint ----------------------------------------------------------------


async def test_detect_takes_50000_points_and_answers_the_injected_ones(
    ml_tenant: TenantFixture,
) -> None:
    rng = np.random.default_rng(8)
    n = 50_000
    start = datetime(2025, 1, 1, tzinfo=UTC)
    t = np.arange(n)
    values = 100 + 20 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 2, n)  # 5-minute data
    spikes = [7_000, 23_456, 41_000]
    for i in spikes:
        values[i] += 40
    series = [{"at": (start + timedelta(minutes=5 * int(i))).isoformat(),
               "value": round(float(v), 4)} for i, v in zip(t, values, strict=True)]
    rng.shuffle(series)  # any order
    body = json.dumps({"series": series}).encode()
    assert len(body) > 1024 * 1024  # above the global default
    response = await ml_tenant.viewer_client.post(
        f"{API}/anomalies/detect", data=body, headers={"Content-Type": "application/json"})
    found = await ok(response)
    assert found["points"] == n
    assert found["interval_seconds"] == 300
    assert found["periods"][0] == 288  # daily (a week of it repeats too)
    flagged = [datetime.fromisoformat(a["at"]) for a in found["anomalies"]]
    assert flagged == [start + timedelta(minutes=5 * i) for i in spikes]
    for anomaly in found["anomalies"]:
        low, high = anomaly["expected"]
        assert not low <= anomaly["value"] <= high
        assert anomaly["score"] > found["threshold"]


@pytest.mark.parametrize(("body", "status"), [
    ({"series": []}, 422),
    ({"series": [{"at": "2026-01-01T00:00:00Z", "value": 1}] * 3}, 422),
    ({"series": [{"at": "2026-01-01T00:00:00Z", "value": 1}] * 10}, 422),  # one time only
    ({"series": [{"at": "not a time", "value": 1}] * 10}, 422),
    ({"series": [{"at": "2026-01-01T00:00:00Z", "value": "NaN"}] * 10}, 422),
    ({"series": [{"at": "3000-01-01T00:00:00Z", "value": 1}] * 10}, 422),
    ({"series": [{"at": "2026-01-01T00:00:00Z", "value": 1, "x": 2}] * 10}, 422),
    ({"series": [{"at": f"2026-01-0{d}T00:00:00Z", "value": d} for d in range(1, 10)],
      "seasonality": [1]}, 422),
    ({"series": [{"at": f"2026-01-0{d}T00:00:00Z", "value": d} for d in range(1, 10)],
      "seasonality": "weekly"}, 422),
    ({"series": [{"at": f"2026-01-0{d}T00:00:00Z", "value": d} for d in range(1, 10)],
      "alpha": 2}, 422),
    # found by schemathesis: a subnormal interval overflowed the period inference (500)
    ({"series": [{"at": f"2026-01-0{d}T00:00:00Z", "value": d} for d in range(1, 10)],
      "interval_seconds": 5e-324}, 422),
])
async def test_bad_series_are_refused(
    ml_tenant: TenantFixture, body: dict[str, Any], status: int
) -> None:
    response = await ml_tenant.viewer_client.post(f"{API}/anomalies/detect", json=body)
    assert response.status_code == status, await response.get_json()
    assert response.content_type == "application/problem+json"


async def test_a_body_over_the_detect_limit_is_413(ml_tenant: TenantFixture) -> None:
    limit = MlSettings().detect_max_bytes
    body = b'{"series": [' + b" " * limit + b"]}"
    response = await ml_tenant.viewer_client.post(
        f"{API}/anomalies/detect", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    # other routes keep the global 1 MiB limit
    response = await ml_tenant.viewer_client.post(
        f"{API}/learning-memory", data=b'{"ai_output": "' + b"x" * 1_100_000 + b'"}',
        headers={"Content-Type": "application/json"})
    assert response.status_code == 413


# --- alerts and the scan -----------------------------------------------------------------


class CatalogProbe:
    """Three daily metrics of the catalog, computed from values a test sets per tenant."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str, str | None], dict[datetime, float]] = {}

    def compute_for(self, name: str) -> Any:
        async def compute(engine: Any, query: MetricQuery) -> MetricComputation:
            projects = query.filters.get("project")
            key = (query.tenant_id, name, projects[0] if projects else None)
            by_day = self.values.get(key, {})
            series = []
            day = query.start
            while day < query.end:
                value = by_day.get(day)
                series.append(MetricValue(start=day, end=day + timedelta(days=1), value=value,
                                          sample_size=0 if value is None else 1))
                day += timedelta(days=1)
            return MetricComputation(
                value=MetricValue(start=query.start, end=query.end, value=None, sample_size=0),
                series=series, freshness=Freshness(data_until=None, refresh_pending=False))
        return compute

    @hookimpl
    def register_metrics(self) -> list[MetricDefinition]:
        return [
            MetricDefinition(
                name=f"mlprobe.{name}", unit="count", kind="count",
                description="probe", higher_is_better=True, compute=self.compute_for(name),
                filters=(MetricFilter(name="project", description="p"),))
            for name in ("alpha", "beta", "gamma")
        ]


@pytest.fixture(scope="module")
def probe() -> CatalogProbe:
    """The catalog probe of the module's scan app."""
    return CatalogProbe()


@pytest.fixture(scope="module")
async def scan_app(
    pulse_database_url: str, tmp_path_factory: pytest.TempPathFactory, probe: CatalogProbe,
) -> AsyncIterator[Quart]:
    """An app with every installed plugin and the catalog probe."""
    settings = make_settings(pulse_database_url, tmp_path_factory.mktemp("mlscan"))
    async with running_app(settings, plugins={"mlprobe": probe}) as app:
        yield app


def daily_history(today: datetime, days: int, seed: int) -> dict[datetime, float]:
    """A weekly-seasonal daily series ending today."""
    rng = np.random.default_rng(seed)
    return {
        today - timedelta(days=d): float(
            20 + (8 if (today - timedelta(days=d)).weekday() < 5 else 0) + rng.normal(0, 1))
        for d in range(days)
    }


async def test_scan_flags_merges_and_publishes(
    scan_app: Quart, probe: CatalogProbe
) -> None:
    engine: PulseEngine = scan_app.extensions["pulse"]
    tenant = await make_tenant(scan_app)
    other = await make_tenant(scan_app)
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    alpha = daily_history(today, 120, 1)
    alpha[today - timedelta(days=2)] += 30  # a spike two days ago
    probe.values[(tenant.id, "alpha", None)] = alpha
    probe.values[(tenant.id, "beta", None)] = daily_history(today, 120, 2)
    probe.values[(tenant.id, "gamma", None)] = daily_history(today, 120, 3)
    old = daily_history(today, 120, 4)
    old[today - timedelta(days=60)] += 30  # long ago: history, not an alert
    probe.values[(other.id, "alpha", None)] = old
    settings = MlSettings()
    async with engine.events.subscribe(tenant.id) as subscription:
        result = await scan_tenant(engine, tenant.id, settings, now=now)
        event = await asyncio.wait_for(anext(aiter(subscription)), 10)
    assert result["alerts"] >= 1
    assert event.type == ALERT_EVENT and event.data["metric"] == "mlprobe.alpha"
    listed = await ok(await tenant.viewer_client.get(f"{API}/anomalies", query_string={
        "metric": "mlprobe.alpha"}))
    assert len(listed["items"]) == 1
    alert = listed["items"][0]
    assert alert["scope"] == "tenant" and alert["status"] == "open"
    assert alert["first_at"][:10] == (today - timedelta(days=2)).date().isoformat()
    assert alert["observed"] == pytest.approx(alpha[today - timedelta(days=2)])
    assert alert["observed"] > alert["expected"][1] and alert["direction"] == "above"
    # the anomaly goes on today: the same alert grows instead of a second one
    alpha[today - timedelta(days=1)] += 30
    alpha[today] += 35
    await scan_tenant(engine, tenant.id, settings, now=now)
    listed = await ok(await tenant.viewer_client.get(f"{API}/anomalies", query_string={
        "metric": "mlprobe.alpha"}))
    assert [item["id"] for item in listed["items"]] == [alert["id"]]
    assert listed["items"][0]["last_at"][:10] == today.date().isoformat()
    assert listed["items"][0]["points"] == 3
    # the other tenant: its old spike raises nothing, and it sees none of these alerts
    await scan_tenant(engine, other.id, settings, now=now)
    assert (await ok(await other.viewer_client.get(f"{API}/anomalies")))["items"] == []
    response = await other.analyst_client.post(
        f"{API}/anomalies/{alert['id']}/acknowledge", json={})
    assert response.status_code == 404
    # acknowledge, resolve; a resolved anomaly is not raised again by the next scan
    await ok(await tenant.viewer_client.post(f"{API}/anomalies/{alert['id']}/acknowledge",
                                             json={}), 403)
    acked = await ok(await tenant.analyst_client.post(
        f"{API}/anomalies/{alert['id']}/acknowledge", json={"note": "looking"}))
    assert acked["status"] == "acknowledged"
    assert acked["acknowledged_by"] == tenant.analyst.id and acked["note"] == "looking"
    resolved = await ok(await tenant.analyst_client.post(
        f"{API}/anomalies/{alert['id']}/resolve", json={}))
    assert resolved["status"] == "resolved" and resolved["resolved_at"] is not None
    again = await tenant.analyst_client.post(f"{API}/anomalies/{alert['id']}/resolve", json={})
    assert again.status_code == 409
    await scan_tenant(engine, tenant.id, settings, now=now)
    listed = await ok(await tenant.viewer_client.get(f"{API}/anomalies", query_string={
        "metric": "mlprobe.alpha"}))
    assert [item["id"] for item in listed["items"]] == [alert["id"]]
    bad = await tenant.viewer_client.get(f"{API}/anomalies", query_string={"status": "gone"})
    assert bad.status_code == 422
    async with engine.db.system_session() as session:
        state = (await session.execute(text(
            "SELECT series_scanned FROM ml_scan_state WHERE tenant_id = CAST(:t AS uuid)"),
            {"t": tenant.id})).scalar_one()
    assert state == 3  # the three probe metrics (the tenant has no data for any other)


async def test_scan_runs_over_the_queue(scan_app: Quart, probe: CatalogProbe) -> None:
    engine: PulseEngine = scan_app.extensions["pulse"]
    tenant = await make_tenant(scan_app)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    probe.values[(tenant.id, "alpha", None)] = daily_history(today, 60, 9)
    await ok(await tenant.analyst_client.post(f"{API}/anomalies/scan"), 403)
    await ok(await tenant.admin_client.post(f"{API}/anomalies/scan"), 202)
    for _ in range(100):
        async with engine.db.system_session() as session:
            scanned = await session.scalar(text(
                "SELECT series_scanned FROM ml_scan_state WHERE tenant_id = CAST(:t AS uuid)"),
                {"t": tenant.id})
        if scanned is not None:
            break
        await asyncio.sleep(0.2)
    assert scanned == 1
    health = await ok(await scan_app.test_client().get("/health/ml"))
    assert health["anomaly_job"]["tenants_scanned"] >= 1
    assert health["anomaly_job"]["last_scan_at"] is not None


def test_multivariate_day_is_found_by_the_forest() -> None:
    from pulse_ml_monitor.scan import multivariate_findings

    rng = np.random.default_rng(3)
    days = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=d) for d in range(120)]
    scores = {f"m{i}": {day: float(rng.normal(0, 1)) for day in days} for i in range(4)}
    odd = days[100]
    for i in range(4):
        scores[f"m{i}"][odd] = 2.8 if i % 2 else -2.8  # each within range, together odd
    found = multivariate_findings(days, scores)
    assert [f.peak_at for f in found] == [odd]
    assert math.isfinite(found[0].score)
