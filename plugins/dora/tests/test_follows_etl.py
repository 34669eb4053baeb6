"""DORA figures follow ETL loads: a committed load queues a refresh through data_loaded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dora_rows import Rows, forget_migration_refreshes
from pulse_dora.refresh import DORA_CACHE_TAG, DORA_FACTS
from pulse_etl.model import stable_id
from pulse_etl.plugin import service_for
from pulse_etl.service import load_batch
from pulse_etl.settings import EtlSettings
from quart import Quart
from sqlalchemy import text
from test_git_repository import build_repository
from test_metrics import ok

from pulse_engine import MetricQuery
from pulse_engine.app import PulseEngine
from pulse_engine.testing import (
    TenantFixture,
    downgrade_plugin,
    hold_messages,
    make_settings,
    make_tenant,
    running_app,
)

FINISHED = datetime(2026, 2, 10, 15, tzinfo=UTC)


def production_deployment(key: str, finished: datetime) -> dict[str, object]:
    """A successful production deployment of the api service."""
    return {
        "id": stable_id("deployments", "test", key),
        "source": "test",
        "external_id": key,
        "service": "api",
        "environment": "production",
        "result": "success",
        "started_at": finished - timedelta(minutes=10),
        "finished_at": finished,
        "sha": key * 40 if len(key) == 1 else key,
    }


async def summary_count(tenant: TenantFixture) -> int:
    """The deployment count of February 2026 in the summary."""
    response = await tenant.viewer_client.get(
        "/api/v1/metrics/dora/summary?start=2026-02-01T00:00:00Z&end=2026-03-01T00:00:00Z"
    )
    assert response.status_code == 200, await response.get_data()
    document = await response.get_json()
    return int(document["metrics"]["deployment_frequency"]["deployments"])


async def test_a_load_refreshes_the_figures(
    dora_app: Quart, engine: PulseEngine, dora_tenant: TenantFixture
) -> None:
    service = service_for(engine)
    assert await summary_count(dora_tenant) == 0
    await load_batch(
        service, dora_tenant.id, {"deployments": [production_deployment("a", FINISHED)]}, "test"
    )
    assert await engine.queue.wait_idle(30)
    assert await summary_count(dora_tenant) == 1  # cached answer dropped, facts refreshed
    await load_batch(
        service,
        dora_tenant.id,
        {"deployments": [production_deployment("b", FINISHED + timedelta(days=1))]},
        "test",
    )
    assert await engine.queue.wait_idle(30)
    assert await summary_count(dora_tenant) == 2


async def test_a_revert_makes_the_deployment_of_the_reverted_change_a_failure(
    dora_app: Quart, engine: PulseEngine, dora_tenant: TenantFixture
) -> None:
    service = service_for(engine)
    repository = stable_id("repositories", "test", "api")
    bad, fix = "b" * 40, "d" * 40

    def commit(sha: str, at: datetime, message: str) -> dict[str, object]:
        return {"id": stable_id("commits", repository, sha), "repository_id": repository,
                "sha": sha, "source": "test", "message": message, "authored_at": at,
                "committed_at": at}

    def deployment(key: str, sha: str, finished: datetime) -> dict[str, object]:
        return {**production_deployment(key, finished), "repository_id": repository, "sha": sha}

    shipped_bad = FINISHED - timedelta(hours=3)
    batch = {
        "repositories": [{"id": repository, "source": "test", "external_id": "api",
                          "name": "api", "service": "api"}],
        "commits": [commit(bad, shipped_bad - timedelta(hours=1), "Cache totals"),
                    commit(fix, FINISHED - timedelta(hours=1),
                           f'Revert "Cache totals"\n\nThis reverts commit {bad}.')],
        "commit_parents": [{"repository_id": repository, "sha": fix, "position": 0,
                            "parent_sha": bad}],
        "deployments": [deployment("first", bad, shipped_bad), deployment("second", fix, FINISHED)],
    }
    await load_batch(service, dora_tenant.id, batch, "test")
    assert await engine.queue.wait_idle(30)
    response = await dora_tenant.viewer_client.get(
        "/api/v1/metrics/dora/change_failure_rate/drilldown"
        "?start=2026-02-01T00:00:00Z&end=2026-03-01T00:00:00Z")
    body = await response.get_json()
    assert response.status_code == 200, body
    caused = {item["external_id"]: item["caused_failure"] for item in body["items"]}
    assert caused.get("first") is True and not caused.get("second"), body
    incident = next(item for item in body["items"] if item["external_id"] == "first")
    assert len(incident["incidents"]) == 1, incident
    summary = await dora_tenant.viewer_client.get(
        "/api/v1/metrics/dora/summary?start=2026-02-01T00:00:00Z&end=2026-03-01T00:00:00Z")
    rate = (await summary.get_json())["metrics"]["change_failure_rate"]
    assert (rate["failed_deployments"], rate["deployments"]) == (1, 2)


async def pending_requests(engine: PulseEngine, tenant_id: str) -> list[Any]:
    """The tenant's recorded refresh requests not done yet."""
    async with engine.db.tenant_session(tenant_id) as session:
        return list((await session.execute(text(
            "SELECT since, full_refresh FROM facts_refresh_requests WHERE facts = 'dora'"))).all())


async def test_a_refresh_request_is_recorded_until_a_refresh_covers_it(
    dora_app: Quart, engine: PulseEngine, dora_tenant: TenantFixture
) -> None:
    await DORA_FACTS.request(engine, dora_tenant.id, FINISHED)
    await DORA_FACTS.request(engine, dora_tenant.id, FINISHED - timedelta(days=2))
    # one request per tenant, reaching back to the earliest
    assert await engine.queue.wait_idle(30)
    assert await pending_requests(engine, dora_tenant.id) == []
    # a refresh from later than the request does not cover it
    async with engine.db.tenant_session(dora_tenant.id) as session:
        await session.execute(text(
            "INSERT INTO facts_refresh_requests (tenant_id, facts, requested_at, since) "
            "VALUES (:tenant, 'dora', clock_timestamp(), :since)"),
            {"tenant": dora_tenant.id, "since": FINISHED - timedelta(days=1)})
    await DORA_FACTS.refresh(engine, dora_tenant.id, FINISHED)
    assert len(await pending_requests(engine, dora_tenant.id)) == 1
    await DORA_FACTS.refresh(engine, dora_tenant.id, FINISHED - timedelta(days=1))
    assert await pending_requests(engine, dora_tenant.id) == []


async def test_a_refresh_lost_with_a_killed_server_runs_when_a_process_starts(
    dora_app: Quart, engine: PulseEngine, dora_tenant: TenantFixture,
    pulse_database_url: str, tmp_path: Path,
) -> None:
    rows = Rows(engine, dora_tenant.id)
    repository = await rows.repository("api")
    await rows.deployment(repository, "api", "2026-02-10 15:00")
    # what a load left behind when the server died with the refresh message in memory
    async with engine.db.tenant_session(dora_tenant.id) as session:
        await session.execute(text(
            "INSERT INTO facts_refresh_requests (tenant_id, facts, requested_at, since) "
            "VALUES (:tenant, 'dora', clock_timestamp(), :since)"),
            {"tenant": dora_tenant.id, "since": FINISHED - timedelta(days=1)})
    assert await summary_count(dora_tenant) == 0
    async with running_app(make_settings(pulse_database_url, tmp_path)) as restarted:
        assert await restarted.extensions["pulse"].queue.wait_idle(30)
    assert await pending_requests(engine, dora_tenant.id) == []
    await engine.cache.invalidate_tags(dora_tenant.id, [DORA_CACHE_TAG])  # the other process's
    assert await summary_count(dora_tenant) == 1


async def test_with_a_broker_only_stale_requests_are_queued_again_at_start(
    dora_app: Quart, engine: PulseEngine, dora_tenant: TenantFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = await make_tenant(dora_app)
    for tenant_id, age in ((dora_tenant.id, timedelta(hours=2)), (other.id, timedelta(0))):
        async with engine.db.tenant_session(tenant_id) as session:
            await session.execute(text(
                "INSERT INTO facts_refresh_requests (tenant_id, facts, requested_at, "
                "full_refresh) VALUES (:tenant, 'dora', clock_timestamp() - "
                "CAST(:age AS interval), true)"),
                {"tenant": tenant_id, "age": age})
    published: list[str | None] = []

    async def recording(queue: str, body: dict[str, Any], **kwargs: Any) -> str:
        published.append(kwargs.get("tenant_id"))
        return "id"

    # a broker keeps the fresh request's message: only the hour-old one looks lost
    monkeypatch.setattr(engine.queue, "survives_restart", True)
    monkeypatch.setattr(engine.queue, "publish", recording)
    await DORA_FACTS.requeue_pending(engine)
    assert dora_tenant.id in published and other.id not in published
    monkeypatch.setattr(engine.queue, "survives_restart", False)
    published.clear()
    await DORA_FACTS.requeue_pending(engine)
    assert {dora_tenant.id, other.id} <= set(published)


async def test_answers_say_a_refresh_is_pending_from_the_job_s_success_until_it_ran(
    dora_app: Quart, engine: PulseEngine, dora_tenant: TenantFixture, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ETL job reports ``succeeded``; until the refresh its load queued has run, every
    DORA answer says the facts it reads do not reflect that load yet."""
    window = {"start": "2024-01-01", "end": "2024-05-01"}
    await DORA_FACTS.refresh(engine, dora_tenant.id)
    before = await ok(dora_tenant, "summary", **window)
    assert before["freshness"]["refresh_pending"] is False
    assert before["freshness"]["data_until"] is not None
    # hold the refresh the load queues, as a busy queue would
    held = hold_messages(monkeypatch, engine, "dora.refresh")
    repo = tmp_path / "service"
    repo.mkdir()
    build_repository(repo)
    service = service_for(engine)
    monkeypatch.setattr(service, "settings", EtlSettings(git_roots=str(tmp_path)))
    job = await service.create_job(
        dora_tenant.id,
        {"connector": "git", "config": {"path": str(repo), "deploy_tags": r"^v\d+$"}},
        None, enqueue=False,
    )
    assert await service.run_job(dora_tenant.id, job["id"]) == "succeeded"
    assert held, "the load queued no refresh"

    pending = {"data_until": before["freshness"]["data_until"], "refresh_pending": True}
    during = await ok(dora_tenant, "summary", **window)
    assert during["freshness"] == pending
    assert during["metrics"]["deployment_frequency"]["sample_size"] == 0  # the facts before
    for path, query in (("deployment_frequency", {"interval": "month"}),
                        ("lead_time_for_changes/drilldown", {}),
                        ("lead-time/breakdown", {})):
        assert (await ok(dora_tenant, path, **window, **query))["freshness"] == pending, path
    definition = engine.metrics.get("dora.deployment_frequency")
    assert definition is not None
    metric_query = MetricQuery(dora_tenant.id, datetime(2024, 1, 1, tzinfo=UTC),
                               datetime(2024, 5, 1, tzinfo=UTC))
    computed = await definition.compute(engine, metric_query)
    assert computed.freshness.refresh_pending is True

    since = held[0]["since"]
    await DORA_FACTS.refresh(engine, dora_tenant.id,
                             datetime.fromisoformat(since) if since else None)
    after = await ok(dora_tenant, "summary", **window)
    assert after["freshness"]["refresh_pending"] is False
    assert datetime.fromisoformat(after["freshness"]["data_until"]) > datetime.fromisoformat(
        before["freshness"]["data_until"])
    assert after["metrics"]["deployment_frequency"]["sample_size"] == 9  # the nine tags
    assert (await definition.compute(engine, metric_query)).freshness.refresh_pending is False


async def test_the_incident_links_pulse_etl_and_dora_expose_agree(
    dora_app: Quart, engine: PulseEngine, dora_tenant: TenantFixture
) -> None:
    """With a 1-day link window (the old fixed rule of pulse-etl used 7 days): DORA links
    by the tenant's settings, and what ``incidents.deployment_id`` holds (only what the
    source named) is the same deployment."""
    response = await dora_tenant.admin_client.put(
        f"/api/v1/admin/tenants/{dora_tenant.id}/plugins/dora",
        json={"enabled": True, "config": {"incident_link_window_days": 1}},
    )
    assert response.status_code == 200, await response.get_json()
    repository = stable_id("repositories", "test", "api")
    shipped, unshipped = "c" * 40, "e" * 40

    def deployment(key: str, finished: datetime, environment: str = "production",
                   sha: str | None = None) -> dict[str, object]:
        return {**production_deployment(key, finished), "repository_id": repository,
                "environment": environment, "sha": sha or stable_id("sha", key)[:40]}

    def incident(key: str, created: datetime, reference: str | None) -> dict[str, object]:
        return {"id": stable_id("incidents", "test", key), "source": "test",
                "external_id": key, "service": "api", "created_at_source": created,
                "resolved_at": created + timedelta(hours=1), "deployment_ref": reference}

    day = timedelta(days=1)
    batch = {
        "repositories": [{"id": repository, "source": "test", "external_id": "api",
                          "name": "api", "service": "api"}],
        "commits": [{"id": stable_id("commits", repository, shipped), "repository_id": repository,
                     "sha": shipped, "source": "test", "message": "change",
                     "authored_at": FINISHED - day, "committed_at": FINISHED - day}],
        "deployments": [
            deployment("d1", FINISHED),
            deployment("d2", FINISHED + 5 * day),
            deployment("staging", FINISHED + 5 * day, "staging", shipped),
            deployment("d3", FINISHED + 6 * day, sha=shipped),
            deployment("d4", FINISHED + 8 * day, sha=unshipped),  # its commit is not loaded
        ],
        "incidents": [
            incident("soon-after", FINISHED + timedelta(hours=3), None),
            incident("named", FINISHED + 5 * day + timedelta(hours=1), "d2"),
            incident("by-sha", FINISHED + 5 * day + timedelta(hours=2), shipped),
            incident("by-deployed-sha", FINISHED + 8 * day + timedelta(hours=1), unshipped),
            incident("days-later", FINISHED + 3 * day, None),  # within 7 days, not 1
        ],
    }
    await load_batch(service_for(engine), dora_tenant.id, batch, "test")
    assert await engine.queue.wait_idle(30)
    drilldown = await ok(dora_tenant, "time_to_restore_service/drilldown",
                         start="2026-02-01", end="2026-03-01")
    dora = {item["external_id"]: (item["deployment_id"], item["link_reason"])
            for item in drilldown["items"]}
    async with engine.db.tenant_session(dora_tenant.id) as session:
        stored = {row.external_id: (row.deployment_id, row.link_reason) for row in (
            await session.execute(text(
                "SELECT external_id, deployment_id::text, link_reason FROM incidents")))}
    # pulse-etl holds what the source named, which is DORA's link, and nothing else
    assert {key: link for key, link in stored.items() if link != (None, None)} == {
        key: link for key, link in dora.items() if link[1] == "explicit"}
    ids = {key: stable_id("deployments", "test", key) for key in ("d1", "d2", "d3", "d4")}
    assert dora == {
        "soon-after": (ids["d1"], "latest_deployment"),
        "named": (ids["d2"], "explicit"),
        "by-sha": (ids["d3"], "explicit_commit"),
        "by-deployed-sha": (ids["d4"], "explicit_commit"),
        "days-later": (None, None),
    }
    failures = await ok(dora_tenant, "change_failure_rate", interval="all",
                        start="2026-02-01", end="2026-03-01")
    assert failures["points"][0]["failed_deployments"] == 4


async def test_the_link_migrations_apply_the_rule_to_stored_rows(
    dora_app: Quart, engine: PulseEngine, dora_tenant: TenantFixture
) -> None:
    """``etl_0003`` keeps only the links sources state (its downgrade recomputes the old
    fixed rule's), and ``dora_0004`` records a full refresh of every tenant with facts."""
    rows = Rows(engine, dora_tenant.id)
    repository = await rows.repository("api")
    named = await rows.deployment(repository, "api", "2026-02-10 15:00")
    await rows.incident("api", "2026-02-10 17:00", "2026-02-10 18:00", external_id="later")
    await rows.incident("api", "2026-02-10 19:00", "2026-02-10 20:00", external_id="named",
                        deployment_ref=named)
    await rows.refresh()

    async def links() -> dict[str, tuple[str | None, str | None]]:
        async with engine.db.tenant_session(dora_tenant.id) as session:
            return {row.external_id: (row.deployment_id, row.link_reason) for row in (
                await session.execute(text(
                    "SELECT external_id, deployment_id::text, link_reason FROM incidents")))}

    await downgrade_plugin(engine, "etl", "etl_0002")
    assert await links() == {"later": (named, "latest_deployment"), "named": (named, "explicit")}
    await engine.migrate()  # every head, and the tenancy rules on the tables re-created
    assert await links() == {"later": (None, None), "named": (named, "explicit")}

    assert await pending_requests(engine, dora_tenant.id) == []
    await downgrade_plugin(engine, "dora", "dora_0003")
    await engine.migrate()
    assert [tuple(row) for row in await pending_requests(engine, dora_tenant.id)] == [
        (None, True)]
    await DORA_FACTS.refresh(engine, dora_tenant.id)
    assert await pending_requests(engine, dora_tenant.id) == []
    await forget_migration_refreshes(engine)

