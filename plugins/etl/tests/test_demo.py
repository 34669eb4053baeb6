"""The demo data set: deterministic per seed, idempotent, consistent with the derived facts,
and rich enough for the DORA pages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pulse_etl import derive, model
from pulse_etl.demo.loading import load_demo
from pulse_etl.demo.rows import generate
from pulse_etl.loader import ENTITIES
from pulse_etl.service import EtlService
from sqlalchemy import func, select, text

from pulse_engine.testing import TenantFixture, make_tenant

END = datetime(2025, 3, 1, tzinfo=UTC)
DAYS = 120
_BOOKKEEPING = {"tenant_id", "created_at", "updated_at"}


async def _rows(etl: EtlService, tenant_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every loadable table's rows of the tenant, sorted, without tenant and stamps."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    async with etl.engine.db.tenant_session(tenant_id) as session:
        for spec in ENTITIES.values():
            columns = [c for c in spec.table.c if c.name not in _BOOKKEEPING]
            result = await session.execute(select(*columns))
            found[spec.table.name] = sorted(tuple(map(repr, row)) for row in result.all())
    return found


def test_generation_is_deterministic_per_seed() -> None:
    first = generate(7, end=END, days=DAYS)
    assert first == generate(7, end=END, days=DAYS)
    other = generate(8, end=END, days=DAYS)
    assert other["commits"] != first["commits"]


async def test_same_seed_loads_identical_rows_and_reloading_changes_nothing(
    etl_app: Any, etl: EtlService
) -> None:
    one, two = await make_tenant(etl_app), await make_tenant(etl_app)
    stats = await load_demo(etl.engine, one.id, seed=11, end=END, days=DAYS)
    await load_demo(etl.engine, two.id, seed=11, end=END, days=DAYS)
    assert all(counts["updated"] == 0 for counts in stats.values())
    rows_one, rows_two = await _rows(etl, one.id), await _rows(etl, two.id)
    assert {name: len(rows) for name, rows in rows_one.items()} == {
        name: len(rows) for name, rows in rows_two.items()
    }
    assert rows_one == rows_two  # same ids, keys, times, links: every metric input is equal
    again = await load_demo(etl.engine, one.id, seed=11, end=END, days=DAYS)
    assert all(c == {"created": 0, "updated": 0} for c in again.values()), again


async def test_demo_data_feeds_every_dora_input_and_matches_the_derivation(
    etl: EtlService, etl_tenant: TenantFixture
) -> None:
    await load_demo(etl.engine, etl_tenant.id, seed=3, end=END, days=DAYS)
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        def count(sql: str) -> Any:
            return session.scalar(text(sql))

        assert await count("SELECT count(*) FROM deployments WHERE environment = 'production' "
                           "AND result = 'success'") > 50
        assert await count("SELECT count(*) FROM deployments WHERE result = 'failure'") > 0
        assert await count("SELECT count(*) FROM deployments WHERE ref LIKE 'hotfix/%'") > 0
        assert await count("SELECT count(*) FROM incidents WHERE link_reason = 'explicit'") > 0
        assert await count("SELECT count(*) FROM incidents WHERE deployment_id IS NULL") > 0
        assert await count("SELECT count(DISTINCT pull_request_id) FROM reviews") > 100
        assert await count("SELECT count(*) FROM commits WHERE is_merge") > 100
        assert await count("SELECT count(*) FROM sprints WHERE state = 'active'") == 3
        assert await count("SELECT count(*) FROM work_item_status_changes") > 300
        assert await count("SELECT count(*) FROM team_memberships") == 28
        before = set((await session.execute(select(model.deployment_commits))).all())
        assert len(before) > 1000
        groups = (await session.execute(
            select(model.deployments.c.repository_id, model.deployments.c.environment)
            .distinct())).all()
        await derive.materialise_deployment_commits(
            session, etl_tenant.id, [(str(r), e, None) for r, e in groups])
        after = set((await session.execute(select(model.deployment_commits))).all())
    assert after == before  # the generator ships exactly what pulse_etl.derive would


async def test_dora_pages_show_the_demo(etl: EtlService, etl_tenant: TenantFixture) -> None:
    await load_demo(etl.engine, etl_tenant.id, seed=5, end=END, days=DAYS)
    # the load queued the metric plugins' refreshes (data_loaded); the app consumes them
    assert await etl.engine.queue.wait_idle(60)
    response = await etl_tenant.viewer_client.get(
        "/api/v1/metrics/dora/summary", query_string={"start": "2024-12-01", "end": "2025-03-01"})
    body = await response.get_json()
    assert response.status_code == 200, body
    metrics = body["metrics"]
    assert metrics["deployment_frequency"]["sample_size"] > 30
    assert metrics["lead_time_for_changes"]["sample_size"] > 100
    assert metrics["change_failure_rate"]["value"] > 0
    assert metrics["time_to_restore_service"]["sample_size"] > 0
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        people = await session.scalar(select(func.count()).select_from(model.people))
    assert people == 28
