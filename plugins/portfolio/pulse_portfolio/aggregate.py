"""Cross-project aggregation of any catalog metric, with the right arithmetic for its kind.

A metric is read once per project (its ``project`` filter, the project's id) through its
own ``compute`` (and, for a distribution, its ``samples``); teams and the tenant are then
combined from those parts, never recomputed by averaging:

* ``count``: the values are summed (as are the sample sizes);
* ``ratio`` and ``rate``: the sum of the numerators over the sum of the denominators;
* ``distribution``: the median, percentiles and mean of the pooled observations (the
  metric's ``samples``); a distribution without samples gets no team or tenant value,
  because a median of medians is not a median;
* ``gauge``: summed when its unit is ``count`` (items in progress...), else not combined.

A team's parts are the projects it belongs to (``teams.project_id``); the tenant's are all
its projects. Data outside every project is in no project's part and so not in the
tenant's combination; the tenant's own direct read is given beside it (``direct``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import text

from pulse_engine import (
    MetricDefinition,
    MetricQuery,
    MetricValue,
    Problem,
    invalid_field,
    percentile_cont,
)

if TYPE_CHECKING:
    from pulse_engine import Engine

#: Reads of one aggregation run at most this many at once (each is its own transaction).
CONCURRENCY = 4
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")


@dataclass(frozen=True)
class Part:
    """One scope's read of a metric: its value and, for a distribution, its samples."""

    value: MetricValue
    samples: tuple[float, ...] | None = None


def combinable(definition: MetricDefinition) -> bool:
    """Whether parts of this metric can be combined into a team or tenant value."""
    if definition.kind == "distribution":
        return definition.samples is not None
    if definition.kind == "gauge":
        return definition.unit == "count"
    return True


def combine(definition: MetricDefinition, parts: Sequence[Part], start: datetime | None = None,
            end: datetime | None = None) -> MetricValue | None:
    """The value of the union of ``parts`` (None when the kind cannot be combined)."""
    if not combinable(definition):
        return None
    kind = definition.kind
    values = [part.value for part in parts]
    if kind in ("count", "gauge"):
        present = [v.value for v in values if v.value is not None]
        total = float(sum(present)) if present else None
        return MetricValue(start=start, end=end, value=total,
                           sample_size=sum(v.sample_size for v in values))
    if kind in ("ratio", "rate"):
        numerator = float(sum(v.numerator or 0.0 for v in values))
        denominator = float(sum(v.denominator or 0.0 for v in values))
        return MetricValue(
            start=start, end=end, value=numerator / denominator if denominator else None,
            sample_size=sum(v.sample_size for v in values), numerator=numerator,
            denominator=denominator)
    pooled = [x for part in parts for x in (part.samples or ())]
    keys = sorted({key for v in values for key in (v.percentiles or {})
                   if _PERCENTILE.match(key)} | {"p50", "p75", "p90"},
                  key=lambda key: float(key[1:]))
    if not pooled:
        return MetricValue(start=start, end=end, value=None, sample_size=0,
                           percentiles={key: None for key in keys}, mean=None)
    percentiles: dict[str, float | None] = {
        key: percentile_cont(pooled, float(key[1:]) / 100) for key in keys}
    return MetricValue(start=start, end=end, value=percentiles["p50"], sample_size=len(pooled),
                       percentiles=percentiles, mean=float(np.mean(pooled)))


async def read_part(engine: Engine, definition: MetricDefinition, query: MetricQuery,
                    with_samples: bool) -> Part:
    """One read of ``definition``. A distribution with samples is read through them alone
    (the contract makes their percentiles the computation's), one call instead of two."""
    if with_samples and definition.samples is not None:
        samples = definition.check_samples(await definition.samples(engine, query)).values
        value = combine(definition, [Part(MetricValue(value=None, sample_size=0), samples)],
                        query.start, query.end)
        assert value is not None
        return Part(value, samples)
    computed = definition.check(await definition.compute(engine, query))
    return Part(computed.value, None)


async def scopes(engine: Engine, tenant_id: str, limit: int) -> tuple[list[dict[str, Any]],
                                                                       list[dict[str, Any]]]:
    """The tenant's projects and teams (at most ``limit`` projects, else a 422)."""
    async with engine.db.tenant_session(tenant_id) as session:
        projects = [dict(row) for row in (await session.execute(text(
            "SELECT CAST(id AS text) AS id, key, name FROM projects ORDER BY name, id "
            "LIMIT :limit"), {"limit": limit + 1})).mappings()]
        teams = [dict(row) for row in (await session.execute(text(
            "SELECT CAST(id AS text) AS id, name, CAST(project_id AS text) AS project_id "
            "FROM teams ORDER BY name, id LIMIT 1000"))).mappings()]
    if len(projects) > limit:
        raise Problem(422, "too-many-projects",
                      f"The tenant has more than {limit} projects; the operator's limit is "
                      f"PULSE_PORTFOLIO_MAX_PROJECTS.", limit=limit)
    return projects, teams


async def usable_metric(engine: Engine, tenant_id: str, name: str,
                        field: str = "metric") -> MetricDefinition:
    """A catalog metric whose plugin is enabled for the tenant; 422 naming ``field`` if not."""
    definition = engine.metrics.get(name)
    owner = engine.metrics.owner(name)
    if definition is None or owner is None or not await engine.capabilities.is_enabled(
            tenant_id, owner):
        raise invalid_field(field, f"no metric named {name!r} in the catalog (GET /metrics)",
                            type="unknown_metric")
    return definition


async def aggregate(engine: Engine, definition: MetricDefinition, tenant_id: str,
                    start: datetime, end: datetime, tz: str, limit: int) -> dict[str, Any]:
    """``definition`` per project, per team and for the tenant over ``[start, end)``."""
    projects, teams = await scopes(engine, tenant_id, limit)
    per_project = "project" in {f.name for f in definition.filters}
    gate = asyncio.Semaphore(CONCURRENCY)

    async def read(filters: dict[str, tuple[str, ...]]) -> Part:
        async with gate:
            return await read_part(engine, definition, MetricQuery(
                tenant_id, start, end, "all", tz, filters), with_samples=True)

    direct_task = read({})
    part_tasks = [read({"project": (p["id"],)}) for p in projects] if per_project else []
    direct, *parts = await asyncio.gather(direct_task, *part_tasks)
    by_project = {p["id"]: part for p, part in zip(projects, parts, strict=True)}
    combined = combine(definition, list(by_project.values()), start, end) if per_project \
        else None
    return {
        "metric": definition.name,
        "kind": definition.kind,
        "unit": definition.unit,
        "window": {"start": start, "end": end, "tz": tz},
        "aggregation": aggregation_rule(definition),
        "per_project": per_project,
        "projects": [
            {"id": p["id"], "key": p["key"], "name": p["name"], "value": by_project[p["id"]].value}
            for p in projects] if per_project else [],
        "teams": [
            {"id": t["id"], "name": t["name"],
             "projects": [t["project_id"]] if t["project_id"] in by_project else [],
             "value": combine(definition, [by_project[t["project_id"]]]
                              if t["project_id"] in by_project else [], start, end)}
            for t in teams] if per_project else [],
        "tenant": {"value": combined, "direct": direct.value},
    }


def aggregation_rule(definition: MetricDefinition) -> str:
    """How parts of this metric are combined, in words."""
    if definition.kind == "count":
        return "sum of the projects' counts"
    if definition.kind in ("ratio", "rate"):
        return "sum of the numerators over the sum of the denominators"
    if definition.kind == "distribution":
        return ("percentiles of the pooled samples" if definition.samples is not None
                else "not combined: the metric gives no samples (a median of medians is "
                "not a median)")
    return "sum of the levels" if definition.unit == "count" else "not combined (a gauge)"
