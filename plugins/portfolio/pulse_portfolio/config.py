"""Per-tenant portfolio configuration (validated by the admin API) and the operator's settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pulse_portfolio import PLUGIN_NAME

if TYPE_CHECKING:
    from pulse_engine import Engine

#: The executive view's KPIs when a tenant chose none (those of them that are registered),
#: with default targets: DORA's 2023 elite thresholds (a deployment a day over the 13
#: weeks, lead time and restore time under a day and an hour, 5% change failures), a
#: cycle time of five days; throughput has no absolute target.
DEFAULT_KPIS: tuple[tuple[str, float | None], ...] = (
    ("dora.deployment_frequency", 91.0),
    ("dora.lead_time_for_changes", 86_400.0),
    ("dora.change_failure_rate", 0.05),
    ("dora.time_to_restore_service", 3_600.0),
    ("portfolio.throughput", None),
    ("portfolio.cycle_time", 432_000.0),
)
WORK_TYPES = ("feature", "bug", "debt", "incident")
WorkType = Literal["feature", "bug", "debt", "incident"]


def _default_work_types() -> dict[str, WorkType]:
    return {"bug": "bug", "defect": "bug", "incident": "incident", "debt": "debt",
            "tech debt": "debt", "chore": "debt"}


class PortfolioSettings(BaseSettings):
    """Operator settings, read from the environment with the ``PULSE_PORTFOLIO_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="PULSE_PORTFOLIO_", extra="ignore")

    max_window_days: int = Field(default=1096, ge=1, description="Longest window, in days.")
    max_projects: int = Field(
        default=200, ge=1, description="Most projects one cross-project aggregation reads.")
    forecast_history_days: int = Field(
        default=730, ge=30, description="Days of stored throughput a scope forecast reads.")


class KpiChoice(BaseModel):
    """One KPI of the executive view."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(min_length=1, max_length=200, description="A catalog metric name.")
    target: float | None = Field(default=None, description="The target value (unit of the metric).")


class PortfolioConfig(BaseModel):
    """What a tenant decides about its portfolio (``PUT .../plugins/portfolio`` ``config``)."""

    model_config = ConfigDict(extra="forbid")

    executive_kpis: list[KpiChoice] | None = Field(
        default=None, max_length=20,
        description="The executive view's KPIs (default: the default set that is registered).")
    executive_window_days: int = Field(
        default=90, ge=7, le=366, description="The executive view's window, in days.")
    wait_states: list[str] = Field(
        default_factory=lambda: ["blocked", "waiting", "on hold", "ready for review",
                                 "ready for qa", "ready for release"],
        max_length=100,
        description="Work-item statuses that are waiting, not active (flow efficiency).")
    done_statuses: list[str] = Field(
        default_factory=lambda: ["done", "closed", "resolved", "released"], max_length=100,
        description="Statuses that end a work item's time in progress (besides its "
        "resolution).")
    todo_statuses: list[str] = Field(
        default_factory=lambda: ["to do", "todo", "open", "backlog", "new", "selected for "
                                 "development"], max_length=100,
        description="Statuses before work starts.")
    aging_threshold_days: float = Field(
        default=14.0, gt=0, le=3650, description="Work in progress older than this is aging.")
    unplanned_types: list[str] = Field(
        default_factory=lambda: ["bug", "incident"], max_length=100,
        description="Work-item types that are unplanned when they are in no sprint.")
    work_types: dict[str, WorkType] = Field(
        default_factory=_default_work_types,
        max_length=200,
        description="Work-item type (lower case) to work type; any other type is a feature.")
    debt_labels: list[str] = Field(
        default_factory=lambda: ["tech-debt", "debt", "refactor"], max_length=100,
        description="Labels that make an item debt, whatever its type.")

    @field_validator("wait_states", "done_statuses", "todo_statuses", "unplanned_types",
                     "debt_labels")
    @classmethod
    def _lower(cls, names: list[str]) -> list[str]:
        return sorted({name.strip().lower()[:200] for name in names if name.strip()})

    @field_validator("work_types")
    @classmethod
    def _lower_keys(cls, mapping: dict[str, WorkType]) -> dict[str, WorkType]:
        return {key.strip().lower()[:200]: value for key, value in mapping.items()}


async def tenant_config(engine: Engine, tenant_id: str) -> PortfolioConfig:
    """The tenant's validated portfolio configuration (defaults where it set nothing)."""
    return PortfolioConfig.model_validate(await engine.capabilities.config(tenant_id, PLUGIN_NAME))
