"""The jira connector against recorded Jira Cloud REST v3 (and Data Center REST v2)
responses, replayed by a local HTTP server: counts, the enhanced search's token pagination
and approximate count, Data Center's offset pagination, changelog pages, sprints, story
points, incidents, rate limits, retries, the incremental cursor and bad configuration."""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from pulse_etl import model
from pulse_etl.connectors.jira import JiraConnector
from pulse_etl.job_run import JobRun
from pulse_etl.service import EtlService
from sqlalchemy import func, select

from pulse_engine.testing import TenantFixture, create_tenant

from .replay import NOW, FakeTime, ReplayServer, install_fake_time, load_recording

SEARCH = "/rest/api/3/search/jql"
TOKENS = [exchange["request"]["query"]["nextPageToken"]
          for exchange in reversed(load_recording("jira", "search"))
          if "nextPageToken" in exchange["request"].get("query", {})]
EXPECTED = {"projects": 2, "work_items": 5, "work_item_status_changes": 5, "sprints": 2,
            "incidents": 1, "person_identities": 2}


@pytest.fixture
def fake_time(etl: EtlService, monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    connector = etl.connectors.all()["jira"]
    assert isinstance(connector, JiraConnector)
    return install_fake_time(connector, monkeypatch)


@pytest.fixture
async def jira() -> AsyncIterator[ReplayServer]:
    async with ReplayServer(load_recording("jira", "search")) as server:
        yield server


def config(server: ReplayServer, **extra: Any) -> dict[str, Any]:
    return {"base_url": server.url, "email": "ada@example.test", "api_token": "atl-token",
            "projects": ["OPS", "WEB"], **extra}


async def run(etl: EtlService, tenant_id: str, body: dict[str, Any]) -> dict[str, Any]:
    job = await etl.create_job(tenant_id, {"connector": "jira", **body}, None, enqueue=False)
    await asyncio.wait_for(etl.run_job(tenant_id, job["id"]), 60)
    return await etl.get_job(tenant_id, job["id"])


async def counts(etl: EtlService, tenant_id: str) -> dict[str, int]:
    async with etl.engine.db.tenant_session(tenant_id) as session:
        return {name: int(await session.scalar(
            select(func.count()).select_from(model.metadata.tables[name])) or 0)
            for name in EXPECTED}


def bound(updated: str) -> str:
    """The JQL bound the connector derives from a cursor at ``updated`` (fake clock)."""
    since = datetime.fromisoformat(updated) - timedelta(minutes=5)
    return f'updated >= "-{math.ceil((NOW - since.timestamp()) / 60)}m"'


async def test_full_sync_from_an_integration(etl: EtlService, etl_tenant: TenantFixture,
                                             jira: ReplayServer, fake_time: FakeTime) -> None:
    response = await etl_tenant.admin_client.post("/app/etl/integrations", json={
        "connector": "jira", "name": "jira", "config": config(jira)})
    integration = await response.get_json()
    assert response.status_code == 201, integration
    assert "atl-token" not in str(integration)
    job = await run(etl, etl_tenant.id, {"integration_id": integration["id"]})
    assert job["status"] == "succeeded", job
    assert await counts(etl, etl_tenant.id) == EXPECTED
    basic = "Basic " + base64.b64encode(b"ada@example.test:atl-token").decode()
    assert {seen.headers.get("authorization") for seen in jira.requests} == {basic}
    searches = [seen.query for seen in jira.requests if seen.path == SEARCH]
    assert [q.get("nextPageToken") for q in searches] == [None, TOKENS[0], TOKENS[1]]
    assert searches[0]["jql"] == 'project in ("OPS", "WEB") ORDER BY updated ASC, key ASC'
    assert searches[0]["expand"] == "changelog"
    assert "customfield_10016" in searches[0]["fields"].split(",")
    assert [seen.query["startAt"] for seen in jira.requests
            if seen.path == "/rest/api/3/issue/10012/changelog"] == ["0", "2"]

    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        items = {row.key: row for row in (await session.execute(select(model.work_items))).all()}
        sprints = {row.external_id: row for row in (await session.execute(
            select(model.sprints))).all()}
        incident = (await session.execute(select(model.incidents))).one()
        changes = (await session.execute(
            select(model.work_item_status_changes.c.to_status)
            .where(model.work_item_status_changes.c.work_item_id == items["WEB-2"].id)
            .order_by(model.work_item_status_changes.c.changed_at))).scalars().all()
        emails = set((await session.execute(select(model.people.c.email))).scalars())
    assert (items["WEB-1"].points, items["WEB-1"].sprint_id) == (5.0, sprints["38"].id)
    assert items["WEB-1"].status_category == "in_progress" and items["WEB-1"].type == "story"
    assert items["WEB-2"].type == "bug" and items["WEB-2"].status_category == "done"
    assert items["WEB-4"].sprint_id == sprints["38"].id  # the legacy sprint string
    assert items["WEB-3"].points is None and items["WEB-3"].assignee_identity_id is None
    assert changes == ["In Progress", "Done"]  # the third history came from the changelog API
    assert sprints["37"].state == "closed" and sprints["37"].completed_at is not None
    assert (incident.service, incident.severity) == ("checkout-service", "Highest")
    assert incident.deployment_ref == "7638417db6d59f3c431d3e1f261cc637155684cd"
    assert incident.resolved_at.isoformat() == "2024-06-03T13:30:00+00:00"
    assert incident.url.endswith("/browse/OPS-1")
    assert "ada@example.test" in emails


async def test_incremental_second_run(etl: EtlService, etl_tenant: TenantFixture,
                                      jira: ReplayServer, fake_time: FakeTime) -> None:
    first = await run(etl, etl_tenant.id, {"config": config(jira)})
    assert first["status"] == "succeeded", first
    jira.requests.clear()
    second = await run(etl, etl_tenant.id, {"config": config(jira)})
    assert second["status"] == "succeeded", second
    assert second["stats"] == {}
    [search] = [seen.query for seen in jira.requests if seen.path == SEARCH]
    assert bound("2024-06-08T09:00:00+00:00") in search["jql"]  # WEB-4, the newest update


async def test_rate_limit_and_server_errors_then_success(
        etl: EtlService, etl_tenant: TenantFixture, jira: ReplayServer,
        fake_time: FakeTime) -> None:
    jira.prepend(
        {"request": {"path": SEARCH, "query": {"nextPageToken": TOKENS[0]}}, "times": 1,
         "response": {"status": 429, "headers": {"retry-after": "5",
                                                 "x-ratelimit-limit": "350",
                                                 "x-ratelimit-remaining": "0",
                                                 "x-ratelimit-reset": "2025-06-15T15:07:40Z"},
                      "text": ""}},
        {"request": {"path": SEARCH, "query": {"nextPageToken": TOKENS[1]}}, "times": 1,
         "response": {"status": 503, "body": {"errorMessages": ["Service Unavailable"]}}},
    )
    job = await run(etl, etl_tenant.id, {"config": config(jira)})
    assert job["status"] == "succeeded", job
    assert fake_time.waits[0] == 5.0 and len(fake_time.waits) == 2
    assert await counts(etl, etl_tenant.id) == EXPECTED


async def test_failed_run_resumes_from_the_last_committed_page(
        etl: EtlService, etl_tenant: TenantFixture, jira: ReplayServer,
        fake_time: FakeTime) -> None:
    etl.settings.http_max_retries = 0
    jira.prepend({"request": {"path": SEARCH, "query": {"nextPageToken": TOKENS[1]}},
                  "times": 1, "response": {"status": 500, "body": {
                      "errorMessages": ["Internal server error"], "errors": {}}}})
    failed = await run(etl, etl_tenant.id, {"config": config(jira)})
    assert failed["status"] == "failed" and "Jira answered 500" in failed["error"]
    assert (await counts(etl, etl_tenant.id))["work_items"] == 4
    resumed_bound = bound("2024-06-07T09:00:00+00:00")  # WEB-3: newest of page 2
    [page_three] = [exchange["response"] for exchange in load_recording("jira", "search")
                    if exchange["request"].get("query") == {"nextPageToken": TOKENS[1]}]
    jira.prepend({"request": {"path": SEARCH,
                              "query": {"jql": "~" + resumed_bound}}, "response": page_three})
    jira.requests.clear()
    response = await etl_tenant.analyst_client.post(f"/app/etl/jobs/{failed['id']}/retry")
    assert response.status_code == 202
    for _ in range(400):
        job = await etl.get_job(etl_tenant.id, failed["id"])
        if job["status"] not in ("queued", "running"):
            break
        await asyncio.sleep(0.05)
    assert job["status"] == "succeeded", job
    assert resumed_bound in [seen for seen in jira.requests if seen.path == SEARCH][0].query["jql"]
    assert await counts(etl, etl_tenant.id) == EXPECTED


@pytest.mark.parametrize(("bad", "field"), [
    ({"projects": ["OPS"]}, "config.base_url"),
    ({"base_url": "jira.example.com", "projects": ["OPS"]}, "config.base_url"),
    ({"base_url": "https://x.atlassian.net", "projects": ["ops team"]}, "config.projects"),
    ({"base_url": "https://x.atlassian.net"}, "config.projects"),
    ({"base_url": "https://x.atlassian.net", "jql": "project = OPS ORDER BY created"},
     "config.jql"),
    ({"base_url": "https://x.atlassian.net", "projects": ["OPS"],
      "story_points_field": "Story Points"}, "config.story_points_field"),
    ({"base_url": "https://x.atlassian.net", "projects": ["OPS"], "page_size": 1000},
     "config.page_size"),
    ({"base_url": "https://x.atlassian.net", "projects": ["OPS"], "page_size": "many"},
     "config.page_size"),
    ({"base_url": "https://x.atlassian.net", "projects": ["OPS"], "board": 7}, "config.board"),
    ({"base_url": "https://jira.example.com", "projects": ["OPS"], "deployment": "server"},
     "config.deployment"),
])
async def test_bad_config_is_a_422_naming_the_field(etl_tenant: TenantFixture,
                                                    bad: dict[str, Any], field: str) -> None:
    response = await etl_tenant.analyst_client.post(
        "/app/etl/jobs", json={"connector": "jira", "config": bad})
    body = await response.get_json()
    assert response.status_code == 422, body
    assert field in [error["field"] for error in body["errors"]], body


async def test_progress_follows_the_approximate_count_and_survives_without_it(
        etl: EtlService, etl_tenant: TenantFixture, jira: ReplayServer,
        fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch) -> None:
    reported: list[float] = []
    commit = JobRun.commit

    async def recording(self: JobRun, batch: Any, **kwargs: Any) -> Any:
        stats = await commit(self, batch, **kwargs)
        reported.append(self.progress)
        return stats

    monkeypatch.setattr(JobRun, "commit", recording)
    job = await run(etl, etl_tenant.id, {"config": config(jira)})
    assert job["status"] == "succeeded" and job["progress"] == 1.0
    assert reported == [pytest.approx(0.4), pytest.approx(0.8), pytest.approx(0.99)]
    # a Jira that does not estimate: the sync still succeeds, progress jumps at the end
    jira.prepend({"request": {"method": "POST", "path": "/rest/api/3/search/approximate-count"},
                  "response": {"status": 404, "body": {"errorMessages": ["Not Found"]}}})
    reported.clear()
    job = await run(etl, await create_tenant(etl.engine), {"config": config(jira)})
    assert job["status"] == "succeeded" and job["progress"] == 1.0
    assert reported == [0.0, 0.0, 0.0]


async def test_a_repeated_page_token_fails_the_job_instead_of_looping(
        etl: EtlService, etl_tenant: TenantFixture, jira: ReplayServer,
        fake_time: FakeTime) -> None:
    [page_two] = [exchange["response"] for exchange in load_recording("jira", "search")
                  if exchange["request"].get("query") == {"nextPageToken": TOKENS[0]}]
    looping = {**page_two, "body": {**page_two["body"], "nextPageToken": TOKENS[0]}}
    jira.prepend({"request": {"path": SEARCH, "query": {"nextPageToken": TOKENS[0]}},
                  "response": looping})
    job = await run(etl, etl_tenant.id, {"config": config(jira)})
    assert job["status"] == "failed" and "repeated a page token" in job["error"], job
    assert len([seen for seen in jira.requests if seen.path == SEARCH]) == 2


async def test_data_center_search_by_offset_with_a_personal_access_token(
        etl: EtlService, etl_tenant: TenantFixture, fake_time: FakeTime) -> None:
    async with ReplayServer(load_recording("jira", "search-data-center")) as server:
        reported: list[float] = []
        body = {"base_url": server.url, "api_token": "dc-pat", "projects": ["OPS", "WEB"],
                "deployment": "data_center"}
        job = await etl.create_job(etl_tenant.id, {"connector": "jira", "config": body}, None,
                                   enqueue=False)

        async def progress(document: dict[str, Any]) -> None:
            reported.append(document["progress"])

        await asyncio.wait_for(etl.run_job(etl_tenant.id, job["id"], on_progress=progress), 60)
        finished = await etl.get_job(etl_tenant.id, job["id"])
        assert finished["status"] == "succeeded", finished
        assert await counts(etl, etl_tenant.id) == EXPECTED
        searches = [seen.query for seen in server.requests if seen.path == "/rest/api/2/search"]
        assert [q["startAt"] for q in searches] == ["0", "2", "4"]
        assert {seen.headers.get("authorization") for seen in server.requests} == {
            "Bearer dc-pat"}
        assert server.paths("/rest/api/3/") == []
        assert pytest.approx(0.4) in reported and pytest.approx(0.8) in reported
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        incident = (await session.execute(select(model.incidents))).one()
        items = {row.key: row for row in (await session.execute(select(model.work_items))).all()}
        changes = (await session.execute(
            select(model.work_item_status_changes.c.to_status)
            .where(model.work_item_status_changes.c.work_item_id == items["WEB-2"].id)
            .order_by(model.work_item_status_changes.c.changed_at))).scalars().all()
    # the SHA in the plain-text description, and the history read with the issue itself
    assert incident.deployment_ref == "7638417db6d59f3c431d3e1f261cc637155684cd"
    assert changes == ["In Progress", "Done"]
