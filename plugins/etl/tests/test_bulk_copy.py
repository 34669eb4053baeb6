"""The bulk-writer role: the loader's COPY path, attacked from inside a tenant session.

The role may bypass row-level security to COPY, so everything it could otherwise do is
tried here: reading, updating, deleting, writing rows of another tenant (by COPY and by
INSERT), writing tables that did not opt in.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from pulse_etl.model import stable_id
from pulse_etl.service import EtlService
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_engine.bulk import bulk_copy_available, copy_tenant_rows
from pulse_engine.testing import TenantFixture, make_tenant

COLUMNS = ("id", "repository_id", "sha", "message", "is_merge", "source")


def _rows(count: int, tag: str) -> list[tuple[Any, ...]]:
    repository_id = stable_id("repositories", "bulk", tag)
    return [
        (stable_id("commits", repository_id, f"{i:040x}"), repository_id, f"{i:040x}",
         f"{tag} {i}", False, "bulk")
        for i in range(count)
    ]


async def _driver(session: AsyncSession) -> Any:
    connection = await session.connection()
    return (await connection.get_raw_connection()).driver_connection


async def _stored_commits(etl: EtlService, *tenants: str) -> dict[str, int]:
    """Commits stored per tenant among ``tenants`` (seen as the owner, across tenants)."""
    async with etl.engine.db.system_session() as session:
        rows = await session.execute(
            text("SELECT tenant_id::text, count(*) FROM commits "
                 "WHERE tenant_id::text = ANY(:tenants) GROUP BY 1"),
            {"tenants": list(tenants)},
        )
        return {tenant: count for tenant, count in rows.all()}


async def test_copy_writes_the_session_tenant_only(
    etl: EtlService, etl_tenant: TenantFixture, etl_app: Any
) -> None:
    other = await make_tenant(etl_app)
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        assert bulk_copy_available(session)
        assert await copy_tenant_rows(session, "commits", COLUMNS, _rows(300, "a")) == 300
        # the role switch ended with the statement: row-level security applies again
        assert await session.scalar(text("SELECT current_user")) == (
            etl.engine.settings.database_app_role
        )
        assert await session.scalar(text("SELECT count(*) FROM commits")) == 300
    async with etl.engine.db.tenant_session(other.id) as session:
        assert await session.scalar(text("SELECT count(*) FROM commits")) == 0
    assert await _stored_commits(etl, etl_tenant.id, other.id) == {etl_tenant.id: 300}


async def test_a_failed_copy_leaves_the_transaction_usable(
    etl: EtlService, etl_tenant: TenantFixture
) -> None:
    rows = _rows(50, "dup")
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        await copy_tenant_rows(session, "commits", COLUMNS, rows[:10])
        with pytest.raises(asyncpg.UniqueViolationError):
            await copy_tenant_rows(session, "commits", COLUMNS, rows)
        assert await session.scalar(text("SELECT current_user")) == (
            etl.engine.settings.database_app_role
        )
        assert await session.scalar(text("SELECT count(*) FROM commits")) == 10
    assert await _stored_commits(etl, etl_tenant.id) == {etl_tenant.id: 10}


async def test_rows_that_raise_midway_leave_nothing_behind(
    etl: EtlService, etl_tenant: TenantFixture
) -> None:
    class Broken(Exception):
        pass

    def rows() -> Any:
        yield from _rows(500, "half")
        raise Broken

    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        with pytest.raises(Broken):
            await copy_tenant_rows(session, "commits", COLUMNS, rows())
        assert await session.scalar(text("SELECT count(*) FROM commits")) == 0
        assert await copy_tenant_rows(session, "commits", COLUMNS, _rows(2, "after")) == 2
    assert await _stored_commits(etl, etl_tenant.id) == {etl_tenant.id: 2}


async def test_copy_needs_a_tenant_session(etl: EtlService) -> None:
    async with etl.engine.db.system_session() as session:
        assert not bulk_copy_available(session)
        with pytest.raises(RuntimeError, match="bulk"):
            await copy_tenant_rows(session, "commits", COLUMNS, _rows(1, "s"))


async def _as_bulk_role(etl: EtlService, tenant_id: str, statement: str,
                        *arguments: Any) -> None:
    """Run ``statement`` after switching to the bulk role, as an attacker in a session."""
    role = etl.engine.db.bulk_role
    async with etl.engine.db.tenant_session(tenant_id) as session:
        driver = await _driver(session)
        await driver.execute(f'SET ROLE "{role}"')
        await driver.execute(statement, *arguments)


@pytest.mark.parametrize("statement", [
    "SELECT count(*) FROM commits",
    "SELECT * FROM tenants",
    "UPDATE commits SET message = 'x'",
    "DELETE FROM commits",
    "INSERT INTO etl_jobs (tenant_id, id, connector, status) "
    "VALUES (CAST(current_setting('pulse.tenant_id') AS uuid), gen_random_uuid(), 'git', "
    "'queued')",
])
async def test_the_bulk_role_can_only_insert_into_opted_in_tables(
    etl: EtlService, etl_tenant: TenantFixture, statement: str
) -> None:
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        await copy_tenant_rows(session, "commits", COLUMNS, _rows(3, "kept"))
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        await _as_bulk_role(etl, etl_tenant.id, statement)
    assert await _stored_commits(etl, etl_tenant.id) == {etl_tenant.id: 3}


async def test_the_bulk_role_cannot_insert_rows_of_another_tenant(
    etl: EtlService, etl_tenant: TenantFixture, etl_app: Any
) -> None:
    victim = await make_tenant(etl_app)
    row = _rows(1, "foreign")[0]
    insert = (
        "INSERT INTO commits (tenant_id, id, repository_id, sha, message, is_merge, source) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="another tenant"):
        await _as_bulk_role(etl, etl_tenant.id, insert, uuid.UUID(victim.id), *row)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="another tenant"):
        await _as_bulk_role(etl, etl_tenant.id, insert, uuid.uuid4(), *row)

    role = etl.engine.db.bulk_role
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        driver = await _driver(session)
        await driver.execute(f'SET LOCAL ROLE "{role}"')
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="another tenant"):
            await driver.copy_records_to_table(
                "commits", columns=["tenant_id", *COLUMNS],
                records=[(victim.id, *r) for r in _rows(5, "x")] + [
                    (etl_tenant.id, *r) for r in _rows(5, "y")],
            )
    assert await _stored_commits(etl, etl_tenant.id, victim.id) == {}


async def test_without_a_bound_tenant_the_guard_rejects_every_row(
    etl: EtlService, etl_tenant: TenantFixture
) -> None:
    role = etl.engine.db.bulk_role
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        driver = await _driver(session)
        await driver.execute("SELECT set_config('pulse.tenant_id', '', true)")
        await driver.execute(f'SET LOCAL ROLE "{role}"')
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="another tenant"):
            await driver.copy_records_to_table(
                "commits", columns=["tenant_id", *COLUMNS],
                records=[(etl_tenant.id, *r) for r in _rows(2, "z")],
            )
    assert await _stored_commits(etl, etl_tenant.id) == {}

