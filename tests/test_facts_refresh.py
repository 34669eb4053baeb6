"""The engine's refreshed-facts bookkeeping (``FactsRefresh``), through a plugin of its own.

The plugin's recompute writes nothing of its own: it records each call, so every test
can say exactly which refreshes ran, from when, and for which tenant.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import text

from pulse_engine import (
    CAPABILITY_CHANGED_EVENT,
    Consumer,
    FactsRefresh,
    full_refresh_request,
    hookimpl,
)
from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture, make_settings, make_tenant, running_app

SINCE = datetime(2026, 3, 1, tzinfo=UTC)


class Recorder:
    """The calls of the plugin's recompute, and a switch to make it fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, datetime | None]] = []
        self.fail = False

    async def recompute(self, engine: Any, session: Any, tenant_id: str,
                        since: datetime | None) -> Mapping[str, int]:
        # inside the tenant-bound transaction, holding the lock, with work_mem set
        assert await session.scalar(text("SHOW work_mem")) == "32MB"
        if self.fail:
            raise RuntimeError("recompute failed")
        self.calls.append((tenant_id, since))
        return {"toy_facts": 1}


RECORDER = Recorder()

TOY = FactsRefresh(
    name="toy",
    recompute=RECORDER.recompute,
    inputs=frozenset({"pull_requests", "person_identities"}),
    full_refresh_inputs=frozenset({"person_identities"}),
    cache_tags=("toy.data",),
    work_mem="32MB",
)


class ToyFactsPlugin:
    """A plugin keeping facts through the engine, exactly as the docs show."""

    @hookimpl
    def register_queue_consumers(self, engine: PulseEngine) -> list[Consumer]:
        return [TOY.consumer(engine)]

    @hookimpl
    async def startup(self, engine: PulseEngine) -> None:
        await TOY.start(engine)

    @hookimpl
    async def shutdown(self, engine: PulseEngine) -> None:
        await TOY.stop(engine)

    @hookimpl
    async def data_loaded(self, engine: PulseEngine, tenant_id: str,
                          stats: dict[str, dict[str, int]], since: datetime | None) -> None:
        await TOY.loaded(engine, tenant_id, stats, since)


PLUGINS: dict[str, object] = {"toy_facts": ToyFactsPlugin()}


@pytest.fixture(scope="module")
def pulse_module_plugins() -> dict[str, object]:
    """The toy plugin, beside the installed ones."""
    return PLUGINS


@pytest.fixture
def engine(pulse_module_app: Quart) -> PulseEngine:
    """The module app's engine, with the recorder emptied."""
    RECORDER.calls.clear()
    RECORDER.fail = False
    result: PulseEngine = pulse_module_app.extensions["pulse"]
    return result


@pytest.fixture
async def tenant(pulse_module_app: Quart) -> TenantFixture:
    """A fresh tenant."""
    return await make_tenant(pulse_module_app)


async def requests(engine: PulseEngine, tenant_id: str) -> list[tuple[Any, bool]]:
    """The tenant's recorded, uncovered requests of the toy facts."""
    async with engine.db.tenant_session(tenant_id) as session:
        return [(row.since, row.full_refresh) for row in (await session.execute(text(
            "SELECT since, full_refresh FROM facts_refresh_requests WHERE facts = 'toy'"
        ))).all()]


async def record_request(engine: PulseEngine, tenant_id: str, since: datetime | None,
                         age: timedelta = timedelta(0)) -> None:
    """A request as a load leaves it (its message may be lost)."""
    async with engine.db.tenant_session(tenant_id) as session:
        await session.execute(text(
            "INSERT INTO facts_refresh_requests (tenant_id, facts, requested_at, since, "
            "full_refresh) VALUES (:tenant, 'toy', clock_timestamp() - CAST(:age AS interval), "
            ":since, CAST(:since AS timestamptz) IS NULL)"),
            {"tenant": tenant_id, "since": since, "age": age})


async def freshness(engine: PulseEngine, tenant_id: str) -> tuple[Any, bool]:
    async with engine.db.tenant_session(tenant_id) as session:
        fresh = await TOY.freshness(session, tenant_id)
    return fresh.data_until, fresh.refresh_pending


async def test_a_load_of_an_input_queues_a_refresh_that_clears_its_request(
    engine: PulseEngine, tenant: TenantFixture
) -> None:
    assert await freshness(engine, tenant.id) == (None, False)
    # a load that changed nothing the facts read queues nothing
    assert not await TOY.loaded(engine, tenant.id, {"deployments": {"created": 4}}, SINCE)
    assert not await TOY.loaded(engine, tenant.id, {"pull_requests": {"created": 0}}, SINCE)
    assert await requests(engine, tenant.id) == []
    assert await TOY.loaded(engine, tenant.id, {"pull_requests": {"updated": 2}}, SINCE)
    assert await engine.queue.wait_idle(30)
    assert RECORDER.calls == [(tenant.id, SINCE)]
    assert await requests(engine, tenant.id) == []
    data_until, pending = await freshness(engine, tenant.id)
    assert data_until is not None and pending is False


async def test_an_updated_identity_asks_for_a_full_refresh(
    engine: PulseEngine, tenant: TenantFixture
) -> None:
    await TOY.loaded(engine, tenant.id, {"person_identities": {"created": 1}}, SINCE)
    await TOY.loaded(engine, tenant.id, {"person_identities": {"updated": 1}}, SINCE)
    assert await engine.queue.wait_idle(30)
    assert (tenant.id, SINCE) in RECORDER.calls and (tenant.id, None) in RECORDER.calls


async def test_a_request_is_covered_only_by_a_refresh_reaching_back_as_far(
    engine: PulseEngine, tenant: TenantFixture
) -> None:
    await record_request(engine, tenant.id, SINCE)
    assert await freshness(engine, tenant.id) == (None, True)
    await TOY.refresh(engine, tenant.id, SINCE + timedelta(days=1))  # starts too late
    assert await requests(engine, tenant.id) == [(SINCE, False)]
    assert (await freshness(engine, tenant.id))[1] is True
    result = await TOY.refresh(engine, tenant.id, SINCE - timedelta(days=1))
    assert result["toy_facts"] == 1 and result["other"] == 0 and not result.full
    assert await requests(engine, tenant.id) == []
    # a full request is covered by a full refresh only
    await record_request(engine, tenant.id, None)
    await TOY.refresh(engine, tenant.id, SINCE - timedelta(days=400))
    assert await requests(engine, tenant.id) == [(None, True)]
    assert (await TOY.refresh(engine, tenant.id)).full
    assert await requests(engine, tenant.id) == []


async def test_requests_merge_to_the_earliest_and_full_wins(
    engine: PulseEngine, tenant: TenantFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def hold(queue: str, body: dict[str, Any], **kwargs: Any) -> str:
        return "held"

    monkeypatch.setattr(engine.queue, "publish", hold)  # a busy queue: nothing runs yet
    await TOY.request(engine, tenant.id, SINCE)
    await TOY.request(engine, tenant.id, SINCE - timedelta(days=2))
    assert await requests(engine, tenant.id) == [(SINCE - timedelta(days=2), False)]
    await TOY.request(engine, tenant.id, None)
    await TOY.request(engine, tenant.id, SINCE)
    assert [full for _, full in await requests(engine, tenant.id)] == [True]


async def test_a_failing_recompute_keeps_the_request_and_the_old_state(
    engine: PulseEngine, tenant: TenantFixture
) -> None:
    await TOY.refresh(engine, tenant.id)
    before = await freshness(engine, tenant.id)
    RECORDER.fail = True
    with pytest.raises(RuntimeError):
        await TOY.refresh(engine, tenant.id, SINCE)
    await TOY.request(engine, tenant.id, SINCE)  # the consumer retries, then dead-letters
    assert await engine.queue.wait_idle(30)
    assert await requests(engine, tenant.id) == [(SINCE, False)]
    assert await freshness(engine, tenant.id) == (before[0], True)
    RECORDER.fail = False
    assert await TOY.requeue_pending(engine) >= 1  # what the next start does
    assert await engine.queue.wait_idle(30)
    assert await requests(engine, tenant.id) == []
    assert (tenant.id, SINCE) in RECORDER.calls


async def test_a_request_left_by_a_killed_server_runs_when_a_process_starts(
    engine: PulseEngine, tenant: TenantFixture, pulse_database_url: str, tmp_path: Path
) -> None:
    await record_request(engine, tenant.id, SINCE)
    async with running_app(make_settings(pulse_database_url, tmp_path),
                           plugins=PLUGINS) as restarted:
        assert await restarted.extensions["pulse"].queue.wait_idle(30)
    assert (tenant.id, SINCE) in RECORDER.calls
    assert await requests(engine, tenant.id) == []


async def test_with_a_broker_only_stale_requests_are_queued_again(
    engine: PulseEngine, pulse_module_app: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale, fresh = await make_tenant(pulse_module_app), await make_tenant(pulse_module_app)
    await record_request(engine, stale.id, None, age=timedelta(hours=2))
    await record_request(engine, fresh.id, None)
    published: list[tuple[str | None, str | None]] = []

    async def recording(queue: str, body: dict[str, Any], **kwargs: Any) -> str:
        published.append((kwargs.get("tenant_id"), kwargs.get("message_id")))
        return "id"

    monkeypatch.setattr(engine.queue, "publish", recording)
    monkeypatch.setattr(engine.queue, "survives_restart", True)
    await TOY.requeue_pending(engine)
    tenants = [tenant_id for tenant_id, _ in published]
    assert stale.id in tenants and fresh.id not in tenants
    monkeypatch.setattr(engine.queue, "survives_restart", False)
    first = dict(published)
    published.clear()
    await TOY.requeue_pending(engine)
    assert {stale.id, fresh.id} <= {tenant_id for tenant_id, _ in published}
    # the same request gets the same message id in every process: it runs once
    assert dict(published)[stale.id] == first[stale.id]


async def test_a_request_a_migration_records_runs_at_the_next_start_with_a_broker_too(
    engine: PulseEngine, tenant: TenantFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a plugin's migration records for tenants with existing data
    (``full_refresh_request``)."""
    async with engine.db.system_session() as session:
        await session.execute(full_refresh_request("toy", f"t.id = '{tenant.id}'"))
    monkeypatch.setattr(engine.queue, "survives_restart", True)
    assert await TOY.requeue_pending(engine) >= 1
    assert await engine.queue.wait_idle(30)
    assert (tenant.id, None) in RECORDER.calls
    assert await requests(engine, tenant.id) == []


async def test_a_capability_change_refreshes_the_tenant_in_full(
    engine: PulseEngine, tenant: TenantFixture
) -> None:
    await engine.events.publish(None, CAPABILITY_CHANGED_EVENT, {"tenant_id": tenant.id})
    for _ in range(300):
        if (tenant.id, None) in RECORDER.calls:
            break
        await asyncio.sleep(0.1)
    assert (tenant.id, None) in RECORDER.calls
    assert await engine.queue.wait_idle(30)
    assert await requests(engine, tenant.id) == []


async def test_one_tenant_never_sees_another_s_bookkeeping(
    engine: PulseEngine, pulse_module_app: Quart
) -> None:
    mine, theirs = await make_tenant(pulse_module_app), await make_tenant(pulse_module_app)
    await record_request(engine, theirs.id, SINCE)
    await TOY.refresh(engine, theirs.id, SINCE)
    await record_request(engine, theirs.id, SINCE)
    assert await freshness(engine, mine.id) == (None, False)
    async with engine.db.tenant_session(mine.id) as session:
        for table in ("facts_refresh_requests", "facts_refresh_state"):
            assert await session.scalar(text(f"SELECT count(*) FROM {table}")) == 0
        # nor can it write rows in the other's name
        with pytest.raises(Exception, match="row-level security"):
            await session.execute(text(
                "INSERT INTO facts_refresh_state (tenant_id, facts, refreshed_at) "
                "VALUES (:other, 'toy', now())"), {"other": theirs.id})
    assert await requests(engine, theirs.id) == [(SINCE, False)]
