"""Degraded mode on a PostgreSQL without pgvector: this machine's system PostgreSQL 15
(127.0.0.1:5432, trust authentication, no pgvector). The migrations pass (no embeddings
table), ``/health/ml`` says degraded and why, the vector endpoints answer 503 problem+json,
and everything else keeps working."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from quart import Quart
from sqlalchemy import text

from pulse_engine.app import PulseEngine
from pulse_engine.testing import make_settings, make_tenant, running_app

SYSTEM_POSTGRES = os.environ.get("PULSE_TEST_PLAIN_POSTGRES_URL",
                                 "postgresql://postgres@127.0.0.1:5432/postgres")
API = "/api/v1/ml"


@pytest.fixture(scope="module")
async def plain_app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Quart]:
    """An app with every installed plugin on a fresh database of the system PostgreSQL."""
    admin = await asyncpg.connect(SYSTEM_POSTGRES)
    name = f"pulse_ml_degraded_{uuid.uuid4().hex[:8]}"
    role = f"{name}_app"
    try:
        has_vector = await admin.fetchval(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'")
        assert has_vector == 0, "this test needs a PostgreSQL without pgvector"
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = SYSTEM_POSTGRES.rsplit("/", 1)[0] + f"/{name}"
        settings = make_settings(url, tmp_path_factory.mktemp("mlplain"),
                                 database_app_role=role)
        async with running_app(settings) as app:
            yield app
    finally:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        for stale in (f"{role}_bulk", role):
            await admin.execute(f'DROP ROLE IF EXISTS "{stale}"')
        await admin.close()


async def test_health_is_degraded_with_a_reason(plain_app: Quart) -> None:
    engine: PulseEngine = plain_app.extensions["pulse"]
    async with engine.db.system_session() as session:
        version = await session.scalar(text("SHOW server_version"))
        tables = set((await session.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))).scalars())
    assert version.startswith("15.")
    assert "embeddings" not in tables
    assert {"ai_learning_memory", "ai_predictions", "ai_performance_metrics",
            "ml_anomaly_alerts"} <= tables
    response = await plain_app.test_client().get("/health/ml")
    body = await response.get_json()
    assert response.status_code == 200, body
    assert body["status"] == "degraded"
    assert body["pgvector"] == {"available": False, "version": None, "iterative_scan": False,
                                "iterative_scan_used": False, "embeddings_table": False}
    assert any("pgvector is not installed" in reason for reason in body["reasons"])
    assert body["vector_indexes"] == [] and body["embeddings"] == {}
    assert engine.plugins.records["ml_monitor"].status == "loaded"
    plugin = await (await plain_app.test_client().get("/health/ml_monitor")).get_json()
    assert plugin["checks"]["vectors"]["status"] == "degraded"


async def test_vector_endpoints_are_503_and_the_rest_works(plain_app: Quart) -> None:
    engine: PulseEngine = plain_app.extensions["pulse"]
    tenant = await make_tenant(plain_app)
    for path, body in (("similar", {"text": "checkout errors"}),
                       ("similar", {"entity": {"type": "incident", "id": str(uuid.uuid4())}}),
                       ("embeddings/reindex", {})):
        client = tenant.admin_client if path.startswith("embeddings") else tenant.viewer_client
        response = await client.post(f"{API}/{path}", json=body)
        problem = await response.get_json()
        assert response.status_code == 503, problem
        assert response.content_type == "application/problem+json"
        assert problem["type"].endswith("/vectors-unavailable")
        assert "pgvector" in problem["detail"]
    # an ETL load announcement queues no embedding and fails nothing
    await engine.announce_data_loaded(tenant.id, {"incidents": {"created": 1}}, None)
    created = await tenant.viewer_client.post(f"{API}/learning-memory", json={
        "ai_output": "SELECT 1", "outcome": "accepted"})
    assert created.status_code == 201
    listed = await (await tenant.viewer_client.get(f"{API}/learning-memory")).get_json()
    assert len(listed["items"]) == 1
    start = datetime(2026, 1, 1, tzinfo=UTC)
    series = [{"at": (start + timedelta(hours=i)).isoformat(), "value": 10.0 + (i % 3)}
              for i in range(200)]
    series[150]["value"] = 90.0
    detected = await (await tenant.viewer_client.post(f"{API}/anomalies/detect", json={
        "series": series})).get_json()
    assert [datetime.fromisoformat(a["at"]) for a in detected["anomalies"]] == [
        start + timedelta(hours=150)]
    assert (await tenant.viewer_client.get(f"{API}/anomalies")).status_code == 200
    assert (await tenant.viewer_client.get(f"{API}/performance")).status_code == 200
    health = await (await plain_app.test_client().get("/health/live")).get_json()
    assert health["status"] == "healthy"
