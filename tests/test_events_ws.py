"""The WebSocket event stream: token-authenticated, tenant-scoped, fanned out across processes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from quart.testing import WebsocketResponseError

from pulse_engine.testing import make_settings, make_tenant, running_app


async def test_stream_needs_a_valid_token(pulse_app) -> None:
    client = pulse_app.test_client()
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        with pytest.raises(WebsocketResponseError) as refused:
            async with client.websocket("/api/v1/ws", headers=headers) as socket:
                await socket.receive()
        assert refused.value.response.status_code == 401


async def test_events_reach_only_their_tenant_across_processes(
    pulse_database_url: str, tmp_path: Path, redis_url: str
) -> None:
    """Two apps share Redis, as two server processes would; events cross between them."""
    first_settings = make_settings(pulse_database_url, tmp_path / "one", redis_url=redis_url)
    second_settings = make_settings(pulse_database_url, tmp_path / "two", redis_url=redis_url)
    async with (
        running_app(first_settings) as publisher_app,
        running_app(second_settings) as subscriber_app,
    ):
        tenant_a = await make_tenant(subscriber_app)
        tenant_b = await make_tenant(subscriber_app)
        publisher = publisher_app.extensions["pulse"]
        client = subscriber_app.test_client()
        headers = {"Authorization": f"Bearer {tenant_a.viewer_client.token}"}
        async with client.websocket("/api/v1/ws", headers=headers) as socket:
            # the socket subscribes once its handler runs: publish rounds until one arrives,
            # each round sending another tenant's and a system event before tenant A's
            receiving = asyncio.ensure_future(socket.receive())
            for _ in range(50):
                await publisher.events.publish(tenant_b.id, "etl.job.progress", {"secret": "B"})
                await publisher.events.publish(None, "audit.noise", {"tenant_id": tenant_b.id})
                await publisher.events.publish(tenant_a.id, "etl.job.progress", {"progress": 0.5})
                done, _ = await asyncio.wait({receiving}, timeout=0.2)
                if done:
                    break
            frame = json.loads(await asyncio.wait_for(receiving, 5))
        assert frame["tenant_id"] == tenant_a.id
        assert frame["data"] == {"progress": 0.5}
        assert frame["type"] == "etl.job.progress"


async def test_token_in_query_string_is_accepted(pulse_app, tenant) -> None:
    engine = pulse_app.extensions["pulse"]
    client = pulse_app.test_client()
    async with client.websocket(f"/api/v1/ws?token={tenant.viewer_client.token}") as socket:
        await asyncio.sleep(0.1)
        await engine.events.publish(tenant.id, "alert", {"n": 1})
        frame = json.loads(await asyncio.wait_for(socket.receive(), 5))
    assert frame["data"] == {"n": 1}
