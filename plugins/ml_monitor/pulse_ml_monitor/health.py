"""``/health/ml`` and the plugin's health checks: aggregate figures only (they are public).

* ``pgvector``: installed or not, its version, whether iterative scans are available (and
  used); degraded with a reason when vectors are unavailable;
* ``vector_indexes``: the HNSW/IVFFlat indexes of the ``embeddings`` table;
* ``embeddings``: vectors per entity type (all tenants together; of the embedder in use
  once it is loaded), and the embedder;
* ``anomaly_job``: when the newest and the oldest tenant scan ran, and how many tenants'
  last scan is older than ``PULSE_ML_STALE_AFTER_SECONDS`` (degraded when any is).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text

from pulse_engine import StashKey
from pulse_ml_monitor.config import MlSettings
from pulse_ml_monitor.tables import EMBEDDINGS_TABLE, VECTOR_DIMENSIONS
from pulse_ml_monitor.vectors import vector_support

if TYPE_CHECKING:
    from pulse_engine import Engine
    from pulse_ml_monitor.embedder import EmbedderSlot

Status = Literal["healthy", "degraded", "unhealthy"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class PgvectorHealth(_Open):
    """The vector extension."""

    available: bool
    version: str | None
    iterative_scan: bool = Field(description="pgvector >= 0.8 (hnsw.iterative_scan).")
    iterative_scan_used: bool = Field(description="False when PULSE_ML_ITERATIVE_SCAN=off.")
    embeddings_table: bool


class HealthDocument(_Open):
    """``/health/ml``."""

    status: Status
    reasons: list[str] = Field(description="Why the status is not healthy.")
    pgvector: PgvectorHealth
    vector_indexes: list[dict[str, str]]
    embeddings: dict[str, int] = Field(description="Vectors per entity type (all tenants).")
    embedder: dict[str, Any]
    anomaly_job: dict[str, Any]


#: How long one health document is reused (the checks of one /health call share it).
REUSE_SECONDS = 1.0
DOCUMENT = StashKey[tuple[float, dict[str, Any]]]()


async def ml_health(
    engine: Engine, settings: MlSettings, embedders: EmbedderSlot
) -> dict[str, Any]:
    """The ``/health/ml`` document (reused for :data:`REUSE_SECONDS`)."""
    cached = engine.stash.get(DOCUMENT)
    if cached is not None and time.monotonic() - cached[0] < REUSE_SECONDS:
        return cached[1]
    document = await _ml_health(engine, settings, embedders)
    engine.stash[DOCUMENT] = (time.monotonic(), document)
    return document


async def _ml_health(
    engine: Engine, settings: MlSettings, embedders: EmbedderSlot
) -> dict[str, Any]:
    support = await vector_support(engine, refresh=True)
    reasons: list[str] = []
    counts: dict[str, int] = {}
    embedder = embedders.ready  # not built here: health must not wait for it
    async with engine.db.system_session() as session:
        if support.usable:
            rows = await session.execute(text(
                f"SELECT entity_type, count(*) FROM {EMBEDDINGS_TABLE} "
                + ("WHERE model = :model " if embedder is not None else "")
                + "GROUP BY 1 ORDER BY 1"),
                {"model": embedder.name} if embedder is not None else {})
            counts = {row[0]: int(row[1]) for row in rows}
        scans = (await session.execute(text(
            "SELECT count(*) AS tenants, max(scanned_at) AS newest, min(scanned_at) AS oldest, "
            "count(*) FILTER (WHERE scanned_at < now() - CAST(:stale AS interval)) AS stale, "
            "coalesce(sum(errors), 0) AS errors FROM ml_scan_state"),
            {"stale": timedelta(seconds=settings.stale_after_seconds)})).one()
    if not support.usable:
        reasons.append(support.reason or "pgvector is unavailable")
    elif not support.indexes:
        reasons.append("the embeddings table has no HNSW index")
    if scans.stale:
        reasons.append(f"{scans.stale} tenant(s) not scanned for anomalies for more than "
                       f"{settings.stale_after_seconds:.0f} s")
    newest = scans.newest
    return {
        "status": "degraded" if reasons else "healthy",
        "reasons": reasons,
        "pgvector": {
            "available": support.available, "version": support.version,
            "iterative_scan": support.iterative_scan,
            "iterative_scan_used": support.iterative_scan and settings.iterative_scan == "auto",
            "embeddings_table": support.table,
        },
        "vector_indexes": [dict(index) for index in support.indexes],
        "embeddings": counts,
        "embedder": (
            {"name": embedder.name, "kind": embedder.kind, "dimensions": embedder.dimensions,
             "loaded": True} if embedder is not None else
            {"name": None, "kind": embedders.choice, "dimensions": VECTOR_DIMENSIONS,
             "loaded": False}),
        "anomaly_job": {
            "interval_seconds": settings.scan_interval_seconds,
            "tenants_scanned": int(scans.tenants),
            "last_scan_at": newest.isoformat() if newest else None,
            "oldest_scan_at": scans.oldest.isoformat() if scans.oldest else None,
            "age_seconds": (datetime.now(UTC) - newest).total_seconds() if newest else None,
            "stale_tenants": int(scans.stale),
            "errors": int(scans.errors),
        },
    }


def health_checks(
    engine: Engine, settings: MlSettings, embedders: EmbedderSlot
) -> dict[str, Callable[[], Awaitable[dict[str, Any]]]]:
    """The ``{name: check}`` mapping for ``register_health_checks`` (``/health``)."""

    async def vectors() -> dict[str, Any]:
        document = await ml_health(engine, settings, embedders)
        vector_reasons = [r for r in document["reasons"] if "scanned" not in r]
        return {"status": "degraded" if vector_reasons else "healthy",
                "reasons": vector_reasons, "pgvector": document["pgvector"],
                "embeddings": document["embeddings"]}

    async def anomaly_job() -> dict[str, Any]:
        document = await ml_health(engine, settings, embedders)
        job = document["anomaly_job"]
        return {"status": "degraded" if job["stale_tenants"] else "healthy", **job}

    return {"vectors": vectors, "anomaly_job": anomaly_job}
