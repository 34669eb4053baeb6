"""DORA endpoints: validation, drill-down, GitLab shape, breakdown, caching, health."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from dora_rows import Rows, at
from pulse_etl import model
from test_metrics import JANUARY, core_scenario, get, ok

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("summary", {"start": "2024-02-01", "end": "2024-01-01"}, "end"),
        ("summary", {"start": "2020-01-01", "end": "2024-01-01"}, "start"),
        ("summary", {"start": "yesterday"}, "start"),
        ("summary", {"team": "nobody"}, "team"),
        ("summary", {"project": "nowhere"}, "project"),
        ("summary", {"repository": "nothing"}, "repository"),
        ("summary", {"tz": "Mars/Olympus"}, "tz"),
        ("summary", {"benchmark": "2019"}, "benchmark"),
        ("velocity", {}, "metric"),
        ("velocity/drilldown", {}, "metric"),
        ("lead_time_for_changes", {"interval": "hour"}, "interval"),
        ("deployment_frequency/drilldown", {"limit": "0"}, "limit"),
        ("gitlab", {"metric": "velocity"}, "metric"),
        ("gitlab", {"metric": "change_failure_rate", "interval": "weekly"}, "interval"),
        ("gitlab", {"metric": "change_failure_rate", "environment_tiers": "prod"},
         "environment_tiers"),
        ("gitlab", {"metric": "change_failure_rate", "start_date": "2024-02-01",
                    "end_date": "2024-01-01"}, "end_date"),
    ],
)
async def test_bad_parameters_are_named(
    dora_tenant: TenantFixture, path: str, query: dict[str, str], field: str
) -> None:
    response = await get(dora_tenant, path, **query)
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"
    body = await response.get_json()
    assert [error["field"] for error in body["errors"]] == [field]


async def test_tenant_max_window(dora_tenant: TenantFixture) -> None:
    response = await dora_tenant.admin_client.put(
        f"/api/v1/admin/tenants/{dora_tenant.id}/plugins/dora",
        json={"enabled": True, "config": {"max_window_days": 31}},
    )
    assert response.status_code == 200
    assert (await get(dora_tenant, "summary", **JANUARY)).status_code == 200
    too_long = await get(dora_tenant, "summary", start="2024-01-01", end="2024-03-01")
    assert too_long.status_code == 422


async def test_drilldown_pages(rows: Rows, dora_tenant: TenantFixture) -> None:
    scenario = await core_scenario(rows)
    first = await ok(dora_tenant, "deployment_frequency/drilldown", limit="2", **JANUARY)
    assert [item["id"] for item in first["items"]] == [scenario.d4, scenario.d3]
    assert first["items"][1]["caused_failure"] is True
    assert first["items"][1]["changes"] == 3
    second = await ok(dora_tenant, "deployment_frequency/drilldown", limit="2",
                      cursor=first["next_cursor"], **JANUARY)
    assert [item["id"] for item in second["items"]] == [scenario.d1]
    assert second["next_cursor"] is None

    failures = await ok(dora_tenant, "change_failure_rate/drilldown", **JANUARY)
    assert {item["id"] for item in failures["items"]} == {scenario.d1, scenario.d3}
    changes = await ok(dora_tenant, "lead-time/drilldown", **JANUARY)
    assert sorted(item["lead_seconds"] for item in changes["items"]) == [
        3600, 108000, 122400, 172800
    ]
    incidents = await ok(dora_tenant, "failed_deployment_recovery_time/drilldown", **JANUARY)
    reasons = {item["deployment_id"]: item["link_reason"] for item in incidents["items"]}
    assert reasons == {scenario.d1: "latest_deployment", scenario.d3: "explicit_commit"}
    rework = await ok(dora_tenant, "deployment_rework_rate/drilldown", **JANUARY)
    assert [item["ref"] for item in rework["items"]] == ["hotfix/login"]


async def test_gitlab_shape(rows: Rows, dora_tenant: TenantFixture) -> None:
    await core_scenario(rows)
    lead = await ok(dora_tenant, "gitlab", metric="lead_time_for_changes",
                    start_date="2024-01-01", end_date="2024-01-31", interval="all")
    assert lead == [{"date": "2024-01-01", "value": pytest.approx(115200)}]
    daily = await ok(dora_tenant, "gitlab", metric="deployment_frequency",
                     start_date="2024-01-01", end_date="2024-01-04", interval="daily")
    assert daily == [
        {"date": "2024-01-01", "value": 0}, {"date": "2024-01-02", "value": 1},
        {"date": "2024-01-03", "value": 0}, {"date": "2024-01-04", "value": 1},
    ]
    monthly = await ok(dora_tenant, "gitlab", metric="change_failure_rate",
                       start_date="2024-01-01", end_date="2024-01-31", interval="monthly")
    assert monthly == [{"date": "2024-01-01", "value": pytest.approx(2 / 3)}]
    staging = await ok(dora_tenant, "gitlab", metric="deployment_frequency",
                       start_date="2024-01-01", end_date="2024-01-31", interval="all",
                       environment_tiers="staging")
    assert staging == [{"date": "2024-01-01", "value": 1}]


async def test_lead_time_breakdown(rows: Rows, dora_tenant: TenantFixture) -> None:
    """PR #7: c2 authored Jan 2 10:00, opened 12:00, reviewed by someone else Jan 3 12:00,
    merged Jan 3 14:00 as m1, deployed with D3 Jan 4 10:00."""
    scenario = await core_scenario(rows)
    author = await rows.add(model.person_identities, person_id=await rows.add(
        model.people, display_name="Ada"), name="ada")
    reviewer = await rows.add(model.person_identities, person_id=await rows.add(
        model.people, display_name="Bob"), name="bob")
    merge_sha = f"{4:040x}"  # m1, the fourth commit of the scenario
    pull_request = await rows.add(
        model.pull_requests, repository_id=scenario.repository, number=7, state="merged",
        author_identity_id=author, created_at_source=at("2024-01-02 12:00"),
        merged_at=at("2024-01-03 14:00"), merge_commit_sha=merge_sha,
    )
    await rows.add(model.reviews, pull_request_id=pull_request, reviewer_identity_id=author,
                   state="commented", submitted_at=at("2024-01-02 13:00"))
    await rows.add(model.reviews, pull_request_id=pull_request, reviewer_identity_id=reviewer,
                   state="approved", submitted_at=at("2024-01-03 12:00"))
    await rows.refresh()
    body = await ok(dora_tenant, "lead-time/breakdown", interval="week", **JANUARY)
    week = body["points"][0]
    assert week["pull_requests"] == 1
    assert week["coding"]["median"] == pytest.approx(7200)
    assert week["pickup"]["median"] == pytest.approx(86400)
    assert week["review"]["median"] == pytest.approx(7200)
    assert week["deploy"]["median"] == pytest.approx(72000)
    assert body["points"][1]["pull_requests"] == 0
    assert body["points"][1]["coding"]["value"] is None


async def test_cached_until_new_data(
    rows: Rows, dora_tenant: TenantFixture, engine: PulseEngine
) -> None:
    scenario = await core_scenario(rows)
    first = await get(dora_tenant, "summary", **JANUARY)
    assert first.headers["X-Cache"] == "miss"
    second = await get(dora_tenant, "summary", **JANUARY)
    assert second.headers["X-Cache"] == "hit"
    assert await second.get_json() == await first.get_json()
    # pulse-etl drops the tenant's etl.data entries after a load
    await engine.cache.invalidate_tags(dora_tenant.id, model.DATA_CACHE_TAGS)
    assert (await get(dora_tenant, "summary", **JANUARY)).headers["X-Cache"] == "miss"
    # a refresh drops them too, and the new numbers show
    c5 = await rows.commit(scenario.repository, "2024-01-15 00:00")
    await rows.deployment(scenario.repository, "api", "2024-01-16 00:00", shas=(c5,))
    await rows.refresh(since=at("2024-01-16 00:00"))
    fresh = await get(dora_tenant, "summary", **JANUARY)
    assert fresh.headers["X-Cache"] == "miss"
    assert (await fresh.get_json())["metrics"]["deployment_frequency"]["value"] == 4


async def test_refresh_through_the_queue(
    rows: Rows, dora_tenant: TenantFixture, engine: PulseEngine
) -> None:
    repository = await rows.repository("queue")
    await rows.deployment(repository, "queue", "2024-01-05 00:00")
    await engine.queue.publish("dora.refresh", {"since": None}, tenant_id=dora_tenant.id)
    for _ in range(100):
        body = await ok(dora_tenant, "deployment_frequency", interval="all", **JANUARY)
        if body["points"][0]["sample_size"] == 1:
            break
        await engine.cache.invalidate_tags(dora_tenant.id, ["dora.data"])
        await asyncio.sleep(0.05)
    assert body["points"][0]["sample_size"] == 1


async def test_health_reports_counts_only(
    rows: Rows, dora_tenant: TenantFixture, engine: PulseEngine
) -> None:
    repository = await rows.repository("lonely")
    await rows.deployment(repository, "lonely", "2020-01-01 00:00", environment="live")
    await rows.refresh()
    document = await engine.health.plugin_health("dora")
    checks = document["checks"]
    assert checks["configuration"]["status"] == "degraded"
    assert checks["configuration"]["tenants_without_production_environment"] >= 1
    assert checks["freshness"]["status"] == "healthy"
    assert dora_tenant.id not in str(document)



async def all_pages(tenant: TenantFixture, path: str, limit: int) -> list[dict[str, Any]]:
    """Every item of a drill-down, page by page."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(50):
        query = {"limit": str(limit), **JANUARY, **({"cursor": cursor} if cursor else {})}
        body = await ok(tenant, path, **query)
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the pages never end")


@pytest.mark.parametrize(
    ("path", "time"),
    [("lead-time/drilldown", "deployed_at"), ("deployment_frequency/drilldown", "finished_at"),
     ("time_to_restore_service/drilldown", "resolved_at")],
)
async def test_drilldown_pages_cover_every_row_once_newest_first(
    rows: Rows, dora_tenant: TenantFixture, path: str, time: str
) -> None:
    """Changes shipped together share their deployment's time: pages of one row still
    cover each once, in the order of the single page."""
    await core_scenario(rows)
    whole = (await ok(dora_tenant, path, limit="200", **JANUARY))["items"]
    assert len(whole) >= 3
    assert await all_pages(dora_tenant, path, 1) == whole
    assert await all_pages(dora_tenant, path, 2) == whole
    times = [item[time] for item in whole]
    assert times == sorted(times, reverse=True)


async def test_a_cursor_of_another_kind_of_row_is_refused(
    rows: Rows, dora_tenant: TenantFixture
) -> None:
    await core_scenario(rows)
    deployments = await ok(dora_tenant, "deployment_frequency/drilldown", limit="1", **JANUARY)
    changes = await get(dora_tenant, "lead-time/drilldown", cursor=deployments["next_cursor"],
                        **JANUARY)
    assert changes.status_code == 400
    first = await ok(dora_tenant, "lead-time/drilldown", limit="1", **JANUARY)
    wrong = await get(dora_tenant, "deployment_frequency/drilldown",
                      cursor=first["next_cursor"], **JANUARY)
    assert wrong.status_code == 400


async def test_settings_are_read_per_engine(
    pulse_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pulse_dora.plugin import settings_for

    from pulse_engine.testing import make_settings, running_app

    ttls = []
    for ttl in ("11", "22"):
        monkeypatch.setenv("PULSE_DORA_CACHE_TTL_SECONDS", ttl)
        async with running_app(make_settings(pulse_database_url, tmp_path / ttl)) as app:
            engine = app.extensions["pulse"]
            ttls.append((settings_for(engine).cache_ttl_seconds,
                         engine.response_cache.policies["dora.summary"].ttl))
    assert ttls == [(11.0, 11.0), (22.0, 22.0)]
