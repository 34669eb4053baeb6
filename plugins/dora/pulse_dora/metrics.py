"""DORA's six metrics under the engine's metric contract (:class:`MetricDefinition`).

``compute`` goes through the same scope resolution and the same SQL as the DORA routes,
so its value equals the summary's (and ``GET {metric}?interval=all``) and its series
equals ``GET {metric}`` for the same window, zone, interval and filters.

Kinds:

* ``deployment_frequency`` is a ``count``: the value is the number of successful
  deployments (null when there are none, as the routes say), like the routes' ``value``;
  the per-day rate stays a field of the DORA routes. A rate kind would make the contract's
  value differ from the routes' for the same window.
* ``change_failure_rate`` and ``deployment_rework_rate`` are ``ratio``\\ s: numerator the
  failed (rework) deployments, denominator the successful deployments.
* the three durations are ``distribution``\\ s: the value is the median, with ``p50``,
  ``p75``, ``p90`` and the mean; their ``samples`` are the durations those are computed
  from (so a consumer pooling projects recomputes the median instead of averaging).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pulse_dora import queries
from pulse_dora.config import DoraSettings
from pulse_dora.params import open_scope, scope_query
from pulse_engine import (
    MetricComputation,
    MetricDefinition,
    MetricFilter,
    MetricKind,
    MetricQuery,
    MetricSamples,
    MetricValue,
)

if TYPE_CHECKING:
    from pulse_engine import Engine

KINDS: dict[str, MetricKind] = {
    "deployment_frequency": "count",
    "lead_time_for_changes": "distribution",
    "change_failure_rate": "ratio",
    "failed_deployment_recovery_time": "distribution",
    "time_to_restore_service": "distribution",
    "deployment_rework_rate": "ratio",
}

DESCRIPTIONS = {
    "deployment_frequency": "Successful production deployments.",
    "lead_time_for_changes": "Seconds from a change's author time to the first successful "
    "production deployment that shipped it (median; p75, p90, mean).",
    "change_failure_rate": "Share of successful production deployments linked to an incident "
    "(or followed by a failed one, when configured).",
    "failed_deployment_recovery_time": "Seconds from the start to the resolution of incidents "
    "linked to a deployment (median; p75, p90, mean).",
    "time_to_restore_service": "Seconds from creation to resolution of every resolved "
    "incident (median; p75, p90, mean).",
    "deployment_rework_rate": "Share of successful production deployments that were unplanned "
    "fixes of a production incident (hotfixes).",
}

HIGHER_IS_BETTER = frozenset({"deployment_frequency"})

#: The filters of every DORA metric: the DORA routes' own query parameters.
FILTERS = (
    MetricFilter(name="environment", description="Environments (default: the tenant's "
                 "production environments)."),
    MetricFilter(name="team", description="Teams by id or name: the repositories of their "
                 "projects."),
    MetricFilter(name="project", description="Projects by id, key or name."),
    MetricFilter(name="repository", description="Repositories by id, name or service."),
)

#: The numerator of each ratio in a DORA point.
_NUMERATORS = {
    "change_failure_rate": "failed_deployments",
    "deployment_rework_rate": "rework_deployments",
}


def metric_value(metric: str, point: dict[str, Any]) -> MetricValue:
    """A DORA point (a bucket of :func:`pulse_dora.queries.series`) as a contract value."""
    kind = KINDS[metric]
    return MetricValue(
        start=point["start"],
        end=point["end"],
        value=point["value"],
        sample_size=point["sample_size"],
        numerator=point[_NUMERATORS[metric]] if kind == "ratio" else None,
        denominator=point["deployments"] if kind == "ratio" else None,
        percentiles={"p50": point["median"], "p75": point["p75"], "p90": point["p90"]}
        if kind == "distribution" else None,
        mean=point["mean"] if kind == "distribution" else None,
    )


def definitions(settings: DoraSettings, cache_tags: tuple[str, ...]) -> list[MetricDefinition]:
    """The six DORA metric definitions (names ``dora.<metric>``)."""

    def computer(metric: str) -> Callable[[Engine, MetricQuery], Awaitable[MetricComputation]]:
        async def compute(engine: Engine, query: MetricQuery) -> MetricComputation:
            """``metric`` over the query's window and, per bucket, its interval."""
            written = scope_query({
                "start": query.start, "end": query.end, "tz": query.tz,
                **{name: list(values) for name, values in query.filters.items()},
            })
            scoped = await open_scope(
                engine, settings, query.tenant_id, written.window(), written.filters(),
                interval=query.interval,
            )
            async with engine.db.tenant_session(query.tenant_id) as session:
                points, whole = await queries.series_and_aggregate(session, metric, scoped.scope)
            return MetricComputation(
                value=metric_value(metric, whole),
                series=[metric_value(metric, point) for point in points],
                freshness=scoped.freshness,
            )

        return compute

    def sampler(metric: str) -> Callable[[Engine, MetricQuery], Awaitable[MetricSamples]]:
        async def samples(engine: Engine, query: MetricQuery) -> MetricSamples:
            """The observations of ``metric`` over the query's window."""
            written = scope_query({
                "start": query.start, "end": query.end, "tz": query.tz,
                **{name: list(values) for name, values in query.filters.items()},
            })
            scoped = await open_scope(
                engine, settings, query.tenant_id, written.window(), written.filters(),
                interval="all",
            )
            async with engine.db.tenant_session(query.tenant_id) as session:
                values = await queries.samples(session, metric, scoped.scope)
            return MetricSamples(values=values, freshness=scoped.freshness)

        return samples

    return [
        MetricDefinition(
            name=f"dora.{metric}",
            unit=queries.UNITS[metric],
            kind=KINDS[metric],
            description=DESCRIPTIONS[metric],
            higher_is_better=metric in HIGHER_IS_BETTER,
            compute=computer(metric),
            filters=FILTERS,
            cache_tags=cache_tags,
            samples=sampler(metric) if KINDS[metric] == "distribution" else None,
        )
        for metric in queries.METRICS
    ]
