"""DORA metrics over hand-computed fixtures, through the HTTP API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from dora_rows import Rows, at, forget_migration_refreshes

from pulse_engine.testing import TenantFixture, downgrade_plugin

BASE = "/api/v1/metrics/dora"
JANUARY = {"start": "2024-01-01", "end": "2024-02-01"}


@dataclass
class Scenario:
    """The ids of the core scenario's rows."""

    project: str
    team: str
    repository: str
    d1: str
    d2: str
    d3: str
    d4: str
    c3: str


async def core_scenario(rows: Rows, *, incidents: bool = True) -> Scenario:
    """One service ``api`` in January 2024 (UTC).

    Production deployments: D1 (success, Jan 2 16:00, ships c1), D2 (failure, Jan 4 09:00),
    D3 (success, Jan 4 10:00, ships c2, c3 and merge commit m1), D4 (success, Jan 10 10:00,
    ref hotfix/login, ships c4). A staging deployment shipped c1 on Jan 1 (not production).
    Lead times: c1 30 h, c2 48 h, c3 34 h, c4 1 h (m1 is a merge commit: not counted).
    Incidents: I1 Jan 2 17:00-19:00 (implicit link to D1), I2 Jan 20 00:00-01:00 (D4 is
    9.6 days before: unlinked with the 7-day window), I3 Jan 11 00:00-06:00 naming c3's
    SHA (explicit link to D3, though D4 is the latest deployment before it).
    """
    project = await rows.project("payments")
    team = await rows.team("core", project)
    repository = await rows.repository("api", project)
    c1 = await rows.commit(repository, "2024-01-01 10:00")
    c2 = await rows.commit(repository, "2024-01-02 10:00", pull_request_number=7)
    c3 = await rows.commit(repository, "2024-01-03 00:00")
    m1 = await rows.commit(repository, "2024-01-03 12:00", is_merge=True)
    c4 = await rows.commit(repository, "2024-01-10 09:00")
    await rows.deployment(repository, "api", "2024-01-01 12:00", environment="staging",
                          shas=(c1,))
    d1 = await rows.deployment(repository, "api", "2024-01-02 16:00", shas=(c1,))
    d2 = await rows.deployment(repository, "api", "2024-01-04 09:00", result="failure")
    d3 = await rows.deployment(repository, "api", "2024-01-04 10:00", shas=(c2, c3, m1))
    d4 = await rows.deployment(repository, "api", "2024-01-10 10:00", shas=(c4,),
                               ref="hotfix/login")
    if incidents:
        await rows.incident("api", "2024-01-02 17:00", "2024-01-02 19:00")
        await rows.incident("api", "2024-01-20 00:00", "2024-01-20 01:00")
        await rows.incident("api", "2024-01-11 00:00", "2024-01-11 06:00", deployment_ref=c3)
    await rows.refresh()
    return Scenario(project, team, repository, d1, d2, d3, d4, c3)


async def count_failed_deployments_as_failures(tenant: TenantFixture) -> None:
    """Turn on the tenant's ``failed_deployment_counts_as_failure`` setting."""
    response = await tenant.admin_client.put(
        f"/api/v1/admin/tenants/{tenant.id}/plugins/dora",
        json={"enabled": True, "config": {"failed_deployment_counts_as_failure": True}},
    )
    assert response.status_code == 200, await response.get_json()


async def get(tenant: TenantFixture, path: str, **query: Any) -> Any:
    """GET a DORA route as the tenant's viewer; returns the response."""
    return await tenant.viewer_client.get(f"{BASE}/{path}", query_string=query)


async def ok(tenant: TenantFixture, path: str, **query: Any) -> Any:
    """GET a DORA route and return its JSON, asserting a 200."""
    response = await get(tenant, path, **query)
    body = await response.get_json()
    assert response.status_code == 200, body
    return body


async def test_summary_of_every_metric(rows: Rows, dora_tenant: TenantFixture) -> None:
    await core_scenario(rows)
    body = await ok(dora_tenant, "summary", **JANUARY)
    metrics = body["metrics"]
    assert body["filters"]["environments"] == ["production"]

    frequency = metrics["deployment_frequency"]
    assert frequency["value"] == 3 and frequency["sample_size"] == 3
    assert frequency["deployment_days"] == 3
    assert frequency["per_day"] == pytest.approx(3 / 31)

    lead = metrics["lead_time_for_changes"]
    # 3600, 108000, 122400, 172800
    assert lead["sample_size"] == 4
    assert lead["median"] == pytest.approx(115200)
    assert lead["p75"] == pytest.approx(135000)
    assert lead["p90"] == pytest.approx(157680)
    assert lead["mean"] == pytest.approx(101700)
    assert lead["value"] == lead["median"]

    failure = metrics["change_failure_rate"]
    assert (failure["failed_deployments"], failure["deployments"]) == (2, 3)
    assert failure["value"] == pytest.approx(2 / 3)

    recovery = metrics["failed_deployment_recovery_time"]
    assert recovery["sample_size"] == 2
    assert recovery["median"] == pytest.approx(14400)

    restore = metrics["time_to_restore_service"]
    assert restore["sample_size"] == 3
    assert restore["median"] == pytest.approx(7200)
    assert restore["mean"] == pytest.approx(10800)

    rework = metrics["deployment_rework_rate"]
    assert (rework["rework_deployments"], rework["deployments"]) == (1, 3)


@pytest.mark.parametrize("tz", ["UTC", "America/New_York"])
async def test_summary_equals_the_whole_window_series(
    rows: Rows, dora_tenant: TenantFixture, tz: str
) -> None:
    await core_scenario(rows)
    window = {"start": "2024-01-02", "end": "2024-03-15", "tz": tz}  # spans a DST change
    body = await ok(dora_tenant, "summary", **window)
    for metric, summary in body["metrics"].items():
        series = await ok(dora_tenant, metric, interval="all", **window)
        point = series["points"][0]
        assert {k: v for k, v in point.items() if k not in ("start", "end")} == {
            k: v for k, v in summary.items()
            if k not in ("unit", "previous", "change", "performance")}, metric


async def test_performance_levels_and_previous_window(
    rows: Rows, dora_tenant: TenantFixture
) -> None:
    await core_scenario(rows)
    body = await ok(dora_tenant, "summary", **JANUARY)
    metrics = body["metrics"]
    assert body["benchmark"] == "2024"
    assert body["previous_window"]["start"] == "2023-12-01T00:00:00Z"
    # median lead time 32 h: 1 day - 1 week is "high"
    assert metrics["lead_time_for_changes"]["performance"]["level"] == "high"
    # 2/3 is nearest the 2024 "low" cluster value (40%)
    failure = metrics["change_failure_rate"]["performance"]
    assert failure["level"] == "low" and failure["method"] == "nearest-cluster"
    # deployment days per week over January: weeks have 2, 1, 0, 0, 0 (and Jan 29-31: 0)
    frequency = metrics["deployment_frequency"]["performance"]
    assert frequency["median_deployment_days_per_week"] == 0
    assert frequency["median_deployment_days_per_month"] == 3
    assert frequency["level"] == "medium"
    assert metrics["time_to_restore_service"]["performance"]["level"] == "high"
    assert metrics["deployment_rework_rate"]["performance"]["level"] is None
    # nothing in December: no change can be computed
    assert metrics["deployment_frequency"]["previous"]["sample_size"] == 0
    assert metrics["deployment_frequency"]["change"] == {"absolute": None, "relative": None}

    body2021 = await ok(dora_tenant, "summary", benchmark="2021", **JANUARY)
    failure2021 = body2021["metrics"]["change_failure_rate"]["performance"]
    assert failure2021 == {"level": "low", "method": "threshold"}
    assert body2021["metrics"]["lead_time_for_changes"]["performance"]["level"] == "high"


async def test_change_vs_previous_window(rows: Rows, dora_tenant: TenantFixture) -> None:
    await core_scenario(rows)
    body = await ok(dora_tenant, "summary", start="2024-01-04", end="2024-01-16")
    frequency = body["metrics"]["deployment_frequency"]
    # Jan 4-16: D3, D4; Dec 23 - Jan 4: D1
    assert frequency["value"] == 2 and frequency["previous"]["value"] == 1
    assert frequency["change"] == {"absolute": 1, "relative": 1.0}


async def test_daily_series_has_empty_buckets(rows: Rows, dora_tenant: TenantFixture) -> None:
    await core_scenario(rows)
    body = await ok(
        dora_tenant, "deployment_frequency", start="2024-01-01", end="2024-01-11", interval="day"
    )
    points = body["points"]
    assert len(points) == 10
    counts = {point["start"][:10]: point["sample_size"] for point in points}
    assert counts["2024-01-02"] == 1 and counts["2024-01-04"] == 1 and counts["2024-01-10"] == 1
    empty = [point for point in points if point["start"].startswith("2024-01-05")][0]
    assert empty["value"] is None and empty["sample_size"] == 0
    assert points[0]["start"] == "2024-01-01T00:00:00Z"
    assert points[0]["end"] == "2024-01-02T00:00:00Z"


async def test_weekly_and_monthly_series(rows: Rows, dora_tenant: TenantFixture) -> None:
    await core_scenario(rows)
    weekly = await ok(dora_tenant, "lead_time_for_changes", interval="week", **JANUARY)
    sizes = [point["sample_size"] for point in weekly["points"]]
    # weeks from Monday Jan 1: c1, c2, c3 | c4 | - | - | Jan 29 - Feb 1 (clipped)
    assert sizes == [3, 1, 0, 0, 0]
    assert weekly["points"][0]["median"] == pytest.approx(122400)
    assert weekly["points"][-1]["end"] == "2024-02-01T00:00:00Z"

    monthly = await ok(dora_tenant, "change-failure-rate", interval="month",
                       start="2023-12-15", end="2024-02-15")
    assert [point["start"] for point in monthly["points"]] == [
        "2023-12-15T00:00:00Z", "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"
    ]
    assert [point["sample_size"] for point in monthly["points"]] == [0, 3, 0]

    whole = await ok(dora_tenant, "time_to_restore_service", interval="all", **JANUARY)
    assert len(whole["points"]) == 1 and whole["points"][0]["sample_size"] == 3


async def test_empty_window(rows: Rows, dora_tenant: TenantFixture) -> None:
    await core_scenario(rows)
    body = await ok(dora_tenant, "summary", start="2025-01-01", end="2025-02-01")
    for metric, document in body["metrics"].items():
        assert document["value"] is None, metric
        assert document["sample_size"] == 0, metric
    series = await ok(dora_tenant, "lead_time_for_changes", start="2025-01-01",
                      end="2025-01-08", interval="day")
    assert [point["sample_size"] for point in series["points"]] == [0] * 7


async def test_time_zone_buckets(rows: Rows, dora_tenant: TenantFixture) -> None:
    await core_scenario(rows)
    # D1 finished Jan 2 16:00 UTC = Jan 3 01:00 in Tokyo; D3 Jan 4 10:00 UTC = 19:00 Tokyo
    body = await ok(dora_tenant, "deployment_frequency", start="2024-01-01", end="2024-01-06",
                    interval="day", tz="Asia/Tokyo")
    counts = {point["start"]: point["sample_size"] for point in body["points"]}
    assert counts["2024-01-03T00:00:00+09:00"] == 1
    assert counts["2024-01-02T00:00:00+09:00"] == 0
    assert counts["2024-01-04T00:00:00+09:00"] == 1
    assert body["window"]["start"] == "2023-12-31T15:00:00Z"


async def test_dst_days_are_calendar_days(rows: Rows, dora_tenant: TenantFixture) -> None:
    repository = await rows.repository("web")
    # New York springs forward on 2024-03-10 at 02:00: that day has 23 hours
    for finished in ("2024-03-10 04:30", "2024-03-10 05:30", "2024-03-11 03:30",
                     "2024-03-11 04:30"):
        await rows.deployment(repository, "web", finished)
    await rows.refresh()
    body = await ok(dora_tenant, "deployment_frequency", start="2024-03-09", end="2024-03-12",
                    interval="day", tz="America/New_York")
    points = body["points"]
    assert [point["start"] for point in points] == [
        "2024-03-09T00:00:00-05:00", "2024-03-10T00:00:00-05:00", "2024-03-11T00:00:00-04:00"
    ]
    assert points[1]["end"] == "2024-03-11T00:00:00-04:00"
    assert [point["sample_size"] for point in points] == [1, 2, 1]
    assert points[1]["per_day"] == 2
    # and autumn: 2024-11-03 has 25 hours; one deployment at 23:30 EST that day
    await rows.deployment(repository, "web", "2024-11-04 04:30")
    await rows.refresh()
    autumn = await ok(dora_tenant, "deployment_frequency", start="2024-11-03",
                      end="2024-11-05", interval="day", tz="America/New_York")
    assert [point["sample_size"] for point in autumn["points"]] == [1, 0]
    assert autumn["points"][0]["end"] == "2024-11-04T00:00:00-05:00"


async def test_filters_by_team_project_repository(
    rows: Rows, dora_tenant: TenantFixture
) -> None:
    scenario = await core_scenario(rows)
    other_project = await rows.project("search")
    await rows.team("finders", other_project)
    other_repository = await rows.repository("indexer", other_project)
    await rows.deployment(other_repository, "indexer", "2024-01-05 10:00")
    await rows.refresh()
    everything = await ok(dora_tenant, "deployment_frequency", interval="all", **JANUARY)
    assert everything["points"][0]["sample_size"] == 4
    for query in ({"team": "core"}, {"team": scenario.team}, {"project": "payments"},
                  {"repository": "api"}, {"project": scenario.project}):
        body = await ok(dora_tenant, "deployment_frequency", interval="all", **JANUARY, **query)
        assert body["points"][0]["sample_size"] == 3, query
    finders = await ok(dora_tenant, "deployment_frequency", interval="all", team="finders",
                       **JANUARY)
    assert finders["points"][0]["sample_size"] == 1
    staging = await ok(dora_tenant, "deployment_frequency", interval="all",
                       environment="staging", **JANUARY)
    assert staging["points"][0]["sample_size"] == 1
    assert staging["filters"]["environment_source"] == "parameter"


async def test_failed_deployment_counts_as_failure_setting(
    rows: Rows, dora_tenant: TenantFixture
) -> None:
    await core_scenario(rows, incidents=False)
    body = await ok(dora_tenant, "change_failure_rate", interval="all", **JANUARY)
    assert body["points"][0]["failed_deployments"] == 0
    await count_failed_deployments_as_failures(dora_tenant)
    await rows.refresh()
    body = await ok(dora_tenant, "change_failure_rate", interval="all", **JANUARY)
    # D1 is followed by the failed D2; D3 by the successful D4
    assert body["points"][0]["failed_deployments"] == 1
    assert body["points"][0]["value"] == pytest.approx(1 / 3)


async def test_incident_link_window_setting(rows: Rows, dora_tenant: TenantFixture) -> None:
    await core_scenario(rows)
    response = await dora_tenant.admin_client.put(
        f"/api/v1/admin/tenants/{dora_tenant.id}/plugins/dora",
        json={"enabled": True, "config": {"incident_link_window_days": 10}},
    )
    assert response.status_code == 200, await response.get_json()
    await rows.refresh()
    body = await ok(dora_tenant, "summary", **JANUARY)
    # I2 (9.6 days after D4) is now linked to D4: every deployment failed
    failure = body["metrics"]["change_failure_rate"]
    assert (failure["failed_deployments"], failure["deployments"]) == (3, 3)
    assert body["metrics"]["failed_deployment_recovery_time"]["sample_size"] == 3


async def test_config_schema_refuses_bad_values(dora_tenant: TenantFixture) -> None:
    response = await dora_tenant.admin_client.put(
        f"/api/v1/admin/tenants/{dora_tenant.id}/plugins/dora",
        json={"enabled": True, "config": {"hotfix_branch_patterns": ["("],
                                          "incident_link_window_days": 0}},
    )
    assert response.status_code == 422
    fields = {error["field"] for error in (await response.get_json())["errors"]}
    assert fields == {"config.hotfix_branch_patterns", "config.incident_link_window_days"}


async def test_multiple_production_environments(
    rows: Rows, dora_tenant: TenantFixture
) -> None:
    response = await dora_tenant.admin_client.put(
        f"/api/v1/admin/tenants/{dora_tenant.id}/plugins/dora",
        json={"enabled": True, "config": {"production_environments": [],
                                          "production_environment_patterns": ["^prod-"]}},
    )
    assert response.status_code == 200
    repository = await rows.repository("shop")
    x = await rows.commit(repository, "2024-05-01 00:00")
    y = await rows.commit(repository, "2024-05-01 00:00")
    await rows.deployment(repository, "shop", "2024-05-01 01:00", environment="prod-eu",
                          shas=(x,))
    await rows.deployment(repository, "shop", "2024-05-01 03:00", environment="prod-us",
                          shas=(x,))
    await rows.deployment(repository, "shop", "2024-05-01 05:00", environment="prod-us",
                          shas=(y,))
    await rows.deployment(repository, "shop", "2024-05-01 00:30", environment="production-like",
                          shas=(x, y))
    await rows.refresh()
    body = await ok(dora_tenant, "summary", start="2024-05-01", end="2024-05-02")
    assert body["filters"]["environments"] == ["prod-eu", "prod-us"]
    assert body["metrics"]["deployment_frequency"]["sample_size"] == 3
    lead = body["metrics"]["lead_time_for_changes"]
    # x counts once, at prod-eu (1 h); y at prod-us (5 h)
    assert lead["sample_size"] == 2
    assert lead["median"] == pytest.approx(10800)


async def test_rework_by_pull_request_and_incident_reference(
    rows: Rows, dora_tenant: TenantFixture
) -> None:
    from pulse_etl import model

    repository = await rows.repository("cart")
    fix = await rows.commit(repository, "2024-06-01 00:00", is_merge=True)
    await rows.add(model.pull_requests, repository_id=repository, number=5, state="merged",
                   head_ref="hotfix/cart-total", merge_commit_sha=fix)
    await rows.deployment(repository, "cart", "2024-06-01 02:00", shas=(fix,))
    await rows.incident("cart", "2024-06-02 00:00", "2024-06-02 05:00", external_id="INC-42")
    ref = await rows.commit(repository, "2024-06-02 01:00", message="Fix INC-42 totals")
    await rows.deployment(repository, "cart", "2024-06-02 02:00", shas=(ref,))
    plain = await rows.commit(repository, "2024-06-03 01:00", message="INC-42 follow-up")
    await rows.deployment(repository, "cart", "2024-06-03 02:00", shas=(plain,))
    await rows.refresh()
    body = await ok(dora_tenant, "deployment_rework_rate", interval="all", start="2024-06-01",
                    end="2024-06-04")
    point = body["points"][0]
    # the third deployment names INC-42 after it was resolved: not rework
    assert (point["rework_deployments"], point["deployments"]) == (2, 3)


async def test_rework_by_reference_to_an_incident_still_open(
    rows: Rows, dora_tenant: TenantFixture
) -> None:
    repository = await rows.repository("cart")
    early = await rows.commit(repository, "2024-06-01 00:00", message="Prepare INC-77")
    await rows.deployment(repository, "cart", "2024-06-01 02:00", shas=(early,))
    await rows.incident("cart", "2024-06-02 00:00", None, external_id="INC-77")
    named = await rows.commit(repository, "2024-06-09 01:00", message="Mitigate INC-77")
    await rows.deployment(repository, "cart", "2024-06-09 02:00", shas=(named,))
    await rows.refresh()
    body = await ok(dora_tenant, "deployment_rework_rate", interval="all", start="2024-06-01",
                    end="2024-06-10")
    point = body["points"][0]
    # a week later the unresolved incident is still open: naming it is rework; naming it
    # before it started is not
    assert (point["rework_deployments"], point["deployments"]) == (1, 2)
    incremental = await rows.refresh(since=at("2024-06-09 00:00"))
    assert incremental["rework"] == 1


async def test_incremental_refresh_equals_full(rows: Rows, dora_tenant: TenantFixture) -> None:
    scenario = await core_scenario(rows)
    c5 = await rows.commit(scenario.repository, "2024-01-15 00:00")
    await rows.deployment(scenario.repository, "api", "2024-01-16 00:00", shas=(c5,))
    await rows.incident("api", "2024-01-17 00:00", "2024-01-17 02:00")
    stats = await rows.refresh(since=at("2024-01-16 00:00"))
    assert stats["dora_deployments"] == 1 and stats["dora_changes"] == 1
    incremental = await ok(dora_tenant, "summary", **JANUARY)
    await rows.refresh()
    full = await ok(dora_tenant, "summary", **JANUARY)
    assert incremental.pop("freshness") != full.pop("freshness")  # a later refresh
    assert incremental == full
    assert full["metrics"]["deployment_frequency"]["sample_size"] == 4
    assert full["metrics"]["change_failure_rate"]["failed_deployments"] == 3


async def _failure_flags(rows: Rows) -> dict[str, tuple[bool, bool]]:
    from sqlalchemy import text

    async with rows.engine.db.tenant_session(rows.tenant_id) as session:
        result = await session.execute(text(
            "SELECT deployment_id::text, has_incident, followed_by_failure "
            "FROM dora_deployments WHERE environment = 'production'"))
        return {deployment: (linked, followed) for deployment, linked, followed in result.all()}


async def test_incremental_refresh_rechecks_failure_flags_of_older_deployments(
    rows: Rows, dora_tenant: TenantFixture
) -> None:
    await count_failed_deployments_as_failures(dora_tenant)
    scenario = await core_scenario(rows, incidents=False)
    await rows.incident("api", "2024-01-12 00:00", "2024-01-12 01:00")
    await rows.refresh()
    assert (await _failure_flags(rows))[scenario.d4] == (True, False)
    # a later load, from Jan 11: a failed deployment right after D4, then a successful
    # one that the incident (Jan 12) now links to instead of D4
    d6 = await rows.deployment(scenario.repository, "api", "2024-01-11 00:00",
                               result="failure")
    c5 = await rows.commit(scenario.repository, "2024-01-11 01:00")
    d5 = await rows.deployment(scenario.repository, "api", "2024-01-11 06:00", shas=(c5,))
    await rows.refresh(since=at("2024-01-11 00:00"))
    incremental = await _failure_flags(rows)
    assert (incremental[scenario.d4], incremental[d6], incremental[d5]) == (
        (False, True), (False, False), (True, False))
    assert incremental[scenario.d1] == (False, True)  # followed by the failed D2
    body = await ok(dora_tenant, "change_failure_rate", interval="all", **JANUARY)
    # D1 and D4 are followed by failures, D5 has the incident; D3 is clean
    assert (body["points"][0]["failed_deployments"], body["points"][0]["deployments"]) == (3, 4)
    await rows.refresh()
    assert await _failure_flags(rows) == incremental


async def test_a_refresh_that_rewrites_many_rows_analyzes_and_vacuums_what_it_wrote(
    rows: Rows, dora_tenant: TenantFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pulse_engine import facts

    analyzed: list[str] = []
    real = facts.analyze_tables

    async def recording(session: Any, tables: list[str]) -> list[str]:
        analyzed.extend(await real(session, tables))
        return list(tables)

    async def last_vacuum() -> Any:
        from sqlalchemy import text

        async with rows.engine.db.system_session() as session:
            return await session.scalar(text(
                "SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'dora_changes'"))

    before = await last_vacuum()
    monkeypatch.setattr(facts, "REWRITTEN_ROWS", 1)
    monkeypatch.setattr(facts, "analyze_tables", recording)
    await core_scenario(rows)
    assert analyzed == ["dora_deployments", "dora_changes", "dora_incidents"]
    vacuumed = await last_vacuum()  # after the commit, so index-only scans skip the heap
    assert vacuumed is not None and vacuumed != before
    body = await ok(dora_tenant, "summary", **JANUARY)
    assert body["metrics"]["change_failure_rate"]["failed_deployments"] == 2


async def test_migration_backfills_the_failure_flags_as_the_refresh_computes_them(
    rows: Rows, dora_tenant: TenantFixture
) -> None:
    await count_failed_deployments_as_failures(dora_tenant)
    scenario = await core_scenario(rows)
    # a failed deployment finished at the same moment as D4: a tie in the next-deployment order
    await rows.deployment(scenario.repository, "api", "2024-01-10 10:00", result="failure")
    await rows.refresh()
    computed = await _failure_flags(rows)
    assert any(linked for linked, _ in computed.values())
    assert any(followed for _, followed in computed.values())
    engine = rows.engine

    await downgrade_plugin(engine, "dora", "dora_0001")
    await engine.migrate()  # every head, and the tenancy rules on the tables re-created
    await forget_migration_refreshes(engine)
    assert await _failure_flags(rows) == computed
