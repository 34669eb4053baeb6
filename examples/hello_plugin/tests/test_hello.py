"""Tests of pulse-hello with the fixtures of ``pulse_engine.testing``.

Run them with the plugin installed: ``pip install -e . && pytest``.
"""

from __future__ import annotations

from quart import Quart
from sqlalchemy import text

from pulse_engine.testing import TenantFixture, make_tenant


async def test_add_and_list_greetings(tenant: TenantFixture) -> None:
    created = await tenant.analyst_client.post("/api/v1/hello/greetings", json={"message": "hi"})
    assert created.status_code == 201
    listing = await tenant.viewer_client.get("/api/v1/hello/greetings")
    assert listing.status_code == 200
    body = await listing.get_json()
    assert [greeting["message"] for greeting in body["items"]] == ["hi"]
    assert body["next_cursor"] is None


async def test_listing_is_cached_until_a_greeting_is_added(tenant: TenantFixture) -> None:
    first = await tenant.viewer_client.get("/api/v1/hello/greetings")
    second = await tenant.viewer_client.get("/api/v1/hello/greetings")
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit")
    await tenant.analyst_client.post("/api/v1/hello/greetings", json={"message": "again"})
    third = await tenant.viewer_client.get("/api/v1/hello/greetings")
    assert third.headers["X-Cache"] == "miss"
    assert len((await third.get_json())["items"]) == 1


async def test_viewers_cannot_add_and_bad_bodies_are_refused(tenant: TenantFixture) -> None:
    forbidden = await tenant.viewer_client.post("/api/v1/hello/greetings", json={"message": "x"})
    assert forbidden.status_code == 403
    invalid = await tenant.analyst_client.post("/api/v1/hello/greetings", json={"message": ""})
    assert invalid.status_code == 422
    assert invalid.content_type == "application/problem+json"


async def test_tenants_see_only_their_greetings(pulse_app: Quart, tenant: TenantFixture) -> None:
    await tenant.analyst_client.post("/api/v1/hello/greetings", json={"message": "mine"})
    other = await make_tenant(pulse_app)
    listing = await other.viewer_client.get("/api/v1/hello/greetings")
    assert (await listing.get_json())["items"] == []


async def test_health_check(pulse_app: Quart) -> None:
    response = await pulse_app.test_client().get("/health/hello")
    body = await response.get_json()
    assert response.status_code == 200, body
    assert body["checks"]["greetings_table"]["status"] == "healthy"


async def test_greetings_metric_counts_the_rows(pulse_app: Quart, tenant: TenantFixture) -> None:
    for message in ("one", "two", "three"):
        await tenant.analyst_client.post("/api/v1/hello/greetings", json={"message": message})
    engine = pulse_app.extensions["pulse"]
    async with engine.db.tenant_session(tenant.id) as session:
        stored = await session.scalar(text("SELECT count(*) FROM hello_greetings"))
    response = await tenant.viewer_client.get(
        "/api/v1/metrics/hello.greetings?start=2020-01-01&end=2200-01-01"
    )
    body = await response.get_json()
    assert response.status_code == 200, body
    assert body["kind"] == "count"
    assert body["value"]["value"] == stored == 3
    assert body["freshness"]["refresh_pending"] is False
    weekly = await tenant.viewer_client.get(
        "/api/v1/metrics/hello.greetings?start=2026-01-01&end=2026-03-01&interval=week"
    )
    series = (await weekly.get_json())["series"]
    assert len(series) == 9  # the partial week of 1 January to the one of 1 March
    assert series[0]["start"] == "2026-01-01T00:00:00Z"
    assert series[-1]["end"] == "2026-03-01T00:00:00Z"
