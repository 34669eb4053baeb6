"""Built-in plugin: the metric catalog and any metric's value, whatever plugin computes it.

``GET /api/v1/metrics`` lists every metric of the plugins enabled for the caller's tenant;
``GET /api/v1/metrics/{name}`` validates the window and the filters against the metric's
definition and answers its value, series and freshness. The owning plugin of a metric is
the owner of the call: a metric whose plugin is disabled for the tenant answers 404, one
whose plugin failed answers 503, exactly as that plugin's own routes would.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint
from quart_schema import validate_querystring, validate_response

from pulse_engine import hookimpl
from pulse_engine.cache import CachePolicy
from pulse_engine.metrics import (
    METRIC_FILTER_NAMES,
    Direction,
    Freshness,
    MetricCatalogEntry,
    MetricInterval,
    MetricKind,
    MetricQuery,
    MetricValue,
)
from pulse_engine.openapi import path_choices
from pulse_engine.problems import Problem, invalid_field, problem_responses
from pulse_engine.queryparams import (
    BoundedDatetime,
    QueryList,
    TimeZoneName,
    check_time_zone,
    check_window,
)
from pulse_engine.tenancy import current_tenant_id

if TYPE_CHECKING:
    from pulse_engine.app import PulseEngine

ENDPOINT = "metrics.read_metric"
DEFAULT_WINDOW = timedelta(days=30)
CACHE_SECONDS = 300.0


class MetricCatalog(BaseModel):
    """``GET /api/v1/metrics``."""

    metrics: list[MetricCatalogEntry]


class MetricReadQuery(BaseModel):
    """The window, buckets and filters of one metric read."""

    model_config = ConfigDict(extra="forbid")

    start: BoundedDatetime | None = Field(
        default=None, description="Start (default: end - 30 days)."
    )
    end: BoundedDatetime | None = Field(default=None, description="End, exclusive (default: now).")
    interval: MetricInterval = Field(default="all", description="Bucket size of the series.")
    tz: TimeZoneName = Field(default="UTC", description="IANA zone in which buckets start.")
    project: QueryList | None = Field(default=None, description="Project names or ids.")
    team: QueryList | None = Field(default=None, description="Team names or ids.")
    repository: QueryList | None = Field(default=None, description="Repository names or ids.")
    environment: QueryList | None = Field(default=None, description="Deployment environments.")
    service: QueryList | None = Field(default=None, description="Services.")


class MetricWindow(BaseModel):
    """The window a metric answer covers."""

    start: datetime
    end: datetime


class MetricAnswer(BaseModel):
    """``GET /api/v1/metrics/{name}``: the value over the window, the series, the freshness."""

    metric: str
    plugin: str
    unit: str
    kind: MetricKind
    direction: Direction
    window: MetricWindow
    interval: MetricInterval
    tz: str
    filters: dict[str, list[str]]
    value: MetricValue
    series: list[MetricValue]
    freshness: Freshness


@hookimpl
def register_routes(engine: PulseEngine) -> Blueprint:
    """The catalog and the metric read."""
    blueprint = Blueprint("metrics", __name__, url_prefix=f"{engine.settings.api_v1_prefix}")
    engine.delegated_owners[ENDPOINT] = lambda view_args: engine.metrics.owner(
        str(view_args.get("name", ""))
    )

    @blueprint.get("/metrics")
    @validate_response(MetricCatalog, 200)
    @problem_responses()
    async def metric_catalog() -> MetricCatalog:
        """Every metric of the plugins enabled for the caller's tenant."""
        tenant_id = current_tenant_id()
        usable = set()
        for plugin in {engine.metrics.owner(name) for name in engine.metrics.names()}:
            if plugin is None or engine.plugins.is_failed(plugin):
                continue
            if await engine.capabilities.is_enabled(tenant_id, plugin):
                usable.add(plugin)
        return MetricCatalog(metrics=engine.metrics.catalog(lambda plugin: plugin in usable))

    @blueprint.get("/metrics/<name>")
    @path_choices("name", engine.metrics.names)
    @validate_querystring(MetricReadQuery)
    @validate_response(MetricAnswer, 200)
    @problem_responses(503)
    async def read_metric(name: str, query_args: MetricReadQuery) -> MetricAnswer:
        """One metric over a window, bucketed by ``interval``, with the given filters."""
        definition = engine.metrics.get(name)
        plugin = engine.metrics.owner(name)
        if definition is None or plugin is None:
            raise Problem(404, "metric-not-found", f"No metric named '{name}'; see /metrics.")
        supported = {f.name for f in definition.filters}
        filters: dict[str, tuple[str, ...]] = {}
        for filter_name in METRIC_FILTER_NAMES:
            values = getattr(query_args, filter_name)
            if values is None:
                continue
            if filter_name not in supported:
                raise invalid_field(
                    filter_name,
                    f"{name} does not support this filter; it supports: "
                    f"{', '.join(sorted(supported)) or 'none'}",
                    type="unsupported_filter",
                )
            filters[filter_name] = tuple(values)
        end = query_args.end or datetime.now(UTC).replace(microsecond=0)
        start = query_args.start or end - DEFAULT_WINDOW
        check_window(start, end, query_args.interval)
        await check_time_zone(engine, query_args.tz)
        query = MetricQuery(
            tenant_id=current_tenant_id(),
            start=start,
            end=end,
            interval=query_args.interval,
            tz=query_args.tz,
            filters=filters,
        )
        result = definition.check(await definition.compute(engine, query))
        return MetricAnswer(
            metric=name,
            plugin=plugin,
            unit=definition.unit,
            kind=definition.kind,
            direction=definition.direction,
            window=MetricWindow(start=start, end=end),
            interval=query_args.interval,
            tz=query_args.tz,
            filters={key: list(values) for key, values in filters.items()},
            value=result.value,
            series=result.series,
            freshness=result.freshness,
        )

    return blueprint


@hookimpl
def register_cache_policies(engine: PulseEngine) -> list[CachePolicy]:
    """Metric reads are cached per tenant; any metric's data tags drop them."""
    return [CachePolicy(ENDPOINT, ttl=CACHE_SECONDS, tags=engine.metrics.cache_tags())]

