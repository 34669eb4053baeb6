"""No client input gets a 500: every route of every installed plugin, with hostile input.

Generated from the app's route table, so a new route is covered without touching this
file. Each route is called with a valid admin token and bad path arguments, query strings
and bodies; every answer must be a 4xx (or a 2xx where the input happens to be valid) in
problem+json when it is an error.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from quart import Quart

from pulse_engine.testing import make_tenant

HOSTILE_QUERIES = [
    "limit=-1&cursor=%%%",
    "limit=99999999999999999999&cursor=bm90LWEtY3Vyc29y",
    "start=not-a-date&end=2020-13-45&interval=fortnight&tz=Mars/Olympus",
    "start=2026-01-01&end=2025-01-01",
    "tenant_id=../../etc&page=%00",
    "q=" + "x" * 5000,
]
HOSTILE_BODIES: list[dict[str, Any]] = [
    {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
    {"json": []},
    {"json": "a string"},
    {"json": {"unexpected": {"deeply": [1, 2, {"x": None}]}}},
    {"json": {"id": 10**40, "name": 12, "enabled": "maybe", "config": [1]}},
    {"data": b"\xff\xfe\x00garbage", "headers": {"Content-Type": "application/octet-stream"}},
]


def path_for(rule: Any, value: str) -> str:
    """Fill a rule's variables with the given text (or a UUID for uuid converters)."""
    path = rule.rule
    for name, converter in rule._converters.items():  # noqa: SLF001 - werkzeug has no public API
        kind = type(converter).__name__
        filler = str(uuid.uuid4()) if kind == "UUIDConverter" else value
        if kind in {"IntegerConverter", "NumberConverter"}:
            filler = "1"
        path = path.replace(f"<{rule.arguments and _spec(rule, name)}>", filler)
    return path


def _spec(rule: Any, name: str) -> str:
    for converter_spec in rule.rule.split("<")[1:]:
        spec = converter_spec.split(">")[0]
        if spec.split(":")[-1] == name:
            return spec
    return name


def api_rules(app: Quart) -> list[Any]:
    """Every HTTP rule under /api and /app."""
    return [
        rule
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(("/api/", "/app/")) and not getattr(rule, "websocket", False)
    ]


async def assert_not_server_error(response: Any, description: str) -> None:
    body = await response.get_data(as_text=True)
    assert response.status_code < 500, f"{description} -> {response.status_code}: {body[:300]}"
    if response.status_code >= 400:
        assert response.content_type == "application/problem+json", description


@pytest.mark.parametrize("path_value", ["x", "..%2F..", "0" * 300])
async def test_hostile_input_never_gets_a_server_error(pulse_app: Quart, path_value: str) -> None:
    tenant = await make_tenant(pulse_app)
    client = tenant.admin_client
    for rule in api_rules(pulse_app):
        path = path_for(rule, path_value)
        methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        for method in methods:
            if method in {"GET", "DELETE"}:
                for query in HOSTILE_QUERIES:
                    response = await client.request(method, f"{path}?{query}")
                    await assert_not_server_error(response, f"{method} {path}?{query[:40]}")
            else:
                for body in HOSTILE_BODIES:
                    response = await client.request(method, path, **body)
                    await assert_not_server_error(response, f"{method} {path} {body!r:.60}")
