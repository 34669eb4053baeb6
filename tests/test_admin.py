"""The admin API, attacked: roles, cross-tenant access, capabilities, audit, pagination."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from quart import Blueprint, Quart

from pulse_engine import hookimpl
from pulse_engine.problems import PROBLEM_CONTENT_TYPE
from pulse_engine.testing import (
    TEST_PASSWORD,
    ApiClient,
    TenantFixture,
    create_user,
    log_in,
    make_settings,
    make_tenant,
    running_app,
    token_for,
)

ADMIN = "/api/v1/admin"


class ProbeConfig(BaseModel):
    """The capability probe's tenant configuration."""

    threshold: int = Field(ge=0, le=100)
    label: str = "default"


class CapabilityProbe:
    """A plugin with one route and a config schema, registered for a test."""

    @hookimpl
    def register_routes(self) -> Blueprint:
        """``GET /api/v1/cap-probe/ping``."""
        blueprint = Blueprint("cap_probe", __name__, url_prefix="/api/v1/cap-probe")

        @blueprint.get("/ping")
        async def ping() -> dict[str, str]:
            return {"pong": "yes"}

        return blueprint

    @hookimpl
    def register_tenant_config_schema(self) -> type[BaseModel]:
        """The probe's config model."""
        return ProbeConfig


class PlainProbe:
    """A plugin without a config schema."""

    @hookimpl
    def register_routes(self) -> Blueprint:
        """``GET /api/v1/plain-probe/ping``."""
        blueprint = Blueprint("plain_probe", __name__, url_prefix="/api/v1/plain-probe")

        @blueprint.get("/ping")
        async def ping() -> dict[str, str]:
            return {"pong": "yes"}

        return blueprint


PROBES = {"cap_probe": CapabilityProbe(), "plain_probe": PlainProbe()}


def superadmin_client(app: Quart, user: Any) -> ApiClient:
    """A client with a superadmin's token."""
    return ApiClient(app, token_for(app.extensions["pulse"], user))


async def json_of(response: Any) -> Any:
    """The response body, after checking errors are problem+json."""
    if response.status_code >= 400:
        assert response.headers["Content-Type"] == PROBLEM_CONTENT_TYPE
    return await response.get_json()


async def test_viewer_and_analyst_cannot_call_any_admin_route(
    pulse_app: Quart, tenant: TenantFixture
) -> None:
    sample = str(uuid.uuid4())
    checked = 0
    for rule in pulse_app.url_map.iter_rules():
        if not rule.rule.startswith(ADMIN):
            continue
        args = {name: sample if name.endswith("_id") else "sample" for name in rule.arguments}
        path = rule.build(args, append_unknown=False)[1]  # type: ignore[index]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            for client in (tenant.viewer_client, tenant.analyst_client):
                response = await client.request(method, path, json={})
                assert response.status_code == 403, (method, path)
                assert (await json_of(response))["required_role"] in ("admin", "superadmin")
                checked += 1
    assert checked >= 30


async def test_tenant_admin_cannot_touch_tenants_or_create_superadmins(
    pulse_app: Quart, tenant: TenantFixture
) -> None:
    admin = tenant.admin_client
    assert (await admin.get(f"{ADMIN}/tenants")).status_code == 403
    assert (await admin.post(f"{ADMIN}/tenants", json={"name": "mine"})).status_code == 403
    patch = await admin.request("PATCH", f"{ADMIN}/tenants/{tenant.id}", json={"active": False})
    assert patch.status_code == 403
    own = await admin.get(f"{ADMIN}/tenants/{tenant.id}")
    assert own.status_code == 200 and (await own.get_json())["id"] == tenant.id

    superadmin = await admin.post(
        f"{ADMIN}/users",
        json={"email": "boss@example.test", "password": TEST_PASSWORD, "role": "superadmin"},
    )
    assert superadmin.status_code in (403, 422)
    escalate = await admin.request(
        "PATCH", f"{ADMIN}/users/{tenant.viewer.id}", json={"role": "superadmin"}
    )
    assert escalate.status_code in (403, 422)
    promote = await admin.request(
        "PATCH", f"{ADMIN}/users/{tenant.viewer.id}", json={"role": "admin"}
    )
    assert promote.status_code == 200 and (await promote.get_json())["role"] == "admin"
    self_demote = await admin.request(
        "PATCH", f"{ADMIN}/users/{tenant.admin.id}", json={"role": "viewer"}
    )
    assert self_demote.status_code == 409
    smuggled = await admin.post(
        f"{ADMIN}/users",
        json={"email": "x@example.test", "password": TEST_PASSWORD, "role": "viewer",
              "id": str(uuid.uuid4()), "password_hash": "x"},
    )
    assert smuggled.status_code == 422


async def test_cross_tenant_access_is_refused_everywhere(
    pulse_app: Quart, tenant: TenantFixture
) -> None:
    other = await make_tenant(pulse_app)
    key = await json_of(await tenant.admin_client.post(
        f"{ADMIN}/api-keys", json={"name": "a-key"}
    ))
    a_user, a_key, a_tenant = tenant.viewer.id, key["api_key"]["id"], tenant.id
    attacker = other.admin_client
    attempts: list[tuple[str, str, dict[str, Any] | None, dict[str, str] | None]] = [
        ("GET", f"{ADMIN}/tenants/{a_tenant}", None, None),
        ("GET", f"{ADMIN}/tenants/{a_tenant}/plugins", None, None),
        ("PUT", f"{ADMIN}/tenants/{a_tenant}/plugins/etl", {"enabled": False}, None),
        ("GET", f"{ADMIN}/users/{a_user}", None, None),
        ("PATCH", f"{ADMIN}/users/{a_user}", {"active": False}, None),
        ("PATCH", f"{ADMIN}/users/{a_user}", {"role": "admin"}, None),
        ("GET", f"{ADMIN}/users", None, {"tenant_id": a_tenant}),
        ("POST", f"{ADMIN}/users", {"email": "mole@example.test", "password": TEST_PASSWORD,
                                    "role": "admin", "tenant_id": a_tenant}, None),
        ("GET", f"{ADMIN}/api-keys", None, {"tenant_id": a_tenant}),
        ("POST", f"{ADMIN}/api-keys", {"name": "mole", "tenant_id": a_tenant}, None),
        ("DELETE", f"{ADMIN}/api-keys/{a_key}", None, None),
        ("GET", f"{ADMIN}/audit", None, {"tenant_id": a_tenant}),
    ]
    for method, path, body, query in attempts:
        response = await attacker.request(method, path, json=body, query_string=query)
        assert response.status_code in (403, 404), (method, path, response.status_code)
        assert tenant.id not in str(await json_of(response))

    own_users = await json_of(await attacker.get(f"{ADMIN}/users"))
    assert {user["tenant_id"] for user in own_users["items"]} == {other.id}
    own_audit = await json_of(await attacker.get(f"{ADMIN}/audit"))
    assert {entry["tenant_id"] for entry in own_audit["items"]} <= {other.id}

    viewer = await json_of(await tenant.admin_client.get(f"{ADMIN}/users/{a_user}"))
    assert viewer["active"] is True and viewer["role"] == "viewer"
    keys = await json_of(await tenant.admin_client.get(f"{ADMIN}/api-keys"))
    assert keys["items"][0]["revoked_at"] is None
    assert "key" not in keys["items"][0] and "key_hash" not in keys["items"][0]


async def test_superadmin_manages_tenants_and_users(pulse_app: Quart) -> None:
    engine = pulse_app.extensions["pulse"]
    root = superadmin_client(pulse_app, await create_user(engine, None, "superadmin"))
    name = f"acme-{uuid.uuid4().hex[:6]}"
    created = await root.post(f"{ADMIN}/tenants", json={"name": name})
    assert created.status_code == 201
    tenant_id = (await created.get_json())["id"]
    assert (await root.post(f"{ADMIN}/tenants", json={"name": name})).status_code == 409
    email = f"Mixed.Case-{uuid.uuid4().hex[:6]}@Example.TEST"
    user = await root.post(
        f"{ADMIN}/users",
        json={"email": email, "password": TEST_PASSWORD, "role": "admin", "tenant_id": tenant_id},
    )
    assert user.status_code == 201
    body = await user.get_json()
    assert body["email"] == email.lower() and "password_hash" not in body
    duplicate = await root.post(
        f"{ADMIN}/users",
        json={"email": email.upper(), "password": TEST_PASSWORD, "role": "viewer",
              "tenant_id": tenant_id},
    )
    assert duplicate.status_code == 409
    weak = await root.post(
        f"{ADMIN}/users",
        json={"email": "weak@example.test", "password": "password", "role": "viewer",
              "tenant_id": tenant_id},
    )
    assert weak.status_code == 422
    assert (await weak.get_json())["errors"][0]["field"] == "password"
    missing_tenant = await root.post(
        f"{ADMIN}/users", json={"email": "t@example.test", "password": TEST_PASSWORD,
                                "role": "viewer"},
    )
    assert missing_tenant.status_code == 422
    login = await pulse_app.test_client().post(
        "/api/v1/auth/login", json={"email": email, "password": TEST_PASSWORD}
    )
    assert login.status_code == 200
    tenants = await json_of(await root.get(f"{ADMIN}/tenants", query_string={"limit": "200"}))
    assert any(item["id"] == tenant_id for item in tenants["items"])


async def test_deactivation_and_role_change_end_sessions_and_are_audited(
    pulse_app: Quart, tenant: TenantFixture
) -> None:
    client = pulse_app.test_client()
    login = await client.post(
        "/api/v1/auth/login",
        json={"email": tenant.analyst.email, "password": tenant.analyst.password},
    )
    refresh_token = (await login.get_json())["refresh_token"]
    changed = await tenant.admin_client.request(
        "PATCH", f"{ADMIN}/users/{tenant.analyst.id}", json={"role": "viewer"}
    )
    assert changed.status_code == 200
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
            ).status_code == 401
    off = await tenant.admin_client.request(
        "PATCH", f"{ADMIN}/users/{tenant.analyst.id}", json={"active": False}
    )
    assert off.status_code == 200 and (await off.get_json())["active"] is False
    relogin = await client.post(
        "/api/v1/auth/login",
        json={"email": tenant.analyst.email, "password": tenant.analyst.password},
    )
    assert relogin.status_code == 401
    created = await tenant.admin_client.post(
        f"{ADMIN}/users",
        json={"email": f"new-{uuid.uuid4().hex[:6]}@example.test", "password": TEST_PASSWORD,
              "role": "analyst"},
    )
    assert created.status_code == 201
    log = await json_of(await tenant.admin_client.get(f"{ADMIN}/audit"))
    by_action = {entry["action"]: entry for entry in log["items"]}
    assert by_action["user.role_changed"]["details"] == {"from": "analyst", "to": "viewer"}
    assert by_action["user.role_changed"]["actor_id"] == tenant.admin.id
    assert by_action["user.role_changed"]["client_address"]
    assert {"user.deactivated", "user.created", "auth.login", "auth.login_failed"} <= set(
        by_action
    )
    assert "password" not in str(by_action["user.created"]["details"])


async def test_lists_paginate_with_capped_limit_and_opaque_cursor(
    pulse_app: Quart, tenant: TenantFixture
) -> None:
    engine = pulse_app.extensions["pulse"]
    for _ in range(4):
        await create_user(engine, tenant.id, "viewer")
    seen: list[str] = []
    cursor = None
    while True:
        query = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = await json_of(await tenant.admin_client.get(f"{ADMIN}/users", query_string=query))
        assert len(page["items"]) <= 2
        seen += [user["email"] for user in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 7 and seen == sorted(seen) and len(set(seen)) == 7
    capped = await tenant.admin_client.get(f"{ADMIN}/audit", query_string={"limit": "100000"})
    assert capped.status_code == 200
    for bad in ({"cursor": "!!!"}, {"cursor": "WzFd"}, {"limit": "0"}, {"limit": "x"},
                {"unknown": "1"}):
        response = await tenant.admin_client.get(f"{ADMIN}/users", query_string=bad)
        assert response.status_code in (400, 422), bad
        await json_of(response)


async def test_api_keys_roles_scopes_and_secrets(pulse_app: Quart, tenant: TenantFixture) -> None:
    admin = tenant.admin_client
    too_high = await admin.post(f"{ADMIN}/api-keys", json={"name": "k", "role": "superadmin"})
    assert too_high.status_code == 422
    bad_scope = await admin.post(f"{ADMIN}/api-keys", json={"name": "k", "scopes": ["A B"]})
    assert bad_scope.status_code == 422
    past = await admin.post(
        f"{ADMIN}/api-keys", json={"name": "k", "expires_at": "2000-01-01T00:00:00Z"}
    )
    assert past.status_code == 422
    created = await json_of(await admin.post(
        f"{ADMIN}/api-keys", json={"name": "etl", "role": "admin", "scopes": ["etl", "pulse:read"]}
    ))
    key = created["key"]
    assert key.startswith("pulse_") and created["api_key"]["prefix"] in key
    service = ApiClient(pulse_app, key)
    assert (await service.post(f"{ADMIN}/api-keys", json={"name": "child"})).status_code == 403
    assert (await service.get(f"{ADMIN}/audit")).status_code == 200
    listing = await json_of(await admin.get(f"{ADMIN}/api-keys"))
    assert key not in str(listing) and "key_hash" not in str(listing)
    log = await json_of(await admin.get(f"{ADMIN}/audit"))
    assert key not in str(log)
    assert "api_key.created" in {entry["action"] for entry in log["items"]}


async def test_capabilities_switch_validate_and_hide_routes_per_tenant(
    pulse_database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(pulse_database_url, tmp_path)
    async with running_app(settings, plugins=PROBES) as app:
        a, b = await make_tenant(app), await make_tenant(app)
        plugins_url = f"{ADMIN}/tenants/{a.id}/plugins"
        listing = await json_of(await a.admin_client.get(plugins_url))
        names = {item["plugin"] for item in listing["items"]}
        assert {"cap_probe", "plain_probe"} <= names and "pulse.admin_routes" not in names

        unknown = await a.admin_client.put(f"{plugins_url}/no_such", json={"enabled": False})
        assert unknown.status_code == 404
        builtin = await a.admin_client.put(
            f"{plugins_url}/pulse.plugins_api", json={"enabled": False}
        )
        assert builtin.status_code in (409, 422)
        bad = await a.admin_client.put(
            f"{plugins_url}/cap_probe", json={"enabled": True, "config": {"threshold": 500}}
        )
        assert bad.status_code == 422
        assert (await bad.get_json())["errors"][0]["field"] == "config.threshold"
        plain = await a.admin_client.put(
            f"{plugins_url}/plain_probe", json={"enabled": True, "config": {"x": 1}}
        )
        assert plain.status_code == 422
        good = await a.admin_client.put(
            f"{plugins_url}/cap_probe", json={"enabled": True, "config": {"threshold": 5}}
        )
        assert (await json_of(good))["config"] == {"threshold": 5, "label": "default"}

        off = await a.admin_client.put(f"{plugins_url}/cap_probe", json={"enabled": False})
        assert off.status_code == 200
        assert await off.get_json() | {"status": None, "version": None} == {
            "plugin": "cap_probe", "enabled": False, "status": None, "version": None,
            "config": {"threshold": 5, "label": "default"},
        }, "a switch without config keeps the stored config"
        hidden = await a.viewer_client.get("/api/v1/cap-probe/ping")
        assert hidden.status_code == 404
        assert (await json_of(hidden))["plugin"] == "cap_probe"
        assert (await b.viewer_client.get("/api/v1/cap-probe/ping")).status_code == 200
        assert await plugin_enabled(a.viewer_client, "cap_probe") is False
        assert await plugin_enabled(b.viewer_client, "cap_probe") is True

        log = await json_of(await a.admin_client.get(f"{ADMIN}/audit"))
        changes = [e for e in log["items"] if e["action"] == "capability.changed"]
        assert changes[0]["details"] == {"enabled": False, "config_keys": ["label", "threshold"]}
        assert changes[0]["target"] == "plugin:cap_probe"


async def plugin_enabled(client: ApiClient, name: str) -> bool:
    """``enabled`` of a plugin in ``GET /api/v1/plugins`` as the client sees it."""
    body = await json_of(await client.get("/api/v1/plugins"))
    return bool(next(p for p in body["plugins"] if p["name"] == name)["enabled"])


@asynccontextmanager
async def two_processes(database_url: str, folder: Path, redis_url: str
                        ) -> AsyncIterator[tuple[Quart, Quart]]:
    """Two servers on one database whose events travel over Redis, as two processes."""
    first = make_settings(database_url, folder / "one", redis_url=redis_url)
    second = make_settings(database_url, folder / "two", redis_url=redis_url)
    async with running_app(first, plugins=PROBES) as app_one, running_app(
        second, plugins=PROBES
    ) as app_two:
        yield app_one, app_two


async def test_capability_change_reaches_another_server_process_at_once(
    pulse_database_url: str, tmp_path: Path, redis_url: str
) -> None:
    async with two_processes(pulse_database_url, tmp_path, redis_url) as (app_one, app_two):
        a = await make_tenant(app_one)
        b_id = (await make_tenant(app_one)).id
        engine_two = app_two.extensions["pulse"]
        a_on_two = ApiClient(app_two, a.viewer_client.token)
        b_viewer = await create_user(engine_two, b_id, "viewer")
        b_on_two = ApiClient(app_two, token_for(engine_two, b_viewer))
        assert (await a_on_two.get("/api/v1/cap-probe/ping")).status_code == 200
        assert engine_two.capabilities.cached_enabled(a.id, "cap_probe") is True

        switched = await a.admin_client.put(
            f"{ADMIN}/tenants/{a.id}/plugins/cap_probe", json={"enabled": False}
        )
        assert switched.status_code == 200
        deadline = time.monotonic() + 2.0
        status = 200
        while time.monotonic() < deadline:
            status = (await a_on_two.get("/api/v1/cap-probe/ping")).status_code
            if status == 404:
                break
            await asyncio.sleep(0.05)
        assert status == 404, "process two still serves the disabled plugin"
        assert await plugin_enabled(a_on_two, "cap_probe") is False
        assert (await b_on_two.get("/api/v1/cap-probe/ping")).status_code == 200


async def test_role_change_and_deactivation_end_live_access_tokens_on_every_process(
    pulse_database_url: str, tmp_path: Path, redis_url: str
) -> None:
    async with two_processes(pulse_database_url, tmp_path, redis_url) as (app_one, app_two):
        tenant = await make_tenant(app_one)

        async def status_on_two(token: str) -> int:
            deadline = time.monotonic() + 2.0
            status = 200
            while time.monotonic() < deadline:
                status = (await ApiClient(app_two, token).get("/api/v1/auth/me")).status_code
                if status == 401:
                    break
                await asyncio.sleep(0.05)
            return status

        analyst = await log_in(app_one, tenant.analyst)
        assert (await ApiClient(app_two, analyst["access_token"]).get("/api/v1/auth/me")
                ).status_code == 200
        demoted = await tenant.admin_client.request(
            "PATCH", f"{ADMIN}/users/{tenant.analyst.id}", json={"role": "viewer"})
        assert demoted.status_code == 200
        # the analyst token issued before the change is refused on both processes at once
        stale = await ApiClient(app_one, analyst["access_token"]).get("/api/v1/auth/me")
        assert stale.status_code == 401 and "revoked" in (await stale.get_json())["detail"]
        assert await status_on_two(analyst["access_token"]) == 401
        viewer = await log_in(app_one, tenant.analyst)
        me = await ApiClient(app_two, viewer["access_token"]).get("/api/v1/auth/me")
        assert (await me.get_json())["role"] == "viewer"

        off = await tenant.admin_client.request(
            "PATCH", f"{ADMIN}/users/{tenant.analyst.id}", json={"active": False})
        assert off.status_code == 200
        assert await status_on_two(viewer["access_token"]) == 401
        # others' sessions are untouched
        assert (await tenant.viewer_client.get("/api/v1/auth/me")).status_code == 200


async def test_tenant_deactivation_ends_its_users_sessions(
    pulse_app: Quart, tenant: TenantFixture
) -> None:
    engine = pulse_app.extensions["pulse"]
    other = await make_tenant(pulse_app)
    tokens = {name: (await log_in(pulse_app, fixture.viewer))["access_token"]
              for name, fixture in (("mine", tenant), ("other", other))}
    superadmin = ApiClient(pulse_app, token_for(engine, await create_user(engine, None,
                                                                           "superadmin")))
    off = await superadmin.request(
        "PATCH", f"{ADMIN}/tenants/{tenant.id}", json={"active": False})
    assert off.status_code == 200, await off.get_json()
    assert (await ApiClient(pulse_app, tokens["mine"]).get("/api/v1/auth/me")
            ).status_code == 401
    assert (await ApiClient(pulse_app, tokens["other"]).get("/api/v1/auth/me")
            ).status_code == 200
