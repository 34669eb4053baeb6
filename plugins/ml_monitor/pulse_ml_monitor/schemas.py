"""Request and response models of ``/api/v1/ml/*`` (as ``/openapi.json`` describes them).

Every request model forbids unknown fields; numbers are finite and bounded (so no sum or
difference of them overflows a float), strings are bounded, times are within the engine's
range (:data:`~pulse_engine.BoundedDatetime`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from pulse_engine import BoundedDatetime, PageQuery, QueryText

#: Largest ``context`` of a feedback record, as JSON.
MAX_CONTEXT_BYTES = 65_536
#: Largest magnitude of a number the API stores (their differences stay finite).
MAX_MAGNITUDE = 1e15
Number = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-MAX_MAGNITUDE,
                                le=MAX_MAGNITUDE)]
Positive = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=MAX_MAGNITUDE)]
Count = Annotated[int, Field(strict=True, ge=0, le=1_000_000_000)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Outcome = Literal["fixed", "not_fixed", "partial", "accepted", "rejected", "pending"]
EntityType = Literal["work_item", "pull_request", "incident"]
AlertStatus = Literal["open", "acknowledged", "resolved"]
Severity = Literal["low", "medium", "high", "critical"]
Interval = Literal["day", "week", "month", "all"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- learning memory ---------------------------------------------------------------------


class LearningIn(_Strict):
    """Feedback on one AI answer."""

    question: str | None = Field(None, max_length=20_000, description="What the user asked.")
    ai_output: str = Field(min_length=1, max_length=100_000,
                           description="What the AI produced (an answer, a query).")
    error: str | None = Field(None, max_length=20_000, description="What was wrong with it.")
    error_kind: str | None = Field(None, min_length=1, max_length=200,
                                   description="A classification of the error (a rule id).")
    correction: str | None = Field(None, max_length=100_000, description="The corrected output.")
    outcome: Outcome = Field(description="What came of the feedback.")
    model: str | None = Field(None, min_length=1, max_length=200,
                              description="The model that produced the output.")
    source: str = Field("api", min_length=1, max_length=100,
                        pattern=r"^[a-z0-9_.-]+$", description="Who sends the feedback.")
    context: dict[str, Any] = Field(default_factory=dict,
                                    description="Anything else worth keeping (a JSON object "
                                    "of at most 64 KiB, finite numbers only).")

    @field_validator("context")
    @classmethod
    def _storable(cls, context: dict[str, Any]) -> dict[str, Any]:
        try:
            encoded = json.dumps(context, allow_nan=False)
        except ValueError:
            raise ValueError("numbers must be finite") from None
        if len(encoded) > MAX_CONTEXT_BYTES:
            raise ValueError(f"at most {MAX_CONTEXT_BYTES} bytes of JSON")
        return context


class LearningItem(BaseModel):
    """One stored feedback record."""

    id: str
    recorded_at: datetime
    source: str
    question: str | None
    ai_output: str
    error: str | None
    error_kind: str | None
    correction: str | None
    outcome: Outcome
    model: str | None
    recorded_by: str | None
    context: dict[str, Any]


class LearningQuery(PageQuery):
    """Filters of the learning-memory list (newest first)."""

    error_kind: QueryText | None = None
    outcome: Outcome | None = None
    source: QueryText | None = None
    model: QueryText | None = None


class LearningPage(BaseModel):
    """A page of feedback records."""

    items: list[LearningItem]
    next_cursor: str | None


# --- predictions -------------------------------------------------------------------------


class PredictionIn(_Strict):
    """A model's prediction (and, when already known, the actual outcome)."""

    model: Name
    model_version: str = Field(min_length=1, max_length=100)
    input_ref: str = Field(min_length=1, max_length=500,
                           description="What the prediction is about (an id, a URL).")
    kind: Literal["numeric", "class"]
    predicted_value: Number | None = Field(None, description="numeric: the predicted number.")
    predicted_class: Name | None = Field(None, description="class: the predicted label.")
    confidence: float | None = Field(None, ge=0, le=1, allow_inf_nan=False, strict=True,
                                     description="The model's probability of its answer.")
    predicted_at: BoundedDatetime | None = Field(None, description="Default: now.")
    actual_value: Number | None = None
    actual_class: Name | None = None

    @model_validator(mode="after")
    def _kind_fields(self) -> PredictionIn:
        check_kind_fields(self.kind, self.predicted_value, self.predicted_class, "predicted")
        if self.actual_value is not None or self.actual_class is not None:
            check_kind_fields(self.kind, self.actual_value, self.actual_class, "actual")
        return self


def check_kind_fields(kind: str, value: float | None, label: str | None, prefix: str) -> None:
    """A numeric prediction has ``<prefix>_value`` only, a class one ``<prefix>_class`` only."""
    if kind == "numeric" and (value is None or label is not None):
        raise ValueError(f"a numeric prediction has {prefix}_value and no {prefix}_class")
    if kind == "class" and (label is None or value is not None):
        raise ValueError(f"a class prediction has {prefix}_class and no {prefix}_value")


class ActualIn(_Strict):
    """The actual outcome of a prediction (the one matching its kind)."""

    actual_value: Number | None = None
    actual_class: Name | None = None
    actual_at: BoundedDatetime | None = Field(None, description="Default: now.")

    @model_validator(mode="after")
    def _one(self) -> ActualIn:
        if (self.actual_value is None) == (self.actual_class is None):
            raise ValueError("give exactly one of actual_value and actual_class")
        return self


class PredictionItem(BaseModel):
    """One stored prediction."""

    id: str
    predicted_at: datetime
    model: str
    model_version: str
    input_ref: str
    kind: Literal["numeric", "class"]
    predicted_value: float | None
    predicted_class: str | None
    confidence: float | None
    actual_value: float | None
    actual_class: str | None
    actual_at: datetime | None


class PredictionQuery(PageQuery):
    """Filters of the prediction list (newest first)."""

    model: QueryText | None = None
    model_version: QueryText | None = None
    kind: Literal["numeric", "class"] | None = None
    resolved: bool | None = Field(None, description="true: with an actual outcome only.")


class PredictionPage(BaseModel):
    """A page of predictions."""

    items: list[PredictionItem]
    next_cursor: str | None


class WindowQuery(_Strict):
    """A window (default: the last 90 days)."""

    start: BoundedDatetime | None = None
    end: BoundedDatetime | None = None


class AccuracyQuery(WindowQuery):
    """Which model's accuracy, over which window and buckets."""

    model: QueryText
    model_version: QueryText | None = None
    interval: Interval = "week"


class NumericAccuracy(BaseModel):
    """Accuracy of numeric predictions in a bucket."""

    start: datetime | None
    end: datetime | None
    count: int = Field(description="Predictions with an actual value.")
    mae: float | None = Field(description="Mean absolute error.")
    mape: float | None = Field(description="Mean absolute percentage error (ratio; 0.1 = 10%), "
                               "over the predictions whose actual value is not 0.")
    mape_excluded: int = Field(description="Predictions left out of MAPE (actual value 0).")


class ClassScore(BaseModel):
    """Precision and recall of one class."""

    label: str
    precision: float | None = Field(description="Correct / predicted as this class.")
    recall: float | None = Field(description="Correct / actually this class.")
    predicted: int
    support: int = Field(description="Predictions whose actual class is this one.")


class CalibrationBin(BaseModel):
    """Predictions whose confidence falls in [low, high)."""

    low: float
    high: float
    count: int
    mean_confidence: float
    accuracy: float


class ClassAccuracy(BaseModel):
    """Accuracy of class predictions in a bucket."""

    start: datetime | None
    end: datetime | None
    count: int
    accuracy: float | None
    macro_precision: float | None
    macro_recall: float | None
    classes: list[ClassScore]
    calibration: list[CalibrationBin]
    expected_calibration_error: float | None = Field(
        description="Sum over bins of count/total x |accuracy - mean confidence|.")
    brier_score: float | None = Field(
        description="Mean of (confidence - correct)^2 over predictions with a confidence.")
    with_confidence: int


class Accuracy(BaseModel):
    """A model's accuracy over a window: overall and per bucket."""

    model: str
    model_version: str | None
    interval: Interval
    start: datetime
    end: datetime
    numeric: NumericAccuracy
    numeric_series: list[NumericAccuracy]
    classes: ClassAccuracy
    class_series: list[ClassAccuracy]


# --- performance -------------------------------------------------------------------------


class PerformanceIn(_Strict):
    """One call of a model."""

    model: Name
    operation: Name
    latency_ms: Positive
    input_tokens: Count = 0
    output_tokens: Count = 0
    cost: Positive = 0.0
    success: StrictBool
    error_type: str | None = Field(None, min_length=1, max_length=200)
    recorded_at: BoundedDatetime | None = Field(None, description="Default: now.")


class PerformanceItem(BaseModel):
    """One stored call."""

    id: str
    recorded_at: datetime
    model: str
    operation: str
    latency_ms: float
    input_tokens: int
    output_tokens: int
    cost: float
    success: bool
    error_type: str | None


class PerformanceQuery(WindowQuery):
    """Which calls to summarise."""

    model: QueryText | None = None
    operation: QueryText | None = None


class PerformanceRecordsQuery(PageQuery):
    """Filters of the call list (newest first)."""

    model: QueryText | None = None
    operation: QueryText | None = None
    success: bool | None = None


class PerformancePage(BaseModel):
    """A page of calls."""

    items: list[PerformanceItem]
    next_cursor: str | None


class Latency(BaseModel):
    """Latency percentiles (linear interpolation), in milliseconds."""

    p50: float
    p90: float
    p95: float
    p99: float
    mean: float
    max: float


class PerformanceGroup(BaseModel):
    """One model and operation over the window."""

    model: str
    operation: str
    calls: int
    successes: int
    success_rate: float
    latency_ms: Latency
    input_tokens: int
    output_tokens: int
    cost: float


class PerformanceSummary(BaseModel):
    """Percentiles per model and operation."""

    start: datetime
    end: datetime
    groups: list[PerformanceGroup]
    truncated: bool = Field(description="True when there were more groups than listed.")


# --- anomalies ---------------------------------------------------------------------------


class AnomalyQuery(PageQuery):
    """Filters of the alert list (newest first)."""

    status: AlertStatus | None = None
    severity: Severity | None = None
    metric: QueryText | None = None
    scope: QueryText | None = None


class AnomalyItem(BaseModel):
    """One alert: an anomaly of a metric in a scope, merged while it lasts."""

    id: str
    metric: str
    scope: str
    first_at: datetime
    last_at: datetime
    peak_at: datetime
    observed: float
    expected: list[float] = Field(description="[low, high] at the peak.")
    score: float
    direction: Literal["above", "below"]
    severity: Severity
    points: int
    model: str
    status: AlertStatus
    detected_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    note: str | None


class AnomalyPage(BaseModel):
    """A page of alerts."""

    items: list[AnomalyItem]
    next_cursor: str | None


class TransitionIn(_Strict):
    """An acknowledgement or a resolution."""

    note: str | None = Field(None, max_length=2000)


class Point(_Strict):
    """One point of a series."""

    at: BoundedDatetime
    value: Number


class DetectIn(_Strict):
    """A series to check, and how."""

    series: list[Point] = Field(min_length=8, description="At least 8 points, any order.")
    seasonality: Literal["auto", "none"] | list[
        Annotated[int, Field(ge=2, le=100_000, strict=True)]] = Field(
        "auto", description="auto: inferred; none; or the seasonal periods, in points.")
    interval_seconds: float | None = Field(
        None, ge=0.001, le=31_622_400, allow_inf_nan=False, strict=True,
        description="The sampling interval (default: the median gap).")
    alpha: float = Field(0.05, ge=0.0001, le=0.2, strict=True,
                         description="The ESD test's significance.")
    max_anomaly_fraction: float = Field(0.02, gt=0, le=0.5, strict=True,
                                        description="Most anomalies the test allows, as a share.")
    direction: Literal["both", "above", "below"] = "both"

    @model_validator(mode="after")
    def _periods(self) -> DetectIn:
        if isinstance(self.seasonality, list) and len(self.seasonality) > 4:
            raise ValueError("at most 4 seasonal periods")
        return self


class DetectedPoint(BaseModel):
    """An anomalous point."""

    at: datetime
    value: float
    score: float = Field(description="Robust z-score: (value - expected) / robust sigma.")
    expected: list[float] = Field(description="[low, high]: the range the value was expected in.")


class DetectOut(BaseModel):
    """The anomalies of a series, and what the detector inferred."""

    model: str
    points: int
    interval_seconds: float
    periods: list[int]
    threshold: float
    anomalies: list[DetectedPoint]


class ScanQueued(BaseModel):
    """A queued job."""

    queued: str = Field(description="The message id.")


# --- similarity ---------------------------------------------------------------------------


class EntityRef(_Strict):
    """An entity of the caller's tenant."""

    type: EntityType
    id: str = Field(pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                    r"[0-9a-fA-F]{12}$", description="Its id (UUID).")


class SimilarIn(_Strict):
    """Find items similar to a text or to an entity."""

    text: str | None = Field(None, min_length=1, max_length=4000)
    entity: EntityRef | None = None
    entity_types: list[EntityType] | None = Field(None, min_length=1, max_length=3)
    limit: int = Field(10, ge=1, le=100, strict=True)

    @model_validator(mode="after")
    def _one(self) -> SimilarIn:
        if (self.text is None) == (self.entity is None):
            raise ValueError("give exactly one of text and entity")
        if self.text is not None and not self.text.strip():
            raise ValueError("text must not be blank")
        return self


class SimilarItem(BaseModel):
    """One similar entity."""

    entity_type: EntityType
    entity_id: str
    title: str | None
    distance: float = Field(description="Cosine distance (0 = same direction).")
    similarity: float = Field(description="1 - distance.")


class SimilarOut(BaseModel):
    """The nearest entities, nearest first."""

    model: str
    strategy: Literal["exact", "iterative", "overfetch"]
    items: list[SimilarItem]


class ReindexIn(_Strict):
    """Which entity types to embed again."""

    entity_types: list[EntityType] | None = Field(None, min_length=1, max_length=3)
    full: StrictBool = Field(False, description="Re-read every row, not only those changed.")
