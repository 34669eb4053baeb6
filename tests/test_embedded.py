"""The embedded default: its own PostgreSQL with pgvector, kept across restarts."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from sqlalchemy import select, text

from pulse_engine.db import Database
from pulse_engine.runtime import running_engine
from pulse_engine.settings import Settings
from pulse_engine.testing import create_tenant


def embedded_settings(data_dir: Path) -> Settings:
    """Settings with nothing configured but the data folder."""
    return Settings(_env_file=None, data_dir=data_dir, log_level="WARNING")  # type: ignore[call-arg]


async def test_embedded_database_keeps_data_across_restarts(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path)
    assert settings.embedded
    async with running_engine(settings, migrate=True) as engine:
        tenant_id = await create_tenant(engine, "kept across restarts")
        pid_file = tmp_path / "pg" / "postmaster.pid"
        assert pid_file.exists()
    # the last user stopped the server
    assert not pid_file.exists()
    async with running_engine(embedded_settings(tmp_path)) as engine:
        tenants = engine.core_tables["tenants"]
        async with engine.db.system_session() as session:
            name = await session.scalar(select(tenants.c.name).where(tenants.c.id == tenant_id))
            vector = await session.scalar(
                text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            )
    assert name == "kept across restarts"
    assert vector is not None


async def test_embedded_secrets_are_generated_once_and_private(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path)
    async with running_engine(settings, migrate=True):
        pass
    secrets_file = tmp_path / "secrets.json"
    first = json.loads(secrets_file.read_text())
    assert len(first["jwt_secret_key"]) >= 64
    assert stat.S_IMODE(os.stat(secrets_file).st_mode) == 0o600
    async with running_engine(embedded_settings(tmp_path)):
        pass
    assert json.loads(secrets_file.read_text()) == first


async def test_db_url_is_a_libpq_uri(tmp_path: Path) -> None:
    database = Database(embedded_settings(tmp_path))
    await database.connect()
    try:
        url = database.libpq_url()
        assert url.startswith("postgresql://")
        assert "host=" in url
    finally:
        await database.close()
