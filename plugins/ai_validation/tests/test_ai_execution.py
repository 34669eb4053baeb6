"""Safe execution (POST /api/v1/ai/query): the legit corpus returns exactly the caller's
tenant's rows (checked by running the same statements directly against the database), and
the execution role holds up on its own when the validator is bypassed."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from ai_seed import normalise, seed
from conftest import DATA
from pulse_ai_validation.config import AiValidationSettings
from pulse_ai_validation.execution import DANGEROUS_ROLES, Executor, QueryFailed
from pulse_ai_validation.plugin import service_for
from quart import Quart

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture, make_tenant

LEGIT = json.loads((DATA / "legit_sql.json").read_text())


@pytest.fixture(scope="module")
async def two_tenants(ai_app: Quart) -> tuple[TenantFixture, TenantFixture]:
    """Tenant A (scale 1) and tenant B (scale 3), both with data."""
    engine: PulseEngine = ai_app.extensions["pulse"]
    first, second = await make_tenant(ai_app), await make_tenant(ai_app)
    await seed(engine, first.id, 1)
    await seed(engine, second.id, 3)
    return first, second


async def _direct(engine: PulseEngine, sql: str, tenant_id: str | None) -> list[list[Any]]:
    """Run ``sql`` verbatim as the database owner, over temporary views that hold only
    ``tenant_id``'s rows of each model table (all tenants' rows when None)."""
    catalog = service_for(engine).catalog
    connection = await asyncpg.connect(engine.db.libpq_url())
    try:
        async with connection.transaction():
            if tenant_id is not None:
                for table in catalog.tables.values():
                    columns = ", ".join(f'"{c}"' for c in table.column_names)
                    await connection.execute(
                        f'CREATE TEMP VIEW "{table.name}" AS SELECT {columns} FROM '
                        f"public.\"{table.name}\" WHERE tenant_id = '{tenant_id}'"
                    )
            else:
                for table in catalog.tables.values():
                    columns = ", ".join(f'"{c}"' for c in table.column_names)
                    await connection.execute(
                        f'CREATE TEMP VIEW "{table.name}" AS SELECT {columns} FROM '
                        f'public."{table.name}"'
                    )
            records = await connection.fetch(sql)
            raise _Rollback(records)
    except _Rollback as done:
        return [[normalise(value) for value in record] for record in done.records]
    finally:
        await connection.close()


class _Rollback(Exception):
    def __init__(self, records: list[Any]) -> None:
        self.records = records


def _rows(rows: list[list[Any]]) -> list[str]:
    return sorted(json.dumps([normalise(v) for v in row], sort_keys=True, default=str)
                  for row in rows)


async def test_legit_corpus_returns_only_the_callers_rows(
    ai_app: Quart, two_tenants: tuple[TenantFixture, TenantFixture]
) -> None:
    engine: PulseEngine = ai_app.extensions["pulse"]
    first, second = two_tenants
    differs = 0
    for item in LEGIT:
        response = await first.analyst_client.post("/api/v1/ai/query", json={"sql": item["sql"]})
        body = await response.get_json()
        assert response.status_code == 200, (item, body)
        expected = await _direct(engine, item["sql"], first.id)
        assert _rows(body["rows"]) == _rows(expected), item["sql"]
        assert body["row_count"] == len(expected)
        everyone = await _direct(engine, item["sql"], None)
        if _rows(everyone) != _rows(expected):
            differs += 1
    # the check can fail: most statements give other numbers over every tenant's rows
    assert differs >= 0.8 * len(LEGIT), differs
    # and tenant B sees its own numbers
    response = await second.analyst_client.post(
        "/api/v1/ai/query", json={"sql": "SELECT count(*) FROM commits"})
    assert (await response.get_json())["rows"] == [[30]]


async def test_knowing_another_tenants_ids_reads_nothing(
    ai_app: Quart, two_tenants: tuple[TenantFixture, TenantFixture]
) -> None:
    engine: PulseEngine = ai_app.extensions["pulse"]
    first, second = two_tenants
    connection = await asyncpg.connect(engine.db.libpq_url())
    try:
        repository = await connection.fetchval(
            "SELECT id::text FROM repositories WHERE tenant_id = $1 LIMIT 1", second.id)
        sha = await connection.fetchval(
            "SELECT sha FROM commits WHERE tenant_id = $1 LIMIT 1", second.id)
    finally:
        await connection.close()
    for sql in (
        f"SELECT count(*) FROM commits WHERE repository_id = '{repository}'",
        f"SELECT count(*) FROM commits WHERE sha = '{sha}' OR 1 = 1 AND sha = '{sha}'",
        f"SELECT count(*) FROM repositories r WHERE r.id = '{repository}'",
        f"SELECT count(*) FROM (SELECT * FROM commits) c WHERE c.sha = '{sha}'",
        f"WITH x AS (SELECT * FROM commits WHERE sha = '{sha}') SELECT count(*) FROM x",
        f"SELECT count(*) FROM commits c JOIN repositories r ON r.id = c.repository_id "
        f"WHERE r.id = '{repository}' OR c.sha = '{sha}'",
    ):
        response = await first.analyst_client.post("/api/v1/ai/query", json={"sql": sql})
        body = await response.get_json()
        assert response.status_code == 200 and body["rows"] == [[0]], (sql, body)
    own = await second.analyst_client.post("/api/v1/ai/query", json={
        "sql": f"SELECT count(*) FROM commits WHERE repository_id = '{repository}'"})
    assert (await own.get_json())["rows"] == [[10]]  # the ids are real: B sees its rows


async def test_rows_come_with_their_schema(
    two_tenants: tuple[TenantFixture, TenantFixture]
) -> None:
    first, _ = two_tenants
    response = await first.analyst_client.post("/api/v1/ai/query", json={
        "sql": "SELECT service, count(*) AS n, avg(additions) AS mean FROM commits c "
               "JOIN repositories r ON r.id = c.repository_id GROUP BY service ORDER BY service"})
    body = await response.get_json()
    assert [c["name"] for c in body["columns"]] == ["service", "n", "mean"]
    assert [c["type"] for c in body["columns"]] == ["varchar", "int8", "numeric"]
    assert body["rows"][0][0] == "svc-0"


async def test_row_cap_and_truncation(
    ai_app: Quart, two_tenants: tuple[TenantFixture, TenantFixture]
) -> None:
    first, _ = two_tenants
    response = await first.admin_client.put(
        f"/api/v1/admin/tenants/{first.id}/plugins/ai_validation",
        json={"enabled": True, "config": {"max_limit": 3}},
    )
    assert response.status_code == 200, await response.get_json()
    try:
        response = await first.analyst_client.post(
            "/api/v1/ai/query", json={"sql": "SELECT sha FROM commits LIMIT 500"})
        body = await response.get_json()
        assert body["row_count"] == 3 and "LIMIT 3" in body["sql"]
    finally:
        await first.admin_client.put(
            f"/api/v1/admin/tenants/{first.id}/plugins/ai_validation",
            json={"enabled": True, "config": {}},
        )


async def test_refused_sql_is_a_422_with_findings(
    two_tenants: tuple[TenantFixture, TenantFixture]
) -> None:
    first, _ = two_tenants
    response = await first.analyst_client.post(
        "/api/v1/ai/query", json={"sql": "SELECT 1; DROP TABLE commits"})
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"
    body = await response.get_json()
    assert body["findings"][0]["rule_id"] == "statement.single"


async def test_database_errors_are_client_problems(
    two_tenants: tuple[TenantFixture, TenantFixture]
) -> None:
    first, _ = two_tenants
    response = await first.analyst_client.post(
        "/api/v1/ai/query", json={"sql": "SELECT 1 / (count(*) - count(*)) FROM commits"})
    assert response.status_code == 422
    body = await response.get_json()
    assert body["sqlstate"] == "22012"


async def test_viewer_may_not_run_queries(
    two_tenants: tuple[TenantFixture, TenantFixture]
) -> None:
    first, _ = two_tenants
    response = await first.viewer_client.post("/api/v1/ai/query", json={"sql": "SELECT 1"})
    assert response.status_code == 403


# -- the role on its own (the validator bypassed) -------------------------------------


async def test_the_role_is_not_privileged(engine: PulseEngine) -> None:
    settings = service_for(engine).settings
    connection = await asyncpg.connect(engine.db.libpq_url())
    try:
        role = await connection.fetchrow(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolinherit "
            "FROM pg_roles WHERE rolname = $1", settings.db_role)
        assert tuple(role) == (False, False, False, False, False)
        for predefined in ("pg_read_server_files", "pg_write_server_files",
                           "pg_execute_server_program"):
            assert predefined in DANGEROUS_ROLES
            member = await connection.fetchval(
                "SELECT pg_has_role($1, $2, 'MEMBER')", settings.db_role, predefined)
            assert member is False
        superuser = await connection.fetchval("SELECT rolsuper FROM pg_roles "
                                              "WHERE rolname = current_user")
        assert superuser is True  # the embedded owner is one: the role must differ
        assert settings.db_role != await connection.fetchval("SELECT current_user")
    finally:
        await connection.close()


@pytest.mark.parametrize(
    ("sql", "sqlstate"),
    [
        ("DELETE FROM commits", "25006"),  # read-only transaction
        ("INSERT INTO projects (tenant_id, id, source, external_id, name) VALUES "
         "(gen_random_uuid(), gen_random_uuid(), 'x', 'x', 'x')", "25006"),
        ("SET ROLE postgres", "42501"),
        ("SELECT * FROM tenants", "42501"),
        ("SELECT email FROM people", "42501"),
        ("SELECT secrets FROM integrations", "42501"),
        ("SELECT pg_read_file('/etc/passwd')", "42501"),
        ("COPY (SELECT 1) TO '/tmp/pulse-ai-test'", "42501"),
        ("SET TRANSACTION READ WRITE", "25001"),
        ("SELECT 1; SELECT 2", "42601"),  # the extended protocol takes one statement
    ],
)
async def test_the_role_refuses_what_the_validator_would(
    engine: PulseEngine, two_tenants: tuple[TenantFixture, TenantFixture], sql: str,
    sqlstate: str,
) -> None:
    first, _ = two_tenants
    with pytest.raises(QueryFailed) as failure:
        await service_for(engine).executor.run(first.id, sql, 10)
    assert failure.value.code == sqlstate, failure.value.message


async def test_row_level_security_scopes_an_unrewritten_query(
    engine: PulseEngine, two_tenants: tuple[TenantFixture, TenantFixture]
) -> None:
    first, second = two_tenants
    executor = service_for(engine).executor
    mine = await executor.run(first.id, "SELECT count(*) FROM commits", 10)
    theirs = await executor.run(second.id, "SELECT count(*) FROM commits", 10)
    assert (mine.rows, theirs.rows) == ([[10]], [[30]])
    escape = await executor.run(
        first.id, "SELECT count(*) FROM commits WHERE tenant_id <> "
        "NULLIF(current_setting('pulse.tenant_id', true), '')::uuid OR true", 10)
    assert escape.rows == [[10]]


async def test_timeout_and_a_pooled_connection_keeps_nothing(
    engine: PulseEngine, two_tenants: tuple[TenantFixture, TenantFixture]
) -> None:
    first, _ = two_tenants
    settings = AiValidationSettings(statement_timeout_ms=200, pool_size=1)
    executor = Executor(engine, settings)
    try:
        with pytest.raises(QueryFailed) as failure:
            await executor.run(first.id, "SELECT pg_sleep(5)", 1)
        assert failure.value.code == "57014"
        pool = await executor.pool()
        async with pool.acquire() as connection:  # the one connection of the pool
            await connection.execute("SET application_name = 'leaked'")
            await connection.execute("SELECT set_config('pulse.tenant_id', $1, false)",
                                     first.id)
            await connection.execute("PREPARE leaked AS SELECT 1")
        async with pool.acquire() as connection:
            assert await connection.fetchval("SHOW application_name") == "pulse-ai-query"
            assert not await connection.fetchval(
                "SELECT current_setting('pulse.tenant_id', true)")
            assert await connection.fetchval("SELECT count(*) FROM pg_prepared_statements "
                                             "WHERE name = 'leaked'") == 0
        ran = await executor.run(first.id, "SELECT current_setting('pulse.tenant_id')", 1)
        assert ran.rows == [[first.id]]
        after = await executor.run(first.id, "SELECT current_setting('statement_timeout')", 1)
        assert after.rows == [["200ms"]]
    finally:
        await executor.close()


async def test_health_reports_the_catalog_and_the_role(ai_app: Quart) -> None:
    response = await ai_app.test_client().get("/health/ai_validation")
    body = await response.get_json()
    checks = body["checks"]
    assert checks["catalog"] == {"status": "healthy", "tables": 17, "missing_tables": []}
    assert checks["execution_role"] == {"status": "healthy", "privileged": False,
                                        "role_memberships": 0}


async def test_a_second_start_changes_nothing(engine: PulseEngine) -> None:
    """Every process sets the role up at start: an up-to-date role is left alone (no
    policy recreated, no grant revoked in between)."""
    query = ("SELECT p.oid, p.polname, c.relname FROM pg_policy p JOIN pg_class c ON "
             "c.oid = p.polrelid WHERE p.polname = 'pulse_ai_tenant' ORDER BY c.relname")
    grants = ("SELECT table_name, column_name FROM information_schema.column_privileges "
              "WHERE grantee = $1 ORDER BY 1, 2")
    role = service_for(engine).settings.db_role
    connection = await asyncpg.connect(engine.db.libpq_url())
    try:
        before = await connection.fetch(query)
        granted = await connection.fetch(grants, role)
        await service_for(engine).start()
        assert await connection.fetch(query) == before
        assert await connection.fetch(grants, role) == granted
        assert len(before) == 17
        assert ("people", "email") not in {tuple(r) for r in granted}
        assert ("commits", "tenant_id") in {tuple(r) for r in granted}
    finally:
        await connection.close()
