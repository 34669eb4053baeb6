"""Issue 11 item 2: JSON bodies no route can accept are 400/422 problems, and store nothing.

Each case got a 500 before the strict body parser (``pulse_engine.request_body``): a deeply
nested body (``RecursionError``), a body that is not UTF-8 (``UnicodeDecodeError``), and
strings PostgreSQL cannot store (a NUL character, a lone surrogate: the database or the
driver raised). Every request here is sent with a valid token where the route needs one,
so the answer is the body's, not the gate's.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import func, select

from pulse_engine.problems import PROBLEM_CONTENT_TYPE, Problem
from pulse_engine.request_body import MAX_JSON_DEPTH, parse_json_body
from pulse_engine.testing import ApiClient, TenantFixture

JSON_HEADERS = {"Content-Type": "application/json"}
STORED_TABLES = ("tenants", "users", "api_keys", "tenant_plugins", "audit_log", "refresh_tokens")


async def stored_rows(app: Quart) -> dict[str, int]:
    """How many rows each table a body could write to holds."""
    engine = app.extensions["pulse"]
    counts = {}
    async with engine.db.system_session() as session:
        for name in STORED_TABLES:
            table = engine.core_tables[name]
            counts[name] = await session.scalar(select(func.count()).select_from(table))
    return counts


def body_routes(tenant: TenantFixture) -> list[tuple[str, str, Any]]:
    """(method, path, client) of every host route that reads a JSON body."""
    return [
        ("POST", "/api/v1/auth/login", None),
        ("POST", "/api/v1/auth/refresh", None),
        ("POST", "/api/v1/auth/logout", tenant.viewer_client),
        ("POST", "/api/v1/admin/users", tenant.admin_client),
        ("PATCH", f"/api/v1/admin/users/{tenant.viewer.id}", tenant.admin_client),
        ("POST", "/api/v1/admin/api-keys", tenant.admin_client),
        ("PUT", f"/api/v1/admin/tenants/{tenant.id}/plugins/dora", tenant.admin_client),
    ]


async def send(app: Quart, client: Any, method: str, path: str, raw: bytes) -> Any:
    """Send a raw JSON body, with the client's token when there is a client."""
    caller = client if client is not None else ApiClient(app, None)
    return await caller.request(method, path, data=raw, headers=JSON_HEADERS)


async def assert_problem(response: Any, status: int, what: str) -> dict[str, Any]:
    """The answer is the given problem+json status; returns the document."""
    body = await response.get_data(as_text=True)
    assert response.status_code == status, f"{what}: {response.status_code} {body[:300]}"
    assert response.content_type == PROBLEM_CONTENT_TYPE, what
    document: dict[str, Any] = json.loads(body)
    assert document["status"] == status
    return document


MALFORMED_BODIES = {
    "nested 1000 deep": b"[" * 1000 + b"]" * 1000,
    "nested object 100000 deep": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "not UTF-8": b'{"email":"\xff\xfe","password":"x","refresh_token":"\xff"}',
    "truncated UTF-8": b'{"name":"caf\xc3"}',
}


@pytest.mark.parametrize("case", sorted(MALFORMED_BODIES))
async def test_malformed_bodies_are_400_on_every_body_route(
    pulse_app: Quart, tenant: TenantFixture, case: str
) -> None:
    before = await stored_rows(pulse_app)
    for method, path, client in body_routes(tenant):
        response = await send(pulse_app, client, method, path, MALFORMED_BODIES[case])
        problem = await assert_problem(response, 400, f"{case}: {method} {path}")
        assert problem["type"].endswith("/malformed-json")
    assert await stored_rows(pulse_app) == before


UNSTORABLE_TEXT = {"NUL": "key\u0000name", "lone surrogate": "key\ud800name"}


@pytest.mark.parametrize("case", sorted(UNSTORABLE_TEXT))
async def test_unstorable_strings_are_422_naming_the_field(
    pulse_app: Quart, tenant: TenantFixture, case: str
) -> None:
    text = UNSTORABLE_TEXT[case]
    before = await stored_rows(pulse_app)
    bodies: list[tuple[str, str, Any, dict[str, Any], str]] = [
        ("POST", "/api/v1/auth/login", None,
         {"email": f"a{text}@example.test", "password": "x"}, "email"),
        ("POST", "/api/v1/admin/api-keys", tenant.admin_client,
         {"name": text, "role": "viewer"}, "name"),
        ("POST", "/api/v1/admin/api-keys", tenant.admin_client,
         {"name": "ok", "scopes": ["etl", text]}, "scopes.1"),
        ("POST", "/api/v1/admin/users", tenant.admin_client,
         {"email": "new@example.test", "password": text, "role": "viewer"}, "password"),
        ("PUT", f"/api/v1/admin/tenants/{tenant.id}/plugins/dora", tenant.admin_client,
         {"enabled": True, "config": {"production_environments": [text]}},
         "config.production_environments.0"),
    ]
    for method, path, client, body, field in bodies:
        # json.dumps escapes both as \u0000 / \ud800: valid JSON, unstorable text
        raw = json.dumps(body).encode()
        response = await send(pulse_app, client, method, path, raw)
        problem = await assert_problem(response, 422, f"{case}: {method} {path}")
        assert [error["field"] for error in problem["errors"]] == [field], problem
        assert text not in json.dumps(problem)
    assert await stored_rows(pulse_app) == before


async def test_a_key_with_a_nul_is_refused(pulse_app: Quart, tenant: TenantFixture) -> None:
    raw = json.dumps({"enabled": True, "config": {"bad\u0000key": 1}}).encode()
    response = await send(
        pulse_app, tenant.admin_client, "PUT",
        f"/api/v1/admin/tenants/{tenant.id}/plugins/dora", raw,
    )
    problem = await assert_problem(response, 422, "NUL in a key")
    assert problem["errors"][0]["field"] == "config"


def test_nesting_up_to_the_limit_parses_and_one_more_is_refused() -> None:
    deepest = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert parse_json_body(deepest) is not None
    with pytest.raises(Problem, match="nested more than") as refused:
        parse_json_body(b"[" + deepest + b"]")
    assert refused.value.status == 400


def test_valid_unicode_passes_untouched() -> None:
    text = "Zoë 🚀 \u00e9\t"
    assert parse_json_body(json.dumps({"name": text}).encode()) == {"name": text}
