"""Derived facts: shipped commits per METRICS.md (hand-built and random histories, merges,
maintenance branches, failures, out-of-order arrival, parents after children, moved
deployments) and what incidents state about their deployment (an id or external id; the
rest of the link rule is pulse-dora's)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pulse_etl import derive, model
from pulse_etl.loads import Loaded
from pulse_etl.model import stable_id
from pulse_etl.service import EtlService
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_engine.testing import TenantFixture

SHA = "a" * 40
T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)


def deployment(environment: str, finished: datetime) -> dict[str, object]:
    """A successful deployment of SHA to an environment."""
    return {
        "id": stable_id("deployments", "test", environment),
        "source": "test",
        "external_id": environment,
        "service": "api",
        "environment": environment,
        "result": "success",
        "started_at": finished - timedelta(minutes=5),
        "finished_at": finished,
        "sha": SHA,
    }


def incident(key: str, created: datetime, reference: str | None) -> dict[str, object]:
    """An incident of the api service, optionally naming a deployment or SHA."""
    return {
        "id": stable_id("incidents", "test", key),
        "source": "test",
        "external_id": key,
        "service": "api",
        "created_at_source": created,
        "resolved_at": created + timedelta(hours=1),
        "deployment_ref": reference,
    }


async def test_incidents_keep_only_the_deployment_their_source_names(
    etl: EtlService, etl_tenant: TenantFixture
) -> None:
    """A reference by id or external id is stated by the source; a SHA names a commit (which
    deployment shipped it to production is the tenant's DORA settings' question, as is a
    link by time), so pulse-etl records no deployment for it."""
    production = deployment("production", T0)
    staging = deployment("staging", T0 + timedelta(hours=2))
    batch = {
        "deployments": [production, staging],
        "incidents": [
            incident("by-id", T0 + timedelta(hours=3), str(production["id"])),
            incident("by-external-id", T0 + timedelta(hours=3), "staging"),
            incident("by-sha", T0 + timedelta(hours=3), SHA),
            incident("implicit", T0 + timedelta(days=1), None),
            incident("unknown-ref", T0 + timedelta(hours=1), "no-such-deploy"),
        ],
    }

    async def links() -> dict[str, tuple[Any, Any]]:
        async with etl.engine.db.tenant_session(etl_tenant.id) as session:
            await derive.link_incidents(session, etl_tenant.id)
            return {
                row.external_id: (row.deployment_id, row.link_reason)
                for row in await session.execute(select(model.incidents))
            }

    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        await etl.loader.load(session, etl_tenant.id, batch)
        # a link by time, as the previous rule stored it
        await session.execute(
            update(model.incidents).where(model.incidents.c.external_id == "implicit")
            .values(deployment_id=production["id"], link_reason="latest_deployment"))
    rows = await links()
    assert rows["by-id"] == (production["id"], "explicit")
    assert rows["by-external-id"] == (staging["id"], "explicit")
    assert rows["by-sha"] == (None, None)
    assert rows["implicit"] == (None, None)
    assert rows["unknown-ref"] == (None, None)
    # a reference the source drops again unlinks the incident
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        await etl.loader.load(session, etl_tenant.id, {
            "incidents": [incident("by-id", T0 + timedelta(hours=3), None)]})
    assert (await links())["by-id"] == (None, None)


# --- shipped commits (deployment_commits) ------------------------------------------------

REPOSITORY = stable_id("repositories", "test", "dag")
Graph = dict[str, list[str]]

# main:        A - B - C - D - M - E - N
# maintenance:      \- R1 - R2 -/       (merged into main at M)
# feature:              \- F1 - F2 -----/ (merged into main at N)
DAG: Graph = {
    "A": [], "B": ["A"], "C": ["B"], "D": ["C"], "R1": ["B"], "R2": ["R1"],
    "M": ["D", "R2"], "E": ["M"], "F1": ["C"], "F2": ["F1"], "N": ["E", "F2"],
}


def commit_batch(graph: Graph, shas: list[str] | None = None) -> dict[str, list[dict[str, object]]]:
    """Rows of the commits ``shas`` of ``graph`` (all of them by default) with parents."""
    chosen = list(graph) if shas is None else shas
    return {
        "repositories": [{"id": REPOSITORY, "source": "test", "external_id": "dag",
                          "name": "dag", "service": "dag"}],
        "commits": [{"id": stable_id("commits", REPOSITORY, sha), "repository_id": REPOSITORY,
                     "sha": sha, "source": "test", "is_merge": len(graph[sha]) > 1}
                    for sha in chosen],
        "commit_parents": [{"repository_id": REPOSITORY, "sha": sha, "position": position,
                            "parent_sha": parent}
                           for sha in chosen for position, parent in enumerate(graph[sha])],
    }


def deploy(key: str, sha: str, hours: float, result: str = "success",
           environment: str = "production") -> dict[str, object]:
    """A deployment of ``sha`` to ``environment`` finished ``hours`` after T0."""
    finished = T0 + timedelta(hours=hours)
    return {
        "id": stable_id("deployments", "test", key), "source": "test", "external_id": key,
        "repository_id": REPOSITORY, "service": "dag", "environment": environment,
        "result": result, "started_at": finished - timedelta(minutes=5),
        "finished_at": finished, "sha": sha,
    }


def reference(graph: Graph, deployments: list[dict[str, object]]) -> set[tuple[str, str]]:
    """METRICS.md by brute force: per successful deployment in finish order, the commits
    reachable from its SHA and not from an earlier successful one of its group."""
    def ancestry(sha: str) -> set[str]:
        found, pending = set(), [sha]
        while pending:
            current = pending.pop()
            if current in graph and current not in found:
                found.add(current)
                pending.extend(graph[current])
        return found

    shipped: dict[object, set[str]] = {}
    rows: set[tuple[str, str]] = set()
    successful = [d for d in deployments if d["result"] == "success"]
    for d in sorted(successful, key=lambda d: (d["finished_at"], d["id"])):  # type: ignore[arg-type,return-value]
        earlier = shipped.setdefault(d["environment"], set())
        new = ancestry(str(d["sha"])) - earlier
        earlier |= new
        rows |= {(str(d["id"]), sha) for sha in new}
    return rows


async def shipped_rows(etl: EtlService, tenant_id: str) -> set[tuple[str, str]]:
    """The tenant's ``(deployment_id, sha)`` rows of deployment_commits."""
    table = model.deployment_commits
    async with etl.engine.db.tenant_session(tenant_id) as session:
        rows = await session.execute(select(table.c.deployment_id, table.c.sha))
        return {(str(deployment_id), sha) for deployment_id, sha in rows}


async def load(etl: EtlService, tenant_id: str, batch: dict[str, list[dict[str, object]]]
               ) -> Loaded:
    """Load ``batch`` as a connector's commit does (derived facts included)."""
    async with etl.engine.db.tenant_session(tenant_id) as session:
        return await etl.loads.load(session, tenant_id, batch)


def named(rows: set[tuple[str, str]], deployments: list[dict[str, object]]
          ) -> dict[str, set[str]]:
    """Shipped SHAs per deployment key (deployments that shipped nothing left out)."""
    keys = {str(d["id"]): str(d["external_id"]) for d in deployments}
    found: dict[str, set[str]] = {}
    for deployment_id, sha in rows:
        found.setdefault(keys[deployment_id], set()).add(sha)
    return found


SCENARIO = [
    deploy("d1", "C", 1),
    deploy("d2", "R2", 2),  # the maintenance branch
    deploy("d3", "E", 3, result="failure"),
    deploy("d4", "E", 4),
    deploy("d5", "N", 5),
    deploy("d6", "N", 6),  # a redeploy ships nothing
    deploy("s1", "N", 1.5, environment="staging"),
]
EXPECTED = {
    "d1": {"A", "B", "C"},
    "d2": {"R1", "R2"},
    "d4": {"D", "M", "E"},
    "d5": {"F1", "F2", "N"},
    "s1": set(DAG),
}


async def test_merges_maintenance_branch_and_failed_deployments(
    etl: EtlService, etl_tenant: TenantFixture
) -> None:
    await load(etl, etl_tenant.id, {**commit_batch(DAG), "deployments": SCENARIO})
    rows = await shipped_rows(etl, etl_tenant.id)
    assert named(rows, SCENARIO) == EXPECTED
    assert rows == reference(DAG, SCENARIO)


async def test_out_of_order_deployments_take_their_commits_back(
    etl: EtlService, etl_tenant: TenantFixture
) -> None:
    later = [d for d in SCENARIO if d["external_id"] in ("d4", "d5", "s1")]
    await load(etl, etl_tenant.id, {**commit_batch(DAG), "deployments": later})
    assert named(await shipped_rows(etl, etl_tenant.id), later)["d4"] == {
        "A", "B", "C", "D", "M", "E", "R1", "R2"}
    # d1 and d2 finished before d4 but arrive after it: they take their commits back
    earlier = [d for d in SCENARIO if d not in later]
    await load(etl, etl_tenant.id, {"deployments": earlier})
    assert named(await shipped_rows(etl, etl_tenant.id), SCENARIO) == EXPECTED
    # a success turned failure gives its commits to the next deployment
    await load(etl, etl_tenant.id, {"deployments": [deploy("d2", "R2", 2, result="failure")]})
    assert named(await shipped_rows(etl, etl_tenant.id), SCENARIO)["d4"] == {
        "D", "M", "E", "R1", "R2"}


async def test_deployments_recorded_before_their_commits(
    etl: EtlService, etl_tenant: TenantFixture
) -> None:
    await load(etl, etl_tenant.id, {"deployments": SCENARIO})
    assert await shipped_rows(etl, etl_tenant.id) == set()
    order = ["A", "B", "C", "D", "R1", "R2", "M", "E", "F1", "F2", "N"]  # parents first
    await load(etl, etl_tenant.id, commit_batch(DAG, order[:5]))
    assert named(await shipped_rows(etl, etl_tenant.id), SCENARIO) == {"d1": {"A", "B", "C"}}
    await load(etl, etl_tenant.id, commit_batch(DAG, order[5:]))
    assert named(await shipped_rows(etl, etl_tenant.id), SCENARIO) == EXPECTED


async def test_moved_deployments_give_their_commits_back(
    etl: EtlService, etl_tenant: TenantFixture
) -> None:
    await load(etl, etl_tenant.id, {**commit_batch(DAG), "deployments": SCENARIO})
    current = {str(d["external_id"]): d for d in SCENARIO}
    # d1 is re-sent finishing after d4: d2 and d4 now ship what it did
    current["d1"] = deploy("d1", "C", 4.5)
    loaded = await load(etl, etl_tenant.id, {"deployments": [current["d1"]]})
    # metric plugins are told to recompute from where d1 used to finish
    assert loaded.since == T0 + timedelta(hours=1)
    rows = await shipped_rows(etl, etl_tenant.id)
    assert named(rows, SCENARIO)["d4"] == {"C", "D", "M", "E"}
    assert rows == reference(DAG, list(current.values()))
    # d4 turns out to have gone to staging: d1 and d5 ship its commits in production
    current["d4"] = deploy("d4", "E", 4, environment="staging")
    await load(etl, etl_tenant.id, {"deployments": [current["d4"]]})
    rows = await shipped_rows(etl, etl_tenant.id)
    assert named(rows, SCENARIO)["d5"] == {"D", "M", "E", "F1", "F2", "N"}
    assert rows == reference(DAG, list(current.values()))


async def test_parents_arriving_after_their_children(
    etl: EtlService, etl_tenant: TenantFixture
) -> None:
    # every deployment but the redeploy d6 ships something from the first commits, so
    # only the late parents themselves can tell that more was shipped
    deployments = [d for d in SCENARIO if d["external_id"] != "d1"]
    await load(etl, etl_tenant.id, {"deployments": deployments})
    order = ["A", "B", "C", "D", "R1", "R2", "M", "E", "F1", "F2", "N"]
    # newest first, as a paging API sends them
    newest = {sha: DAG[sha] for sha in order[5:]}
    await load(etl, etl_tenant.id, commit_batch(DAG, order[5:]))
    rows = await shipped_rows(etl, etl_tenant.id)
    assert named(rows, deployments)["d2"] == {"R2"}
    assert rows == reference(newest, deployments)
    await load(etl, etl_tenant.id, commit_batch(DAG, order[:5]))
    rows = await shipped_rows(etl, etl_tenant.id)
    assert named(rows, deployments)["d2"] == {"A", "B", "R1", "R2"}
    assert rows == reference(DAG, deployments)


def random_history(rng: random.Random, size: int) -> Graph:
    """A merge-heavy history: commits on a few branches, a third of them merges."""
    graph: Graph = {"c0": []}
    for number in range(1, size):
        recent = list(graph)[-12:]
        parents = [rng.choice(recent)]
        if rng.random() < 0.35 and len(graph) > 2:
            other = rng.choice(list(graph)[:-1])
            if other not in parents:
                parents.append(other)
        graph[f"c{number}"] = parents
    return graph


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_histories_match_the_definition(
    etl: EtlService, etl_tenant: TenantFixture, seed: int
) -> None:
    rng = random.Random(seed)
    graph = random_history(rng, 160)
    shas = list(graph)
    deployments = [
        deploy(f"r{number}", rng.choice(shas), rng.choice(range(40)),  # ties on finish time
               result=rng.choice(["success"] * 4 + ["failure", "cancelled"]),
               environment=rng.choice(["production", "staging"]))
        for number in range(70)
    ]
    # commits arrive parents first in chunks (as connectors send them), deployments in
    # any order and at any time, also before the commits they deployed
    chunks = [shas[i : i + 40] for i in range(0, len(shas), 40)]
    arrival: list[list[dict[str, object]]] = [[] for _ in chunks]
    for d in deployments:
        arrival[rng.randrange(len(chunks))].append(d)
    for chunk, arriving in zip(chunks, arrival, strict=True):
        await load(etl, etl_tenant.id, {**commit_batch(graph, chunk), "deployments": arriving})
    assert await shipped_rows(etl, etl_tenant.id) == reference(graph, deployments)
    # a full recompute gives the same rows
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        await derive.materialise_deployment_commits(
            session, etl_tenant.id,
            [(REPOSITORY, "production", None), (REPOSITORY, "staging", None)])
    assert await shipped_rows(etl, etl_tenant.id) == reference(graph, deployments)


@pytest.mark.parametrize("seed", [4, 5, 6])
async def test_random_histories_newest_first_with_moved_deployments(
    etl: EtlService, etl_tenant: TenantFixture, seed: int
) -> None:
    rng = random.Random(seed)
    graph = random_history(rng, 120)
    shas = list(graph)

    def random_deployment(key: str) -> dict[str, object]:
        return deploy(key, rng.choice(shas), rng.choice(range(30)),
                      result=rng.choice(["success"] * 4 + ["failure"]),
                      environment=rng.choice(["production", "staging"]))

    deployments = {f"r{number}": random_deployment(f"r{number}") for number in range(50)}
    # commits arrive newest first, deployments before, between and after them
    chunks = [shas[i : i + 30] for i in range(0, len(shas), 30)][::-1]
    keys = list(deployments)
    for index, chunk in enumerate(chunks):
        arriving = [deployments[key] for key in keys[index::len(chunks)]]
        await load(etl, etl_tenant.id, {**commit_batch(graph, chunk), "deployments": arriving})
    assert await shipped_rows(etl, etl_tenant.id) == reference(graph, list(deployments.values()))
    # a third are re-sent moved: another finish time, environment, SHA or result
    for key in rng.sample(keys, len(keys) // 3):
        deployments[key] = random_deployment(key)
        await load(etl, etl_tenant.id, {"deployments": [deployments[key]]})
    assert await shipped_rows(etl, etl_tenant.id) == reference(graph, list(deployments.values()))


async def test_one_walk_per_batch_of_deployments(
    etl: EtlService, etl_tenant: TenantFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a linear history deployed 200 times: batches of 1, 2, 4... 64 deployments
    graph: Graph = {f"c{n}": [f"c{n - 1}"] if n else [] for n in range(400)}
    deployments = [deploy(f"l{n}", f"c{2 * n + 1}", n) for n in range(200)]
    walks = 0
    execute = AsyncSession.execute

    async def counting(self: AsyncSession, statement: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal walks
        walks += str(statement).lstrip().startswith("INSERT INTO deployment_commits")
        return await execute(self, statement, *args, **kwargs)

    monkeypatch.setattr(AsyncSession, "execute", counting)
    await load(etl, etl_tenant.id, {**commit_batch(graph), "deployments": deployments})
    assert walks == 9  # 1 + 2 + 4 + 8 + 16 + 32 + 64 + 64 + 9
    assert await shipped_rows(etl, etl_tenant.id) == reference(graph, deployments)


# --- reverts become incidents ------------------------------------------------------------

def revert_history() -> dict[str, list[dict[str, object]]]:
    """A, then B (the bad change), C, and R reverting B an hour after B, as ``git revert``
    writes it; X names a SHA this repository does not have."""
    def row(sha: str, hours: float, message: str, parents: list[str]) -> dict[str, object]:
        moment = T0 + timedelta(hours=hours)
        return {"id": stable_id("commits", REPOSITORY, sha), "repository_id": REPOSITORY,
                "sha": sha, "source": "test", "message": message, "authored_at": moment,
                "committed_at": moment, "_parents": parents}

    bad = "b" * 40
    commits = [
        row("a" * 40, 0, "Initial", []),
        row(bad, 1, "Cache totals", ["a" * 40]),
        row("c" * 40, 1.5, "Docs", [bad]),
        row("d" * 40, 2, f'Revert "Cache totals"\n\nThis reverts commit {bad}.', ["c" * 40]),
        row("e" * 40, 3, f'Revert "Old"\n\nThis reverts commit {"f" * 40}.', ["d" * 40]),
    ]
    return {
        "repositories": [{"id": REPOSITORY, "source": "test", "external_id": "dag",
                          "name": "dag", "service": "dag"}],
        "commits": [{k: v for k, v in c.items() if k != "_parents"} for c in commits],
        "commit_parents": [{"repository_id": REPOSITORY, "sha": c["sha"], "position": i,
                            "parent_sha": p} for c in commits
                           for i, p in enumerate(c["_parents"])],  # type: ignore[arg-type]
    }


async def revert_rows(etl: EtlService, tenant_id: str) -> list[Any]:
    async with etl.engine.db.tenant_session(tenant_id) as session:
        return list((await session.execute(
            select(model.incidents).where(model.incidents.c.source == "revert"))).all())


@pytest.mark.parametrize("order", ["oldest first", "newest first"])
async def test_a_revert_is_an_incident_of_the_reverted_change(
    etl: EtlService, etl_tenant: TenantFixture, order: str
) -> None:
    history = revert_history()
    commits = history["commits"]
    chunks = [commits[:2], commits[2:]] if order == "oldest first" else [commits[3:],
                                                                          commits[:3]]
    parents = history["commit_parents"]
    loaded = []
    for chunk in chunks:
        shas = {c["sha"] for c in chunk}
        loaded.append(await load(etl, etl_tenant.id, {
            "repositories": history["repositories"], "commits": chunk,
            "commit_parents": [p for p in parents if p["sha"] in shas]}))
    [incident] = await revert_rows(etl, etl_tenant.id)
    assert incident.deployment_ref == "b" * 40 and incident.title == 'Revert "Cache totals"'
    assert (incident.created_at_source, incident.resolved_at) == (
        T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    assert incident.repository_id == REPOSITORY
    # the load that completed the pair counted the incident and reaches back to its start
    assert loaded[1].stats["incidents"]["created"] == 1
    assert loaded[1].since is not None and loaded[1].since <= T0 + timedelta(hours=1)
    # loading everything again derives nothing new
    again = await load(etl, etl_tenant.id, history)
    assert again.stats.get("incidents", {}).get("created", 0) == 0
    assert len(await revert_rows(etl, etl_tenant.id)) == 1


async def test_the_reverted_commit_index_migrates_down_and_up(etl: EtlService) -> None:
    from alembic import command
    from sqlalchemy import text
    from sqlalchemy.engine import Connection

    from pulse_engine.migrations import alembic_config

    engine = etl.engine
    present: list[bool] = []

    def cycle(connection: Connection) -> None:
        config = alembic_config("etl", engine.migration_folders["etl"], engine.metadata)
        config.attributes["connection"] = connection

        def exists() -> bool:
            return connection.execute(text(
                "SELECT to_regclass('ix_commits_reverted') IS NOT NULL")).scalar_one()

        present.append(exists())
        command.downgrade(config, "etl_0001")
        present.append(exists())
        command.upgrade(config, "heads")
        present.append(exists())

    assert engine.db.owner_engine is not None
    async with engine.db.owner_engine.begin() as connection:
        await connection.run_sync(cycle)
    assert present == [True, False, True]
