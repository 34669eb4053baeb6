"""Jobs: lifecycle, resumption after a killed worker, cancel, retry, pagination, isolation,
roles; integrations with write-only secrets."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pulse_etl import model
from pulse_etl.job_run import JobRun, is_transient
from pulse_etl.service import EtlService
from pulse_etl.sweeper import requeue_lapsed
from sqlalchemy import func, select, update

from pulse_engine.testing import ApiClient, TenantFixture, make_tenant

from .conftest import build_repository, git


async def _commits(etl: EtlService, tenant_id: str) -> int:
    async with etl.engine.db.tenant_session(tenant_id) as session:
        return int(await session.scalar(select(func.count()).select_from(model.commits)) or 0)


async def finished(client: ApiClient, job_id: str, status: str) -> None:
    """Wait (up to 30 s) until the job, as the API shows it, has ``status``."""
    for _ in range(600):
        body = await (await client.get(f"/app/etl/jobs/{job_id}")).get_json()
        if body["status"] == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(body)


async def _kill_worker_mid_run(etl: EtlService, tenant_id: str, repo: Path) -> str:
    """Create a git job over ``repo`` (70 commits, batches of 10) and kill its worker once
    20 commits are in; returns the job's id, left ``running`` with a stale lease."""
    etl.settings.batch_size = 10
    job = await etl.create_job(tenant_id, {"connector": "git", "config": {
        "path": str(repo), "branch": "main"}}, None, enqueue=False)
    first_batches = asyncio.Event()

    def progress(document: dict[str, Any]) -> None:
        if document["stats"].get("commits", {}).get("created", 0) >= 20:
            first_batches.set()

    worker = asyncio.create_task(etl.run_job(tenant_id, job["id"], on_progress=progress))
    await asyncio.wait_for(first_batches.wait(), 30)
    worker.cancel()  # the worker dies between batches, its message gone with it
    await asyncio.gather(worker, return_exceptions=True)
    state = await etl.get_job(tenant_id, job["id"])
    partial = await _commits(etl, tenant_id)
    assert state["status"] == "running"
    assert 20 <= partial < int(git(repo, "rev-list", "--count", "main"))
    assert state["stats"]["commits"]["created"] == partial  # stats and data committed together
    return str(job["id"])


async def _assert_resumed_without_duplicates(etl: EtlService, tenant_id: str, job_id: str,
                                             repo: Path) -> None:
    """The job loaded every commit of ``repo`` once, in two attempts."""
    expected = int(git(repo, "rev-list", "--count", "main"))
    final = await etl.get_job(tenant_id, job_id)
    assert final["status"] == "succeeded", final
    assert await _commits(etl, tenant_id) == expected
    assert final["stats"]["commits"] == {"created": expected, "updated": 0}
    assert final["attempts"] == 2


async def test_killed_worker_resumes_from_cursor(etl: EtlService, etl_tenant: TenantFixture,
                                                 git_root: Path) -> None:
    repo = build_repository(git_root / "resume", commits=70)
    job_id = await _kill_worker_mid_run(etl, etl_tenant.id, repo)
    # the message is delivered again to another worker: it waits for the lease, then resumes
    status = await asyncio.wait_for(etl.run_job(etl_tenant.id, job_id), 30)
    assert status == "succeeded"
    await _assert_resumed_without_duplicates(etl, etl_tenant.id, job_id, repo)


async def test_cancel_running_job_then_retry(etl: EtlService, etl_tenant: TenantFixture,
                                             git_root: Path) -> None:
    repo = build_repository(git_root / "cancel", commits=50)
    expected = int(git(repo, "rev-list", "--count", "main"))
    etl.settings.batch_size = 10
    client = etl_tenant.analyst_client
    job = await etl.create_job(etl_tenant.id, {"connector": "git", "config": {
        "path": str(repo), "branch": "main"}}, None, enqueue=False)
    cancelled = False

    async def progress(document: dict[str, Any]) -> None:
        nonlocal cancelled
        if not cancelled and document["stats"].get("commits"):
            cancelled = True
            response = await client.post(f"/app/etl/jobs/{job['id']}/cancel")
            assert response.status_code == 202

    status = await etl.run_job(etl_tenant.id, job["id"], on_progress=progress)
    assert status == "cancelled"
    assert 0 < await _commits(etl, etl_tenant.id) < expected
    again = await client.post(f"/app/etl/jobs/{job['id']}/cancel")
    assert again.status_code == 409
    response = await client.post(f"/app/etl/jobs/{job['id']}/retry")
    assert response.status_code == 202
    await finished(client, job["id"], "succeeded")
    assert await _commits(etl, etl_tenant.id) == expected


async def test_a_cancel_seen_while_the_job_records_its_end_does_not_escape(
        etl: EtlService, etl_tenant: TenantFixture, git_root: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the batch sees the cancel first; recording the end then takes a few heartbeats, and
    # each heartbeat sees the cancel too: it must not cancel the run's own bookkeeping
    repo = build_repository(git_root / "late-cancel", commits=30)
    etl.settings.batch_size = 10
    job = await etl.create_job(etl_tenant.id, {"connector": "git", "config": {
        "path": str(repo), "branch": "main"}}, None, enqueue=False)
    finish = JobRun._finish

    async def slow_finish(run: JobRun, status: str, error: str | None) -> str:
        await asyncio.sleep(etl.settings.heartbeat_seconds * 3)
        return await finish(run, status, error)

    monkeypatch.setattr(JobRun, "_finish", slow_finish)
    cancelled = False

    async def progress(document: dict[str, Any]) -> None:
        nonlocal cancelled
        if not cancelled and document["stats"].get("commits"):
            cancelled = True
            await etl.cancel_job(etl_tenant.id, job["id"])

    status = await etl.run_job(etl_tenant.id, job["id"], on_progress=progress)
    assert status == "cancelled"
    assert (await etl.get_job(etl_tenant.id, job["id"]))["status"] == "cancelled"


async def test_cancel_queued_job(etl: EtlService, etl_tenant: TenantFixture,
                                 git_root: Path) -> None:
    repo = build_repository(git_root / "queued", commits=3)
    job = await etl.create_job(etl_tenant.id, {"connector": "git", "config": {
        "path": str(repo)}}, None, enqueue=False)
    response = await etl_tenant.analyst_client.post(f"/app/etl/jobs/{job['id']}/cancel")
    assert (await response.get_json())["status"] == "cancelled"
    assert await etl.run_job(etl_tenant.id, job["id"]) == "cancelled"
    assert await _commits(etl, etl_tenant.id) == 0


async def test_a_job_abandoned_by_a_stopped_process_finishes_by_itself(
        etl: EtlService, etl_tenant: TenantFixture, git_root: Path) -> None:
    repo = build_repository(git_root / "abandoned", commits=3)
    client = etl_tenant.analyst_client
    job = await etl.create_job(etl_tenant.id, {"connector": "git", "config": {
        "path": str(repo)}}, None, enqueue=False)
    # queued a moment ago: its message may still be on the way
    response = await client.post(f"/app/etl/jobs/{job['id']}/retry")
    assert response.status_code == 409
    # its worker died mid-run (an in-memory queue took the message with it): nobody
    # retries it, the lease sweep queues it again
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        await session.execute(update(model.etl_jobs).where(model.etl_jobs.c.id == job["id"])
                              .values(status="running", lease_owner="gone",
                                      heartbeat_at=func.now() - timedelta(minutes=10)))
    await finished(client, job["id"], "succeeded")
    assert await _commits(etl, etl_tenant.id) == 3


async def test_a_killed_worker_s_job_resumes_by_itself_without_duplicates(
        etl: EtlService, etl_tenant: TenantFixture, git_root: Path) -> None:
    repo = build_repository(git_root / "killed", commits=70)
    job_id = await _kill_worker_mid_run(etl, etl_tenant.id, repo)
    # nobody delivers the message again: the lease sweep queues the job by itself
    await finished(etl_tenant.viewer_client, job_id, "succeeded")
    await _assert_resumed_without_duplicates(etl, etl_tenant.id, job_id, repo)


async def test_concurrent_sweeps_queue_each_lapsed_job_once(
        etl: EtlService, etl_tenant: TenantFixture, git_root: Path) -> None:
    repo = build_repository(git_root / "swept", commits=2)
    ids = [(await etl.create_job(etl_tenant.id, {"connector": "git", "config": {
        "path": str(repo)}}, None, enqueue=False))["id"] for _ in range(6)]
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        await session.execute(update(model.etl_jobs).where(model.etl_jobs.c.id.in_(ids))
                              .values(status="running", lease_owner="gone",
                                      heartbeat_at=func.now() - timedelta(minutes=10)))
    sweeps = await asyncio.gather(*(requeue_lapsed(etl.engine, 60.0) for _ in range(4)))
    swept = [job_id for sweep in sweeps for tenant, job_id in sweep if tenant == etl_tenant.id]
    # the app's own sweeper may have taken some first; none is queued twice
    assert len(swept) == len(set(swept))
    for job_id in ids:
        await finished(etl_tenant.viewer_client, job_id, "succeeded")


def test_a_conflict_raised_by_the_driver_itself_is_transient() -> None:
    # the bulk loader runs its upserts on the asyncpg connection: no SQLAlchemy wrapper
    assert is_transient(asyncpg.exceptions.UniqueViolationError("duplicate key value"))
    assert not is_transient(asyncpg.exceptions.NotNullViolationError("null value"))
    assert not is_transient(ValueError("not a database error"))


async def test_list_paginates_newest_first_and_is_tenant_scoped(
    etl_app, etl: EtlService, etl_tenant: TenantFixture, git_root: Path
) -> None:
    repo = build_repository(git_root / "list", commits=2)
    ids = [
        (await etl.create_job(etl_tenant.id, {"connector": "git", "config": {
            "path": str(repo)}}, None, enqueue=False))["id"]
        for _ in range(5)
    ]
    client = etl_tenant.viewer_client
    seen: list[str] = []
    cursor = None
    while True:
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await (await client.get("/app/etl/jobs", query_string=query)).get_json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    other = await make_tenant(etl_app)
    assert (await (await other.viewer_client.get("/app/etl/jobs")).get_json())["items"] == []
    missing = await other.viewer_client.get(f"/app/etl/jobs/{ids[0]}")
    assert missing.status_code == 404
    assert (await other.analyst_client.post(f"/app/etl/jobs/{ids[0]}/cancel")).status_code == 404
    bad = await client.get("/app/etl/jobs", query_string={"cursor": "!!"})
    assert bad.status_code == 400


async def test_roles(etl_tenant: TenantFixture, git_root: Path) -> None:
    viewer = etl_tenant.viewer_client
    response = await viewer.post("/app/etl/jobs", json={"connector": "git", "config": {
        "path": str(git_root)}})
    assert response.status_code == 403
    response = await etl_tenant.analyst_client.post("/app/etl/integrations", json={
        "connector": "git", "name": "x", "config": {"path": str(git_root)}})
    assert response.status_code == 403
    assert (await viewer.get("/app/etl/connectors")).status_code == 200
    unauthenticated = await viewer.client.get("/app/etl/jobs")
    assert unauthenticated.status_code == 401


async def test_integrations_crud_and_jobs_from_integration(
    etl_app, etl: EtlService, etl_tenant: TenantFixture, git_root: Path
) -> None:
    repo = build_repository(git_root / "integrated", commits=5)
    admin = etl_tenant.admin_client
    response = await admin.post("/app/etl/integrations", json={
        "connector": "git", "name": "main repo",
        "config": {"path": str(repo), "branch": "main"}})
    assert response.status_code == 201, await response.get_json()
    integration = await response.get_json()
    duplicate = await admin.post("/app/etl/integrations", json={
        "connector": "git", "name": "main repo", "config": {"path": str(repo)}})
    assert duplicate.status_code == 409
    job = await (await etl_tenant.analyst_client.post("/app/etl/jobs", json={
        "connector": "git", "integration_id": integration["id"]})).get_json()
    for _ in range(400):
        job = await etl.get_job(etl_tenant.id, job["id"])
        if job["status"] != "queued" and job["status"] != "running":
            break
        await asyncio.sleep(0.05)
    assert job["status"] == "succeeded", job
    assert job["stats"]["commits"]["created"] == 5
    changed = await admin.request("PATCH", f"/app/etl/integrations/{integration['id']}",
                                  json={"name": "renamed"})
    assert (await changed.get_json())["name"] == "renamed"
    listing = await (await etl_tenant.viewer_client.get("/app/etl/integrations")).get_json()
    assert [item["name"] for item in listing["items"]] == ["renamed"]
    other = await make_tenant(etl_app)
    assert (await other.viewer_client.get(
        f"/app/etl/integrations/{integration['id']}")).status_code == 404
    refused = await other.analyst_client.post("/app/etl/jobs", json={
        "connector": "git", "integration_id": integration["id"]})
    assert refused.status_code == 422
    assert (await refused.get_json())["errors"][0]["field"] == "integration_id"
    deleted = await admin.delete(f"/app/etl/integrations/{integration['id']}")
    assert deleted.status_code == 204
    assert (await etl_tenant.viewer_client.get(
        f"/app/etl/integrations/{integration['id']}")).status_code == 404


async def test_progress_and_data_events(etl: EtlService, etl_tenant: TenantFixture,
                                        git_root: Path) -> None:
    repo = build_repository(git_root / "events", commits=4)
    job = await etl.create_job(etl_tenant.id, {"connector": "git", "config": {
        "path": str(repo)}}, None, enqueue=False)
    async with etl.engine.events.subscribe(etl_tenant.id) as subscription:
        await etl.run_job(etl_tenant.id, job["id"])
        kinds = []
        while subscription._buffer:
            event = await subscription.__anext__()
            kinds.append((event.type, event.data.get("status")))
    assert ("etl.job.progress", "running") in kinds
    assert ("etl.job.progress", "succeeded") in kinds
    assert ("etl.data.loaded", None) in kinds


class _Conflict(Exception):
    """What asyncpg raises for a database conflict, as far as the job run looks at it."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"conflict {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    "sqlstate",
    ["40P01", "23505"],  # a deadlock; a new row another load inserted at the same moment
)
async def test_a_batch_lost_to_a_conflict_is_run_again_from_the_cursor(
        etl: EtlService, etl_tenant: TenantFixture, git_root: Path,
        monkeypatch: Any, sqlstate: str) -> None:
    from sqlalchemy.exc import DBAPIError

    repo = build_repository(git_root / f"conflict-{sqlstate}", commits=50)
    expected = int(git(repo, "rev-list", "--count", "main"))
    etl.settings.batch_size = 10
    real_load = etl.loader.load
    calls = 0

    async def load_with_one_deadlock(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:  # the third batch: two are committed, this one rolls back whole
            raise DBAPIError("INSERT ...", None, _Conflict(sqlstate))
        return await real_load(*args, **kwargs)

    monkeypatch.setattr(etl.loader, "load", load_with_one_deadlock)
    job = await etl.create_job(etl_tenant.id, {"connector": "git", "config": {
        "path": str(repo), "branch": "main"}}, None)
    await finished(etl_tenant.viewer_client, job["id"], "succeeded")  # nobody retries it
    final = await etl.get_job(etl_tenant.id, job["id"])
    assert await _commits(etl, etl_tenant.id) == expected
    assert final["stats"]["commits"] == {"created": expected, "updated": 0}
    assert final["attempts"] == 2
    assert final["error"] is None


async def test_two_jobs_loading_the_same_new_rows_at_once_both_succeed(
        etl: EtlService, etl_tenant: TenantFixture, git_root: Path) -> None:
    repo = build_repository(git_root / "twice", commits=40)
    expected = int(git(repo, "rev-list", "--count", "main"))
    etl.settings.batch_size = 5
    config = {"connector": "git", "config": {"path": str(repo), "branch": "main"}}
    first = await etl.create_job(etl_tenant.id, config, None, enqueue=False)
    second = await etl.create_job(etl_tenant.id, config, None, enqueue=False)
    statuses = await asyncio.wait_for(asyncio.gather(
        etl.run_job(etl_tenant.id, first["id"]), etl.run_job(etl_tenant.id, second["id"])), 60)
    for job, status in zip((first, second), statuses, strict=True):
        if status == "queued":  # lost a race for a new row: queued again from its cursor
            await finished(etl_tenant.viewer_client, job["id"], "succeeded")
    for job in (first, second):
        assert (await etl.get_job(etl_tenant.id, job["id"]))["status"] == "succeeded"
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        stored = await session.scalar(
            select(func.count()).select_from(model.commits)
            .join(model.repositories, model.repositories.c.id == model.commits.c.repository_id)
            .where(model.repositories.c.url.like(f"%{repo.name}%"))
        )
    assert stored == expected


def test_a_database_error_is_recorded_without_its_statement() -> None:
    from pulse_etl.job_run import error_text
    from sqlalchemy.exc import DBAPIError

    error = DBAPIError("INSERT INTO commits (message) VALUES ($1)", ("secret text",),
                       _Conflict("XX000"))
    text_recorded = error_text(error)
    assert text_recorded == "database error XX000: conflict XX000"
    assert "INSERT" not in text_recorded and "secret" not in text_recorded
