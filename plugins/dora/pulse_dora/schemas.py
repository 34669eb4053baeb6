"""The response models of the DORA endpoints, as ``/openapi.json`` describes them.

Each value model forbids extra fields, so a union of them (a series of any metric, the
performance of any level) validates exactly one shape and dumps it unchanged.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from pulse_dora.params import Benchmark, Interval
from pulse_engine import Freshness

MetricName = Literal[
    "deployment_frequency", "lead_time_for_changes", "change_failure_rate",
    "failed_deployment_recovery_time", "time_to_restore_service", "deployment_rework_rate",
]
Level = Literal["elite", "high", "medium", "low"]


class _Exact(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Window(_Exact):
    """The window an answer covers."""

    start: datetime = Field(description="Inclusive start (UTC).")
    end: datetime = Field(description="Exclusive end (UTC).")
    tz: str = Field(description="The zone buckets are computed in.")


class Filters(_Exact):
    """The filters an answer applies."""

    environments: list[str] = Field(description="The environments counted.")
    environment_source: Literal["parameter", "configuration"] = Field(
        description="Whether the environments were given or are the tenant's production set."
    )
    team: list[str] = Field(description="Teams asked for (as written).")
    project: list[str] = Field(description="Projects asked for (as written).")
    repository: list[str] = Field(description="Repositories asked for (as written).")


class FrequencyValue(_Exact):
    """Deployment frequency: successful deployments."""

    value: int | None = Field(description="Deployments; null when none.")
    sample_size: int = Field(description="Deployments.")
    deployments: int = Field(description="Deployments.")
    per_day: float | None = Field(description="Deployments per calendar day.")
    deployment_days: int = Field(description="Days with at least one deployment.")


class FailureRateValue(_Exact):
    """Change failure rate: failed over successful deployments."""

    value: float | None = Field(description="failed_deployments / deployments.")
    sample_size: int = Field(description="Deployments.")
    failed_deployments: int = Field(description="Deployments that caused a failure.")
    deployments: int = Field(description="Successful deployments.")


class ReworkRateValue(_Exact):
    """Deployment rework rate: rework over successful deployments."""

    value: float | None = Field(description="rework_deployments / deployments.")
    sample_size: int = Field(description="Deployments.")
    rework_deployments: int = Field(description="Unplanned fixes of a production incident.")
    deployments: int = Field(description="Successful deployments.")


class DurationValue(_Exact):
    """A distribution of durations, in seconds."""

    value: float | None = Field(description="The median.")
    median: float | None = Field(description="The median (p50).")
    p75: float | None = Field(description="The 75th percentile.")
    p90: float | None = Field(description="The 90th percentile.")
    mean: float | None = Field(description="The mean.")
    sample_size: int = Field(description="Observations.")


class _Bucket(_Exact):
    start: datetime = Field(description="Bucket start, in the request's zone.")
    end: datetime = Field(description="Bucket end (exclusive), clipped to the window.")


class FrequencyPoint(_Bucket, FrequencyValue):
    """One bucket of deployment frequency."""


class FailureRatePoint(_Bucket, FailureRateValue):
    """One bucket of change failure rate."""


class ReworkRatePoint(_Bucket, ReworkRateValue):
    """One bucket of deployment rework rate."""


class DurationPoint(_Bucket, DurationValue):
    """One bucket of a duration metric."""


MetricPoint = FrequencyPoint | FailureRatePoint | ReworkRatePoint | DurationPoint


class Series(_Exact):
    """One metric per bucket, empty buckets included."""

    metric: MetricName
    unit: str = Field(description="count, seconds or ratio.")
    interval: Interval
    window: Window
    filters: Filters
    points: list[MetricPoint] = Field(description="Buckets in order.")
    freshness: Freshness = Field(description="How current the facts behind the answer are.")


class Change(_Exact):
    """A value's change against the previous window."""

    absolute: float | None = Field(description="current - previous.")
    relative: float | None = Field(description="(current - previous) / previous.")


class ThresholdLevel(_Exact):
    """A level by the benchmark's thresholds."""

    level: Level
    method: Literal["threshold"]


class NearestClusterLevel(_Exact):
    """A 2024 change failure rate level: the nearest cluster value."""

    level: Level
    method: Literal["nearest-cluster"]
    cluster_value: float
    note: str


class FrequencyLevel(_Exact):
    """A deployment frequency level, from deployment days."""

    level: Level
    method: Literal["median-deployment-days"]
    median_deployment_days_per_week: float
    median_deployment_days_per_month: float


class NoLevel(_Exact):
    """No level: no data, or no published benchmark."""

    level: None
    method: Literal["threshold", "none"]
    reason: str


class FrequencySummary(FrequencyValue):
    """Deployment frequency over the window."""

    unit: str
    previous: FrequencyValue
    change: Change
    performance: FrequencyLevel


class FailureRateSummary(FailureRateValue):
    """Change failure rate over the window."""

    unit: str
    previous: FailureRateValue
    change: Change
    performance: ThresholdLevel | NearestClusterLevel | NoLevel


class ReworkRateSummary(ReworkRateValue):
    """Deployment rework rate over the window."""

    unit: str
    previous: ReworkRateValue
    change: Change
    performance: NoLevel


class DurationSummary(DurationValue):
    """A duration metric over the window."""

    unit: str
    previous: DurationValue
    change: Change
    performance: ThresholdLevel | NoLevel


class SummaryMetrics(_Exact):
    """Every DORA metric over the window."""

    deployment_frequency: FrequencySummary
    lead_time_for_changes: DurationSummary
    change_failure_rate: FailureRateSummary
    failed_deployment_recovery_time: DurationSummary
    time_to_restore_service: DurationSummary
    deployment_rework_rate: ReworkRateSummary


class Summary(_Exact):
    """Every metric, its level and its change against the previous window."""

    window: Window
    previous_window: Window
    filters: Filters
    benchmark: Benchmark
    metrics: SummaryMetrics
    freshness: Freshness = Field(description="How current the facts behind the answer are.")


class PhasePoint(_Exact):
    """The lead-time phases of the pull requests merged in one bucket."""

    start: datetime = Field(description="Bucket start, in the request's zone.")
    end: datetime = Field(description="Bucket end (exclusive), clipped to the window.")
    pull_requests: int = Field(description="Pull requests merged in the bucket.")
    coding: DurationValue = Field(description="First commit to opened.")
    pickup: DurationValue = Field(description="Opened to first response by someone else.")
    review: DurationValue = Field(description="First response to merged.")
    deploy: DurationValue = Field(description="Merged to the first deployment shipping it.")


class Breakdown(_Exact):
    """Lead time split into coding, pickup, review and deploy time."""

    metric: Literal["lead_time_breakdown"]
    unit: Literal["seconds"]
    interval: Interval
    window: Window
    filters: Filters
    phases: list[str] = Field(description="The phases, in order.")
    points: list[PhasePoint]
    freshness: Freshness = Field(description="How current the facts behind the answer are.")


class DeploymentItem(_Exact):
    """A deployment behind deployment frequency, change failure rate or rework rate."""

    kind: Literal["deployment"]
    id: str
    external_id: str | None
    service: str
    environment: str
    result: str
    sha: str | None
    ref: str | None
    name: str | None
    started_at: datetime | None
    finished_at: datetime
    is_rework: bool
    caused_failure: bool
    changes: int = Field(description="Changes it shipped first.")
    incidents: list[str] = Field(description="Ids of the incidents linked to it.")


class ChangeItem(_Exact):
    """A change behind lead time for changes."""

    kind: Literal["change"]
    id: str
    sha: str
    repository_id: str
    environment: str
    deployment_id: str
    author_name: str | None
    message: str | None
    authored_at: datetime | None
    deployed_at: datetime
    lead_seconds: float


class IncidentItem(_Exact):
    """An incident behind a recovery metric, with the deployment DORA links it to."""

    kind: Literal["incident"]
    id: str
    external_id: str | None
    title: str | None
    url: str | None
    service: str | None
    created_at: datetime
    resolved_at: datetime | None
    restore_seconds: float | None
    deployment_id: str | None
    deployment_environment: str | None
    link_reason: str | None = Field(
        description="explicit, explicit_commit or latest_deployment; null when unlinked."
    )


DrilldownItem = Annotated[
    DeploymentItem | ChangeItem | IncidentItem, Field(discriminator="kind")
]


class Drilldown(_Exact):
    """One page of the rows behind a metric, newest first."""

    metric: MetricName
    window: Window
    filters: Filters
    items: list[DrilldownItem]
    next_cursor: str | None = Field(description="The next page's cursor; null on the last.")
    freshness: Freshness = Field(description="How current the facts behind the answer are.")


class GitLabPoint(_Exact):
    """One bucket in GitLab's DORA API shape."""

    date: date
    value: int | float | None = Field(
        description="Deployments (count), median seconds, or the failure ratio."
    )


class GitLabSeries(RootModel[list[GitLabPoint]]):
    """GitLab's DORA API answer: one ``{"date", "value"}`` per bucket, in order."""
