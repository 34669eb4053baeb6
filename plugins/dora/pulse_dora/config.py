"""Per-tenant DORA configuration (validated by the admin API) and the plugin's own settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pulse_etl.connectors.common import check_patterns
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pulse_dora import PLUGIN_NAME

if TYPE_CHECKING:
    from pulse_engine import Engine


class DoraSettings(BaseSettings):
    """Operator settings, read from the environment with the ``PULSE_DORA_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="PULSE_DORA_", extra="ignore")

    max_window_days: int = Field(
        default=731, ge=1, description="Longest window any tenant may ask for, in days."
    )
    max_buckets: int = Field(
        default=1000, ge=1,
        description="Most buckets a series may have (day buckets over 1000 days are refused).",
    )
    cache_ttl_seconds: float = Field(
        default=900.0, gt=0, description="Lifetime of a cached summary or series."
    )
    stale_after_days: int = Field(
        default=30, ge=1, description="Health: a tenant with no deployment for this long is stale."
    )


class DoraConfig(BaseModel):
    """What a tenant decides about its DORA metrics (``PUT .../plugins/dora`` ``config``).

    Patterns are regular expressions matched case-insensitively by PostgreSQL (``~*``);
    they are checked with Python's ``re`` here, so use the syntax both share. Names are
    matched exactly, case-insensitively.
    """

    model_config = ConfigDict(extra="forbid")

    production_environments: list[str] = Field(
        default_factory=lambda: ["production", "prod"],
        description="Environment names that are production.",
    )
    production_environment_patterns: list[str] = Field(
        default_factory=list, description="Regular expressions of production environment names."
    )
    incident_link_window_days: float = Field(
        default=7.0,
        gt=0,
        le=90,
        description="An incident is linked to the latest production deployment of its "
        "service that finished this many days or less before it started.",
    )
    hotfix_branch_patterns: list[str] = Field(
        default_factory=lambda: [r"^(hot)?fix[/_-]"],
        description="Deployed refs or pull-request head branches that mark a hotfix.",
    )
    hotfix_label_patterns: list[str] = Field(
        default_factory=lambda: ["hotfix"],
        description="Deployment job names or pull-request titles that mark a hotfix.",
    )
    failed_deployment_counts_as_failure: bool = Field(
        default=False,
        description="A successful deployment followed by a failed one of the same service "
        "and environment counts as a change failure.",
    )
    max_window_days: int | None = Field(
        default=None, ge=1, le=3660, description="Longest window, in days (default: operator's)."
    )

    _validate_patterns = field_validator(
        "production_environment_patterns",
        "hotfix_branch_patterns",
        "hotfix_label_patterns",
    )(check_patterns)

    @field_validator("production_environments")
    @classmethod
    def _lower_names(cls, names: list[str]) -> list[str]:
        return [name.strip().lower() for name in names if name.strip()]


async def tenant_config(engine: Engine, tenant_id: str) -> DoraConfig:
    """The tenant's validated DORA configuration (defaults where it set nothing)."""
    stored = await engine.capabilities.config(tenant_id, PLUGIN_NAME)
    return DoraConfig.model_validate(stored)
