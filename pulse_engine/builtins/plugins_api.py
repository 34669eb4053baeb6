"""Built-in plugin: ``GET /api/v1/plugins``, the installed plugins as the caller sees them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from quart import Blueprint
from quart_schema import validate_response

from pulse_engine import hookimpl
from pulse_engine.plugins import PluginStatus
from pulse_engine.problems import problem_responses
from pulse_engine.tenancy import current_principal

if TYPE_CHECKING:
    from pulse_engine.app import PulseEngine


class PluginRoute(BaseModel):
    """One route a plugin registered."""

    path: str = Field(description="The URL rule (``/api/v1/admin/users/<uuid:user_id>``).")
    methods: list[str] = Field(description="Its HTTP methods (none for a WebSocket).")
    endpoint: str = Field(description="The endpoint name (``blueprint.view``).")


class PluginInfo(BaseModel):
    """An installed plugin."""

    name: str = Field(description="The plugin's name (its entry point, or ``pulse.*``).")
    distribution: str | None = Field(description="The distribution that installed it.")
    version: str | None = Field(description="The distribution's version.")
    builtin: bool = Field(description="Whether it is one of the engine's own features.")
    status: PluginStatus = Field(description="Whether it loaded on this server.")
    errors: list[str] = Field(description="Why it failed, when it did.")
    hooks: list[str] = Field(description="The hooks it implements.")
    routes: list[PluginRoute] = Field(description="The routes it registered.")
    enabled: bool | None = Field(
        None, description="For a tenant's caller: whether the tenant may use it."
    )


class PluginList(BaseModel):
    """Every installed plugin, by name."""

    plugins: list[PluginInfo] = Field(description="Every installed plugin, by name.")


@hookimpl
def register_routes(engine: PulseEngine) -> Blueprint:
    """The plugin listing."""
    blueprint = Blueprint("plugins", __name__, url_prefix=engine.settings.api_v1_prefix)

    @blueprint.get("/plugins")
    @validate_response(PluginList)
    @problem_responses(503)
    async def list_plugins() -> dict[str, Any]:
        """Name, distribution, version, status, routes and, for a tenant user, ``enabled``."""
        tenant_id = current_principal().tenant_id
        plugins = []
        for name, record in sorted(engine.plugins.records.items()):
            document = record.as_dict()
            if tenant_id is not None:
                document["enabled"] = record.builtin or await engine.capabilities.is_enabled(
                    tenant_id, name
                )
            plugins.append(document)
        return {"plugins": plugins}

    return blueprint
