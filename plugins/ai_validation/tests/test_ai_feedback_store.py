"""Learning feedback without pulse-ml-monitor: this plugin's own table takes it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quart import Quart
from sqlalchemy import text

from pulse_engine.app import PulseEngine
from pulse_engine.testing import make_settings, make_tenant, running_app


@pytest.fixture(scope="module")
async def ai_app(
    pulse_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Quart]:
    """Only pulse-etl and pulse-ai-validation (``PULSE_PLUGINS``): no ml-monitor."""
    data_dir: Path = tmp_path_factory.mktemp("ai_feedback")
    settings = make_settings(pulse_database_url, data_dir, plugins=["etl", "ai_validation"])
    async with running_app(settings) as app:
        yield app


async def test_own_table_stores_and_finds_per_tenant(ai_app: Quart) -> None:
    engine: PulseEngine = ai_app.extensions["pulse"]
    assert "ml_monitor" not in engine.plugins.records
    mine, other = await make_tenant(ai_app), await make_tenant(ai_app)
    failed = "SELECT count(*) FROM deployments WHERE env = 'production'"
    fixed = "SELECT count(*) FROM deployments WHERE environment = 'production'"
    response = await mine.analyst_client.post("/api/v1/ai/learning/record-feedback", json={
        "question": "production deployments", "failed_sql": failed, "corrected_sql": fixed,
        "error_kind": "schema.column", "outcome": "fixed"})
    assert response.status_code == 201
    body = await response.get_json()
    assert body["stored_by"] == "ai_validation"
    async with engine.db.system_session() as session:
        row = (await session.execute(text(
            "SELECT tenant_id::text, question, failed_sql, corrected_sql, error_kind, outcome, "
            "recorded_by FROM ai_validation_feedback WHERE id = :id"), {"id": body["id"]})).one()
    assert tuple(row) == (mine.id, "production deployments", failed, fixed, "schema.column",
                          "fixed", mine.analyst.id)
    async with engine.db.tenant_session(other.id) as session:  # row-level security
        assert await session.scalar(text("SELECT count(*) FROM ai_validation_feedback")) == 0
    heal = await (await mine.analyst_client.post(
        "/api/v1/ai/learning/healing-suggestions", json={"sql": failed})).get_json()
    assert heal["suggestions"][0]["kind"] == "learned"
    theirs = await (await other.analyst_client.post(
        "/api/v1/ai/learning/healing-suggestions", json={"sql": failed})).get_json()
    assert "learned" not in {s["kind"] for s in theirs["suggestions"]}
    semantics = await (await mine.viewer_client.post("/api/v1/ai/validate/sql-semantics", json={
        "question": "production deployments count", "sql": failed})).get_json()
    assert any(r["aspect"] == "learned" for r in semantics["reasons"])
