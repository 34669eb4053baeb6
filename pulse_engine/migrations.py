"""Schema migrations: each plugin's own Alembic history, applied together.

Each plugin returns the folder of its revisions from ``register_migrations()``. Every
plugin's history is tracked in its own version table (``pulse_migrations_<plugin>``), so
a plugin that is uninstalled or left out by ``PULSE_PLUGINS`` never blocks the others'
upgrades. The engine's own tables come first (the ``pulse.core_tables`` built-in), then
plugins in discovery order; a plugin's revisions may rely on the core tables and on the
tables of plugins it depends on. After upgrading, the engine applies its tenancy rules to
every table: row-level security enabled and forced on each table with a ``tenant_id``
column, and the app role's privileges (none on tables marked private with
``info={"pulse_private": True}``). Concurrent upgrades are serialised by an advisory lock.
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from pulse_engine.bulk import ANALYZE_FUNCTION, BULK_COPY_FLAG, GUARD_NAME, GUARD_ROWS
from pulse_engine.request_limits import LIMITS_FUNCTION

log = logging.getLogger(__name__)

ALEMBIC_DIR = Path(__file__).parent / "alembic"
CORE_MIGRATIONS = Path(__file__).parent / "migrations"
POLICY_NAME = "pulse_tenant_isolation"
OWNER_POLICY_NAME = "pulse_owner_access"
VERSION_TABLE_PREFIX = "pulse_migrations_"


def version_table(plugin: str) -> str:
    """The Alembic version table of one plugin's history."""
    return VERSION_TABLE_PREFIX + re.sub(r"\W", "_", plugin).lower()


def alembic_config(plugin: str, folder: Path, metadata: MetaData | None = None) -> Config:
    """An in-memory Alembic config over one plugin's revision folder."""
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(folder))
    config.attributes["metadata"] = metadata
    config.attributes["version_table"] = version_table(plugin)
    return config


@functools.lru_cache(maxsize=256)
def heads(plugin: str, folder: Path) -> frozenset[str]:
    """The head revisions of a plugin's history (read once per process: files don't change)."""
    return frozenset(ScriptDirectory.from_config(alembic_config(plugin, folder)).get_heads())


async def pending_revisions(engine: AsyncEngine, folders: dict[str, Path]) -> dict[str, list[str]]:
    """Per plugin, the head revisions the database has not reached yet (empty when current)."""

    def read(connection: Connection) -> dict[str, list[str]]:
        pending = {}
        for plugin, folder in folders.items():
            context = MigrationContext.configure(
                connection, opts={"version_table": version_table(plugin)}
            )
            missing = heads(plugin, folder) - set(context.get_current_heads())
            if missing:
                pending[plugin] = sorted(missing)
        return pending

    async with engine.connect() as connection:
        return await connection.run_sync(read)


async def upgrade(
    engine: AsyncEngine,
    folders: dict[str, Path],
    metadata: MetaData,
    app_role: str,
    bulk_role: str | None = None,
) -> None:
    """Apply every plugin's revisions and the tenancy rules, under an advisory lock."""

    def run(connection: Connection) -> None:
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('pulse.migrate'))"))
        ensure_pgvector(connection)
        # the core tables first: plugins' revisions may rely on them
        for plugin, folder in sorted(folders.items(), key=lambda item: item[1] != CORE_MIGRATIONS):
            config = alembic_config(plugin, folder, metadata)
            config.attributes["connection"] = connection
            command.upgrade(config, "heads")
        apply_tenancy_rules(connection, metadata, app_role)
        if bulk_role is not None:
            apply_bulk_copy_rules(connection, metadata, bulk_role)

    async with engine.begin() as connection:
        await connection.run_sync(run)


def ensure_pgvector(connection: Connection) -> None:
    """Create pgvector where the server has it, and update it to the server's version.

    A server without pgvector is left without it (vector features report degraded). An
    extension created by an older pgvector (a data folder of the old embedded build) is
    updated to the version the server ships, when the migrating role may; otherwise a
    warning says who must run ``ALTER EXTENSION vector UPDATE``.
    """
    row = connection.execute(
        text(
            "SELECT default_version, installed_version FROM pg_available_extensions "
            "WHERE name = 'vector'"
        )
    ).one_or_none()
    if row is None:
        log.warning("this PostgreSQL has no pgvector: vector features will report degraded")
        return
    if row.installed_version is None:
        connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        return
    if row.installed_version == row.default_version:
        return
    try:
        with connection.begin_nested():
            connection.execute(text("ALTER EXTENSION vector UPDATE"))
        log.info("pgvector updated from %s to %s", row.installed_version, row.default_version)
    except DBAPIError as error:
        log.warning(
            "pgvector %s is installed but the server has %s, and this role may not update it "
            "(%s): ask the database owner to run ALTER EXTENSION vector UPDATE",
            row.installed_version,
            row.default_version,
            error.orig,
        )


def apply_tenancy_rules(connection: Connection, metadata: MetaData, app_role: str) -> None:
    """Force RLS on every tenant table in ``public`` and grant the app role its privileges."""
    private = {name for name, table in metadata.tables.items() if table.info.get("pulse_private")}
    rows = connection.execute(
        text(
            "SELECT c.table_name, c.data_type FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_schema, table_name) "
            "WHERE c.table_schema = 'public' AND c.column_name = 'tenant_id' "
            "AND t.table_type = 'BASE TABLE'"
        )
    ).all()
    role = f'"{app_role}"'
    connection.execute(
        text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
    )
    connection.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}"))
    version_tables = connection.execute(
        text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE :prefix"
        ),
        {"prefix": VERSION_TABLE_PREFIX + "%"},
    ).scalars()
    for name in version_tables:
        connection.execute(text(f'REVOKE ALL ON "{name}" FROM {role}'))
    owner = connection.execute(text("SELECT current_user")).scalar_one()
    # Only what is missing or different is changed: ALTER TABLE and CREATE/DROP POLICY
    # take an ACCESS EXCLUSIVE lock, and every process that starts with auto-migration runs
    # this while others load rows (a deadlock with a live job otherwise).
    flags = {
        name: (enabled, forced)
        for name, enabled, forced in connection.execute(
            text(
                "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
            )
        )
    }
    policies = {
        (table_name, policy): list(roles)
        for table_name, policy, roles in connection.execute(
            text(
                "SELECT tablename, policyname, roles FROM pg_policies "
                "WHERE schemaname = 'public' AND policyname IN (:tenant, :owner)"
            ),
            {"tenant": POLICY_NAME, "owner": OWNER_POLICY_NAME},
        )
    }
    for table_name, data_type in rows:
        table = f'"{table_name}"'
        setting = f"NULLIF(current_setting('pulse.tenant_id', true), '')::{data_type}"
        enabled, forced = flags.get(table_name, (False, False))
        if not enabled:
            connection.execute(text(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"))
        if not forced:
            connection.execute(text(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY"))
        # the app role sees one tenant; the owner (migrations, the engine's own cross-tenant
        # work) is let through explicitly rather than by being a superuser
        wanted = {
            POLICY_NAME: (
                app_role,
                f"CREATE POLICY {POLICY_NAME} ON {table} TO {role} "
                f"USING (tenant_id = {setting}) WITH CHECK (tenant_id = {setting})",
            ),
            OWNER_POLICY_NAME: (
                owner,
                f'CREATE POLICY {OWNER_POLICY_NAME} ON {table} TO "{owner}" '
                "USING (true) WITH CHECK (true)",
            ),
        }
        for policy, (grantee, create) in wanted.items():
            existing = policies.get((table_name, policy))
            if existing == [grantee]:
                continue
            if existing is not None:
                connection.execute(text(f"DROP POLICY {policy} ON {table}"))
            connection.execute(text(create))
    for table_name in private:
        connection.execute(text(f'REVOKE ALL ON "{table_name}" FROM {role}'))
    connection.execute(text(_LIMITS_FUNCTION))
    limits_signature = f"{LIMITS_FUNCTION}(integer, integer)"
    connection.execute(text(f"REVOKE ALL ON FUNCTION {limits_signature} FROM PUBLIC"))
    connection.execute(text(f"GRANT EXECUTE ON FUNCTION {limits_signature} TO {role}"))
    connection.execute(text(_ANALYZE_FUNCTION))
    connection.execute(text(f"REVOKE ALL ON FUNCTION {ANALYZE_FUNCTION}(regclass) FROM PUBLIC"))
    connection.execute(text(f"GRANT EXECUTE ON FUNCTION {ANALYZE_FUNCTION}(regclass) TO {role}"))


#: ``pulse_request_limits(statement_ms, temp_kb)``: the limits of one request's transaction
#: (:mod:`pulse_engine.request_limits`). ``temp_file_limit`` may be set only by a superuser,
#: so the function runs as its owner; where the owner is no superuser that part is skipped
#: (the function returns false) and only the statement timeout applies.
_LIMITS_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {LIMITS_FUNCTION}(statement_ms integer, temp_kb integer)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    PERFORM set_config('statement_timeout', statement_ms || 'ms', true);
    BEGIN
        PERFORM set_config('temp_file_limit', temp_kb || 'kB', true);
    EXCEPTION WHEN insufficient_privilege THEN
        RETURN false;
    END;
    RETURN true;
END $$
"""


#: ``pulse_analyze(table)``: ANALYZE a tenant table of ``public`` as its owner, for the app
#: role (:func:`pulse_engine.bulk.analyze_tables`); false when another transaction holds
#: the table's analyze lock (waits at most 2 s for it: longer than ``deadlock_timeout``,
#: after which an autovacuum holding the lock is cancelled in our favour).
_ANALYZE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {ANALYZE_FUNCTION}(target regclass) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
SET lock_timeout = '2s' AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid
        WHERE c.oid = target AND n.nspname = 'public' AND c.relkind = 'r'
          AND a.attname = 'tenant_id' AND NOT a.attisdropped
    ) THEN
        RAISE EXCEPTION 'not a tenant table: %', target USING ERRCODE = '42501';
    END IF;
    EXECUTE format('ANALYZE %s', target);
    RETURN true;
EXCEPTION WHEN lock_not_available THEN
    RETURN false;
END $$
"""


_GUARD_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {GUARD_NAME}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE bound uuid := NULLIF(current_setting('pulse.tenant_id', true), '')::uuid;
BEGIN
    IF EXISTS (SELECT 1 FROM {GUARD_ROWS} WHERE tenant_id IS DISTINCT FROM bound) THEN
        RAISE EXCEPTION 'bulk COPY into % of a row of another tenant', TG_TABLE_NAME
            USING ERRCODE = '42501';
    END IF;
    RETURN NULL;
END $$
"""


def apply_bulk_copy_rules(connection: Connection, metadata: MetaData, bulk_role: str) -> None:
    """Let the bulk-writer role insert into opted-in tenant tables, and nothing else.

    Each table marked ``info={"pulse_bulk_copy": True}`` (and having ``tenant_id``) gets
    ``INSERT`` for the role and the tenant guard: a statement-level trigger that rejects
    the statement when a row the role inserted names another tenant than the
    transaction's (see :mod:`pulse_engine.bulk`).
    """
    role = f'"{bulk_role}"'
    literal = "'" + bulk_role.replace("'", "''") + "'"
    connection.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}"))
    connection.execute(text(_GUARD_FUNCTION))
    guards = {
        table_name: definition
        for table_name, definition in connection.execute(
            text(
                "SELECT c.relname, pg_get_triggerdef(t.oid) FROM pg_trigger t "
                "JOIN pg_class c ON c.oid = t.tgrelid WHERE t.tgname = :name"
            ),
            {"name": GUARD_NAME},
        )
    }
    for table in metadata.tables.values():
        if not table.info.get(BULK_COPY_FLAG) or "tenant_id" not in table.c:
            continue
        name = f'"{table.name}"'
        connection.execute(text(f"GRANT INSERT ON {name} TO {role}"))
        if literal in guards.get(table.name, ""):
            continue  # in place for this role: CREATE TRIGGER would lock the table
        connection.execute(text(f"DROP TRIGGER IF EXISTS {GUARD_NAME} ON {name}"))
        connection.execute(
            text(
                f"CREATE TRIGGER {GUARD_NAME} AFTER INSERT ON {name} "
                f"REFERENCING NEW TABLE AS {GUARD_ROWS} FOR EACH STATEMENT "
                f"WHEN (current_user = {literal}) EXECUTE FUNCTION {GUARD_NAME}()"
            )
        )


async def rls_report(engine: AsyncEngine) -> dict[str, Any]:
    """Which tenant tables lack forced row-level security (for the database health check)."""
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "JOIN pg_attribute a ON a.attrelid = c.oid "
                    "WHERE n.nspname = 'public' AND c.relkind = 'r' "
                    "AND a.attname = 'tenant_id' AND NOT a.attisdropped"
                )
            )
        ).all()
    unprotected = sorted(name for name, enabled, forced in rows if not (enabled and forced))
    return {"tenant_tables": len(rows), "without_forced_rls": unprotected}


async def missing_tables(engine: AsyncEngine, metadata: MetaData) -> list[str]:
    """Tables a plugin defined through ``register_tables`` that no migration created."""
    async with engine.connect() as connection:
        present = set(
            (
                await connection.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                )
            ).scalars()
        )
    return sorted(
        name for name, table in metadata.tables.items()
        if (table.schema in (None, "public")) and name not in present
    )
