"""Migrating again while other processes work takes no lock that waits for their rows.

Every process that starts with auto-migration runs the upgrade; the tenancy and bulk-copy
rules it re-applies must leave tables that are already right untouched (ALTER TABLE,
CREATE POLICY and CREATE TRIGGER take locks that would queue behind a live load and
deadlock with it).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text

from pulse_engine.migrations import OWNER_POLICY_NAME, POLICY_NAME, upgrade
from pulse_engine.testing import make_settings, make_tenant, running_app


async def test_upgrade_again_while_a_load_holds_its_rows(
    pulse_database_url: str, tmp_path: Path
) -> None:
    async with running_app(make_settings(pulse_database_url, tmp_path)) as app:
        engine = app.extensions["pulse"]
        tenant = await make_tenant(app)
        assert engine.db.owner_engine is not None
        async with engine.db.tenant_session(tenant.id) as load:
            # a live load: an uncommitted insert into a bulk-copy tenant table
            await load.execute(
                text("INSERT INTO projects (tenant_id, id, source, external_id, name) "
                     "VALUES (:tenant, gen_random_uuid(), 'test', 'p-1', 'Live load')"),
                {"tenant": tenant.id},
            )
            # would wait for the load's transaction (forever, here) if it locked its tables
            await asyncio.wait_for(
                upgrade(
                    engine.db.owner_engine,
                    engine.migration_folders,
                    engine.metadata,
                    engine.settings.database_app_role,
                    engine.db.bulk_role,
                ),
                20,
            )
        # the rules are still all in place
        async with engine.db.owner_engine.connect() as connection:
            unforced = await connection.scalar(text(
                "SELECT count(*) FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
                "AND c.relkind = 'r' AND a.attname = 'tenant_id' AND NOT c.relforcerowsecurity"
            ))
            # the engine's two (other plugins may add their own, as pulse-ai-validation does)
            policies = await connection.scalar(text(
                "SELECT count(*) FROM pg_policies WHERE tablename = 'projects' "
                "AND policyname IN (:isolation, :owner)"
            ), {"isolation": POLICY_NAME, "owner": OWNER_POLICY_NAME})
        assert unforced == 0
        assert policies == 2
