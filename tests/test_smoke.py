from pulse_engine.testing import TenantFixture


async def test_health_and_plugins(pulse_app, tenant: TenantFixture) -> None:
    client = pulse_app.test_client()
    response = await client.get("/health")
    body = await response.get_json()
    assert response.status_code == 200, body
    # plugins may legitimately degrade the total (stale data of some tenant); the host's own
    # checks must all be healthy
    assert body["status"] in {"healthy", "degraded"}, body
    engine_checks = body["plugins"]["pulse.engine_health"]["checks"]
    assert {name: check["status"] for name, check in engine_checks.items()} == {
        "database": "healthy",
        "cache": "healthy",
        "queue": "healthy",
        "events": "healthy",
    }
    response = await tenant.viewer_client.get("/api/v1/plugins")
    assert response.status_code == 200
    names = [p["name"] for p in (await response.get_json())["plugins"]]
    assert "pulse.health_routes" in names
