"""pulse-portfolio's facts (``portfolio_work_items``): full and incremental refreshes equal
a brute force over the items; loads and configuration changes refresh them; answers say
a refresh is pending until it ran; row-level security keeps tenants apart."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from portfolio_rows import Rows
from pulse_etl.model import stable_id
from pulse_etl.plugin import service_for
from pulse_etl.service import load_batch
from pulse_portfolio.config import tenant_config
from pulse_portfolio.facts import PORTFOLIO_FACTS
from pulse_portfolio.flow import load_items
from quart import Quart
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture, downgrade_plugin, hold_messages, make_tenant

T0 = datetime(2024, 1, 1, tzinfo=UTC)
STATUSES = ("To Do", "Backlog", "In Progress", "Review", "Blocked", "Done")


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


async def stored(engine: PulseEngine, tenant_id: str) -> dict[str, tuple[Any, ...]]:
    """The tenant's facts, by work item."""
    async with engine.db.tenant_session(tenant_id) as session:
        rows = (await session.execute(text(
            "SELECT CAST(work_item_id AS text), CAST(project_id AS text), resolved_at, "
            "started_at, cycle_seconds FROM portfolio_work_items"))).all()
    return {row[0]: tuple(row[1:]) for row in rows}


async def brute_force(engine: PulseEngine, tenant_id: str) -> dict[str, tuple[Any, ...]]:
    """What the facts must be: every finished item with :meth:`Item.start` (in Python)."""
    config = await tenant_config(engine, tenant_id)
    async with engine.db.tenant_session(tenant_id) as session:
        items = await load_items(session, None, at(-10_000), at(10_000))
    out = {}
    for item in items:
        if item.resolved is None:
            continue
        started = item.start(config)
        out[item.id] = (item.project_id, item.resolved, started,
                        None if started is None else (item.resolved - started).total_seconds())
    return out


async def run(engine: PulseEngine, tenant_id: str, since: datetime | None) -> int:
    """Refresh now; the rows written."""
    return (await PORTFOLIO_FACTS.refresh(engine, tenant_id, since))["portfolio_work_items"]


async def random_items(rows: Rows, projects: list[str], rng: random.Random, n: int,
                       offset: float = 0.0) -> list[str]:
    ids = []
    for _ in range(n):
        created = at(offset + rng.uniform(0, 60))
        moments = sorted(created + timedelta(hours=rng.uniform(-2, 400))
                         for _ in range(rng.randint(0, 4)))
        changes = [(moment, rng.choice(STATUSES)) for moment in moments]
        resolved = (created + timedelta(hours=rng.uniform(-5, 500))
                    if rng.random() < 0.8 else None)
        ids.append(await rows.item(rng.choice(projects), created=created, resolved=resolved,
                                   changes=changes))
    return ids


def same(left: dict[str, tuple[Any, ...]], right: dict[str, tuple[Any, ...]]) -> None:
    assert left.keys() == right.keys()
    for key, (project, resolved, started, cycle) in left.items():
        other = right[key]
        assert (project, resolved, started) == other[:3], key
        assert cycle == pytest.approx(other[3]) if cycle is not None else other[3] is None


async def test_full_and_incremental_recomputes_equal_a_brute_force(
        engine: PulseEngine, rows: Rows) -> None:
    rng = random.Random(7)
    projects = [await rows.project("Alpha"), await rows.project("Beta"), None]
    await random_items(rows, projects, rng, 60)  # type: ignore[arg-type]
    written = await run(engine, rows.tenant_id, None)
    expected = await brute_force(engine, rows.tenant_id)
    assert written == len(expected) > 30
    same(await stored(engine, rows.tenant_id), expected)
    # a later load: new items, an open item resolved, a finished one reopened, a status
    # change that moves a finished item's start; since = the load's earliest event time
    since = at(40)
    await random_items(rows, projects, rng, 20, offset=40)  # type: ignore[arg-type]
    tenant = rows.tenant_id
    async with engine.db.tenant_session(tenant) as session:
        ids = (await session.execute(text(
            "SELECT CAST(id AS text), resolved_at FROM work_items "
            "WHERE created_at_source >= :since ORDER BY id"), {"since": since})).all()
        opened = next(i for i, resolved in ids if resolved is None)
        finished = [i for i, resolved in ids if resolved is not None]
        await session.execute(text("UPDATE work_items SET resolved_at = :at WHERE id = :id"),
                              {"at": since + timedelta(days=30), "id": opened})
        await session.execute(text("UPDATE work_items SET resolved_at = NULL WHERE id = :id"),
                              {"id": finished[0]})
        # an older finished item without history, whose start becomes the new change
        older = (await session.execute(text(
            "SELECT CAST(id AS text) FROM work_items w WHERE created_at_source < :since "
            "AND resolved_at > :since AND NOT EXISTS (SELECT 1 FROM work_item_status_changes "
            "c WHERE c.work_item_id = w.id) LIMIT 1"), {"since": since})).scalar_one()
    await rows._insert("work_item_status_changes", {
        "work_item_id": older, "changed_at": since, "to_status": "In Progress"})
    before = await stored(engine, tenant)
    written = await run(engine, tenant, since)
    expected = await brute_force(engine, tenant)
    after = await stored(engine, tenant)
    same(after, expected)
    changed = {k for k in after.keys() | before.keys() if after.get(k) != before.get(k)}
    assert written == len(changed) > 5
    assert await run(engine, tenant, since) == 0  # nothing changed: nothing written
    assert await run(engine, tenant, None) == len(expected)
    same(await stored(engine, tenant), expected)


def loaded_item(key: str, created: datetime, resolved: datetime | None,
                changes: list[tuple[datetime, str]]) -> dict[str, list[dict[str, Any]]]:
    """A batch of one work item and its status changes, as a connector sends it."""
    item_id = stable_id("work_items", "test", key)
    return {
        "work_items": [{"id": item_id, "source": "test", "external_id": key, "type": "story",
                        "status": "Done" if resolved else "In Progress",
                        "created_at_source": created, "resolved_at": resolved}],
        "work_item_status_changes": [
            {"id": stable_id("work_item_status_changes", "test", f"{key}-{n}"),
             "source": "test", "external_id": f"{key}-{n}", "work_item_id": item_id,
             "changed_at": moment, "to_status": status}
            for n, (moment, status) in enumerate(changes)],
    }


async def metric(tenant: TenantFixture, name: str) -> dict[str, Any]:
    """``GET /metrics/{name}`` over January 2024, uncached (a fresh window each time is not
    needed: every refresh drops the cached answers)."""
    response = await tenant.viewer_client.get(f"/api/v1/metrics/{name}", query_string={
        "start": "2024-01-01", "end": "2024-02-01", "interval": "all"})
    body = await response.get_json()
    assert response.status_code == 200, body
    return dict(body)


async def test_a_load_queues_a_refresh_and_answers_say_pending_until_it_ran(
        engine: PulseEngine, tenant: TenantFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    service = service_for(engine)
    await run(engine, tenant.id, None)
    before = await metric(tenant, "portfolio.throughput")
    assert before["value"]["value"] == 0 and before["freshness"]["refresh_pending"] is False
    # hold the refresh the load queues, as a busy queue would
    held = hold_messages(monkeypatch, engine, PORTFOLIO_FACTS.queue)
    await load_batch(service, tenant.id, loaded_item(
        "A-1", at(1), at(4), [(at(1), "To Do"), (at(2), "In Progress"), (at(4), "Done")]),
        "test")
    assert held == [{"since": at(1).isoformat()}]  # the load's earliest event: the creation
    during = await metric(tenant, "portfolio.throughput")
    assert during["freshness"] == {**before["freshness"], "refresh_pending": True}
    assert during["value"]["value"] == 0  # the facts before the load
    await run(engine, tenant.id, datetime.fromisoformat(held[0]["since"]))
    after = await metric(tenant, "portfolio.throughput")
    assert after["freshness"]["refresh_pending"] is False
    assert after["freshness"]["data_until"] > before["freshness"]["data_until"]
    assert after["value"]["value"] == 1
    cycle = await metric(tenant, "portfolio.cycle_time")
    assert cycle["value"]["value"] == pytest.approx(2 * 86400)  # from In Progress to done


async def test_the_queued_refresh_runs_after_a_load(engine: PulseEngine,
                                                     tenant: TenantFixture) -> None:
    service = service_for(engine)
    await load_batch(service, tenant.id, loaded_item("B-1", at(3), at(5), []), "test")
    assert await engine.queue.wait_idle(30)
    assert (await metric(tenant, "portfolio.throughput"))["value"]["value"] == 1
    # the item re-sent, reopened: its row goes
    await load_batch(service, tenant.id, loaded_item("B-1", at(3), None, []), "test")
    assert await engine.queue.wait_idle(30)
    after = await metric(tenant, "portfolio.throughput")
    assert after["value"]["value"] == 0 and after["freshness"]["refresh_pending"] is False


async def test_new_to_do_statuses_recompute_every_start(
        engine: PulseEngine, rows: Rows, tenant: TenantFixture) -> None:
    alpha = await rows.project("Alpha")
    await rows.item(alpha, created=at(0), resolved=at(5),
                    changes=[(at(1), "Backlog"), (at(2), "In Progress"), (at(5), "Done")])
    await rows.refresh()
    # backlog is a to-do status by default: started on day 2
    assert (await metric(tenant, "portfolio.cycle_time"))["value"]["value"] == 3 * 86400
    response = await tenant.admin_client.put(
        f"/api/v1/admin/tenants/{tenant.id}/plugins/portfolio",
        json={"enabled": True, "config": {"todo_statuses": ["To Do"]}})
    assert response.status_code == 200, await response.get_json()
    assert await eventually_value(engine, tenant, 4 * 86400)  # now started on day 1


async def eventually_value(engine: PulseEngine, tenant: TenantFixture, value: float) -> bool:
    """Whether the cycle time becomes ``value`` once the queued refresh has run (the
    configuration event reaches the listener asynchronously)."""
    for _ in range(100):
        assert await engine.queue.wait_idle(30)
        body = await metric(tenant, "portfolio.cycle_time")
        if body["value"]["value"] == value and not body["freshness"]["refresh_pending"]:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_tenants_see_only_their_own_facts(
        engine: PulseEngine, portfolio_app: Quart, rows: Rows) -> None:
    other = await make_tenant(portfolio_app)
    mine = await rows.item(None, created=at(0), resolved=at(1))
    theirs = await Rows(engine, other.id).item(None, created=at(0), resolved=at(2))
    await run(engine, rows.tenant_id, None)
    await run(engine, other.id, None)
    assert set(await stored(engine, rows.tenant_id)) == {mine}
    assert set(await stored(engine, other.id)) == {theirs}
    with pytest.raises(DBAPIError, match="row-level security"):
        async with engine.db.tenant_session(rows.tenant_id) as session:
            await session.execute(text(
                "INSERT INTO portfolio_work_items (tenant_id, work_item_id, resolved_at) "
                "VALUES (:other, :id, now())"), {"other": other.id, "id": theirs})
    async with engine.db.system_session() as session:
        forced = (await session.execute(text(
            "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class "
            "WHERE relname = 'portfolio_work_items'"))).scalar_one()
    assert forced


async def test_the_migration_records_a_first_refresh_for_tenants_with_finished_items(
        engine: PulseEngine, rows: Rows) -> None:
    """``portfolio_0002`` over existing data: the next start fills every tenant's facts."""
    item = await rows.item(None, created=at(0), resolved=at(1))
    assert await stored(engine, rows.tenant_id) == {}  # written past the ETL loads

    await downgrade_plugin(engine, "portfolio", "portfolio_0001")
    await engine.migrate()  # the table again, and the requests of tenants with items
    assert await PORTFOLIO_FACTS.requeue_pending(engine) >= 1  # what the next start does
    assert await engine.queue.wait_idle(60)
    assert set(await stored(engine, rows.tenant_id)) == {item}
