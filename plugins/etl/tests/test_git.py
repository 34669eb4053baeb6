"""The git connector against a generated repository, through jobs and the API."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pulse_etl import model
from pulse_etl.connector import SourceError
from pulse_etl.connectors.common import identity_rows
from pulse_etl.connectors.git import GitCommit, RowBuilder, _prefetch
from pulse_etl.model import stable_id
from pulse_etl.service import EtlService
from sqlalchemy import func, select

from pulse_engine.testing import TenantFixture

from .conftest import build_repository, git, wait_job


async def _count(etl: EtlService, tenant_id: str, table) -> int:
    async with etl.engine.db.tenant_session(tenant_id) as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def test_ingest_generated_repository(etl: EtlService, etl_tenant: TenantFixture,
                                           git_root: Path) -> None:
    repo = build_repository(git_root / "app", commits=80)
    config = {"path": str(repo), "branch": "main", "deploy_tags": r"^(v\d|deploy-)"}
    response = await etl_tenant.analyst_client.post(
        "/app/etl/jobs", json={"connector": "git", "config": config})
    assert response.status_code == 202, await response.get_json()
    job = await wait_job(etl_tenant.viewer_client, (await response.get_json())["id"])
    assert job["status"] == "succeeded", job
    assert job["progress"] == 1.0
    expected = int(git(repo, "rev-list", "--count", "main"))
    assert await _count(etl, etl_tenant.id, model.commits) == expected
    assert job["stats"]["commits"] == {"created": expected, "updated": 0}
    tags = [t for t in git(repo, "tag").split() if t.startswith(("v", "deploy-"))]
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        deployments = {row.name: row for row in (
            await session.execute(select(model.deployments))).all()}
        merges = (await session.execute(
            select(model.commits.c.sha, model.commits.c.pull_request_number)
            .where(model.commits.c.is_merge))).all()
        shipped = int(await session.scalar(
            select(func.count()).select_from(model.deployment_commits)) or 0)
        tz = set((await session.execute(select(model.commits.c.author_tz_offset))).scalars())
        people = set((await session.execute(select(model.people.c.email))).scalars())
    assert sorted(deployments) == sorted(tags)
    assert all(d.result == "success" and d.environment == "production"
               for d in deployments.values())
    for name, row in deployments.items():
        assert row.sha == git(repo, "rev-list", "-n", "1", name).strip()
    annotated = deployments["v9.9"]
    assert annotated.finished_at.timestamp() == int(
        git(repo, "for-each-ref", "--format=%(creatordate:unix)", "refs/tags/v9.9").strip())
    lightweight = next(n for n in deployments if n.startswith("deploy-"))
    assert deployments[lightweight].finished_at.timestamp() == int(
        git(repo, "log", "-1", "--format=%ct", lightweight).strip())
    assert merges and all(number is not None for _sha, number in merges)
    # every commit reachable from the last tag shipped exactly once (v9.9 is at the head)
    assert shipped == int(git(repo, "rev-list", "--count", "v9.9"))
    assert {120, -300, 330} <= tz
    assert "bob@example.test" in people

    again = await etl_tenant.analyst_client.post(
        "/app/etl/jobs", json={"connector": "git", "config": config})
    second = await wait_job(etl_tenant.viewer_client, (await again.get_json())["id"])
    assert second["status"] == "succeeded", second
    assert all(c["created"] == 0 and c["updated"] == 0 for c in second["stats"].values()), second

    # new commits and a new tag: only they are read
    (repo / "new.txt").write_text("x\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "after")
    git(repo, "tag", "deploy-next")
    third_response = await etl_tenant.analyst_client.post(
        "/app/etl/jobs", json={"connector": "git", "config": config})
    third = await wait_job(etl_tenant.viewer_client, (await third_response.get_json())["id"])
    assert third["stats"]["commits"] == {"created": 1, "updated": 0}
    assert third["stats"]["deployments"] == {"created": 1, "updated": 0}
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        latest = await session.scalar(
            select(func.count()).select_from(model.deployment_commits)
            .join(model.deployments, model.deployments.c.id
                  == model.deployment_commits.c.deployment_id)
            .where(model.deployments.c.name == "deploy-next"))
    assert latest == 1


@pytest.mark.parametrize(
    ("path", "field"),
    [("/etc", "config.path"), ("relative/path", "config.path"),
     ("ftp://example.com/repo.git", "config.path"), ("file:///etc", "config.path")],
)
async def test_paths_outside_roots_are_refused(etl_tenant: TenantFixture, path: str,
                                               field: str) -> None:
    response = await etl_tenant.analyst_client.post(
        "/app/etl/jobs", json={"connector": "git", "config": {"path": path}})
    body = await response.get_json()
    assert response.status_code == 422, body
    assert [e["field"] for e in body["errors"]] == [field]


async def test_symlink_escaping_the_root_is_refused(etl_tenant: TenantFixture, git_root: Path,
                                                    tmp_path: Path) -> None:
    outside = build_repository(tmp_path / "outside", commits=3)
    os.symlink(outside, git_root / "link")
    response = await etl_tenant.analyst_client.post(
        "/app/etl/jobs", json={"connector": "git", "config": {"path": str(git_root / "link")}})
    assert response.status_code == 422
    assert (await response.get_json())["errors"][0]["field"] == "config.path"


async def test_bad_connector_and_config_name_the_field(etl_tenant: TenantFixture,
                                                       git_root: Path) -> None:
    client = etl_tenant.analyst_client
    response = await client.post("/app/etl/jobs", json={"connector": "nope", "config": {}})
    assert response.status_code == 422
    assert (await response.get_json())["errors"][0]["field"] == "connector"
    response = await client.post("/app/etl/jobs", json={
        "connector": "git", "config": {"path": str(git_root), "deploy_tags": "("}})
    assert response.status_code == 422
    assert (await response.get_json())["errors"][0]["field"] == "config.deploy_tags"
    response = await client.post("/app/etl/jobs", json={
        "connector": "git", "config": {"path": str(git_root), "branch": "--upload-pack=x"}})
    assert (await response.get_json())["errors"][0]["field"] == "config.branch"
    response = await client.post("/app/etl/jobs", data=b"{not json",
                                 headers={"Content-Type": "application/json"})
    assert response.status_code == 400


async def test_clone_url_inside_roots(etl: EtlService, etl_tenant: TenantFixture,
                                      git_root: Path) -> None:
    repo = build_repository(git_root / "cloned", commits=12)
    response = await etl_tenant.analyst_client.post("/app/etl/jobs", json={
        "connector": "git", "config": {"path": f"file://{repo}", "branch": "main"}})
    assert response.status_code == 202, await response.get_json()
    job = await wait_job(etl_tenant.viewer_client, (await response.get_json())["id"])
    assert job["status"] == "succeeded", job
    assert job["stats"]["commits"]["created"] == int(git(repo, "rev-list", "--count", "main"))


def test_row_builder_ids_and_identities() -> None:
    repository_id = stable_id("repositories", "git", "app")
    builder = RowBuilder(repository_id)
    for sha in ("0" * 40, "f" * 40, "1234abcd" * 5):
        assert builder.commit_id(sha) == stable_id("commits", repository_id, sha)
    moment = datetime(2026, 1, 5, 9, tzinfo=timezone(timedelta(hours=2)))
    commits = [GitCommit(sha=f"{n:040x}", parents=[f"{n - 1:040x}"] if n else [],
                         author_name="Ada", author_email="ADA@example.test", authored_at=moment,
                         committer_name="Bot", committer_email="", committed_at=moment,
                         message="Merge pull request #7 from x/y" if n == 2 else "work")
               for n in range(3)]
    rows = builder.rows(commits, None)
    assert "repositories" not in rows
    identity_id, identity, person = identity_rows("git", "ada@example.test",
                                                  email="ADA@example.test", name="Ada")
    assert identity in rows["person_identities"] and person in rows["people"]
    assert len(rows["person_identities"]) == 2  # Ada, and the email-less Bot (by name)
    assert {row["author_identity_id"] for row in rows["commits"]} == {identity_id}
    assert rows["commits"][0]["author_tz_offset"] == 120
    assert rows["commits"][2]["pull_request_number"] == 7
    assert [(p["sha"], p["parent_sha"]) for p in rows["commit_parents"]] == [
        (commits[1].sha, commits[0].sha), (commits[2].sha, commits[1].sha)]
    # the next batch reuses the identities, whose rows the first batch carries already
    later = builder.rows(commits[:1], None)
    assert later["person_identities"] == [] and later["people"] == []
    assert later["commits"][0]["author_identity_id"] == identity_id
    # a new builder (a new run, after a failed one) writes them again
    again = RowBuilder(repository_id).rows(commits[:1], None)
    assert again["person_identities"] == rows["person_identities"]


async def test_prefetch_hands_over_errors_and_closes_early() -> None:
    closed = []

    async def numbers(fail_at: int | None) -> AsyncGenerator[int]:
        try:
            for number in range(10):
                if number == fail_at:
                    raise SourceError("git log failed")
                yield number
        finally:
            closed.append(fail_at)

    assert [n async for n in _prefetch(numbers(None))] == list(range(10))
    with pytest.raises(SourceError):
        async for _ in _prefetch(numbers(3)):
            pass
    iteration = _prefetch(numbers(-1))
    async for number in iteration:
        if number == 1:
            break
    await iteration.aclose()
    assert closed == [None, 3, -1]
