"""Built-in plugin: ``GET /api/v1/plugins``, the installed plugins as the caller sees them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint

from pulse_engine import hookimpl
from pulse_engine.tenancy import current_principal

if TYPE_CHECKING:
    from pulse_engine.app import PulseEngine


@hookimpl
def register_routes(engine: PulseEngine) -> Blueprint:
    """The plugin listing."""
    blueprint = Blueprint("plugins", __name__, url_prefix=engine.settings.api_v1_prefix)

    @blueprint.get("/plugins")
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
