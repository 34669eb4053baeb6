"""The per-pull-request facts follow the ETL loads (each load queues an incremental
refresh that equals a full one), are filled for tenants without them when a process
starts, and are tenant-scoped under row-level security.

The scenario (March 2026, UTC; loaded as the GitHub and git connectors load it): Ada's
pull request #1, opened 03-02 10:00 and merged 03-03 12:00 with merge commit ``a…``; then
Bob's approving review at 03-02 14:00 (with its pull request, as the connector sends it);
then the head commit ``b…`` authored 03-01 10:00 and the merge commit; then a successful
production deployment at 03-03 18:00 that ships the merge commit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import combinations
from typing import Any

import pytest
from github_rows import Rows, at
from pulse_etl import model
from pulse_etl.connectors import github_mapping as gm
from pulse_etl.model import stable_id
from pulse_etl.plugin import service_for
from pulse_etl.service import load_batch
from pulse_github.file_facts import GITHUB_FILE_FACTS
from pulse_github.refresh import GITHUB_FACTS
from quart import Quart
from sqlalchemy import text

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture, downgrade_plugin, hold_messages, make_tenant

PREFIX = "/api/v1/analytics/github"
MARCH = {"start": "2026-03-01", "end": "2026-04-01"}
H = 3600.0
MERGE, HEAD = "a" * 40, "b" * 40
ADA = {"id": 1, "login": "ada"}
BOB = {"id": 2, "login": "bob"}
PULL = {
    "id": 101,
    "number": 1,
    "user": ADA,
    "state": "closed",
    "title": "Totals",
    "created_at": "2026-03-02T10:00:00Z",
    "merged_at": "2026-03-03T12:00:00Z",
    "closed_at": "2026-03-03T12:00:00Z",
    "merge_commit_sha": MERGE,
    "head": {"ref": "totals", "sha": HEAD},
    "additions": 3,
    "deletions": 1,
    "changed_files": 1,
}


def one(values: list[float]) -> dict[str, Any]:
    """The statistics of a single observation (or of none)."""
    if not values:
        return {"median": None, "p75": None, "p90": None, "mean": None, "sample_size": 0}
    [value] = values
    return {"median": value, "p75": value, "p90": value, "mean": value, "sample_size": 1}


async def cycle(tenant: TenantFixture) -> dict[str, Any]:
    """March's cycle-time point."""
    response = await tenant.viewer_client.get(
        f"{PREFIX}/pull-requests/cycle-time", query_string=MARCH
    )
    body = await response.get_json()
    assert response.status_code == 200, body
    [point] = body["series"]
    return dict(point)


async def facts(engine: PulseEngine, tenant_id: str) -> list[Any]:
    """The tenant's fact rows, as stored."""
    async with engine.db.tenant_session(tenant_id) as session:
        return list(
            (
                await session.execute(
                    text("SELECT * FROM github_pull_requests ORDER BY pull_request_id")
                )
            ).all()
        )


async def test_the_facts_follow_each_load(engine: PulseEngine, gh_tenant: TenantFixture) -> None:
    service = service_for(engine)
    repository, repository_rows = gm.repository({"full_name": "acme/api"})

    async def load(batch: dict[str, Any]) -> None:
        await load_batch(service, gh_tenant.id, batch, "github")
        assert await engine.queue.wait_idle(30)

    await load(gm.merge(repository_rows, gm.pull_request(PULL, repository)))
    point = await cycle(gh_tenant)
    assert point["merged"] == 1 and point["time_to_merge"] == one([26 * H])
    assert point["phases"]["pickup"] == one([]) and point["cycle_time"] == one([])

    review = {"id": 9, "user": BOB, "state": "APPROVED", "submitted_at": "2026-03-02T14:00:00Z"}
    await load(gm.merge(gm.pull_request(PULL, repository), gm.review(review, PULL)))
    point = await cycle(gh_tenant)
    assert point["phases"]["pickup"] == one([4 * H])
    assert point["phases"]["review"] == one([22 * H])

    def commit(sha: str, authored: str, *, merge: bool) -> dict[str, Any]:
        moment = datetime.fromisoformat(authored).replace(tzinfo=UTC)
        return {
            "id": stable_id("commits", repository, sha),
            "repository_id": repository,
            "sha": sha,
            "source": "git",
            "message": "Totals",
            "authored_at": moment,
            "committed_at": moment,
            "is_merge": merge,
        }

    await load(
        {
            "commits": [
                commit(HEAD, "2026-03-01 10:00", merge=False),
                commit(MERGE, "2026-03-03 12:00", merge=True),
            ],
            "commit_parents": [
                {"repository_id": repository, "sha": MERGE, "position": 0, "parent_sha": HEAD}
            ],
        }
    )
    point = await cycle(gh_tenant)
    assert point["time_to_merge"] == one([50 * H])  # started at the head commit
    assert point["phases"]["coding"] == one([24 * H])

    # after the merge: only the deployment's shipped commits reach the pull request
    finished = datetime(2026, 3, 3, 18, tzinfo=UTC)
    await load(
        {
            "deployments": [
                {
                    "id": stable_id("deployments", "test", "d1"),
                    "source": "test",
                    "external_id": "d1",
                    "repository_id": repository,
                    "service": "api",
                    "environment": "production",
                    "result": "success",
                    "started_at": finished.replace(minute=0, hour=17),
                    "finished_at": finished,
                    "sha": MERGE,
                }
            ]
        }
    )
    point = await cycle(gh_tenant)
    assert point["phases"]["deploy"] == one([6 * H])
    assert point["cycle_time"] == one([56 * H])

    # every incremental refresh gave what a full one gives
    incremental = await facts(engine, gh_tenant.id)
    assert len(incremental) == 1
    await GITHUB_FACTS.refresh(engine, gh_tenant.id)
    assert await facts(engine, gh_tenant.id) == incremental


async def test_the_upgrade_to_the_engine_s_bookkeeping_fills_the_facts_of_tenants_without(
    engine: PulseEngine, gh_tenant: TenantFixture
) -> None:
    """``github_0003`` records a full refresh of every tenant with data and no facts (all
    of them after ``github_0002``), which the next start queues."""
    rows = Rows(engine, gh_tenant.id)
    repository = await rows.repository("svc")
    _, ada = await rows.person("Ada", "ada")
    await rows.pull_request(repository, 1, ada, "2026-03-02 10:00", merged="2026-03-03 12:00")
    assert await facts(engine, gh_tenant.id) == []  # written past the ETL loads

    await downgrade_plugin(engine, "github", "github_0002")
    await engine.migrate()
    # what the next start does; github_0004 recorded the same request for the file facts
    assert await GITHUB_FACTS.requeue_pending(engine) >= 1
    assert await GITHUB_FILE_FACTS.requeue_pending(engine) >= 1
    assert await engine.queue.wait_idle(60)
    assert len(await facts(engine, gh_tenant.id)) == 1
    assert (await cycle(gh_tenant))["time_to_merge"] == one([26 * H])


async def test_the_facts_are_tenant_scoped(
    engine: PulseEngine, github_app: Quart, gh_tenant: TenantFixture
) -> None:
    rows = Rows(engine, gh_tenant.id)
    repository = await rows.repository("svc")
    _, ada = await rows.person("Ada", "ada")
    await rows.pull_request(repository, 1, ada, "2026-03-02 10:00", merged="2026-03-03 12:00")
    await GITHUB_FACTS.refresh(engine, gh_tenant.id)
    other = await make_tenant(github_app)
    await GITHUB_FACTS.refresh(engine, other.id)
    assert len(await facts(engine, gh_tenant.id)) == 1
    assert await facts(engine, other.id) == []
    async with engine.db.tenant_session(other.id) as session:
        states = (
            (await session.execute(text("SELECT CAST(tenant_id AS text) "
                                        "FROM facts_refresh_state WHERE facts = 'github'")))
            .scalars()
            .all()
        )
    assert states == [other.id]
    assert await forced_rls(engine, ["github_pull_requests", "facts_refresh_state"]) == {
        "github_pull_requests": True, "facts_refresh_state": True}


async def forced_rls(engine: PulseEngine, tables: list[str]) -> dict[str, bool]:
    """Whether row-level security is forced on each of ``tables`` (as the owner sees it)."""
    async with engine.db.system_session() as session:
        return {name: forced for name, forced in (await session.execute(text(
            "SELECT relname, relforcerowsecurity FROM pg_class WHERE relname = ANY(:names)"),
            {"names": tables})).all()}


async def file_facts(engine: PulseEngine, tenant_id: str) -> list[Any]:
    """The tenant's per-file facts with their path texts (ids renumber on a full refresh)."""
    async with engine.db.tenant_session(tenant_id) as session:
        return list(
            (
                await session.execute(
                    text(
                        "SELECT g.authored_at, CAST(g.repository_id AS text) AS repository,"
                        " p.path, d.path AS directory, CAST(g.person_id AS text) AS person,"
                        " CAST(g.commit_id AS text) AS commit_id, g.changeset, g.additions,"
                        " g.deletions FROM github_file_changes g"
                        " JOIN github_paths p ON p.tenant_id = g.tenant_id AND p.id = g.path_id"
                        " AND NOT p.is_directory"
                        " JOIN github_paths d ON d.tenant_id = g.tenant_id"
                        " AND d.id = g.directory_id AND d.is_directory"
                        " ORDER BY g.authored_at, g.commit_id, p.path"
                    )
                )
            ).all()
        )


async def file_pairs(engine: PulseEngine, tenant_id: str) -> list[Any]:
    """The tenant's pairs of files changed together, with their path texts."""
    async with engine.db.tenant_session(tenant_id) as session:
        return list(
            (
                await session.execute(
                    text(
                        "SELECT g.authored_at, CAST(g.repository_id AS text) AS repository,"
                        " CAST(g.person_id AS text) AS person,"
                        " CAST(g.commit_id AS text) AS commit_id, g.changeset,"
                        " least(p.path, q.path) AS path, greatest(p.path, q.path) AS other"
                        " FROM github_file_pairs g"
                        " JOIN github_paths p ON p.tenant_id = g.tenant_id"
                        " AND p.id = g.first_path_id AND NOT p.is_directory"
                        " JOIN github_paths q ON q.tenant_id = g.tenant_id"
                        " AND q.id = g.second_path_id AND NOT q.is_directory"
                        " WHERE g.first_path_id < g.second_path_id"
                        " ORDER BY g.authored_at, g.commit_id, 6, 7"
                    )
                )
            ).all()
        )


async def commit_id(engine: PulseEngine, tenant_id: str, sha: str) -> str:
    """The id of the commit ``sha``."""
    async with engine.db.tenant_session(tenant_id) as session:
        return str(
            await session.scalar(text("SELECT CAST(id AS text) FROM commits WHERE sha = :sha"),
                                 {"sha": sha})
        )


async def test_file_facts_incremental_equal_full(
    engine: PulseEngine, gh_tenant: TenantFixture
) -> None:
    """Each incremental refresh of the per-file facts equals a fresh full one: merges and
    commits without an author identity are left out, merged identities are one person, a
    rename counts at its new path, and files loaded later for a pull request's merge commit
    authored before ``since`` are picked up through the pull request."""
    rows = Rows(engine, gh_tenant.id)
    repository = await rows.repository("svc")
    ada, ada_git = await rows.person("Ada", "ada")
    bob, bob_git = await rows.person("Bob", "bob")
    bob_work = await rows.identity(bob, "bob-work")

    async def check(since: str | None) -> list[Any]:
        await GITHUB_FILE_FACTS.refresh(engine, gh_tenant.id, at(since) if since else None)
        incremental = await file_facts(engine, gh_tenant.id)
        incremental_pairs = await file_pairs(engine, gh_tenant.id)
        await GITHUB_FILE_FACTS.refresh(engine, gh_tenant.id)
        assert await file_facts(engine, gh_tenant.id) == incremental
        assert await file_pairs(engine, gh_tenant.id) == incremental_pairs
        pairs.clear()
        pairs.extend(incremental_pairs)
        return incremental

    pairs: list[Any] = []
    first = await rows.commit(repository, ada_git, "2026-03-01 10:00",
                              files=(("src/a.py", 3, 1), ("README.md", 1, 0)))
    found = await check(None)
    assert [(row.path, row.directory, row.person, row.changeset, row.additions)
            for row in found] == [("README.md", "", ada, 2, 1), ("src/a.py", "src", ada, 2, 3)]
    assert [(row.path, row.other, row.person, row.changeset) for row in pairs] == [
        ("README.md", "src/a.py", ada, 2)]

    rebased = await rows.commit(repository, bob_git, "2026-03-02 09:00")
    await rows.commit(repository, bob_work, "2026-03-05 10:00",
                      files=(("src/a.py", 2, 2), ("src/lib/c.py", 1, 0)))
    await rows.commit(repository, bob_git, "2026-03-05 11:00", merge=True,
                      files=(("src/a.py", 9, 9),))
    await rows.add(model.commits, repository_id=repository, sha="f" * 40,
                   authored_at=at("2026-03-05 12:00"), is_merge=False, message="nobody")
    found = await check("2026-03-05 00:00")
    assert [(row.path, row.person) for row in found[2:]] == [
        ("src/a.py", bob), ("src/lib/c.py", bob)]
    assert found[0].commit_id == await commit_id(engine, gh_tenant.id, first)
    assert [row.changeset for row in found[2:]] == [2, 2]
    assert [(row.path, row.other, row.person) for row in pairs] == [
        ("README.md", "src/a.py", ada), ("src/a.py", "src/lib/c.py", bob)]

    # a rebase merge: the pull request's merge commit was authored before the pull request
    # was opened, and its files come with the pull request
    await rows.pull_request(repository, 7, bob_git, "2026-03-06 08:00",
                            merged="2026-03-06 12:00", merge_sha=rebased)
    await rows.add(model.commit_files, repository_id=repository, sha=rebased,
                   commit_id=await commit_id(engine, gh_tenant.id, rebased),
                   path="docs/guide.md", previous_path="guide.md", additions=None,
                   deletions=None, is_binary=True)
    found = await check("2026-03-06 08:00")
    assert [(row.path, row.directory, row.person, row.additions) for row in found
            if row.authored_at == at("2026-03-02 09:00")] == [
        ("docs/guide.md", "docs", bob, None)]
    assert len(found) == 5


async def test_file_pairs_are_kept_for_commits_of_at_most_30_files(
    engine: PulseEngine, gh_tenant: TenantFixture
) -> None:
    """A commit of 30 files has its 435 pairs kept, one of 31 files none (the coupling pairs
    them per request when asked for a larger limit); an incremental refresh writes the
    same."""
    rows = Rows(engine, gh_tenant.id)
    repository = await rows.repository("svc")
    _, ada = await rows.person("Ada", "ada")
    await rows.commit(repository, ada, "2026-03-01 10:00",
                      files=tuple((f"lib/{n:02}.py", 1, 0) for n in range(30)))
    await rows.commit(repository, ada, "2026-03-02 10:00",
                      files=tuple((f"vendor/{n:02}.py", 1, 0) for n in range(31)))
    await GITHUB_FILE_FACTS.refresh(engine, gh_tenant.id, at("2026-03-01 00:00"))
    incremental = await file_pairs(engine, gh_tenant.id)
    await GITHUB_FILE_FACTS.refresh(engine, gh_tenant.id)
    full = await file_pairs(engine, gh_tenant.id)
    assert full == incremental
    assert {(row.path, row.other) for row in full} == set(
        combinations([f"lib/{n:02}.py" for n in range(30)], 2))
    assert len(full) == 435 and {row.changeset for row in full} == {30}
    assert len(await file_facts(engine, gh_tenant.id)) == 61


async def test_file_facts_are_tenant_scoped(
    engine: PulseEngine, github_app: Quart, gh_tenant: TenantFixture
) -> None:
    rows = Rows(engine, gh_tenant.id)
    repository = await rows.repository("svc")
    _, ada = await rows.person("Ada", "ada")
    await rows.commit(repository, ada, "2026-03-01 10:00", files=(("a.py", 1, 0),))
    await GITHUB_FILE_FACTS.refresh(engine, gh_tenant.id)
    other = await make_tenant(github_app)
    await GITHUB_FILE_FACTS.refresh(engine, other.id)
    assert len(await file_facts(engine, gh_tenant.id)) == 1
    assert await file_facts(engine, other.id) == []
    async with engine.db.tenant_session(other.id) as session:
        for table in ("github_file_changes", "github_paths", "github_file_pairs"):
            assert await session.scalar(text(f"SELECT count(*) FROM {table}")) == 0, table
    assert await forced_rls(engine, ["github_file_changes", "github_paths",
                                     "github_file_pairs"]) == {
        "github_file_changes": True, "github_paths": True, "github_file_pairs": True}


async def test_metrics_say_refresh_pending_until_the_load_s_refresh_ran(
        engine: PulseEngine, gh_tenant: TenantFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    async def metric() -> dict[str, Any]:
        response = await gh_tenant.viewer_client.get(
            "/api/v1/metrics/github.pr_time_to_merge", query_string=MARCH)
        body = await response.get_json()
        assert response.status_code == 200, body
        return dict(body)

    service = service_for(engine)
    repository, repository_rows = gm.repository({"full_name": "acme/api"})
    await load_batch(service, gh_tenant.id, repository_rows, "github")
    assert await engine.queue.wait_idle(30)
    before = await metric()
    assert before["freshness"]["refresh_pending"] is False
    assert before["value"]["sample_size"] == 0
    # hold the refresh the load queues, as a busy queue would
    held = hold_messages(monkeypatch, engine, GITHUB_FACTS.queue)
    await load_batch(service, gh_tenant.id, gm.pull_request(PULL, repository), "github")
    assert len(held) == 1
    during = await metric()
    assert during["freshness"]["refresh_pending"] is True
    assert during["value"]["sample_size"] == 0  # the facts before the load
    since = held[0]["since"]
    await GITHUB_FACTS.refresh(engine, gh_tenant.id,
                               datetime.fromisoformat(since) if since else None)
    after = await metric()
    assert after["freshness"]["refresh_pending"] is False
    assert (after["value"]["value"], after["value"]["sample_size"]) == (26 * H, 1)


async def test_the_split_of_the_file_facts_refresh_keeps_their_state(
        engine: PulseEngine, gh_tenant: TenantFixture) -> None:
    """``github_0004``: a tenant refreshed by the one refresh of before (facts ``github``)
    has the per-file facts' state copied (they were written by that refresh), so the
    upgrade rewrites nothing; a pending request is recorded for both."""
    rows = Rows(engine, gh_tenant.id)
    repository = await rows.repository("svc")
    _, ada = await rows.person("Ada", "ada")
    await rows.commit(repository, ada, "2026-03-01 10:00", files=(("a.py", 1, 0),))
    await GITHUB_FACTS.refresh(engine, gh_tenant.id)

    async def bookkeeping() -> tuple[dict[str, Any], set[str]]:
        async with engine.db.tenant_session(gh_tenant.id) as session:
            states = {row.facts: (row.refreshed_at, row.full_refresh_at)
                      for row in await session.execute(text(
                          "SELECT facts, refreshed_at, full_refresh_at FROM facts_refresh_state"))}
            pending = set((await session.execute(text(
                "SELECT facts FROM facts_refresh_requests"))).scalars())
        return states, pending

    await downgrade_plugin(engine, "github", "github_0003")
    states, pending = await bookkeeping()
    assert set(states) == {"github"} and pending == set()
    async with engine.db.tenant_session(gh_tenant.id) as session:  # a load not yet refreshed
        await session.execute(text(
            "INSERT INTO facts_refresh_requests (tenant_id, facts, requested_at, since) "
            "VALUES (CAST(:tenant AS uuid), 'github', now(), '2026-03-01')"),
            {"tenant": gh_tenant.id})
    await engine.migrate()
    upgraded, pending = await bookkeeping()
    assert upgraded == {"github": states["github"], "github_files": states["github"]}
    assert pending == {"github", "github_files"}


async def test_the_upgrade_to_file_pairs_records_a_full_refresh_of_the_file_facts(
        engine: PulseEngine, gh_tenant: TenantFixture) -> None:
    """``github_0005``: the pairs table comes empty, and every tenant with per-file facts
    gets a full refresh of them recorded, which writes its pairs."""
    rows = Rows(engine, gh_tenant.id)
    repository = await rows.repository("svc")
    _, ada = await rows.person("Ada", "ada")
    await rows.commit(repository, ada, "2026-03-01 10:00", files=(("a.py", 1, 0), ("b.py", 1, 0)))
    await GITHUB_FILE_FACTS.refresh(engine, gh_tenant.id)
    await downgrade_plugin(engine, "github", "github_0004")
    async with engine.db.system_session() as session:
        assert await session.scalar(text("SELECT to_regclass('github_file_pairs')")) is None
    await engine.migrate()
    async with engine.db.tenant_session(gh_tenant.id) as session:
        assert await session.scalar(text("SELECT count(*) FROM github_file_pairs")) == 0
        requested = (await session.execute(text(
            "SELECT facts, since, full_refresh FROM facts_refresh_requests"))).all()
    assert [tuple(row) for row in requested] == [("github_files", None, True)]
    await GITHUB_FILE_FACTS.refresh(engine, gh_tenant.id)
    assert [(row.path, row.other) for row in await file_pairs(engine, gh_tenant.id)] == [
        ("a.py", "b.py")]
