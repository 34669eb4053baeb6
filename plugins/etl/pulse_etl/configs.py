"""Connector configurations: validated against the connector's model, the operator's
policy and the outbound policy, and split into the public part (stored and shown) and the
secrets (encrypted)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from pulse_engine import (
    OutboundPolicy,
    OutboundRefused,
    field_errors,
    invalid_field,
    validation_problem,
)
from pulse_etl.connector import ConfigError, Connector
from pulse_etl.settings import EtlSettings


async def check_outbound(connector: Connector, config: BaseModel, policy: OutboundPolicy,
                         field: str = "config") -> None:
    """Check the hosts a configuration connects to (the connector's ``outbound``); a
    refused one is a 422 naming its field under ``field``."""
    hosts = getattr(connector, "outbound", None)
    for name, (host, port) in (hosts(config) if hosts is not None else {}).items():
        try:
            await policy.check_host(host, port)
        except OutboundRefused as refused:
            raise invalid_field(f"{field}.{name}", f"{refused.host}: {refused.reason}",
                                type="outbound_refused") from None


async def validate_config(connector: Connector, raw: Any, settings: EtlSettings,
                          policy: OutboundPolicy, field: str = "config"
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate a configuration; return ``(public config, secrets)`` or raise a 422 naming
    the offending fields under ``field``."""
    if not isinstance(raw, Mapping):
        raise invalid_field(field, "must be an object", type="dict_type")
    try:
        config = connector.config_model.model_validate(dict(raw))
    except ValidationError as error:
        raise validation_problem(
            field_errors(error, f"{field}." if field else ""),
            "The connector configuration is not valid.",
        ) from None
    try:
        connector.check(config, settings)
    except ConfigError as error:
        raise invalid_field(
            f"{field}.{error.field}", error.message, type="config_refused",
            detail=f"The connector configuration is refused: {error.message}",
        ) from None
    await check_outbound(connector, config, policy, field)
    document = config.model_dump(mode="json", exclude_none=True)
    secret_values = {k: document.pop(k) for k in list(document) if k in connector.secret_fields}
    return document, secret_values


def build_config(connector: Connector, public: Mapping[str, Any],
                 secret_values: Mapping[str, Any]) -> BaseModel:
    """The validated config model of a stored job or integration."""
    return connector.config_model.model_validate({**public, **secret_values})
