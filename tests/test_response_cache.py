"""Cached responses: the slow path in Quart and the ASGI fast path in front of it.

The fast path may only ever serve what the full pipeline would: these tests cache an
entry, then change what the full pipeline would answer (revoked token, disabled plugin,
insufficient role, another tenant) and check the cached bytes are not served.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quart import Blueprint, Quart, request

from pulse_engine import hookimpl
from pulse_engine.auth import require_role
from pulse_engine.cache import CachePolicy
from pulse_engine.tenancy import current_tenant_id
from pulse_engine.testing import make_settings, make_tenant, running_app


class CountingMetricPlugin:
    """A cached metric route that counts how often its view really runs."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def register_routes(self) -> Blueprint:
        blueprint = Blueprint("counted", __name__, url_prefix="/api/v1/counted")

        @blueprint.get("/metric")
        @require_role("analyst")
        async def metric() -> dict[str, object]:
            self.calls += 1
            await asyncio.sleep(0.05)  # long enough for concurrent misses to overlap
            return {"tenant": current_tenant_id(), "start": request.args.get("start")}

        @blueprint.get("/broken")
        async def broken() -> tuple[dict[str, str], int]:
            self.calls += 1
            return {"error": "not cacheable"}, 409

        return blueprint

    @hookimpl
    def register_cache_policies(self) -> list[CachePolicy]:
        return [
            CachePolicy("counted.metric", ttl=60, key_params=("start",), tags=("metrics",)),
            CachePolicy("counted.broken", ttl=60),
        ]


@pytest.fixture(params=["memory", "redis"])
async def cached_app(
    request: pytest.FixtureRequest, pulse_database_url: str, tmp_path: Path, redis_url: str
) -> AsyncIterator[tuple[Quart, CountingMetricPlugin]]:
    plugin = CountingMetricPlugin()
    overrides = {"redis_url": redis_url} if request.param == "redis" else {}
    settings = make_settings(pulse_database_url, tmp_path, **overrides)
    async with running_app(settings, plugins={"counted": plugin}, load_entry_points=False) as app:
        yield app, plugin


async def test_second_request_is_a_hit_and_the_view_runs_once(cached_app) -> None:
    app, plugin = cached_app
    tenant = await make_tenant(app)
    first = await tenant.analyst_client.get("/api/v1/counted/metric?start=2026-01-01")
    second = await tenant.analyst_client.get("/api/v1/counted/metric?start=2026-01-01")
    assert first.status_code == second.status_code == 200
    assert first.headers["X-Cache"] == "miss"
    assert second.headers["X-Cache"] == "hit"
    assert await first.get_json() == await second.get_json()
    assert plugin.calls == 1
    other_window = await tenant.analyst_client.get("/api/v1/counted/metric?start=2026-02-01")
    assert other_window.headers["X-Cache"] == "miss"
    assert plugin.calls == 2


async def test_tenants_never_share_entries(cached_app) -> None:
    app, plugin = cached_app
    tenant_a, tenant_b = await make_tenant(app), await make_tenant(app)
    await tenant_a.analyst_client.get("/api/v1/counted/metric?start=x")
    response_b = await tenant_b.analyst_client.get("/api/v1/counted/metric?start=x")
    assert response_b.headers["X-Cache"] == "miss"
    assert (await response_b.get_json())["tenant"] == tenant_b.id
    assert plugin.calls == 2


async def test_concurrent_misses_compute_once(cached_app) -> None:
    app, plugin = cached_app
    tenant = await make_tenant(app)
    responses = await asyncio.gather(
        *(tenant.analyst_client.get("/api/v1/counted/metric?start=same") for _ in range(20))
    )
    assert {response.status_code for response in responses} == {200}
    assert plugin.calls == 1


async def test_revoked_token_is_not_served_from_cache(cached_app) -> None:
    app, _plugin = cached_app
    engine = app.extensions["pulse"]
    tenant = await make_tenant(app)
    await tenant.analyst_client.get("/api/v1/counted/metric?start=r")
    principal = engine.tokens.verify_access(tenant.analyst_client.token)
    engine.authenticator.note_revoked(principal.jti, principal.expires_at)
    response = await tenant.analyst_client.get("/api/v1/counted/metric?start=r")
    assert response.status_code == 401
    assert response.content_type == "application/problem+json"


async def test_insufficient_role_is_not_served_from_cache(cached_app) -> None:
    app, _plugin = cached_app
    tenant = await make_tenant(app)
    await tenant.analyst_client.get("/api/v1/counted/metric?start=v")
    response = await tenant.viewer_client.get("/api/v1/counted/metric?start=v")
    assert response.status_code == 403


async def test_disabled_plugin_is_not_served_from_cache(cached_app) -> None:
    app, _plugin = cached_app
    engine = app.extensions["pulse"]
    tenant = await make_tenant(app)
    hit = await tenant.analyst_client.get("/api/v1/counted/metric?start=d")
    hit = await tenant.analyst_client.get("/api/v1/counted/metric?start=d")
    assert hit.headers["X-Cache"] == "hit"
    await engine.capabilities.set(tenant.id, "counted", False, {}, tenant.admin.id)
    response = await tenant.analyst_client.get("/api/v1/counted/metric?start=d")
    assert response.status_code == 404
    assert (await response.get_json())["plugin"] == "counted"


async def test_invalidated_tags_recompute(cached_app) -> None:
    app, plugin = cached_app
    engine = app.extensions["pulse"]
    tenant = await make_tenant(app)
    await tenant.analyst_client.get("/api/v1/counted/metric?start=i")
    await engine.cache.invalidate_tags(tenant.id, ["metrics"])
    response = await tenant.analyst_client.get("/api/v1/counted/metric?start=i")
    assert response.headers["X-Cache"] == "miss"
    assert plugin.calls == 2


async def test_error_responses_are_not_cached(cached_app) -> None:
    app, plugin = cached_app
    tenant = await make_tenant(app)
    for _ in range(2):
        response = await tenant.viewer_client.get("/api/v1/counted/broken")
        assert response.status_code == 409
    assert plugin.calls == 2


async def test_redis_down_degrades_to_uncached(pulse_database_url: str, tmp_path: Path) -> None:
    plugin = CountingMetricPlugin()
    settings = make_settings(pulse_database_url, tmp_path, redis_url="redis://127.0.0.1:1/0")
    async with running_app(settings, plugins={"counted": plugin}, load_entry_points=False) as app:
        tenant = await make_tenant(app)
        for _ in range(3):
            response = await tenant.analyst_client.get("/api/v1/counted/metric?start=down")
            assert response.status_code == 200
            assert response.headers["X-Cache"] == "miss"
        assert plugin.calls == 3
        health = await (await app.test_client().get("/health")).get_json()
        cache_check = health["plugins"]["pulse.engine_health"]["checks"]["cache"]
        assert cache_check["status"] == "degraded"
