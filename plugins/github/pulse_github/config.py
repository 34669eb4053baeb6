"""Per-tenant configuration of the GitHub analytics (validated by the admin API) and the
plugin's operator settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pulse_etl.connectors.common import check_patterns
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pulse_github import PLUGIN_NAME

if TYPE_CHECKING:
    from pulse_engine import Engine

#: A tenant role that may be allowed per-person breakdowns.
BreakdownRole = Literal["viewer", "analyst", "admin"]

#: Logins and names of bots by default: GitHub App accounts (``name[bot]``), Dependabot
#: and Renovate (also when they commit under their own names).
#: The roles that see per-person breakdowns by default (viewers see aggregates).
DEFAULT_BREAKDOWN_ROLES: tuple[BreakdownRole, ...] = ("analyst", "admin")

DEFAULT_BOT_PATTERNS = [r"\[bot\]$", r"^dependabot", r"^renovate"]


class GithubSettings(BaseSettings):
    """Operator settings, read from the environment with the ``PULSE_GITHUB_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="PULSE_GITHUB_", extra="ignore")

    max_window_days: int = Field(
        default=731, ge=1, description="Longest window any tenant may ask for, in days.")
    max_buckets: int = Field(
        default=1000, ge=1, description="Most buckets a series may have.")
    cache_ttl_seconds: float = Field(
        default=900.0, gt=0, description="Lifetime of a cached answer.")
    stale_after_days: int = Field(
        default=14, ge=1,
        description="Health: a source whose newest commit or pull request is older is stale.")


class GithubConfig(BaseModel):
    """What a tenant decides about its GitHub analytics (``PUT .../plugins/github``).

    Patterns are regular expressions matched case-insensitively by PostgreSQL (``~*``)
    against an account's login and name; they are checked with Python's ``re`` here, so
    use the syntax both share.
    """

    model_config = ConfigDict(extra="forbid")

    bot_patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_BOT_PATTERNS), max_length=50,
        description="Accounts whose login or name matches one of these are bots: their pull "
        "requests and reviews are left out of the pull-request and review analytics.",
    )
    person_breakdown_roles: list[BreakdownRole] = Field(
        default_factory=lambda: list(DEFAULT_BREAKDOWN_ROLES),
        description="Roles that see per-person breakdowns and rankings (and may filter by "
        "person); the others get aggregates only. Empty: nobody does.",
    )
    production_environments: list[str] = Field(
        default_factory=lambda: ["production", "prod"], max_length=50,
        description="Environments (exact names) whose successful deployments end a pull "
        "request's deploy phase and count as releases.",
    )
    max_window_days: int | None = Field(
        default=None, ge=1, le=3660, description="Longest window, in days (default: operator's).")

    _validate_patterns = field_validator("bot_patterns")(check_patterns)


async def tenant_config(engine: Engine, tenant_id: str) -> GithubConfig:
    """The tenant's validated configuration (defaults where it set nothing)."""
    return GithubConfig.model_validate(await engine.capabilities.config(tenant_id, PLUGIN_NAME))


def allows_people(config: GithubConfig, role: str) -> bool:
    """Whether a caller of ``role`` may see per-person breakdowns (a superadmin counts as
    an admin of the tenant)."""
    effective = "admin" if role == "superadmin" else role
    return effective in config.person_breakdown_roles
