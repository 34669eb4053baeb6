"""Every error the API gives is ``application/problem+json`` (RFC 9457), never a stack trace."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field
from quart import Blueprint, Quart
from quart_schema import validate_request

from pulse_engine import hookimpl
from pulse_engine.testing import TenantFixture, make_settings, make_tenant, running_app

SECRET_DETAIL = "password=hunter2 at db.internal:5432"


class Widget(BaseModel):
    """A body the probe route validates."""

    name: str = Field(min_length=1)
    size: int


class ProblemProbe:
    """A plugin with a validated route and a route that fails unexpectedly."""

    @hookimpl
    def register_routes(self) -> Blueprint:
        blueprint = Blueprint("problem_probe", __name__, url_prefix="/api/v1/problem-probe")

        @blueprint.post("/widgets")
        @validate_request(Widget)
        async def create_widget(data: Widget) -> tuple[dict[str, Any], int]:
            return data.model_dump(), 201

        @blueprint.get("/explode")
        async def explode() -> dict[str, Any]:
            raise RuntimeError(SECRET_DETAIL)

        return blueprint


@pytest.fixture
async def app(pulse_database_url: str, tmp_path: Path) -> AsyncIterator[Quart]:
    """An app with every installed plugin, the probe, and a 2 KiB request limit."""
    settings = make_settings(pulse_database_url, tmp_path, max_request_bytes=2048)
    async with running_app(settings, plugins={"problem_probe": ProblemProbe()}) as started:
        yield started


@pytest.fixture
async def probe_tenant(app: Quart) -> TenantFixture:
    """A tenant of the probe app."""
    return await make_tenant(app)


async def problem_of(response: Any, status: int) -> dict[str, Any]:
    """Check a response is a problem document with ``status``; return the document."""
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    body = json.loads(await response.get_data(as_text=True))
    assert body["status"] == status
    assert body["type"].startswith("https://")
    assert body["title"] and body["detail"]
    return body  # type: ignore[no-any-return]


async def test_unknown_path_is_404(app: Quart) -> None:
    body = await problem_of(await app.test_client().get("/no/such/path"), 404)
    assert body["type"].endswith("/not-found")


async def test_wrong_method_is_405_with_allow(app: Quart) -> None:
    response = await app.test_client().post("/health/live")
    body = await problem_of(response, 405)
    assert "GET" in [method.strip() for method in response.headers["Allow"].split(",")]
    assert body["type"].endswith("/method-not-allowed")


async def test_body_over_the_limit_is_413(probe_tenant: TenantFixture) -> None:
    response = await probe_tenant.viewer_client.post(
        "/api/v1/problem-probe/widgets", json={"name": "x" * 4096, "size": 1}
    )
    await problem_of(response, 413)


async def test_schema_mismatch_is_422_naming_the_fields(probe_tenant: TenantFixture) -> None:
    response = await probe_tenant.viewer_client.post(
        "/api/v1/problem-probe/widgets", json={"name": "", "size": "large"}
    )
    body = await problem_of(response, 422)
    assert body["type"].endswith("/validation-error")
    assert {error["field"] for error in body["errors"]} == {"name", "size"}


async def test_malformed_json_is_400(probe_tenant: TenantFixture) -> None:
    response = await probe_tenant.viewer_client.post(
        "/api/v1/problem-probe/widgets",
        data=b'{"name": "half',
        headers={"Content-Type": "application/json"},
    )
    await problem_of(response, 400)


async def test_unhandled_plugin_error_is_a_generic_500(probe_tenant: TenantFixture) -> None:
    response = await probe_tenant.viewer_client.get("/api/v1/problem-probe/explode")
    body = await problem_of(response, 500)
    assert body["type"].endswith("/internal-error")
    raw = json.dumps(body)
    for leak in ("hunter2", "RuntimeError", "Traceback", "explode", ".py"):
        assert leak not in raw
    assert body["instance"] == f"urn:pulse:request:{response.headers['X-Request-ID']}"


async def test_valid_request_still_succeeds(probe_tenant: TenantFixture) -> None:
    response = await probe_tenant.viewer_client.post(
        "/api/v1/problem-probe/widgets", json={"name": "gear", "size": 3}
    )
    assert response.status_code == 201
    assert await response.get_json() == {"name": "gear", "size": 3}


def test_cursors_that_no_key_can_hold_are_refused() -> None:
    import base64

    from pulse_engine import Problem
    from pulse_engine.pagination import decode_cursor, encode_cursor

    assert decode_cursor(encode_cursor("a-b"), str) == "a-b"
    for hostile, kind in (("a\x00b", str), ("\ud800", str), (10**30, int), (-(2**63) - 1, int)):
        cursor = base64.urlsafe_b64encode(json.dumps([hostile]).encode()).decode().rstrip("=")
        with pytest.raises(Problem) as refused:
            decode_cursor(cursor, kind)
        assert refused.value.status == 400
    assert decode_cursor(encode_cursor(2**63 - 1), int) == 2**63 - 1
