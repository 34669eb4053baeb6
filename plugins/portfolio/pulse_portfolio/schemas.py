"""Request and response models of the portfolio endpoints (quart-schema reads them)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pulse_engine import BoundedDatetime, MetricValue, QueryText, TimeZoneName

Scope = Literal["tenant", "project", "team"]


class WindowQuery(BaseModel):
    """A window (default: the last 90 days) in a zone."""

    model_config = ConfigDict(extra="forbid")

    start: BoundedDatetime | None = Field(default=None,
                                          description="Start (default: end - 90 days).")
    end: BoundedDatetime | None = Field(default=None, description="End, exclusive (default: now).")
    tz: TimeZoneName = Field(default="UTC", description="IANA zone of days and weeks.")


class AggregateQuery(WindowQuery):
    """``GET /portfolio/aggregate``."""

    metric: QueryText = Field(description="A catalog metric name (GET /metrics).")


class Window(BaseModel):
    """The window an answer covers."""

    start: datetime
    end: datetime
    tz: str


class ProjectValue(BaseModel):
    """One project's value."""

    id: str
    key: str | None
    name: str
    value: MetricValue


class TeamValue(BaseModel):
    """One team's value, combined from its projects' parts."""

    id: str
    name: str
    projects: list[str]
    value: MetricValue | None


class TenantValue(BaseModel):
    """The tenant: combined from every project's part, and its own direct read."""

    value: MetricValue | None = Field(description="Combined from the projects' parts.")
    direct: MetricValue = Field(description="The metric read once for the whole tenant.")


class Aggregate(BaseModel):
    """A metric per project, per team and for the tenant."""

    metric: str
    kind: str
    unit: str
    window: Window
    aggregation: str = Field(description="How parts are combined for this metric's kind.")
    per_project: bool = Field(description="False when the metric has no project filter.")
    projects: list[ProjectValue]
    teams: list[TeamValue]
    tenant: TenantValue


class DeliveryRequest(BaseModel):
    """``POST /portfolio/forecasts/delivery``: a scope or an explicit throughput, and
    ``remaining`` (when) or ``by_date`` (how many)."""

    model_config = ConfigDict(extra="forbid")

    throughput: list[int] | None = Field(
        default=None, max_length=3660,
        description="Items done per day, oldest first, ending the day before start.")
    scope: Literal["project", "team", "tenant"] | None = Field(
        default=None, description="Forecast from the stored work items of a project or team.")
    id: str | None = Field(default=None, max_length=300,
                           description="The project (id, key or name) or team (id or name).")
    remaining: int | None = Field(default=None, ge=1, le=1_000_000,
                                  description="Items left: when will they be done?")
    by_date: date | None = Field(default=None,
                                 description="How many items by this day (inclusive)?")
    start: date | None = Field(
        default=None, description="The first forecast day; work done on it counts "
        "(default with a scope: today in tz; required with throughput).")
    tz: TimeZoneName = Field(default="UTC", description="Zone of the scope's days.")
    due_date: date | None = Field(default=None, description="Also: the likelihood of "
                                  "being done by this day (when questions).")
    percentiles: list[int] | None = Field(
        default=None, max_length=10,
        description="Likelihoods to report (1-99; default 50, 70, 85, 95); above 95 is capped.")
    minimum_days: int = Field(default=5, ge=5, le=3660,
                              description="Refuse with fewer days with a completion.")
    history_days: int | None = Field(
        default=None, ge=30, le=3660,
        description="Days of the scope's history to read (default: the operator's).")
    method: Literal["calibrated", "block", "bootstrap"] = Field(
        default="calibrated", description="The simulation (docs/portfolio.md).")
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1,
                             description="A seed for reproducible trials.")

    @model_validator(mode="after")
    def _one_of_each(self) -> DeliveryRequest:
        if (self.throughput is None) == (self.scope is None):
            raise ValueError("give throughput or scope, not both")
        if (self.remaining is None) == (self.by_date is None):
            raise ValueError("give remaining or by_date, not both")
        if self.throughput is not None:
            if self.start is None:
                raise ValueError("start is required with throughput")
            if any(not 0 <= count <= 100_000 for count in self.throughput):
                raise ValueError("throughput counts must be between 0 and 100000")
        if self.scope in ("project", "team") and not self.id:
            raise ValueError("id is required with scope project or team")
        for level in self.percentiles or ():
            if not 1 <= level <= 99:
                raise ValueError("percentiles must be between 1 and 99")
        return self


class Likelihood(BaseModel):
    """The likelihood of meeting a due date."""

    due_date: date
    likelihood: float = Field(description="0..0.95 (capped).")
    capped: bool = Field(description="True when the simulated likelihood was above 95%.")


class HistorySummary(BaseModel):
    """What the forecast read."""

    days: int
    days_with_completion: int
    items: int
    first: date | None
    last: date | None


class ForecastMethod(BaseModel):
    """How the trials were drawn."""

    name: str
    window_days: int
    block_days: float
    half_life_days: float | None
    calibration_backtests: int
    effective_backtests: float = Field(
        description="How many independent outcomes the backtests hold (overlapping outcome "
        "windows count once); below 12 there is no calibration.")
    levels_used: dict[str, float] = Field(description="Stated level -> simulated level used.")


class Delivery(BaseModel):
    """A delivery forecast: per likelihood, a date (when) or an item count (how many)."""

    question: Literal["when", "how_many"]
    start: date
    remaining: int | None
    by_date: date | None
    percentiles: dict[str, date | int | None] = Field(
        description="Likelihood (50, 70, 85, 95...) -> the day by which the items are done "
        "(when; null: not within ten years) or the items done by by_date at least (how many).")
    capped: list[str] = Field(description="Requested likelihoods above 95%, reported at 95.")
    trials: int
    due: Likelihood | None
    history: HistorySummary
    method: ForecastMethod


class ExecutiveQuery(BaseModel):
    """``GET /portfolio/executive``."""

    model_config = ConfigDict(extra="forbid")

    end: BoundedDatetime | None = Field(default=None, description="End (default: now).")
    tz: TimeZoneName = Field(default="UTC", description="IANA zone of the weekly trend.")


class Trend(BaseModel):
    """A slope per bucket with its 95% interval."""

    slope: float | None
    low: float | None
    high: float | None
    significant: bool
    points: int
    relative: float | None = None
    method: str
    direction: Literal["improving", "worsening", "flat", "unknown"] = "unknown"


class Kpi(BaseModel):
    """One KPI of the executive view."""

    metric: str
    plugin: str
    kind: str
    unit: str
    higher_is_better: bool
    description: str
    value: float | None
    sample_size: int
    target: float | None
    level: Literal["on_target", "near_target", "off_target", "no_target", "no_data"]
    trend: Trend
    weekly: list[float | None]
    error: str | None = Field(default=None, description="Why the metric could not be read.")


class Executive(BaseModel):
    """The executive dashboard: every KPI in one answer."""

    window: Window
    kpis: list[Kpi]
    default_set: bool = Field(description="True when the tenant chose no KPIs.")


class TrendQuery(WindowQuery):
    """``GET /portfolio/trends`` (and the chart)."""

    metric: QueryText = Field(description="A catalog metric name.")
    interval: Literal["day", "week", "month"] = Field(default="week")
    horizon: int = Field(default=8, ge=1, le=104, description="Buckets to forecast.")
    project: QueryText | None = Field(default=None, description="A project (if supported).")
    team: QueryText | None = Field(default=None, description="A team (if supported).")


class ChartQuery(TrendQuery):
    """``GET /portfolio/chart``."""

    format: Literal["png", "svg"] = Field(default="png")


class SeriesPoint(BaseModel):
    """One bucket of a series."""

    start: datetime | None
    end: datetime | None
    value: float | None
    sample_size: int


class ForecastPoint(BaseModel):
    """One forecast bucket with its 80% and 95% bands."""

    offset: int
    value: float
    low80: float
    high80: float
    low95: float
    high95: float


class SeriesForecast(BaseModel):
    """A forecast of the series."""

    model: str
    points: list[ForecastPoint]


class TrendAnswer(BaseModel):
    """A metric series with its trend and forecast."""

    metric: str
    unit: str
    interval: str
    window: Window
    series: list[SeriesPoint]
    trend: Trend
    forecast: SeriesForecast


class FlowQuery(WindowQuery):
    """``GET /portfolio/flow`` and ``/portfolio/sprints``."""

    scope: Scope = Field(default="tenant")
    id: QueryText | None = Field(default=None, description="Project or team id, key or name.")


class Flow(BaseModel):
    """Work-item flow of a scope."""

    window: Window
    scope: str
    projects: list[str] | None
    finished: int
    cycle_time: dict[str, float | int | None]
    throughput_per_week: list[dict[str, date | int]]
    wip: int
    aging: dict[str, Any]
    flow_efficiency: dict[str, Any]
    effort_by_work_type: dict[str, dict[str, float | int | None]]


class Sprints(BaseModel):
    """Velocity per sprint, its stability, planned and unplanned work."""

    window: Window
    scope: str
    sprints: list[dict[str, Any]]
    velocity: dict[str, float | None]
    planned: int
    unplanned: int


class ObjectiveIn(BaseModel):
    """An objective as written (``POST``; ``PATCH`` takes any subset)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=300)
    description: str | None = Field(default=None, max_length=10_000)
    due_date: date | None = None
    projects: list[str] = Field(default_factory=list, max_length=100,
                                description="Project ids (or keys or names).")
    epics: list[str] = Field(default_factory=list, max_length=100,
                             description="Epic work-item keys.")
    labels: list[str] = Field(default_factory=list, max_length=100,
                              description="Work-item labels.")


class ObjectivePatch(BaseModel):
    """A partial update of an objective."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=300)
    description: str | None = Field(default=None, max_length=10_000)
    due_date: date | None = None
    projects: list[str] | None = Field(default=None, max_length=100)
    epics: list[str] | None = Field(default=None, max_length=100)
    labels: list[str] | None = Field(default=None, max_length=100)


class Objective(BaseModel):
    """A stored objective."""

    id: str
    name: str
    description: str | None
    due_date: date | None
    projects: list[str]
    epics: list[str]
    labels: list[str]
    created_at: datetime
    updated_at: datetime


class ObjectivePage(BaseModel):
    """A page of objectives."""

    items: list[Objective]
    next_cursor: str | None


class Delivered(BaseModel):
    """Work delivered for an objective in a window."""

    objective: Objective
    window: Window
    items: int
    points: float
    by_work_type: dict[str, int]
    share_of_all_items: float | None


class RiskFlag(BaseModel):
    """One risk a human can act on, with its evidence."""

    kind: str
    subject: str
    message: str
    evidence: dict[str, Any]


class Risks(BaseModel):
    """The tenant's risk flags."""

    window: Window
    flags: list[RiskFlag]


class ExportQuery(FlowQuery):
    """``GET /portfolio/export``: one portfolio table as CSV."""

    table: Literal["aggregate", "throughput", "aging", "sprints", "objectives", "executive",
                   "risks"]
    metric: QueryText | None = Field(default=None, description="For table=aggregate.")
