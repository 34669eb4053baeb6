"""Scoped API keys: confined to the plugins (and read access) their scopes name."""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint

from pulse_engine import hookimpl
from pulse_engine.auth import require_role
from pulse_engine.testing import ApiClient, make_settings, make_tenant, running_app


class ScopeProbe:
    """A plugin with one read and one write route."""

    @hookimpl
    def register_routes(self) -> Blueprint:
        blueprint = Blueprint("scopeprobe", __name__, url_prefix="/api/v1/scopeprobe")

        @blueprint.get("/items")
        async def items() -> dict[str, list[int]]:
            return {"items": [1, 2]}

        @blueprint.post("/items")
        @require_role("analyst")
        async def add_item() -> tuple[dict[str, bool], int]:
            return {"added": True}, 201

        return blueprint


async def test_scopes_confine_api_keys(pulse_database_url: str, tmp_path: Path) -> None:
    settings = make_settings(pulse_database_url, tmp_path)
    async with running_app(
        settings, plugins={"scopeprobe": ScopeProbe()}, load_entry_points=False
    ) as app:
        tenant = await make_tenant(app)

        async def key_client(scopes: list[str]) -> ApiClient:
            response = await tenant.admin_client.post(
                "/api/v1/admin/api-keys",
                json={
                    "name": f"ci {'-'.join(scopes) or 'all'}",
                    "role": "analyst",
                    "scopes": scopes,
                },
            )
            assert response.status_code == 201, await response.get_data()
            return ApiClient(app, (await response.get_json())["key"])

        read_only = await key_client(["scopeprobe:read"])
        assert (await read_only.get("/api/v1/scopeprobe/items")).status_code == 200
        refused = await read_only.post("/api/v1/scopeprobe/items")
        assert refused.status_code == 403
        assert (await refused.get_json())["required_scope"] == "scopeprobe"
        assert (await read_only.get("/api/v1/plugins")).status_code == 403

        writer = await key_client(["scopeprobe", "pulse:read"])
        assert (await writer.post("/api/v1/scopeprobe/items")).status_code == 201
        assert (await writer.get("/api/v1/plugins")).status_code == 200

        elsewhere = await key_client(["etl"])
        assert (await elsewhere.get("/api/v1/scopeprobe/items")).status_code == 403

        unscoped = await key_client([])
        assert (await unscoped.post("/api/v1/scopeprobe/items")).status_code == 201
        assert (await unscoped.get("/api/v1/plugins")).status_code == 200
