"""The github connector's REST sync against recorded GitHub REST v3 responses, replayed by a
local HTTP server: counts, Link pagination, rate limits, retries, cursors, a killed worker,
duplicates and bad configuration."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pulse_etl import model
from pulse_etl.connectors.github import GithubConfig, GithubConnector, github_client
from pulse_etl.connectors.http import HttpPolicy
from pulse_etl.service import EtlService
from sqlalchemy import func, select

from pulse_engine import OutboundPolicy
from pulse_engine.testing import TenantFixture

from .conftest import REPLAY_ALLOW
from .replay import NOW, FakeTime, ReplayServer, install_fake_time, load_recording

FULL = "octocat/Hello-World"
EXPECTED = {"repositories": 1, "commits": 3, "commit_parents": 4, "pull_requests": 5,
            "reviews": 3, "review_comments": 2, "work_items": 3, "incidents": 1,
            "deployments": 4, "commit_files": 8}


@pytest.fixture
def fake_time(etl: EtlService, monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    connector = etl.connectors.all()["github"]
    assert isinstance(connector, GithubConnector)
    return install_fake_time(connector, monkeypatch)


@pytest.fixture
async def github() -> AsyncIterator[ReplayServer]:
    async with ReplayServer(load_recording("github", "hello-world")) as server:
        yield server


def config(server: ReplayServer, **extra: Any) -> dict[str, Any]:
    return {"repositories": [FULL], "api_url": server.url, "token": "ghp_test",
            "releases_as_deployments": True, **extra}


async def run(etl: EtlService, tenant_id: str, job_config: dict[str, Any],
              **kwargs: Any) -> dict[str, Any]:
    job = await etl.create_job(tenant_id, {"connector": "github", "config": job_config}, None,
                               enqueue=False)
    await asyncio.wait_for(etl.run_job(tenant_id, job["id"], **kwargs), 60)
    return await etl.get_job(tenant_id, job["id"])


async def counts(etl: EtlService, tenant_id: str) -> dict[str, int]:
    async with etl.engine.db.tenant_session(tenant_id) as session:
        return {name: int(await session.scalar(
            select(func.count()).select_from(model.metadata.tables[name])) or 0)
            for name in EXPECTED}


async def test_full_sync_through_the_api(etl: EtlService, etl_tenant: TenantFixture,
                                         github: ReplayServer, fake_time: FakeTime) -> None:
    response = await etl_tenant.analyst_client.post(
        "/app/etl/jobs", json={"connector": "github", "config": config(github)})
    assert response.status_code == 202, await response.get_json()
    job_id = (await response.get_json())["id"]
    for _ in range(600):
        job = await (await etl_tenant.viewer_client.get(f"/app/etl/jobs/{job_id}")).get_json()
        if job["status"] not in ("queued", "running"):
            break
        await asyncio.sleep(0.05)
    assert job["status"] == "succeeded", job
    assert await counts(etl, etl_tenant.id) == EXPECTED
    assert {entity: job["stats"][entity]["created"] for entity in EXPECTED} == EXPECTED
    assert fake_time.waits == []
    assert all(seen.headers.get("authorization") == "Bearer ghp_test"
               for seen in github.requests)
    # pull requests: 3 pages through the Link headers (pages 2 and 3 at /repositories/...)
    assert [seen.query.get("page") for seen in github.requests
            if seen.path.endswith("/pulls")] == [None, "2", "3"]
    assert github.paths("/repositories/1296269/issues") == ["/repositories/1296269/issues"]

    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        prs = {row.number: row for row in (await session.execute(
            select(model.pull_requests))).all()}
        deployments = {row.external_id: row for row in (await session.execute(
            select(model.deployments))).all()}
        incident = (await session.execute(select(model.incidents))).one()
        items = {row.key: row for row in (await session.execute(select(model.work_items))).all()}
        merge = (await session.execute(select(model.commits).where(model.commits.c.is_merge))
                 ).one()
        people = set((await session.execute(select(model.people.c.email))).scalars())
        files = (await session.execute(select(model.commit_files))).all()
        comments = (await session.execute(
            select(model.review_comments, model.reviews.c.state.label("review_state"))
            .join(model.reviews, model.reviews.c.id == model.review_comments.c.review_id)
            .order_by(model.review_comments.c.created_at_source))).all()
    assert (prs[1347].state, prs[1347].additions, prs[1347].changed_files) == ("merged", 103, 5)
    assert [(c.path, c.review_state) for c in comments] == [
        ("file1.txt", "commented"), ("file2.txt", "approved")]
    assert {c.pull_request_id for c in comments} == {prs[1347].id}
    assert comments[0].created_at_source.isoformat() == "2024-06-01T09:58:00+00:00"
    assert prs[1348].state == "closed" and prs[1348].merge_commit_sha is None
    assert prs[1351].state == "open"
    assert deployments["3"].result == "success"
    assert deployments["3"].finished_at.isoformat() == "2024-06-03T10:20:00+00:00"
    assert deployments["2"].result == "success"  # latest status "inactive" is not the result
    assert deployments["1"].result == "failure"
    assert deployments["release:1"].environment == "production"
    assert "release:2" not in deployments  # a draft
    # the body names the deployed SHA: pulse-dora links it by the tenant's production set
    assert incident.deployment_ref == deployments["3"].sha and incident.deployment_id is None
    assert items[f"{FULL}#10"].type == "bug" and items[f"{FULL}#13"].status == "closed"
    assert merge.pull_request_number == 1347
    assert "mona@github.com" in people  # "Mona@GitHub.com" and "mona@github.com": one person
    # the merged pull requests' files (1350's over two Link pages) on their merge commits
    assert {(f.sha[:4], f.path, f.previous_path, f.additions, f.deletions, f.is_binary,
             f.pull_request_id) for f in files} == {
        ("2222", "README", None, 10, 4, False, prs[1350].id),
        ("2222", "src/app.py", None, 120, 0, False, prs[1350].id),
        ("2222", "docs/guide.md", "docs/old-guide.md", 2, 1, False, prs[1350].id),
        ("7638", "README", None, 3, 3, False, prs[1347].id),
        ("7638", "src/app.py", None, 7, 2, False, prs[1347].id),
        # listed with no patch and no counts (binary): counts unknown, not zero
        ("7638", "assets/logo.png", None, None, None, False, prs[1347].id),
        ("7638", "lib/util.py", "util.py", 0, 0, False, prs[1347].id),  # a pure rename
        ("7638", "old.txt", None, 0, 9, False, prs[1347].id),
    }
    assert {f.commit_id for f in files if f.sha.startswith("7638")} == {merge.id}
    assert github.paths("/repositories/1296269/pulls/1350/files") == [
        "/repositories/1296269/pulls/1350/files"]
    assert github.paths(f"/repos/{FULL}/pulls/1348/files") == []  # closed unmerged


async def test_incremental_second_run_uses_since_and_creates_nothing(
        etl: EtlService, etl_tenant: TenantFixture, github: ReplayServer,
        fake_time: FakeTime) -> None:
    first = await run(etl, etl_tenant.id, config(github))
    assert first["status"] == "succeeded", first
    github.requests.clear()
    second = await run(etl, etl_tenant.id, config(github))
    assert second["status"] == "succeeded", second
    assert all(c == {"created": 0, "updated": 0} for c in second["stats"].values()), second
    since = {seen.path: seen.query.get("since") for seen in github.requests}
    assert since[f"/repos/{FULL}/commits"] == "2025-06-15T15:01:40Z"  # run start - 5 minutes
    assert since[f"/repos/{FULL}/issues"] == "2025-06-15T15:01:40Z"
    # newest-first lists stop at the first old page: no details, reviews or statuses
    assert github.paths(f"/repos/{FULL}/pulls/") == []
    assert github.paths(f"/repos/{FULL}/deployments/") == []
    assert github.paths("/repositories/") == []


async def test_rate_limit_then_success(etl: EtlService, etl_tenant: TenantFixture,
                                       github: ReplayServer, fake_time: FakeTime) -> None:
    github.prepend(
        {"request": {"path": "/repositories/1296269/pulls", "query": {"page": "2"}},
         "times": 1, "response": {"status": 403, "headers": {
             "x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0",
             "x-ratelimit-used": "5000", "x-ratelimit-resource": "core",
             "x-ratelimit-reset": str(int(NOW) + 42)},
             "body": {"message": "API rate limit exceeded for user ID 1.",
                      "documentation_url": "https://docs.github.com/rest/overview/"
                      "rate-limits-for-the-rest-api"}}},
        {"request": {"path": f"/repos/{FULL}/issues"}, "times": 1, "response": {
            "status": 429, "headers": {"retry-after": "7"},
            "body": {"message": "You have exceeded a secondary rate limit. Please wait a few "
                     "minutes before you try again.",
                     "documentation_url": "https://docs.github.com/free-pro-team@latest/rest/"
                     "overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}}},
    )
    job = await run(etl, etl_tenant.id, config(github))
    assert job["status"] == "succeeded", job
    assert fake_time.waits == [43.0, 7.0]  # until x-ratelimit-reset (+1s), then retry-after
    assert await counts(etl, etl_tenant.id) == EXPECTED


async def test_rate_limit_beyond_the_maximum_wait_fails_the_job(
        etl: EtlService, etl_tenant: TenantFixture, github: ReplayServer,
        fake_time: FakeTime) -> None:
    github.prepend({"request": {"path": f"/repos/{FULL}"}, "response": {
        "status": 403, "headers": {"x-ratelimit-remaining": "0",
                                   "x-ratelimit-reset": str(int(NOW) + 3600)},
        "body": {"message": "API rate limit exceeded"}}})
    job = await run(etl, etl_tenant.id, config(github))
    assert job["status"] == "failed"
    assert "rate limit: retry in 3601s" in job["error"]
    assert fake_time.waits == []


async def test_server_errors_are_retried_with_backoff(
        etl: EtlService, etl_tenant: TenantFixture, github: ReplayServer,
        fake_time: FakeTime) -> None:
    github.prepend({"request": {"path": f"/repos/{FULL}/pulls/1349"}, "times": 2, "response": {
        "status": 502, "headers": {"content-type": "text/html"},
        "text": "<html><body><h1>502 Bad Gateway</h1></body></html>"}})
    job = await run(etl, etl_tenant.id, config(github))
    assert job["status"] == "succeeded", job
    assert [seen.path for seen in github.requests
            if seen.path == f"/repos/{FULL}/pulls/1349"] == [f"/repos/{FULL}/pulls/1349"] * 3
    assert len(fake_time.waits) == 2
    assert 0.25 <= fake_time.waits[0] <= 0.5 and 0.5 <= fake_time.waits[1] <= 1.0
    assert await counts(etl, etl_tenant.id) == EXPECTED


async def test_unreachable_and_failing_sources_fail_the_job(
        etl: EtlService, etl_tenant: TenantFixture, github: ReplayServer,
        fake_time: FakeTime) -> None:
    etl.settings.http_max_retries = 2
    closed = "http://127.0.0.1:9"  # discard port: nothing listens
    job = await run(etl, etl_tenant.id, config(github, api_url=closed))
    assert job["status"] == "failed"
    assert job["error"].startswith("SourceError: GitHub unreachable")
    assert len(fake_time.waits) == 2
    github.prepend({"request": {"path": f"/repos/{FULL}"}, "response": {
        "status": 404, "body": {"message": "Not Found",
                                "documentation_url": "https://docs.github.com/rest"}}})
    missing = await run(etl, etl_tenant.id, config(github))
    assert missing["status"] == "failed" and "answered 404" in missing["error"]
    github.exchanges.pop(0)
    github.prepend({"request": {"path": f"/repos/{FULL}/commits"}, "response": {
        "status": 200, "body": {"message": "not a list"}}})
    wrong = await run(etl, etl_tenant.id, config(github, since="2024-01-01T00:00:00Z"))
    assert wrong["status"] == "failed" and "non-list" in wrong["error"]


async def test_next_link_to_another_host_is_refused(
        etl: EtlService, etl_tenant: TenantFixture, github: ReplayServer,
        fake_time: FakeTime) -> None:
    github.prepend({"request": {"path": f"/repos/{FULL}/commits"}, "response": {
        "body": [], "headers": {"link": '<https://evil.example/steal?page=2>; rel="next"'}}})
    job = await run(etl, etl_tenant.id, config(github))
    assert job["status"] == "failed" and "another host" in job["error"]
    assert all(seen.path != "/steal" for seen in github.requests)


async def test_duplicates_and_full_rereads_are_idempotent(
        etl: EtlService, etl_tenant: TenantFixture, github: ReplayServer,
        fake_time: FakeTime) -> None:
    first = await run(etl, etl_tenant.id, config(github))
    assert first["stats"]["pull_requests"] == {"created": 5, "updated": 0}  # 1348 read twice
    # another scope (an explicit "since" changes the ad-hoc config): everything is read again
    again = await run(etl, etl_tenant.id, config(github, since="2020-01-01T00:00:00Z"))
    assert again["status"] == "succeeded", again
    assert all(c == {"created": 0, "updated": 0} for c in again["stats"].values()), [
        (e, c) for e, c in again["stats"].items() if c != {"created": 0, "updated": 0}]
    assert await counts(etl, etl_tenant.id) == EXPECTED


async def test_deployment_name_patterns_filter_tasks(
        etl: EtlService, etl_tenant: TenantFixture, github: ReplayServer,
        fake_time: FakeTime) -> None:
    job = await run(etl, etl_tenant.id, config(github, releases_as_deployments=False,
                                                deployment_name_patterns=["^deploy$"]))
    assert job["stats"]["deployments"]["created"] == 2  # not "deploy:migrations"
    assert github.paths(f"/repos/{FULL}/deployments/1/statuses") == []
    assert github.paths(f"/repos/{FULL}/releases") == []


async def test_killed_worker_resumes_from_the_issue_cursor(
        etl: EtlService, etl_tenant: TenantFixture, github: ReplayServer,
        fake_time: FakeTime) -> None:
    job = await etl.create_job(etl_tenant.id, {"connector": "github", "config": config(github)},
                               None, enqueue=False)
    first_issues = asyncio.Event()

    def progress(document: dict[str, Any]) -> None:
        if document["stats"].get("work_items"):
            first_issues.set()

    worker = asyncio.create_task(etl.run_job(etl_tenant.id, job["id"], on_progress=progress))
    await asyncio.wait_for(first_issues.wait(), 30)
    worker.cancel()  # killed after the first page of issues
    await asyncio.gather(worker, return_exceptions=True)
    partial = await counts(etl, etl_tenant.id)
    assert (await etl.get_job(etl_tenant.id, job["id"]))["status"] == "running"
    assert partial["pull_requests"] == 5 and partial["work_items"] == 2
    github.requests.clear()

    status = await asyncio.wait_for(etl.run_job(etl_tenant.id, job["id"]), 30)
    final = await etl.get_job(etl_tenant.id, job["id"])
    assert status == "succeeded", final
    assert await counts(etl, etl_tenant.id) == EXPECTED
    assert {entity: final["stats"][entity]["created"] for entity in EXPECTED} == EXPECTED
    issues = [seen for seen in github.requests if seen.path == f"/repos/{FULL}/issues"]
    # resumed from the committed page: its newest update (2024-06-03T13:30Z) minus 5 minutes
    assert [seen.query.get("since") for seen in issues] == ["2024-06-03T13:25:00Z"]
    assert github.paths(f"/repos/{FULL}/pulls/") == []  # the finished stream is not re-read


async def test_an_organisation_lists_its_repositories(
        etl: EtlService, etl_tenant: TenantFixture, fake_time: FakeTime) -> None:
    exchanges = [*load_recording("github", "octocat-org"), *load_recording("github", "hello-world")]
    async with ReplayServer(exchanges) as server:
        # named both ways: synced once; the fork and the archived repository are left out
        job = await run(etl, etl_tenant.id, config(server, organizations=["octocat"]))
        assert job["status"] == "succeeded", job
        assert await counts(etl, etl_tenant.id) == EXPECTED
        assert server.paths("/organizations/583231/repos") == ["/organizations/583231/repos"]
        assert server.paths(f"/repos/{FULL}/commits") == [f"/repos/{FULL}/commits"]
        left_out = ("/repos/octocat/Spoon-Knife-fork", "/repos/octocat/linguist")
        assert not [path for path in server.paths("/repos/") if path.startswith(left_out)]
        policy = HttpPolicy(max_retries=0, max_wait=0, sleep=fake_time.sleep, clock=fake_time.clock,
                            outbound=OutboundPolicy(REPLAY_ALLOW))
        client = github_client(GithubConfig(api_url=server.url), None, policy)
        try:
            every = await GithubConnector._organization_repositories(client, GithubConfig(
                organizations=["octocat"], include_archived=True, include_forks=True))
        finally:
            await client.aclose()
    assert every == [FULL, "octocat/Spoon-Knife-fork", "octocat/linguist"]


@pytest.mark.parametrize(("bad", "field"), [
    ({"repositories": ["not a repository"]}, "config.repositories"),
    ({"organizations": ["not an org!"]}, "config.organizations"),
    ({"organizations": "octocat"}, "config.organizations"),
    ({"repositories": "octocat/Hello-World"}, "config.repositories"),
    ({"repositories": [FULL], "api_url": "ftp://example.com"}, "config.api_url"),
    ({"repositories": [FULL], "incident_labels": "incident"}, "config.incident_labels"),
    ({"repositories": [FULL], "deployment_name_patterns": ["(unclosed"]},
     "config.deployment_name_patterns"),
    ({"repositories": [FULL], "since": "last tuesday"}, "config.since"),
    ({"repositories": [FULL], "repos": ["a/b"]}, "config.repos"),
    ({"repositories": [FULL] * 501}, "config.repositories"),
])
async def test_bad_config_is_a_422_naming_the_field(etl_tenant: TenantFixture,
                                                    bad: dict[str, Any], field: str) -> None:
    response = await etl_tenant.analyst_client.post(
        "/app/etl/jobs", json={"connector": "github", "config": bad})
    body = await response.get_json()
    assert response.status_code == 422, body
    assert field in [error["field"] for error in body["errors"]], body
