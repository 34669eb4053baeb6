"""The plugin's operator settings and each tenant's configuration."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pulse_ai_validation.rules import SeveritySetting, ValidationPolicy

_RULE_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_FUNCTION = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class AiValidationSettings(BaseSettings):
    """Operator settings, read from the environment with the ``PULSE_AI_VALIDATION_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="PULSE_AI_VALIDATION_", extra="ignore")

    default_limit: int = Field(default=1000, ge=1, le=100000,
                               description="LIMIT given to a query that has none.")
    max_limit: int = Field(default=10000, ge=1, le=100000,
                           description="Highest LIMIT any query keeps (a larger one is capped); "
                           "also the row cap of POST /ai/query.")
    statement_timeout_ms: int = Field(default=5000, ge=10, le=120000,
                                      description="statement_timeout of POST /ai/query.")
    db_role: str = Field(default="pulse_ai_reader", pattern=r"^[a-z_][a-z0-9_]{0,62}$",
                         description="The login role POST /ai/query runs as.")
    db_password: str | None = Field(
        default=None, description="That role's password (default: derived from the secrets).")
    pool_size: int = Field(default=4, ge=1, le=50,
                           description="Connections of the execution role's pool.")
    max_series_rows: int = Field(default=100000, ge=1,
                                 description="Most rows a generate_series() may produce.")


class AiValidationConfig(BaseModel):
    """What a tenant decides (``PUT /api/v1/admin/tenants/{id}/plugins/ai_validation``)."""

    model_config = ConfigDict(extra="forbid")

    severities: dict[str, SeveritySetting] = Field(
        default_factory=dict,
        description="Rule id -> error, warning, info or off. Security rules (read-only, "
        "functions, tables, tenant scope...) cannot be lowered.",
    )
    extra_functions: list[str] = Field(
        default_factory=list, max_length=100,
        description="PostgreSQL function names added to the allow-list (never a denied one).",
    )
    default_limit: int | None = Field(default=None, ge=1, le=100000,
                                      description="LIMIT added to a query without one.")
    max_limit: int | None = Field(default=None, ge=1, le=100000,
                                  description="The tenant's row cap (at most the operator's).")
    max_joins: int = Field(default=8, ge=0, le=32, description="Most joins a query may have.")
    max_subquery_depth: int = Field(default=4, ge=0, le=16,
                                    description="Deepest subquery nesting.")

    @field_validator("severities")
    @classmethod
    def _rule_ids(cls, value: dict[str, str]) -> dict[str, str]:
        for rule_id in value:
            if not _RULE_ID.match(rule_id):
                raise ValueError(f"not a rule id: {rule_id!r}")
        return value

    @field_validator("extra_functions")
    @classmethod
    def _function_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _FUNCTION.match(name):
                raise ValueError(f"not a function name: {name!r}")
        return value


def policy_for(settings: AiValidationSettings, config: AiValidationConfig) -> ValidationPolicy:
    """The policy a tenant's validations run under."""
    max_limit = min(config.max_limit or settings.max_limit, settings.max_limit)
    default_limit = min(config.default_limit or settings.default_limit, max_limit)
    return ValidationPolicy(
        default_limit=default_limit,
        max_limit=max_limit,
        max_joins=config.max_joins,
        max_subquery_depth=config.max_subquery_depth,
        max_series_rows=settings.max_series_rows,
        extra_functions=frozenset(name.lower() for name in config.extra_functions),
        severities=dict(config.severities),
    )


Outcome = Literal["fixed", "not_fixed", "partial"]
