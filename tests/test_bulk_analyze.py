"""``analyze_tables``: the app role refreshes planner statistics of tenant tables only,
inside its transaction, counting the rows that transaction just wrote."""

from __future__ import annotations

import asyncpg
import pytest
from quart import Quart
from sqlalchemy import text

from pulse_engine.bulk import analyze_tables
from pulse_engine.testing import TenantFixture


async def test_rows_written_in_the_transaction_are_counted(
    pulse_app: Quart, tenant: TenantFixture
) -> None:
    engine = pulse_app.extensions["pulse"]
    async with engine.db.tenant_session(tenant.id) as session:
        await session.execute(text(
            "INSERT INTO audit_log (tenant_id, action) SELECT CAST(:tenant AS uuid), 'bulk' "
            "FROM generate_series(1, 20000)"), {"tenant": tenant.id})
        assert await analyze_tables(session, ["audit_log"]) == ["audit_log"]
        estimate = await session.scalar(
            text("SELECT reltuples FROM pg_class WHERE relname = 'audit_log'"))
    assert estimate >= 20000


@pytest.mark.parametrize("table", ["processed_messages", "pg_class", "no_such_table"])
async def test_only_tenant_tables_may_be_analyzed(
    pulse_app: Quart, tenant: TenantFixture, table: str
) -> None:
    engine = pulse_app.extensions["pulse"]
    with pytest.raises((asyncpg.InsufficientPrivilegeError, asyncpg.UndefinedTableError)):
        async with engine.db.tenant_session(tenant.id) as session:
            await analyze_tables(session, [table])


async def test_a_table_being_analyzed_elsewhere_is_skipped(
    pulse_app: Quart, tenant: TenantFixture
) -> None:
    engine = pulse_app.extensions["pulse"]
    async with engine.db.system_session() as holder:
        await holder.execute(text("ANALYZE audit_log"))  # holds the analyze lock until commit
        async with engine.db.tenant_session(tenant.id) as session:
            assert await analyze_tables(session, ["audit_log"]) == []
            assert await session.scalar(text("SELECT 1")) == 1  # the transaction goes on
