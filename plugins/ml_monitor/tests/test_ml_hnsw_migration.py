"""Migration ``ml_0003``: the HNSW index rebuilt with m = 24 from m = 16, and back."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from pulse_ml_monitor.plugin import register_migrations
from quart import Quart
from sqlalchemy import text

from pulse_engine.app import PulseEngine


def _migration() -> ModuleType:
    path = Path(register_migrations()) / "ml_0003_embeddings_hnsw_m24.py"
    spec = importlib.util.spec_from_file_location("ml_0003", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(connection: Any, step: Any) -> None:
    with Operations.context(MigrationContext.configure(connection)):
        step()


async def _options(session: Any) -> tuple[list[str], int]:
    options = await session.scalar(text(
        "SELECT reloptions FROM pg_class WHERE relname = 'ix_embeddings_hnsw'"))
    count = await session.scalar(text(
        "SELECT count(*) FROM pg_indexes WHERE tablename = 'embeddings' "
        "AND indexdef LIKE '%USING hnsw%'"))
    return sorted(options), count


async def test_ml_0003_rebuilds_the_index_and_downgrades(ml_app: Quart,
                                                         engine: PulseEngine) -> None:
    migration = _migration()
    async with engine.db.system_session() as session:
        assert await _options(session) == (["ef_construction=64", "m=24"], 1)
        connection = await session.connection()
        await connection.run_sync(_run, migration.downgrade)
        assert await _options(session) == (["ef_construction=64", "m=16"], 1)
        await connection.run_sync(_run, migration.upgrade)
        assert await _options(session) == (["ef_construction=64", "m=24"], 1)
        await connection.run_sync(_run, migration.upgrade)  # has the options: left alone
        assert await _options(session) == (["ef_construction=64", "m=24"], 1)
        await session.commit()
