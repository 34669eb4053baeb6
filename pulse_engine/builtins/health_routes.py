"""Built-in plugin: ``/health`` and friends (public; no secrets in any answer)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint

from pulse_engine import hookimpl
from pulse_engine.auth import public
from pulse_engine.problems import Problem

if TYPE_CHECKING:
    from pulse_engine.app import PulseEngine

STATUS_CODES = {"healthy": 200, "degraded": 200, "unhealthy": 503}


@hookimpl
def register_routes(engine: PulseEngine) -> Blueprint:
    """Aggregate, per-plugin, database, liveness and readiness endpoints."""
    blueprint = Blueprint("health", __name__, url_prefix="/health")

    @blueprint.get("")
    @public
    async def overall() -> tuple[dict[str, Any], int]:
        """Every plugin's health; the status is the worst of the host's own checks."""
        document = await engine.health.overall()
        return document, STATUS_CODES[document["status"]]

    @blueprint.get("/live")
    @public
    async def live() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "healthy"}

    @blueprint.get("/ready")
    @public
    async def ready() -> tuple[dict[str, Any], int]:
        """Readiness: the database answers, so requests can be served."""
        result = await engine.health.run_check(
            "pulse.engine_health",
            "database",
            engine.health.checks["pulse.engine_health"]["database"],
        )
        status = "healthy" if result["status"] != "unhealthy" else "unhealthy"
        return {"status": status}, STATUS_CODES[status]

    @blueprint.get("/database")
    @public
    async def database() -> tuple[dict[str, Any], int]:
        """Connection, pool, migrations, row-level security and pgvector."""
        result = await engine.health.run_check(
            "pulse.engine_health",
            "database",
            engine.health.checks["pulse.engine_health"]["database"],
        )
        return result, STATUS_CODES[result["status"]]

    @blueprint.get("/<plugin>")
    @public
    async def one_plugin(plugin: str) -> tuple[dict[str, Any], int]:
        """One plugin's health."""
        if plugin not in engine.plugins.records:
            raise Problem(404, "unknown-plugin", f"No plugin named '{plugin}' is installed.")
        document = await engine.health.plugin_health(plugin)
        return {"plugin": plugin, **document}, STATUS_CODES[document["status"]]

    return blueprint
