"""Built-in plugin: ``/health`` and friends (public; no secrets in any answer).

Every answer is a health document: ``200`` while the status is ``healthy`` or
``degraded``, ``503`` (the same document) when it is ``unhealthy``, so that load
balancers and orchestrators can read the status code alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint
from quart_schema import validate_response

from pulse_engine import hookimpl
from pulse_engine.auth import public
from pulse_engine.plugins import PluginStatus
from pulse_engine.problems import Problem, problem_responses

if TYPE_CHECKING:
    from pulse_engine.app import PulseEngine

F = TypeVar("F", bound=Callable[..., Any])

HEALTH_PATH = "/health"
STATUS_CODES = {"healthy": 200, "degraded": 200, "unhealthy": 503}
HealthStatus = Literal["healthy", "degraded", "unhealthy"]


class CheckResult(BaseModel):
    """One named check's answer: its status and whatever else the check reports (``error``
    says why a check that raised, timed out or answered nonsense is unhealthy)."""

    model_config = ConfigDict(extra="allow")

    status: HealthStatus = Field(description="The check's verdict.")


class PluginHealth(BaseModel):
    """One plugin's health: the worst of its checks, and unhealthy when it failed."""

    status: HealthStatus = Field(description="The worst status of its checks.")
    plugin_status: PluginStatus = Field(description="Whether the plugin loaded.")
    version: str | None = Field(description="Its distribution's version.")
    checks: dict[str, CheckResult] = Field(description="Each named check's result.")
    errors: list[str] | None = Field(None, description="Why the plugin failed, when it did.")


class NamedPluginHealth(PluginHealth):
    """One plugin's health, with its name."""

    plugin: str = Field(description="The plugin's name.")


class HealthReport(BaseModel):
    """Every plugin's health; the status is the worst of the host's own checks (a failed
    third-party plugin only degrades it)."""

    status: HealthStatus = Field(description="The server's status.")
    plugins: dict[str, PluginHealth] = Field(description="Each installed plugin's health.")


class Liveness(BaseModel):
    """The process answers."""

    status: Literal["healthy"] = Field(description="Always healthy: the process answered.")


class Readiness(BaseModel):
    """Whether requests can be served (the database answers)."""

    status: Literal["healthy", "unhealthy"] = Field(description="Whether requests can be served.")


class DatabaseHealth(CheckResult):
    """The database check: connection, pool, migrations, tables, request limits, row-level
    security, pgvector."""

    database_connection: str | None = Field(None, description="``ok`` when connected.")
    latency_ms: float | None = Field(None, description="A round trip, in milliseconds.")
    pool: dict[str, int] | None = Field(None, description="The app pool's counters.")
    migrations: dict[str, Any] | None = Field(
        None, description="``at_head`` and the ``pending`` revisions of each plugin."
    )
    tables: dict[str, Any] | None = Field(
        None, description="How many tables are registered, and those ``missing``."
    )
    request_limits: dict[str, Any] | None = Field(
        None, description="The statement timeout, and whether the temp-file limit is enforced."
    )
    row_level_security: dict[str, Any] | None = Field(
        None, description="Tenant tables, and those without forced row-level security."
    )
    pgvector: dict[str, Any] | None = Field(
        None, description="Whether the pgvector extension is available, and its version."
    )


def health_answer(model: type[BaseModel]) -> Callable[[F], F]:
    """Declare a health view's 200 and 503 answers (the same document)."""

    def decorate(view: F) -> F:
        return validate_response(model, 503)(validate_response(model, 200)(view))

    return decorate


@hookimpl
def register_routes(engine: PulseEngine) -> Blueprint:
    """Aggregate, per-plugin, database, liveness and readiness endpoints."""
    blueprint = Blueprint("health", __name__, url_prefix=HEALTH_PATH)

    async def database_check() -> dict[str, Any]:
        return await engine.health.run_check(
            "pulse.engine_health",
            "database",
            engine.health.checks["pulse.engine_health"]["database"],
        )

    @blueprint.get("")
    @public
    @health_answer(HealthReport)
    async def overall() -> tuple[dict[str, Any], int]:
        """Every plugin's health; the status is the worst of the host's own checks."""
        document = await engine.health.overall()
        return document, STATUS_CODES[document["status"]]

    @blueprint.get("/live")
    @public
    @validate_response(Liveness)
    async def live() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "healthy"}

    @blueprint.get("/ready")
    @public
    @health_answer(Readiness)
    async def ready() -> tuple[dict[str, Any], int]:
        """Readiness: the database answers, so requests can be served."""
        result = await database_check()
        status = "healthy" if result["status"] != "unhealthy" else "unhealthy"
        return {"status": status}, STATUS_CODES[status]

    @blueprint.get("/database")
    @public
    @health_answer(DatabaseHealth)
    async def database() -> tuple[dict[str, Any], int]:
        """Connection, pool, migrations, row-level security and pgvector."""
        result = await database_check()
        return result, STATUS_CODES[result["status"]]

    @blueprint.get("/<plugin>")
    @public
    @health_answer(NamedPluginHealth)
    @problem_responses()
    async def one_plugin(plugin: str) -> tuple[dict[str, Any], int]:
        """One plugin's health (404 for a plugin that is not installed)."""
        if plugin not in engine.plugins.records:
            raise Problem(404, "unknown-plugin", f"No plugin named '{plugin}' is installed.")
        document = await engine.health.plugin_health(plugin)
        return {"plugin": plugin, **document}, STATUS_CODES[document["status"]]

    return blueprint
