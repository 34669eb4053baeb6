"""An ended session ends everywhere, at once, even while Redis is down (issue 11.3).

Revocations live in PostgreSQL and reach every process as NOTIFY notices
(:mod:`pulse_engine.revocations`); these tests run two apps on one database, as two server
processes, against the real Redis behind a proxy that can be cut.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.tcp_proxy import OutageProxy
from quart import Quart
from quart.testing.connections import WebsocketDisconnectError
from sqlalchemy import text

from pulse_engine import accounts
from pulse_engine.app import PulseEngine
from pulse_engine.testing import ApiClient, log_in, make_settings, make_tenant, running_app


def engine_of(app: Quart) -> PulseEngine:
    engine: PulseEngine = app.extensions["pulse"]
    return engine


async def eventually(check: Any, seconds: float = 5.0) -> None:
    """Wait until ``await check()`` is true."""
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def closed_with(app: Quart, token: str, end_session: Any) -> int:
    """Open the event stream with ``token``, run ``end_session``, return the close code."""
    client = app.test_client()
    async with client.websocket("/api/v1/ws", headers={"Authorization": f"Bearer {token}"}) as ws:
        await asyncio.sleep(0.2)  # the handler is subscribed and watching
        started = time.monotonic()
        await end_session()
        with pytest.raises(WebsocketDisconnectError) as closed:
            await asyncio.wait_for(ws.receive(), 10)
        assert time.monotonic() - started < 3
    return int(closed.value.args[0]) if closed.value.args else -1


@pytest.fixture
async def app(pulse_database_url: str, tmp_path: Path) -> AsyncIterator[Quart]:
    async with running_app(make_settings(pulse_database_url, tmp_path)) as app:
        yield app


async def test_the_event_stream_closes_when_its_user_logs_out(app: Quart) -> None:
    tenant = await make_tenant(app)
    tokens = await log_in(app, tenant.viewer)
    client = ApiClient(app, tokens["access_token"])

    async def log_out() -> None:
        response = await client.post(
            "/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}
        )
        assert response.status_code == 204

    assert await closed_with(app, tokens["access_token"], log_out) == 1008


async def test_the_event_stream_closes_when_its_user_is_deactivated(app: Quart) -> None:
    tenant = await make_tenant(app)
    tokens = await log_in(app, tenant.viewer)

    async def deactivate() -> None:
        response = await tenant.admin_client.patch(
            f"/api/v1/admin/users/{tenant.viewer.id}", json={"active": False}
        )
        assert response.status_code == 200, await response.get_data()

    assert await closed_with(app, tokens["access_token"], deactivate) == 1008


async def test_the_event_stream_closes_when_its_token_expires(app: Quart) -> None:
    engine = engine_of(app)
    tenant = await make_tenant(app)
    engine.tokens.config = dataclasses.replace(engine.tokens.config, access_ttl=2)
    token, _ = engine.tokens.issue_access(
        user_id=tenant.viewer.id, tenant_id=tenant.id, role="viewer"
    )
    assert await closed_with(app, token, lambda: asyncio.sleep(0)) == 1008


async def test_the_event_stream_of_an_api_key_closes_when_its_tenant_is_deactivated(
    app: Quart,
) -> None:
    tenant = await make_tenant(app)
    created = await tenant.admin_client.post(
        "/api/v1/admin/api-keys", json={"name": "stream", "role": "viewer"}
    )
    key = (await created.get_json())["key"]

    async def deactivate_tenant() -> None:
        await accounts.set_tenant_active(
            engine_of(app), actor=None, tenant_id=tenant.id, active=False, client_address=None
        )

    assert await closed_with(app, key, deactivate_tenant) == 1008


@pytest.fixture
async def two_processes(
    pulse_database_url: str, tmp_path: Path, redis_url: str
) -> AsyncIterator[tuple[Quart, Quart, OutageProxy]]:
    """Two apps sharing the database and the real Redis through a proxy that can be cut."""
    redis_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    proxy = OutageProxy(redis_port)
    await proxy.start()
    database = redis_url.rsplit("/", 1)[1]
    proxied = f"redis://127.0.0.1:{proxy.port}/{database}"
    async with (
        running_app(make_settings(pulse_database_url, tmp_path / "a", redis_url=proxied)) as a,
        running_app(make_settings(pulse_database_url, tmp_path / "b", redis_url=proxied)) as b,
    ):
        yield a, b, proxy
    await proxy.stop()


async def test_a_logout_during_a_redis_outage_ends_the_token_on_every_process(
    two_processes: tuple[Quart, Quart, OutageProxy],
) -> None:
    first, second, proxy = two_processes
    tenant = await make_tenant(first)
    tokens = await log_in(first, tenant.viewer)
    on_second = ApiClient(second, tokens["access_token"])
    # a cached answer on the second process, so the fast path is in play too
    for _ in range(2):
        assert (await on_second.get("/api/v1/metrics/dora.deployment_frequency")).status_code == 200
    await proxy.stop()
    logout = await ApiClient(first, tokens["access_token"]).post(
        "/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}
    )
    assert logout.status_code == 204

    async def refused_everywhere() -> bool:
        statuses = {
            (await on_second.get(path)).status_code
            for path in ("/api/v1/auth/me", "/api/v1/metrics/dora.deployment_frequency",
                         "/app/etl/jobs", "/api/v1/plugins")
        }
        return statuses == {401}

    await eventually(refused_everywhere, 2)
    for _ in range(40):
        assert (await on_second.get("/api/v1/auth/me")).status_code == 401
    await proxy.start()
    await asyncio.sleep(0.5)
    for _ in range(40):
        assert (await on_second.get("/api/v1/metrics/dora.deployment_frequency")).status_code == 401


async def test_a_process_that_missed_notices_checks_the_database_then_catches_up(
    app: Quart,
) -> None:
    engine = engine_of(app)
    tenant = await make_tenant(app)
    tokens = await log_in(app, tenant.viewer)
    client = ApiClient(app, tokens["access_token"])
    assert (await client.get("/api/v1/auth/me")).status_code == 200
    assert engine.authenticator.live
    # the LISTEN connection dies: notices committed meanwhile never reach this process
    async with engine.db.system_session() as session:
        await session.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        ))
    principal = engine.tokens.verify_access(tokens["access_token"])
    async with engine.db.system_session() as session:
        await session.execute(
            text("INSERT INTO revoked_access_tokens (jti, expires_at) "
                 "VALUES (:jti, now() + interval '1 hour')"),
            {"jti": principal.jti},
        )
    # whether or not the loss was noticed yet, the token must not pass any more
    async def refused() -> bool:
        return (await client.get("/api/v1/auth/me")).status_code == 401

    await eventually(refused, 2)
    async def live_again() -> bool:
        return engine.authenticator.live

    await eventually(live_again, 10)
    assert engine.authenticator.is_revoked(principal.jti)  # caught up from the database
    assert (await client.get("/api/v1/plugins")).status_code == 401


async def test_api_keys_end_at_once_when_their_tenant_is_deactivated(
    two_processes: tuple[Quart, Quart, OutageProxy],
) -> None:
    first, second, _proxy = two_processes
    tenant = await make_tenant(first)
    created = await tenant.admin_client.post(
        "/api/v1/admin/api-keys", json={"name": "ci", "role": "viewer"}
    )
    key_client = ApiClient(second, (await created.get_json())["key"])
    assert (await key_client.get("/api/v1/plugins")).status_code == 200  # cached on second
    await accounts.set_tenant_active(
        engine_of(first), actor=None, tenant_id=tenant.id, active=False, client_address=None
    )

    async def refused() -> bool:
        return (await key_client.get("/api/v1/plugins")).status_code == 401

    await eventually(refused, 1)


async def test_a_deleted_user_is_refused_by_every_route(app: Quart) -> None:
    engine = engine_of(app)
    tenant = await make_tenant(app)
    client = tenant.viewer_client
    paths = ("/api/v1/auth/me", "/app/etl/jobs", "/api/v1/metrics/dora.deployment_frequency",
             "/api/v1/metrics/dora/summary", "/api/v1/plugins")
    for path in paths:
        await client.get(path)
    async with engine.db.system_session() as session:
        await session.execute(text("DELETE FROM users WHERE id = :id"), {"id": tenant.viewer.id})

    async def all_refused() -> bool:
        return {(await client.get(path)).status_code for path in paths} == {401}

    await eventually(all_refused, 2)
