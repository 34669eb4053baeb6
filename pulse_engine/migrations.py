"""Schema migrations: one Alembic branch per plugin, all heads applied together.

Each plugin returns the folder of its revisions from ``register_migrations()``; the
engine's own tables are the ``pulse_engine`` branch. After upgrading, the engine applies
its tenancy rules to every table: row-level security enabled and forced on each table with
a ``tenant_id`` column, and the app role's privileges (none on tables marked private with
``info={"pulse_private": True}``). Concurrent upgrades are serialised by an advisory lock.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

ALEMBIC_DIR = Path(__file__).parent / "alembic"
CORE_MIGRATIONS = Path(__file__).parent / "migrations"
POLICY_NAME = "pulse_tenant_isolation"


def alembic_config(version_folders: list[Path], metadata: MetaData | None = None) -> Config:
    """An in-memory Alembic config over the core and plugin revision folders."""
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.set_main_option("path_separator", "os")
    folders = [CORE_MIGRATIONS, *version_folders]
    config.set_main_option("version_locations", os.pathsep.join(map(str, folders)))
    config.attributes["metadata"] = metadata
    return config


def heads(config: Config) -> set[str]:
    """The head revisions of every branch."""
    return set(ScriptDirectory.from_config(config).get_heads())


async def current_revisions(engine: AsyncEngine) -> set[str]:
    """The revisions the database is at."""
    async with engine.connect() as connection:
        return set(
            await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_heads()
            )
        )


async def upgrade(
    engine: AsyncEngine, config: Config, metadata: MetaData, app_role: str
) -> None:
    """Apply all heads and the tenancy rules, under an advisory lock."""

    def run(connection: Connection) -> None:
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('pulse.migrate'))"))
        connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")
        apply_tenancy_rules(connection, metadata, app_role)

    async with engine.begin() as connection:
        await connection.run_sync(run)


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
    connection.execute(text(f"REVOKE ALL ON alembic_version FROM {role}"))
    for table_name, data_type in rows:
        table = f'"{table_name}"'
        setting = f"NULLIF(current_setting('pulse.tenant_id', true), '')::{data_type}"
        connection.execute(text(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"))
        connection.execute(text(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY"))
        connection.execute(text(f"DROP POLICY IF EXISTS {POLICY_NAME} ON {table}"))
        connection.execute(
            text(
                f"CREATE POLICY {POLICY_NAME} ON {table} "
                f"USING (tenant_id = {setting}) WITH CHECK (tenant_id = {setting})"
            )
        )
    for table_name in private:
        connection.execute(text(f'REVOKE ALL ON "{table_name}" FROM {role}'))


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
