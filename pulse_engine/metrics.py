"""The metric contract and registry: what a metric is, and every metric plugins register.

A :class:`MetricDefinition` tells another plugin (or the frontend, through
``GET /api/v1/metrics``) everything it needs to use a metric it has never heard of: its
kind, unit, direction, the filters it supports, and an async ``compute`` returning a
typed :class:`MetricComputation` (the value over the window, one value per bucket, and how
current the data behind them is).

Kinds and what their values carry:

- ``count``: ``value`` is a number of things (``sample_size`` is the same count);
- ``ratio``: ``value = numerator / denominator`` (both given; ``value`` None on 0);
- ``distribution``: ``value`` is the median of ``sample_size`` observations, with
  ``percentiles`` (``p50``, ``p75``, ``p90``...) and the ``mean``; a distribution may
  also give its observations (``samples``), so that a median over several scopes (the
  projects of a portfolio) is recomputed from them instead of averaged;
- ``rate``: ``value`` is ``numerator`` per ``denominator`` units of time (per day...);
- ``gauge``: ``value`` is a level at the end of the window.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from pulse_engine.engine_api import Engine

MetricKind = Literal["count", "ratio", "distribution", "rate", "gauge"]
MetricInterval = Literal["day", "week", "month", "all"]
Direction = Literal["higher_is_better", "lower_is_better"]
METRIC_KINDS: tuple[str, ...] = get_args(MetricKind)
#: The filters a metric may support: query parameters of ``GET /api/v1/metrics/{name}``.
METRIC_FILTER_NAMES = ("project", "team", "repository", "environment", "service")


class MetricFilter(BaseModel):
    """A filter a metric supports: one of :data:`METRIC_FILTER_NAMES`."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="The query parameter (repeatable or comma-separated).")
    description: str = Field(description="What the filter selects.")


class MetricValue(BaseModel):
    """One value of a metric: over the whole window, or over one bucket of a series."""

    start: datetime | None = Field(default=None, description="Start of the window or bucket.")
    end: datetime | None = Field(
        default=None, description="End (exclusive) of the window or bucket."
    )
    value: float | None = Field(description="The metric's value; null when nothing to measure.")
    sample_size: int = Field(ge=0, description="How many observations the value rests on.")
    numerator: float | None = Field(default=None, description="Ratios and rates: the numerator.")
    denominator: float | None = Field(
        default=None, description="Ratios and rates: the denominator."
    )
    percentiles: dict[str, float | None] | None = Field(
        default=None, description="Distributions: p50, p75, p90... of the observations."
    )
    mean: float | None = Field(
        default=None, description="Distributions: the mean of the observations."
    )


class Freshness(BaseModel):
    """How current a metric answer is."""

    data_until: datetime | None = Field(
        description="The time of the newest data the answer reflects (null: no data yet)."
    )
    refresh_pending: bool = Field(
        description="True when data has arrived that the answer does not reflect yet."
    )


@dataclass(frozen=True)
class MetricQuery:
    """What one metric computation covers (validated by the host before ``compute``).

    :param tenant_id: the caller's tenant; compute inside ``engine.db.tenant_session``.
    :param start: inclusive start of the window (UTC).
    :param end: exclusive end of the window (UTC).
    :param interval: bucket size of the series (``all``: one bucket).
    :param tz: IANA zone in which day, week and month buckets start.
    :param filters: the supported filters given, each with its values.
    """

    tenant_id: str
    start: datetime
    end: datetime
    interval: MetricInterval = "all"
    tz: str = "UTC"
    filters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricComputation:
    """What ``compute`` returns: the window's value, the series, and the freshness."""

    value: MetricValue
    series: list[MetricValue]
    freshness: Freshness


Compute = Callable[["Engine", MetricQuery], Awaitable[MetricComputation]]


@dataclass(frozen=True)
class MetricSamples:
    """What ``samples`` returns: every observation of a distribution over a query's window.

    :param values: the observations (any order) whose linear-interpolation percentiles
        (PostgreSQL's ``percentile_cont``, numpy's default) are the computation's
        ``percentiles`` for the same query, and whose count is its ``sample_size``.
    :param freshness: how current the observations are.
    """

    values: tuple[float, ...]
    freshness: Freshness


Samples = Callable[["Engine", MetricQuery], Awaitable[MetricSamples]]


def percentile_cont(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` percentile of ``values`` (any order) as PostgreSQL's
    ``percentile_cont`` computes it, to the last bit: the value at position
    ``fraction * (n - 1)`` of the sorted values, interpolated between its two neighbours
    as ``lower + (upper - lower) * (position - floor(position))``; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    below = math.floor(position)
    lower = float(ordered[below])
    if below == math.ceil(position):
        return lower
    return lower + (float(ordered[below + 1]) - lower) * (position - below)


@dataclass(frozen=True)
class MetricDefinition:
    """A metric: what it measures, which filters it takes, and how to compute it.

    :param name: unique name, ``family.metric`` style (``dora.lead_time_for_changes``).
    :param unit: ``count``, ``seconds``, ``ratio``, ``per_day``...
    :param kind: one of :data:`METRIC_KINDS`; says which fields its values carry.
    :param description: what the number means, for people.
    :param higher_is_better: the direction of improvement.
    :param compute: ``async compute(engine, query)`` returning a :class:`MetricComputation`.
    :param filters: the filters the metric supports; any other is refused with a 422.
    :param cache_tags: invalidation tags of the data the metric reads: cached answers of
        ``GET /api/v1/metrics/{name}`` are dropped when one of them is invalidated.
    :param samples: distributions only, optional: ``async samples(engine, query)`` returning
        the window's observations (:class:`MetricSamples`; the query's ``interval`` is
        ignored), so that consumers recompute medians and percentiles over several scopes
        from the pooled observations instead of averaging medians.
    """

    name: str
    unit: str
    kind: MetricKind
    description: str
    higher_is_better: bool
    compute: Compute
    filters: tuple[MetricFilter, ...] = ()
    cache_tags: tuple[str, ...] = ()
    samples: Samples | None = None

    def __post_init__(self) -> None:
        if self.kind not in METRIC_KINDS:
            raise ValueError(f"metric {self.name}: kind must be one of {METRIC_KINDS}")
        if self.samples is not None and self.kind != "distribution":
            raise ValueError(f"metric {self.name}: only a distribution gives samples")
        names = [f.name for f in self.filters]
        if len(set(names)) != len(names):
            raise ValueError(f"metric {self.name}: a filter is named twice")
        unknown = set(names) - set(METRIC_FILTER_NAMES)
        if unknown:
            raise ValueError(
                f"metric {self.name}: filters {sorted(unknown)} are not among "
                f"{METRIC_FILTER_NAMES}"
            )

    @property
    def direction(self) -> Direction:
        """``higher_is_better`` or ``lower_is_better``."""
        return "higher_is_better" if self.higher_is_better else "lower_is_better"

    def check(self, result: Any) -> MetricComputation:
        """``result`` if it is a computation whose values carry what the kind promises."""
        if not isinstance(result, MetricComputation):
            raise TypeError(f"metric {self.name}: compute returned {type(result).__name__}")
        for value in (result.value, *result.series):
            missing = _missing_fields(self.kind, value)
            if missing:
                raise ValueError(f"metric {self.name} ({self.kind}): a value lacks {missing}")
        return result

    def check_samples(self, result: Any) -> MetricSamples:
        """``result`` if it is a :class:`MetricSamples` of finite numbers."""
        if not isinstance(result, MetricSamples):
            raise TypeError(f"metric {self.name}: samples returned {type(result).__name__}")
        if not isinstance(result.values, tuple) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in result.values
        ):
            raise ValueError(f"metric {self.name}: samples must be a tuple of finite numbers")
        return result


def _missing_fields(kind: str, value: MetricValue) -> list[str]:
    if kind in ("ratio", "rate"):
        return [name for name in ("numerator", "denominator") if getattr(value, name) is None]
    if kind == "distribution" and value.percentiles is None:
        return ["percentiles"]
    return []


class MetricCatalogEntry(BaseModel):
    """One metric in ``GET /api/v1/metrics``."""

    name: str
    plugin: str
    unit: str
    kind: MetricKind
    description: str
    direction: Direction
    filters: list[MetricFilter]


class MetricRegistry:
    """Metric definitions by name, each remembering the plugin that registered it."""

    def __init__(self) -> None:
        self._metrics: dict[str, tuple[str, MetricDefinition]] = {}

    def add(self, plugin: str, definition: MetricDefinition) -> None:
        """Register a definition; a second plugin using the same name is refused."""
        if not isinstance(definition, MetricDefinition):
            raise TypeError(f"not a MetricDefinition: {definition!r}")
        existing = self._metrics.get(definition.name)
        if existing is not None and existing[0] != plugin:
            raise ValueError(f"metric {definition.name} is already registered by {existing[0]}")
        self._metrics[definition.name] = (plugin, definition)

    def get(self, name: str) -> MetricDefinition | None:
        """A definition by name."""
        entry = self._metrics.get(name)
        return entry[1] if entry else None

    def owner(self, name: str) -> str | None:
        """The plugin that registered a metric."""
        entry = self._metrics.get(name)
        return entry[0] if entry else None

    def names(self) -> list[str]:
        """Every registered metric name, sorted."""
        return sorted(self._metrics)

    def cache_tags(self) -> tuple[str, ...]:
        """The union of every metric's cache tags."""
        return tuple(sorted({tag for _, d in self._metrics.values() for tag in d.cache_tags}))

    def catalog(self, enabled: Callable[[str], bool] | None = None) -> list[MetricCatalogEntry]:
        """The metrics whose plugin passes ``enabled`` (all by default), sorted by name."""
        return [
            MetricCatalogEntry(
                name=definition.name,
                plugin=plugin,
                unit=definition.unit,
                kind=definition.kind,
                description=definition.description,
                direction=definition.direction,
                filters=list(definition.filters),
            )
            for _, (plugin, definition) in sorted(self._metrics.items())
            if enabled is None or enabled(plugin)
        ]
