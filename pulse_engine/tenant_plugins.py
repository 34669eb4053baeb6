"""Administering a tenant's capabilities: which plugins it uses, and their configuration.

A tenant admin switches plugins for its own tenant, a superadmin for any. Built-in
plugins are the engine itself and cannot be switched off. A plugin's configuration is
validated against the pydantic model it registered (``register_tenant_config_schema``);
a plugin without one accepts only ``{}``. A switch without a config keeps the stored one.
The switch itself is :meth:`pulse_engine.capabilities.Capabilities.set`, which tells every
process at once.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from pulse_engine import audit
from pulse_engine.accounts import get_tenant
from pulse_engine.app import PulseEngine
from pulse_engine.problems import Problem, field_errors
from pulse_engine.tokens import Principal


async def plugin_states(
    engine: PulseEngine, *, actor: Principal | None, tenant_id: str
) -> list[dict[str, Any]]:
    """Every switchable plugin with its state for the tenant (404 if not visible)."""
    await get_tenant(engine, actor=actor, tenant_id=tenant_id)
    return await engine.capabilities.listing(tenant_id)


def validate_config(engine: PulseEngine, plugin: str, config: dict[str, Any]) -> dict[str, Any]:
    """The plugin's config, validated and normalised; 422 naming the offending fields."""
    schema = engine.tenant_config_schemas.get(plugin)
    if schema is None:
        if config:
            raise Problem(
                422,
                "validation-error",
                f"The '{plugin}' plugin takes no configuration.",
                errors=[{"field": "config", "message": "Must be {}.", "type": "value_error"}],
            )
        return {}
    try:
        return schema.model_validate(config).model_dump(mode="json")
    except ValidationError as error:
        raise Problem(
            422,
            "validation-error",
            f"The configuration does not match the '{plugin}' plugin's schema.",
            errors=field_errors(error, prefix="config."),
        ) from None


async def set_plugin(
    engine: PulseEngine,
    *,
    actor: Principal | None,
    tenant_id: str,
    plugin: str,
    enabled: bool,
    config: dict[str, Any] | None,
    client_address: str | None,
) -> dict[str, Any]:
    """Switch a plugin on or off for a tenant and set its config; returns the new state.

    Without ``config`` the stored one is kept; it must still be valid to enable the plugin
    (a plugin whose schema has required fields cannot be enabled unconfigured), while
    disabling never needs a valid config.
    """
    await get_tenant(engine, actor=actor, tenant_id=tenant_id)
    record = engine.plugins.records.get(plugin)
    if record is None:
        raise Problem(404, "plugin-not-found", f"No plugin named '{plugin}' is installed.")
    if record.builtin:
        raise Problem(
            409, "plugin-builtin", f"'{plugin}' is part of the engine and cannot be switched."
        )
    if config is None:
        config = await engine.capabilities.config(tenant_id, plugin)
        validated = validate_config(engine, plugin, config) if enabled else config
    else:
        validated = validate_config(engine, plugin, config)
    updated_by = actor.user_id if actor is not None else None
    await engine.capabilities.set(tenant_id, plugin, enabled, validated, updated_by)
    async with engine.db.system_session() as session:
        await audit.record(
            engine,
            session,
            tenant_id=tenant_id,
            actor=actor,
            action="capability.changed",
            target=f"plugin:{plugin}",
            details={"enabled": enabled, "config_keys": sorted(validated)},
            client_address=client_address,
        )
    states = await engine.capabilities.listing(tenant_id)
    return next(state for state in states if state["plugin"] == plugin)
