"""Built-in plugin: health checks of the database, cache, queue and event bus."""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from pulse_engine import hookimpl
from pulse_engine.migrations import missing_tables, pending_revisions, rls_report

if TYPE_CHECKING:
    from pulse_engine.app import PulseEngine


async def database(engine: PulseEngine) -> dict[str, Any]:
    """Connection, pool, migrations at head, every registered table present, forced RLS on
    tenant tables, pgvector, and whether requests' temp-file limit can be enforced."""
    if engine.db.owner_engine is None:
        return {"status": "unhealthy", "database_connection": "not connected"}
    started = time.perf_counter()
    async with engine.db.owner_engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
        pgvector = await connection.scalar(
            text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        )
        superuser = await connection.scalar(
            text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        )
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    pending = await pending_revisions(engine.db.owner_engine, engine.migration_folders)
    rls = await rls_report(engine.db.owner_engine)
    missing = await missing_tables(engine.db.owner_engine, engine.metadata)
    status = "healthy"
    if pending or missing or rls["without_forced_rls"]:
        status = "unhealthy"
    elif pgvector is None:
        status = "degraded"
    return {
        "status": status,
        "database_connection": "ok",
        "latency_ms": latency_ms,
        "pool": engine.db.pool_status(),
        "migrations": {"at_head": not pending, "pending": pending},
        "tables": {"registered": len(engine.metadata.tables), "missing": missing},
        "request_limits": {
            "statement_timeout_seconds": engine.settings.statement_timeout_seconds,
            "temp_file_limit_enforced": bool(superuser),
        },
        "row_level_security": rls,
        "pgvector": {"available": pgvector is not None, "version": pgvector},
    }


async def cache(engine: PulseEngine) -> dict[str, Any]:
    """The cache backend answers (a Redis outage only degrades: responses go uncached)."""
    backend = type(engine.cache.backend).__name__
    ok = await engine.cache.backend.ping()
    return {"status": "healthy" if ok else "degraded", "backend": backend}


async def queue(engine: PulseEngine) -> dict[str, Any]:
    """The queue backend answers."""
    ok = await engine.queue.ping()
    return {
        "status": "healthy" if ok else "unhealthy",
        "backend": type(engine.queue).__name__,
        "consumers": len(engine.consumers),
    }


async def events(engine: PulseEngine) -> dict[str, Any]:
    """The event bus answers."""
    ok = await engine.events.ping()
    return {"status": "healthy" if ok else "degraded", "backend": type(engine.events).__name__}


@hookimpl
def register_health_checks(engine: PulseEngine) -> dict[str, Any]:
    """The engine's own checks."""
    return {
        name: functools.partial(check, engine)
        for name, check in (
            ("database", database),
            ("cache", cache),
            ("queue", queue),
            ("events", events),
        )
    }
