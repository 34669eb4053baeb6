"""Authentication, attacked: every protected route, forged tokens, sessions, rate limits."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from quart import Quart
from quart.testing import WebsocketResponseError

from pulse_engine.auth import view_is_public
from pulse_engine.problems import PROBLEM_CONTENT_TYPE
from pulse_engine.testing import (
    TEST_JWT_SECRET,
    ApiClient,
    TenantFixture,
    create_tenant,
    create_user,
    log_in,
    make_settings,
    make_tenant,
    running_app,
    token_for,
)

PROTECTED = ("/api/", "/app/")
SAMPLE_BY_CONVERTER = {"UUIDConverter": str(uuid.uuid4()), "IntegerConverter": "1"}


def protected_routes(app: Quart) -> list[tuple[str, str, bool]]:
    """(method, sample path, is websocket) for every non-public route under /api and /app."""
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(PROTECTED) or view_is_public(
            app.view_functions[rule.endpoint]
        ):
            continue
        args = {
            name: SAMPLE_BY_CONVERTER.get(type(converter).__name__, "sample")
            for name, converter in rule._converters.items()
        }
        path = rule.build(args, append_unknown=False)[1]  # type: ignore[index]
        if rule.websocket:
            routes.append(("WEBSOCKET", path, True))
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((method, path, False))
    return routes


def claims_of(token: str) -> dict[str, Any]:
    """The claims of a token we issued, unverified (to forge variants of it)."""
    return dict(jwt.decode(token, options={"verify_signature": False}))


def forged_tokens(good: str) -> dict[str, str]:
    """Tokens an attacker would try, each derived from a good one."""
    claims = claims_of(good)
    now = int(time.time())
    header, payload, signature = good.split(".")
    escalated = json.dumps({**claims, "role": "superadmin", "tid": None}).encode()
    tampered_payload = base64.urlsafe_b64encode(escalated).decode().rstrip("=")
    unsigned = jwt.encode({**claims, "role": "superadmin"}, key=None, algorithm="none")  # type: ignore[arg-type]
    return {
        "forged": jwt.encode(claims, "another-secret-" + "y" * 40, algorithm="HS256"),
        "expired": jwt.encode(
            {**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600},
            TEST_JWT_SECRET,
            algorithm="HS256",
        ),
        "alg_none": unsigned,
        "alg_none_stripped": unsigned.rstrip("."),
        "wrong_audience": jwt.encode(
            {**claims, "aud": "another-api"}, TEST_JWT_SECRET, algorithm="HS256"
        ),
        "tampered": f"{header}.{tampered_payload}.{signature}",
        "garbage": "not-a-token",
        "api_key_guess": "pulse_000000000000_" + "A" * 43,
    }


async def assert_refused(app: Quart, method: str, path: str, websocket: bool,
                         token: str | None) -> None:
    """The route answers 401 problem+json with this credential (or none)."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    client = app.test_client()
    if websocket:
        with pytest.raises(WebsocketResponseError) as refused:
            async with client.websocket(path, headers=headers) as socket:
                await socket.receive()
        response = refused.value.response
    else:
        response = await client.open(path, method=method, headers=headers, json={})
    assert response.status_code == 401, (method, path, response.status_code)
    assert response.headers["Content-Type"] == PROBLEM_CONTENT_TYPE, (method, path)
    body = await response.get_json()
    assert body["status"] == 401 and body["type"].endswith("/unauthorized"), (method, path)
    assert "Traceback" not in str(body)


async def test_every_protected_route_refuses_missing_and_forged_tokens(
    pulse_app: Quart, tenant: TenantFixture
) -> None:
    engine = pulse_app.extensions["pulse"]
    routes = protected_routes(pulse_app)
    endpoints = {rule.endpoint for rule in pulse_app.url_map.iter_rules()}
    assert {"auth.logout", "auth.me", "admin_accounts.list_users"} <= endpoints
    assert len(routes) >= 15
    good = token_for(engine, tenant.admin)
    variants: dict[str, str | None] = {"none": None, **forged_tokens(good)}
    for method, path, websocket in routes:
        for _name, token in variants.items():
            await assert_refused(pulse_app, method, path, websocket, token)


async def test_only_login_and_refresh_are_public_among_auth_and_admin(pulse_app: Quart) -> None:
    public = {
        rule.endpoint
        for rule in pulse_app.url_map.iter_rules()
        if rule.rule.startswith(PROTECTED) and view_is_public(pulse_app.view_functions[
            rule.endpoint])
    }
    ours = {name for name in public if name.startswith(("auth.", "admin_"))}
    assert ours == {"auth.login", "auth.refresh"}


async def test_login_refresh_rotation_and_reuse_revokes_the_family(
    pulse_app: Quart, tenant: TenantFixture
) -> None:
    client = pulse_app.test_client()
    response = await client.post(
        "/api/v1/auth/login",
        json={"email": tenant.analyst.email.upper(), "password": tenant.analyst.password},
    )
    assert response.status_code == 200
    first = await response.get_json()
    assert first["token_type"] == "bearer" and first["expires_in"] == 1800
    me = await ApiClient(pulse_app, first["access_token"]).get("/api/v1/auth/me")
    assert (await me.get_json())["email"] == tenant.analyst.email

    rotated = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert rotated.status_code == 200
    second = await rotated.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await ApiClient(pulse_app, second["access_token"]).get("/api/v1/auth/me")
            ).status_code == 200

    reused = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert reused.status_code == 401
    assert reused.headers["Content-Type"] == PROBLEM_CONTENT_TYPE
    newest = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert newest.status_code == 401, "reuse must revoke the whole family"
    # and the access tokens issued in it: whoever replayed the token may hold one
    for pair in (first, second):
        stale = await ApiClient(pulse_app, pair["access_token"]).get("/api/v1/auth/me")
        assert stale.status_code == 401

    audit = await tenant.admin_client.get("/api/v1/admin/audit")
    actions = [entry["action"] for entry in (await audit.get_json())["items"]]
    assert "auth.refresh_reuse_detected" in actions and "auth.login" in actions


async def test_refresh_refuses_access_tokens_and_garbage(
    pulse_app: Quart, tenant: TenantFixture
) -> None:
    client = pulse_app.test_client()
    for token in (token_for(pulse_app.extensions["pulse"], tenant.viewer), "x.y.z", "a" * 9000):
        response = await client.post("/api/v1/auth/refresh", json={"refresh_token": token})
        assert response.status_code in (401, 422)
        assert response.headers["Content-Type"] == PROBLEM_CONTENT_TYPE


async def test_logout_revokes_access_token_and_refresh_family(
    pulse_app: Quart, tenant: TenantFixture
) -> None:
    client = pulse_app.test_client()
    pair = await log_in(pulse_app, tenant.viewer)
    session = ApiClient(pulse_app, pair["access_token"])
    response = await session.post(
        "/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]}
    )
    assert response.status_code == 204
    after = await session.get("/api/v1/auth/me")
    assert after.status_code == 401
    assert "revoked" in (await after.get_json())["detail"]
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert refreshed.status_code == 401

    other = ApiClient(pulse_app, token_for(pulse_app.extensions["pulse"], tenant.viewer))
    assert (await other.post("/api/v1/auth/logout")).status_code == 204
    assert (await other.get("/api/v1/plugins")).status_code == 401


async def test_logout_ends_the_session_and_its_older_access_tokens(
    pulse_app: Quart, tenant: TenantFixture
) -> None:
    client = pulse_app.test_client()
    first = await log_in(pulse_app, tenant.viewer)
    rotated = await client.post("/api/v1/auth/refresh",
                                json={"refresh_token": first["refresh_token"]})
    second = await rotated.get_json()
    other_session = await log_in(pulse_app, tenant.viewer)
    # logging out with the newest access token alone (no refresh token)
    response = await ApiClient(pulse_app, second["access_token"]).post("/api/v1/auth/logout")
    assert response.status_code == 204
    for token in (first["access_token"], second["access_token"]):
        assert (await ApiClient(pulse_app, token).get("/api/v1/auth/me")).status_code == 401
    refreshed = await client.post("/api/v1/auth/refresh",
                                  json={"refresh_token": second["refresh_token"]})
    assert refreshed.status_code == 401
    # the same user's other login session goes on
    assert (await ApiClient(pulse_app, other_session["access_token"]).get("/api/v1/auth/me")
            ).status_code == 200


async def test_revocation_survives_a_restart(
    pulse_database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(pulse_database_url, tmp_path)
    async with running_app(settings) as app:
        engine = app.extensions["pulse"]
        tenant_id = await create_tenant(engine)
        user = await create_user(engine, tenant_id, "viewer")
        token = token_for(engine, user)
        assert (await ApiClient(app, token).post("/api/v1/auth/logout")).status_code == 204
    async with running_app(settings) as app:
        assert (await ApiClient(app, token).get("/api/v1/auth/me")).status_code == 401


async def test_login_failures_are_uniform_and_audited(
    pulse_app: Quart, tenant: TenantFixture
) -> None:
    engine = pulse_app.extensions["pulse"]
    inactive = await create_user(engine, tenant.id, "viewer")
    superadmin = ApiClient(pulse_app, token_for(engine, await create_user(engine, None,
                                                                          "superadmin")))
    await superadmin.request(
        "PATCH", f"/api/v1/admin/users/{inactive.id}", json={"active": False}
    )
    closed = await make_tenant(pulse_app)
    await superadmin.request("PATCH", f"/api/v1/admin/tenants/{closed.id}", json={"active": False})

    attempts = {
        "unknown_email": {"email": "nobody@example.test", "password": "whatever-password"},
        "wrong_password": {"email": tenant.admin.email, "password": "wrong-password-123"},
        "inactive_user": {"email": inactive.email, "password": inactive.password},
        "inactive_tenant": {"email": closed.admin.email, "password": closed.admin.password},
    }
    bodies = []
    client = pulse_app.test_client()
    for attempt in attempts.values():
        response = await client.post("/api/v1/auth/login", json=attempt)
        assert response.status_code == 401
        assert response.headers["Content-Type"] == PROBLEM_CONTENT_TYPE
        body = await response.get_json()
        body.pop("instance")
        bodies.append(body)
    assert all(body == bodies[0] for body in bodies), bodies

    log = await superadmin.get("/api/v1/admin/audit", query_string={"limit": "200"})
    failures = [e for e in (await log.get_json())["items"] if e["action"] == "auth.login_failed"]
    assert {e["details"]["reason"] for e in failures} >= set(attempts)
    assert all("password" not in e["details"] for e in failures)
    assert all(e["client_address"] for e in failures)


async def test_login_is_rate_limited_per_account_and_per_address(
    pulse_database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(
        pulse_database_url, tmp_path, login_attempts_per_account=3,
        login_attempts_per_address=6, login_window_seconds=60,
    )
    async with running_app(settings) as app:
        engine = app.extensions["pulse"]
        tenant_id = await create_tenant(engine)
        victim = await create_user(engine, tenant_id, "viewer")
        client = app.test_client()
        for _ in range(3):
            response = await client.post(
                "/api/v1/auth/login", json={"email": victim.email, "password": "nope-nope-nope"}
            )
            assert response.status_code == 401
        limited = await client.post(
            "/api/v1/auth/login", json={"email": victim.email, "password": victim.password}
        )
        assert limited.status_code == 429
        assert limited.headers["Content-Type"] == PROBLEM_CONTENT_TYPE
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        statuses = []
        for index in range(4):
            response = await client.post(
                "/api/v1/auth/login",
                json={"email": f"spray-{index}@example.test", "password": "guess-guess-1"},
            )
            statuses.append(response.status_code)
        assert statuses[:2] == [401, 401] and statuses[2:] == [429, 429], statuses


async def test_bad_bodies_are_problems_not_500(pulse_app: Quart, tenant: TenantFixture) -> None:
    client = pulse_app.test_client()
    malformed = await client.post(
        "/api/v1/auth/login", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.headers["Content-Type"] == PROBLEM_CONTENT_TYPE
    for body in ({}, {"email": "a@b.c"}, {"email": 1, "password": ["leaky-secret"]},
                 {"email": "a@b.c", "password": "leaky-secret", "role": "superadmin"}):
        response = await client.post("/api/v1/auth/login", json=body)
        assert response.status_code == 422, body
        problem = await response.get_json()
        assert problem["errors"] and "leaky-secret" not in json.dumps(problem)
    not_json = await client.post("/api/v1/auth/login", data="email=a&password=b")
    assert not_json.status_code == 422
    logout = await tenant.viewer_client.post(
        "/api/v1/auth/logout", data="[", headers={"Content-Type": "application/json"}
    )
    assert logout.status_code == 400
    assert logout.headers["Content-Type"] == PROBLEM_CONTENT_TYPE
    admin_malformed = await tenant.admin_client.post(
        "/api/v1/admin/users", data="{", headers={"Content-Type": "application/json"}
    )
    assert admin_malformed.status_code == 400


async def test_api_key_authenticates_and_revocation_is_immediate(
    pulse_app: Quart, tenant: TenantFixture
) -> None:
    created = await tenant.admin_client.post(
        "/api/v1/admin/api-keys", json={"name": "ci", "role": "analyst", "scopes": ["pulse:read"]}
    )
    assert created.status_code == 201
    body = await created.get_json()
    key = body["key"]
    service = ApiClient(pulse_app, key)
    me = await service.get("/api/v1/auth/me")
    assert me.status_code == 200
    assert (await me.get_json()) | {"id": None} == {
        "kind": "api_key", "id": None, "tenant_id": tenant.id, "role": "analyst",
        "scopes": ["pulse:read"], "email": None, "name": "ci",
    }
    assert (await service.get("/api/v1/admin/users")).status_code == 403
    # a POST to the engine's routes is outside a pulse:read key's scopes
    assert (await service.post("/api/v1/auth/logout")).status_code == 403
    revoke = await tenant.admin_client.delete(f"/api/v1/admin/api-keys/{body['api_key']['id']}")
    assert revoke.status_code == 200 and (await revoke.get_json())["revoked_at"]
    assert (await service.get("/api/v1/auth/me")).status_code == 401


async def test_openapi_documents_auth_and_admin_schemas(pulse_app: Quart) -> None:
    document = await (await pulse_app.test_client().get("/openapi.json")).get_json()
    paths = document["paths"]
    assert "requestBody" in paths["/api/v1/auth/login"]["post"]
    assert "requestBody" in paths["/api/v1/auth/logout"]["post"]
    assert "/api/v1/admin/tenants/{tenant_id}/plugins/{name}" in paths
    text = json.dumps(document)
    for title in ("LoginRequest", "TokenResponse", "UserCreate", "AuditPage", "PluginSwitch"):
        assert f'"title": "{title}"' in text, title
