"""``/health/ml`` on a server with pgvector."""

from __future__ import annotations

from pulse_ml_monitor.plugin import embedder_for
from quart import Quart
from sqlalchemy import text

from pulse_engine.app import PulseEngine


async def test_health_reports_pgvector_indexes_embedder_and_job(
    ml_app: Quart, engine: PulseEngine
) -> None:
    await embedder_for(engine).get()
    response = await ml_app.test_client().get("/health/ml")
    body = await response.get_json()
    assert response.status_code == 200, body
    async with engine.db.system_session() as session:
        version = await session.scalar(
            text("SELECT extversion FROM pg_extension WHERE extname = 'vector'"))
        indexes = (await session.execute(text(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'embeddings' "
            "AND indexdef LIKE '%USING hnsw%'"))).scalars().all()
        options = await session.scalar(text(
            "SELECT reloptions FROM pg_class WHERE relname = 'ix_embeddings_hnsw'"))
    assert body["pgvector"]["available"] is True
    assert body["pgvector"]["version"] == version
    major, minor = (int(part) for part in version.split(".")[:2])
    assert body["pgvector"]["iterative_scan"] is ((major, minor) >= (0, 8))
    assert body["pgvector"]["embeddings_table"] is True
    assert [index["name"] for index in body["vector_indexes"]] == list(indexes) == [
        "ix_embeddings_hnsw"]
    assert sorted(options) == ["ef_construction=64", "m=24"]  # ml_0003's options
    assert body["embedder"]["dimensions"] == 384
    assert body["embedder"]["name"].startswith("hashing-384-")
    assert body["embedder"]["loaded"] is True
    assert set(body["anomaly_job"]) >= {"last_scan_at", "stale_tenants", "tenants_scanned"}
    plugin = await (await ml_app.test_client().get("/health/ml_monitor")).get_json()
    assert set(plugin["checks"]) == {"vectors", "anomaly_job"}
