"""Production-like roles: the owner is not a superuser and the app role cannot bypass RLS.

The engine's own cross-tenant work (login, admin, audit, capabilities) must work through
the explicit owner policy, not through superuser powers; plugin sessions stay confined.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from pulse_engine.db import to_async_url, to_libpq_url
from pulse_engine.testing import TEST_PASSWORD, make_settings, make_tenant, running_app


async def make_owned_database(superuser_url: str) -> str:
    """A database owned by a fresh non-superuser role; returns that role's URL."""
    suffix = uuid.uuid4().hex[:8]
    owner, database = f"owner_{suffix}", f"owned_{suffix}"
    admin = create_async_engine(to_async_url(superuser_url), isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f"CREATE ROLE {owner} LOGIN CREATEROLE NOSUPERUSER"))
        await connection.execute(text(f"CREATE DATABASE {database} OWNER {owner}"))
    await admin.dispose()
    in_database = to_async_url(superuser_url).set(database=database)
    admin = create_async_engine(in_database, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        await connection.execute(text(f"ALTER SCHEMA public OWNER TO {owner}"))
    await admin.dispose()
    return to_libpq_url(make_url(in_database).set(username=owner))


async def test_everything_works_without_superuser(pulse_database_url: str, tmp_path: Path) -> None:
    owner_url = await make_owned_database(pulse_database_url)
    settings = make_settings(owner_url, tmp_path, database_app_role=f"app_{uuid.uuid4().hex[:8]}")
    async with running_app(settings) as app:
        engine = app.extensions["pulse"]
        async with engine.db.system_session() as session:
            assert not await session.scalar(
                text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            )
        # an owner that may not grant BYPASSRLS gets no bulk-writer role: loads stage rows
        assert engine.db.bulk_role is None
        tenant = await make_tenant(app)
        client = app.test_client()
        login = await client.post(
            "/api/v1/auth/login", json={"email": tenant.admin.email, "password": TEST_PASSWORD}
        )
        assert login.status_code == 200, await login.get_data()
        users = await tenant.admin_client.get("/api/v1/admin/users")
        assert users.status_code == 200
        emails = {user["email"] for user in (await users.get_json())["items"]}
        assert tenant.viewer.email in emails
        audit = await tenant.admin_client.get("/api/v1/admin/audit")
        assert audit.status_code == 200
        assert any(
            entry["action"].startswith("auth.login") for entry in (await audit.get_json())["items"]
        )
        health = await (await client.get("/health/database")).get_json()
        assert health["status"] == "healthy", health
        # the app role still sees only one tenant's audit rows
        other = await make_tenant(app)
        async with engine.db.tenant_session(other.id) as session:
            visible = await session.scalar(text("SELECT count(*) FROM audit_log"))
        assert visible == 0
