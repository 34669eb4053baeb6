"""``/openapi.json`` describes every ETL route: its query parameters, headers and bodies, a
2xx schema for every operation, and problem+json for the 4xx; the prefix is a setting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pulse_etl.plugin import service_for
from quart import Quart

from pulse_engine import Settings
from pulse_engine.testing import make_tenant, running_app

from .conftest import build_repository

PREFIX = "/app/etl"
METHODS = ("get", "post", "put", "patch", "delete")


async def etl_operations(app: Quart, prefix: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Every operation of the spec under ``prefix``, by (method, path)."""
    spec = await (await app.test_client().get("/openapi.json")).get_json()
    return {
        (method, path): operation
        for path, item in spec["paths"].items() if path.startswith(prefix)
        for method, operation in item.items() if method in METHODS
    }


async def test_every_etl_operation_declares_its_answers(etl_app: Quart) -> None:
    operations = await etl_operations(etl_app, PREFIX)
    assert len(operations) == 13, sorted(operations)
    for (method, path), operation in operations.items():
        statuses = {int(status): response for status, response in operation["responses"].items()}
        successes = [status for status in statuses if 200 <= status < 300]
        assert successes, (method, path)
        for status in successes:
            if status == 204:
                assert "content" not in statuses[status], (method, path)
            else:
                schema = statuses[status]["content"]["application/json"]["schema"]
                assert schema, (method, path, status)
        for status, response in statuses.items():
            if status >= 400:
                assert "application/problem+json" in response["content"], (method, path, status)
        assert {400, 401, 403, 404, 422} <= set(statuses), (method, path)
        if method in ("post", "patch") and "/cancel" not in path and "/retry" not in path:
            assert 413 in statuses, (method, path)
            assert operation["requestBody"]["content"]["application/json"]["schema"], path


async def test_query_parameters_headers_and_conflicts_are_declared(etl_app: Quart) -> None:
    operations = await etl_operations(etl_app, PREFIX)

    def parameters(method: str, path: str, where: str) -> set[str]:
        return {p["name"] for p in operations[(method, PREFIX + path)].get("parameters", [])
                if p["in"] == where}

    for listing in ("/jobs", "/integrations"):
        assert parameters("get", listing, "query") == {"limit", "cursor"}
    assert {"x-hub-signature-256", "x-github-event", "x-github-delivery"} <= {
        name.lower() for name in parameters("post", "/webhooks/github/{integration_id}",
                                            "header")}
    assert "x-pulse-signature-256" in {
        name.lower() for name in parameters("post", "/webhooks/generic/{integration_id}",
                                            "header")}
    for path in ("/jobs/{job_id}/cancel", "/jobs/{job_id}/retry", "/integrations"):
        assert "409" in operations[("post", PREFIX + path)]["responses"], path


@pytest.fixture
async def moved_app(pulse_settings: Settings, etl_env: None,
                    monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Quart]:
    """An app serving the ETL routes under ``PULSE_ETL_URL_PREFIX=/app/data-etl``."""
    monkeypatch.setenv("PULSE_ETL_URL_PREFIX", "/app/data-etl")
    async with running_app(pulse_settings) as app:
        yield app


async def test_the_prefix_is_a_setting(moved_app: Quart, git_root: Path) -> None:
    assert service_for(moved_app.extensions["pulse"]).settings.url_prefix == "/app/data-etl"
    operations = await etl_operations(moved_app, "/app/data-etl")
    assert len(operations) == 13
    assert not await etl_operations(moved_app, PREFIX + "/")
    tenant = await make_tenant(moved_app)
    assert (await tenant.viewer_client.get("/app/data-etl/connectors")).status_code == 200
    repo = build_repository(git_root / "moved", commits=2)
    job = await tenant.analyst_client.post("/app/data-etl/jobs", json={
        "connector": "git", "config": {"path": str(repo)}})
    assert job.status_code == 202, await job.get_json()
    assert job.headers["Location"] == f"/app/data-etl/jobs/{(await job.get_json())['id']}"
