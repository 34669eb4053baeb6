"""Safe execution of validated SQL (``POST /api/v1/ai/query``).

Defence in depth around the validator:

* the query runs on a **separate connection pool that logs in as a dedicated role**
  (``PULSE_AI_VALIDATION_DB_ROLE``, default ``pulse_ai_reader``): ``NOSUPERUSER
  NOBYPASSRLS NOCREATEROLE NOCREATEDB NOINHERIT``, member of no role (so neither
  ``pg_read_server_files``, ``pg_write_server_files`` nor ``pg_execute_server_program``),
  with ``SELECT`` on the allow-listed columns of the model tables only. Being its own
  session user, ``RESET ROLE``/``SET ROLE`` lead nowhere else;
* every query runs in a ``READ ONLY`` transaction (the role's default too), with
  ``SET LOCAL statement_timeout`` and ``pulse.tenant_id`` set locally;
* row-level security: a ``pulse_ai_tenant`` policy for the role on every model table
  shows only the rows of ``pulse.tenant_id`` (on top of the validator's rewrite);
* the extended protocol runs exactly one statement (no stacking even if the text had it);
* the rows are capped, and each connection is ``DISCARD ALL``-ed before it goes back to
  the pool, so nothing a query set survives it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import hashlib
import hmac
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from pulse_ai_validation.catalog import Catalog
from pulse_ai_validation.config import AiValidationSettings
from pulse_engine import load_or_create_secret, lock_role_changes

if TYPE_CHECKING:
    from pulse_engine import Engine

log = logging.getLogger(__name__)

POLICY = "pulse_ai_tenant"
#: predefined roles the execution role must never hold
DANGEROUS_ROLES = ("pg_read_server_files", "pg_write_server_files",
                   "pg_execute_server_program", "pg_read_all_data", "pg_write_all_data",
                   "pg_read_all_settings", "pg_monitor", "pg_signal_backend")


@dataclass
class QueryResult:
    """Rows of one executed query with their schema."""

    columns: list[dict[str, str]]
    rows: list[list[Any]]
    truncated: bool
    elapsed_ms: float


class QueryFailed(Exception):
    """PostgreSQL refused or stopped the query (a client's problem, not a server fault)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def role_password(engine: Engine, settings: AiValidationSettings) -> str:
    """The execution role's password: configured, or derived from the engine's secrets."""
    if settings.db_password:
        return settings.db_password
    host = engine.settings
    if host.embedded:
        return load_or_create_secret(host.data_dir, "ai_validation_db_password")
    secret = (host.jwt_secret_key or "").encode()
    if not secret:
        raise RuntimeError("Set PULSE_AI_VALIDATION_DB_PASSWORD or JWT_SECRET_KEY.")
    return hmac.new(secret, b"pulse-ai-validation-role", hashlib.sha256).hexdigest()


async def ensure_role(engine: Engine, settings: AiValidationSettings, catalog: Catalog) -> None:
    """Create or update the execution role, its column grants and its RLS policies."""
    role = _quote(settings.db_role)
    password = role_password(engine, settings).replace("'", "''")
    async with engine.db.system_session() as session:
        await lock_role_changes(session)
        exists = await session.scalar(
            text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": settings.db_role}
        )
        verb = "ALTER" if exists else "CREATE"
        await session.execute(text(
            f"{verb} ROLE {role} WITH LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB "
            f"NOINHERIT NOREPLICATION PASSWORD '{password}'"
        ))
        members = (await session.execute(text(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
            "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = :role"
        ), {"role": settings.db_role})).scalars().all()
        for granted in members:
            await session.execute(text(f"REVOKE {_quote(granted)} FROM {role}"))
        await session.execute(text(f"ALTER ROLE {role} SET default_transaction_read_only = on"))
        await session.execute(text(
            f"ALTER ROLE {role} SET statement_timeout = {int(settings.statement_timeout_ms)}"
        ))
        database = await session.scalar(text("SELECT current_database()"))
        await session.execute(text(f"GRANT CONNECT ON DATABASE {_quote(str(database))} TO {role}"))
        await session.execute(text(f"GRANT USAGE ON SCHEMA public TO {role}"))
        await session.execute(text(f"REVOKE CREATE ON SCHEMA public FROM {role}"))
        # Only what is missing or different changes: every process runs this at start, and
        # revoking then granting again would refuse other processes' queries meanwhile;
        # CREATE/DROP POLICY lock the table exclusively.
        table_grants = (await session.execute(text(
            "SELECT DISTINCT table_name FROM information_schema.table_privileges "
            "WHERE grantee = :role AND table_schema = 'public'"), {"role": settings.db_role}
        )).scalars().all()
        for name in table_grants:
            await session.execute(text(f"REVOKE ALL ON {_quote(name)} FROM {role}"))
        granted = {
            (table_name, column_name)
            for table_name, column_name in (await session.execute(text(
                "SELECT table_name, column_name FROM information_schema.column_privileges "
                "WHERE grantee = :role AND table_schema = 'public' "
                "AND privilege_type = 'SELECT'"), {"role": settings.db_role})).all()
        }
        wanted = {
            (table.name, column)
            for table in catalog.tables.values()
            for column in ("tenant_id", *table.column_names)
        }
        for table_name in sorted({t for t, _ in granted - wanted}):
            extra = ", ".join(_quote(c) for t, c in sorted(granted - wanted) if t == table_name)
            await session.execute(text(
                f"REVOKE SELECT ({extra}) ON {_quote(table_name)} FROM {role}"))
        for table_name in sorted({t for t, _ in wanted - granted}):
            missing = ", ".join(_quote(c) for t, c in sorted(wanted - granted) if t == table_name)
            await session.execute(text(
                f"GRANT SELECT ({missing}) ON {_quote(table_name)} TO {role}"))
        expected_qual = ("(tenant_id = (NULLIF(current_setting('pulse.tenant_id'::text, true), "
                         "''::text))::uuid)")
        policies = {
            name: (list(roles), qual)
            for name, roles, qual in (await session.execute(text(
                "SELECT tablename, roles, qual FROM pg_policies WHERE schemaname = 'public' "
                "AND policyname = :p"), {"p": POLICY})).all()
        }
        for table in catalog.tables.values():
            name = _quote(table.name)
            existing = policies.get(table.name)
            if existing == ([settings.db_role], expected_qual):
                continue
            if existing is not None:
                await session.execute(text(f"DROP POLICY {POLICY} ON {name}"))
            await session.execute(text(
                f"CREATE POLICY {POLICY} ON {name} FOR SELECT TO {role} USING (tenant_id = "
                "NULLIF(current_setting('pulse.tenant_id', true), '')::uuid)"
            ))


def _json_value(value: Any) -> Any:
    """A database value as JSON (decimals as floats, times as ISO-8601, intervals as seconds)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)


class Executor:
    """The execution role's pool and the one way to run a query through it."""

    def __init__(self, engine: Engine, settings: AiValidationSettings) -> None:
        self.engine = engine
        self.settings = settings
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    def dsn(self) -> str:
        """The libpq address of the execution role (the owner's server and database)."""
        url = make_url(self.engine.db.libpq_url())
        url = url.set(drivername="postgresql", username=self.settings.db_role,
                      password=role_password(self.engine, self.settings))
        return url.render_as_string(hide_password=False)

    async def pool(self) -> asyncpg.Pool:
        """The pool (created on first use)."""
        async with self._lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self.dsn(), min_size=0, max_size=self.settings.pool_size,
                    server_settings={"application_name": "pulse-ai-query"},
                    reset=_discard_all,
                    # DISCARD ALL drops prepared statements: asyncpg must not cache them
                    statement_cache_size=0,
                )
        return self._pool

    async def run(self, tenant_id: str, sql: str, max_rows: int) -> QueryResult:
        """Run validated ``sql`` for ``tenant_id``: read-only, timed out, capped, RLS-scoped."""
        tenant = str(uuid.UUID(tenant_id))
        pool = await self.pool()
        started = asyncio.get_running_loop().time()
        async with pool.acquire() as connection:
            try:
                async with connection.transaction(readonly=True):
                    await connection.execute(
                        "SELECT set_config('pulse.tenant_id', $1, true), "
                        "set_config('statement_timeout', $2, true)",
                        tenant, str(int(self.settings.statement_timeout_ms)),
                    )
                    statement = await connection.prepare(sql)
                    columns = [
                        {"name": attribute.name, "type": attribute.type.name}
                        for attribute in statement.get_attributes()
                    ]
                    records: Sequence[Any] = await statement.fetch()
            except asyncpg.PostgresError as error:
                code = getattr(error, "sqlstate", None) or "XX000"
                raise QueryFailed(str(code), _message(error)) from error
        elapsed = (asyncio.get_running_loop().time() - started) * 1000
        rows = [[_json_value(value) for value in record] for record in records[:max_rows]]
        return QueryResult(columns, rows, len(records) > max_rows, round(elapsed, 3))

    async def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _discard_all(connection: asyncpg.Connection) -> None:
    """Reset a connection before the pool hands it out again: nothing survives a query."""
    await connection.execute("DISCARD ALL")


def _message(error: asyncpg.PostgresError) -> str:
    """PostgreSQL's message, first line only (no internal detail or query text)."""
    return str(getattr(error, "message", None) or error).splitlines()[0][:300]
