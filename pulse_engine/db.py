"""The database: pooled SQLAlchemy async engines over asyncpg, and tenant-bound sessions.

Two engines share one PostgreSQL database:

* the **owner** engine (the configured or embedded superuser/owner) runs migrations and
  the engine's own cross-tenant work (login, admin, audit): :meth:`Database.system_session`;
* the **app** engine connects as a role without ``BYPASSRLS`` (``PULSE_DB_APP_ROLE``,
  default ``pulse_app``); every plugin query goes through :meth:`Database.tenant_session`,
  which binds the transaction to one tenant (``pulse.tenant_id``) so that PostgreSQL
  row-level security returns and accepts only that tenant's rows, even for a query that
  forgot its ``WHERE tenant_id = ...``.

A third role, the bulk writer (:mod:`pulse_engine.bulk`), lets tenant sessions ``COPY``
into tables that opt in; it is created when the owner may grant ``BYPASSRLS``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from pulse_engine.bulk import SESSION_BULK_ROLE, SESSION_TENANT, bulk_role_name
from pulse_engine.embedded import (
    load_or_create_secret,
    start_embedded_postgres,
    stop_embedded_postgres,
)
from pulse_engine.request_limits import LIMITS_FUNCTION, REQUEST_LIMITS
from pulse_engine.settings import Settings

log = logging.getLogger(__name__)

TENANT_SETTING = "pulse.tenant_id"

#: Every statement is planned for its own parameters (PostgreSQL's ``plan_cache_mode``).
#: The driver prepares each statement once per connection, and after five executions
#: PostgreSQL may switch to a generic plan that cannot see the parameters: an analytics
#: window's time range then looks like any range. At pulse-github's benchmark size the
#: generic plan of the release cadence's read was an index scan of 91 ms where the plan
#: for the window was a bitmap scan of 37 ms, and a bare count of the window's
#: deployments 66 ms against 25 ms; planning each execution costs well under a
#: millisecond for these statements.
PLAN_CACHE_MODE = "force_custom_plan"


def to_async_url(libpq_url: str) -> URL:
    """Turn a libpq URL (``postgresql://...``) into SQLAlchemy's asyncpg URL."""
    url = make_url(libpq_url)
    return url.set(drivername="postgresql+asyncpg")


def to_libpq_url(url: URL) -> str:
    """Render a SQLAlchemy URL as a libpq URI (what ``psql`` and ``pulse db url`` use)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def lock_role_changes(connection: AsyncConnection | AsyncSession) -> None:
    """Serialise role and privilege changes across processes until the transaction ends.

    Every process creates its roles and grants at start; two ``GRANT ... ON DATABASE`` at
    once (the engine's app role in one process, a plugin's role in another) fail with
    "tuple concurrently updated", so the engine and plugins take this one lock first.
    """
    await connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('pulse.roles'))"))


async def _create_or_alter_role(connection: AsyncConnection, role: str, attributes: str) -> None:
    """``CREATE`` ``role`` ``WITH attributes``, or ``ALTER`` it if it exists, under
    :func:`lock_role_changes`."""
    await lock_role_changes(connection)
    exists = await connection.scalar(
        text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}
    )
    verb = "ALTER" if exists else "CREATE"
    await connection.execute(text(f'{verb} ROLE "{role}" WITH {attributes}'))


async def set_work_mem(session: AsyncSession, amount: str) -> None:
    """Give each sort and hash of the rest of ``session``'s transaction ``amount`` of
    memory (PostgreSQL ``work_mem``, as ``SET LOCAL``: ``"64MB"``), for a statement whose
    groupings would otherwise be planned to spill to disk."""
    await session.execute(text("SELECT set_config('work_mem', :amount, true)"),
                          {"amount": amount})


class Database:
    """Both engines, the tenant-bound and system sessions, and connection facts for health."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.owner_url: URL | None = None
        self.app_url: URL | None = None
        self.owner_engine: AsyncEngine | None = None
        self.app_engine: AsyncEngine | None = None
        self._owner_sessions: async_sessionmaker[AsyncSession] | None = None
        self._app_sessions: async_sessionmaker[AsyncSession] | None = None
        self._embedded_started = False
        #: the bulk-writer role, or None where the owner cannot create it
        self.bulk_role: str | None = None
        self._time_zones: frozenset[str] | None = None

    async def connect(self) -> None:
        """Resolve the database (starting the embedded one if needed), ensure the app role."""
        if self.owner_engine is not None:
            return
        configured = self.settings.configured_database_url()
        if configured is None:
            server_url = start_embedded_postgres(self.settings.data_dir)
            self._embedded_started = True
            self.owner_url = await self._ensure_embedded_database(to_async_url(server_url))
        else:
            self.owner_url = to_async_url(configured)
        self.owner_engine = self._create_engine(self.owner_url)
        self._owner_sessions = async_sessionmaker(self.owner_engine, expire_on_commit=False)
        password = self._app_password()
        await self._ensure_app_role(password)
        self.bulk_role = await self._ensure_bulk_role()
        self.app_url = self.owner_url.set(
            username=self.settings.database_app_role, password=password
        )
        self.app_engine = self._create_engine(self.app_url)
        self._app_sessions = async_sessionmaker(self.app_engine, expire_on_commit=False)

    def _create_engine(self, url: URL) -> AsyncEngine:
        return create_async_engine(
            url,
            pool_size=self.settings.database_pool_size,
            max_overflow=self.settings.database_max_overflow,
            pool_pre_ping=True,
            connect_args={"server_settings": {
                "application_name": "pulse",
                "plan_cache_mode": PLAN_CACHE_MODE,
            }},
        )

    async def _ensure_embedded_database(self, server_url: URL) -> URL:
        """Create the ``pulse`` database inside the embedded server once."""
        name = self.settings.postgres_database
        bootstrap = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
        try:
            async with bootstrap.connect() as connection:
                exists = await connection.scalar(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                )
                if not exists:
                    await connection.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            await bootstrap.dispose()
        return server_url.set(database=name)

    def _app_password(self) -> str:
        if self.settings.database_app_password:
            return self.settings.database_app_password
        if self.settings.embedded:
            return load_or_create_secret(self.settings.data_dir, "db_app_password")
        secret = (self.settings.jwt_secret_key or "").encode()
        if not secret:
            raise RuntimeError(
                "Set PULSE_DB_APP_PASSWORD (or JWT_SECRET_KEY, from which it is derived) "
                "when using an external database."
            )
        return hmac.new(secret, b"pulse-db-app-role", hashlib.sha256).hexdigest()

    async def _ensure_app_role(self, password: str) -> None:
        """Create or update the login role that cannot bypass row-level security."""
        role = self.settings.database_app_role
        assert self.owner_engine is not None
        async with self.owner_engine.connect() as connection:
            quoted_password = password.replace("'", "''")
            await _create_or_alter_role(
                connection, role,
                "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB "
                f"PASSWORD '{quoted_password}'",
            )
            database = self.owner_url.database if self.owner_url else None
            if database:
                await connection.execute(
                    text(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"')
                )
            await connection.execute(text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
            await connection.commit()

    async def _ensure_bulk_role(self) -> str | None:
        """Create or update the bulk-writer role and let the app role switch to it.

        Returns its name, or None (logged) when the owner may not create a ``BYPASSRLS``
        role; bulk loads then stage their rows instead.
        """
        app_role = self.settings.database_app_role
        role = bulk_role_name(app_role)
        assert self.owner_engine is not None
        async with self.owner_engine.connect() as connection:
            try:
                await _create_or_alter_role(
                    connection, role, "NOLOGIN NOSUPERUSER BYPASSRLS NOCREATEROLE NOCREATEDB"
                )
                await connection.execute(text(f'GRANT "{role}" TO "{app_role}"'))
            except DBAPIError as error:
                if getattr(error.orig, "sqlstate", None) != "42501":
                    raise
                log.warning(
                    "bulk COPY disabled: the database owner may not create the BYPASSRLS "
                    "role %s (%s); bulk loads stage their rows instead", role, error.orig
                )
                await connection.rollback()
                return None
            await connection.execute(text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
            await connection.commit()
        return role

    @asynccontextmanager
    async def tenant_session(self, tenant_id: str | uuid.UUID) -> AsyncIterator[AsyncSession]:
        """A transaction on the app engine bound to one tenant; commits on success.

        Row-level security makes every table with a ``tenant_id`` column show and accept
        only this tenant's rows for the whole transaction.
        """
        if self._app_sessions is None:
            raise RuntimeError("database is not connected")
        tenant = str(uuid.UUID(str(tenant_id)))
        limits = REQUEST_LIMITS.get()
        async with self._app_sessions() as session, session.begin():
            if limits is None:
                await session.execute(
                    text("SELECT set_config(:name, :tenant, true)"),
                    {"name": TENANT_SETTING, "tenant": tenant},
                )
            else:
                await session.execute(
                    text(
                        f"SELECT set_config(:name, :tenant, true), "
                        f"{LIMITS_FUNCTION}(:statement_ms, :temp_kb)"
                    ),
                    {
                        "name": TENANT_SETTING,
                        "tenant": tenant,
                        "statement_ms": limits.statement_timeout_ms,
                        "temp_kb": limits.temp_file_limit_kb,
                    },
                )
            session.info[SESSION_TENANT] = tenant
            if self.bulk_role is not None:
                session.info[SESSION_BULK_ROLE] = self.bulk_role
            yield session

    @asynccontextmanager
    async def process_once(
        self, consumer: str, message_id: str, tenant_id: str | None
    ) -> AsyncIterator[AsyncSession | None]:
        """The idempotent-consumer transaction: yields None when the message was handled.

        Records ``(consumer, message_id)`` in ``processed_messages`` in the same
        transaction as the handler's work, so a message redelivered after a crash (work
        committed, ack lost) is skipped, and one redelivered before the commit is done
        once. Bound to the message's tenant when it has one.
        """
        sessions = self.tenant_session(tenant_id) if tenant_id else self.system_session()
        async with sessions as session:
            inserted = await session.scalar(
                text(
                    "INSERT INTO processed_messages (consumer, message_id) "
                    "VALUES (:consumer, :message_id) ON CONFLICT DO NOTHING RETURNING 1"
                ),
                {"consumer": consumer, "message_id": message_id},
            )
            yield session if inserted else None

    @asynccontextmanager
    async def system_session(self) -> AsyncIterator[AsyncSession]:
        """A transaction on the owner engine, across tenants: for the engine's own work only."""
        if self._owner_sessions is None:
            raise RuntimeError("database is not connected")
        limits = REQUEST_LIMITS.get()
        async with self._owner_sessions() as session, session.begin():
            if limits is not None:
                await session.execute(
                    text(f"SELECT {LIMITS_FUNCTION}(:statement_ms, :temp_kb)"),
                    {
                        "statement_ms": limits.statement_timeout_ms,
                        "temp_kb": limits.temp_file_limit_kb,
                    },
                )
            yield session

    async def time_zones(self) -> frozenset[str]:
        """The zone names this PostgreSQL knows (``pg_timezone_names``; read once)."""
        if self._time_zones is None:
            if self.app_engine is None:
                raise RuntimeError("database is not connected")
            async with self.app_engine.connect() as connection:
                names = await connection.execute(text("SELECT name FROM pg_timezone_names"))
                self._time_zones = frozenset(names.scalars())
        return self._time_zones

    async def vacuum_analyze(self, tables: Sequence[str]) -> None:
        """``VACUUM (ANALYZE)`` ``tables`` as the owner, outside any transaction.

        After a statement rewrote many rows, index-only scans visit the heap for every
        row until a vacuum marks the pages all-visible again; autovacuum gets there
        eventually, this gets there now. Call it after the rewriting transaction commits.
        """
        if self.owner_engine is None:
            raise RuntimeError("database is not connected")
        names = ", ".join('"' + table.replace('"', '""') + '"' for table in tables)
        async with self.owner_engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text(f"VACUUM (ANALYZE) {names}"))

    def libpq_url(self, *, app: bool = False) -> str:
        """The libpq URI of the owner (default) or app connection."""
        url = self.app_url if app else self.owner_url
        if url is None:
            raise RuntimeError("database is not connected")
        return to_libpq_url(url)

    def pool_status(self) -> dict[str, Any]:
        """Pool counters of the app engine for the database health check."""
        if self.app_engine is None:
            return {}
        pool: Any = self.app_engine.pool
        return {
            "size": pool.size(),
            "checked_out": pool.checkedout(),
            "overflow": pool.overflow(),
        }

    async def close(self) -> None:
        """Dispose both pools."""
        for engine in (self.app_engine, self.owner_engine):
            if engine is not None:
                await engine.dispose()
        self.app_engine = self.owner_engine = None
        self._app_sessions = self._owner_sessions = None
        if self._embedded_started:
            self._embedded_started = False
            stop_embedded_postgres(self.settings.data_dir)
