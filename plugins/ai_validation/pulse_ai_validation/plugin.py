"""The pulse-ai-validation plugin: its hook implementations."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from quart import Blueprint
from sqlalchemy import MetaData

from pulse_ai_validation import hookspecs, tables
from pulse_ai_validation.builtin_rules import builtin_rules
from pulse_ai_validation.config import AiValidationConfig
from pulse_ai_validation.feedback import find_own, store_own
from pulse_ai_validation.health import health_checks
from pulse_ai_validation.rewrites import LimitRule, TenantScopeRule
from pulse_ai_validation.routes import build_blueprint
from pulse_ai_validation.service import AiValidationService
from pulse_engine import StashKey, copy_tables, hookimpl

if TYPE_CHECKING:
    from pulse_engine import Engine

SERVICE = StashKey[AiValidationService]()


def service_for(engine: Engine) -> AiValidationService:
    """The plugin's service for ``engine`` (created on first use)."""
    return engine.stash.get_or_create(SERVICE, lambda: AiValidationService(engine))


@hookimpl
def add_hookspecs(manager: Any) -> None:
    """Add ``register_validation_rules``, ``register_result_schemas`` and the learning
    feedback hooks (:mod:`pulse_ai_validation.hookspecs`)."""
    manager.add_hookspecs(hookspecs)


@hookimpl
def register_tables(metadata: MetaData) -> None:
    """Copy the feedback table onto the engine's metadata."""
    copy_tables(tables.TABLES, metadata)


@hookimpl
def register_migrations() -> Path:
    """The ``ai_validation`` Alembic branch."""
    return Path(__file__).parent / "migrations"


@hookimpl
def register_routes(engine: Engine) -> Blueprint:
    """The ``{api_v1_prefix}/ai`` routes."""
    return build_blueprint(engine, service_for(engine))


@hookimpl
def register_health_checks(engine: Engine) -> dict[str, Any]:
    """The catalog and the execution role (:mod:`pulse_ai_validation.health`)."""
    return health_checks(service_for(engine))


@hookimpl
def register_tenant_config_schema() -> type[AiValidationConfig]:
    """Per-tenant severities, function additions and limits."""
    return AiValidationConfig


@hookimpl
def register_validation_rules() -> list[object]:
    """The built-in rules and the two rewrites (tenant scope, LIMIT)."""
    return [*builtin_rules(), TenantScopeRule(), LimitRule()]


@hookimpl(trylast=True)
async def ai_learning_record_feedback(
    engine: Engine, tenant_id: str, feedback: dict[str, Any]
) -> str:
    """Store feedback in ``ai_validation_feedback`` (when no other plugin answered)."""
    return await store_own(engine, tenant_id, feedback)


@hookimpl(trylast=True)
async def ai_learning_find_feedback(
    engine: Engine, tenant_id: str, error_kind: str | None, limit: int
) -> list[dict[str, Any]]:
    """Read ``ai_validation_feedback`` (when no other plugin answered)."""
    return await find_own(engine, tenant_id, error_kind, limit)


@hookimpl
async def startup(engine: Engine) -> None:
    """Reflect the analytics catalog and set up the execution role."""
    await service_for(engine).start()


@hookimpl
async def shutdown(engine: Engine) -> None:
    """Close the execution pool."""
    await service_for(engine).executor.close()
