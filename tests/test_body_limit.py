"""``@body_limit``: one route takes larger (or smaller) bodies than ``PULSE_MAX_REQUEST_BYTES``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from quart import Blueprint, Quart
from quart_schema import validate_request

from pulse_engine import body_limit, hookimpl
from pulse_engine.testing import TenantFixture, make_settings, make_tenant, running_app


class Blob(BaseModel):
    """A body of any size."""

    text: str


class BodyLimitProbe:
    """Routes with the default limit, a larger one and a smaller one."""

    @hookimpl
    def register_routes(self) -> Blueprint:
        blueprint = Blueprint("body_limit_probe", __name__, url_prefix="/api/v1/body-probe")

        @blueprint.post("/default")
        @validate_request(Blob)
        async def default(data: Blob) -> dict[str, Any]:
            return {"length": len(data.text)}

        @blueprint.post("/large")
        @body_limit(64 * 1024)
        @validate_request(Blob)
        async def large(data: Blob) -> dict[str, Any]:
            return {"length": len(data.text)}

        @blueprint.post("/small")
        @body_limit(1024)
        @validate_request(Blob)
        async def small(data: Blob) -> dict[str, Any]:
            return {"length": len(data.text)}

        return blueprint


@pytest.fixture
async def app(pulse_database_url: str, tmp_path: Path) -> AsyncIterator[Quart]:
    """An app with the probe and a 4 KiB global limit."""
    settings = make_settings(pulse_database_url, tmp_path, max_request_bytes=4096)
    async with running_app(settings, plugins={"body_limit_probe": BodyLimitProbe()}) as started:
        yield started


@pytest.fixture
async def probe_tenant(app: Quart) -> TenantFixture:
    """A tenant of the probe app."""
    return await make_tenant(app)


async def status_and_body(response: Any) -> tuple[int, dict[str, Any]]:
    """The status and the JSON body of a response."""
    return response.status_code, json.loads(await response.get_data(as_text=True))


@pytest.mark.parametrize(
    ("path", "size", "status"),
    [
        ("default", 3000, 200),
        ("default", 10_000, 413),
        ("large", 10_000, 200),
        ("large", 60_000, 200),
        ("large", 70_000, 413),
        ("small", 500, 200),
        ("small", 3000, 413),
    ],
)
async def test_each_route_has_its_own_limit(
    probe_tenant: TenantFixture, path: str, size: int, status: int
) -> None:
    response = await probe_tenant.viewer_client.post(
        f"/api/v1/body-probe/{path}", json={"text": "x" * size}
    )
    code, body = await status_and_body(response)
    assert code == status, body
    if status == 200:
        assert body == {"length": size}
    else:
        assert response.content_type == "application/problem+json"
        assert body["status"] == 413


async def test_the_larger_limit_holds_without_a_token(app: Quart) -> None:
    """An unauthenticated body over a route's limit is refused by size or by the gate,
    and a body over the default on a default route never reaches a view."""
    client = app.test_client()
    response = await client.post("/api/v1/body-probe/default", json={"text": "x" * 10_000})
    assert response.status_code in (401, 413)
    response = await client.post("/api/v1/body-probe/large", json={"text": "x" * 70_000})
    assert response.status_code in (401, 413)
