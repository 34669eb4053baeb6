"""Row builders of the portfolio tests and the third-party metric plugin ``acme``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pulse_portfolio.facts import PORTFOLIO_FACTS
from sqlalchemy import text

from pulse_engine import (
    Freshness,
    MetricComputation,
    MetricDefinition,
    MetricFilter,
    MetricQuery,
    MetricSamples,
    MetricValue,
    hookimpl,
)
from pulse_engine.app import PulseEngine

FRESH = Freshness(data_until=None, refresh_pending=False)


def percentile(values: Sequence[float], fraction: float) -> float:
    """percentile_cont, written out."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class Acme:
    """A third-party plugin with metrics pulse-portfolio has never heard of. Its data is
    per (tenant, project id): review waits (a distribution with samples), escaped defects
    over releases (a ratio), incidents (a count) and a distribution without samples."""

    def __init__(self) -> None:
        self.waits: dict[tuple[str, str], list[float]] = {}
        self.escapes: dict[tuple[str, str], tuple[int, int]] = {}
        self.incidents: dict[tuple[str, str], int] = {}

    def _keys(self, data: dict[tuple[str, str], Any], query: MetricQuery) -> list[Any]:
        wanted = set(query.filters.get("project", ()))
        return [value for (tenant, project), value in sorted(data.items())
                if tenant == query.tenant_id and (not wanted or project in wanted)]

    def _bucketed(self, value: MetricValue, query: MetricQuery) -> MetricComputation:
        value = value.model_copy(update={"start": query.start, "end": query.end})
        return MetricComputation(value, [value], FRESH)

    async def wait(self, engine: Any, query: MetricQuery) -> MetricComputation:
        pooled = [v for part in self._keys(self.waits, query) for v in part]
        p = {key: percentile(pooled, f) if pooled else None
             for key, f in (("p50", 0.5), ("p75", 0.75), ("p90", 0.9))}
        return self._bucketed(MetricValue(
            value=p["p50"], sample_size=len(pooled), percentiles=p,
            mean=sum(pooled) / len(pooled) if pooled else None), query)

    async def wait_samples(self, engine: Any, query: MetricQuery) -> MetricSamples:
        return MetricSamples(tuple(v for part in self._keys(self.waits, query) for v in part),
                             FRESH)

    async def escape(self, engine: Any, query: MetricQuery) -> MetricComputation:
        parts = self._keys(self.escapes, query)
        hits, total = sum(p[0] for p in parts), sum(p[1] for p in parts)
        return self._bucketed(MetricValue(value=hits / total if total else None,
                                          sample_size=total, numerator=hits,
                                          denominator=total), query)

    async def incident_count(self, engine: Any, query: MetricQuery) -> MetricComputation:
        n = sum(self._keys(self.incidents, query))
        return self._bucketed(MetricValue(value=float(n), sample_size=n), query)

    @hookimpl
    def register_metrics(self) -> list[MetricDefinition]:
        project = (MetricFilter(name="project", description="Project ids."),)
        return [
            MetricDefinition("acme.review_wait", "seconds", "distribution", "Review waits.",
                             False, self.wait, project, samples=self.wait_samples),
            MetricDefinition("acme.median_only", "seconds", "distribution", "No samples.",
                             False, self.wait, project),
            MetricDefinition("acme.escape_rate", "ratio", "ratio", "Escaped defects.", False,
                             self.escape, project),
            MetricDefinition("acme.incidents", "count", "count", "Incidents.", False,
                             self.incident_count, project),
        ]


class Rows:
    """Inserts pulse-etl rows (projects, teams, sprints, work items, status changes) for one
    tenant with plain SQL, as any loader would."""

    def __init__(self, engine: PulseEngine, tenant_id: str) -> None:
        self.engine = engine
        self.tenant_id = tenant_id

    async def _insert(self, table: str, values: dict[str, Any]) -> str:
        ident = values.setdefault("id", str(uuid.uuid4()))
        values.setdefault("source", "test")
        if table != "commits":
            values.setdefault("external_id", ident)
        columns = ", ".join(values)
        marks = ", ".join(f":{name}" for name in values)
        async with self.engine.db.tenant_session(self.tenant_id) as session:
            await session.execute(text(
                f"INSERT INTO {table} (tenant_id, {columns}) VALUES (:tenant, {marks})"),
                {"tenant": self.tenant_id, **values})
        return ident

    async def refresh(self) -> None:
        """Recompute pulse-portfolio's facts of the tenant (what the refresh queued after a
        load does; these rows are inserted without a load)."""
        await PORTFOLIO_FACTS.refresh(self.engine, self.tenant_id)

    async def project(self, name: str, key: str | None = None) -> str:
        return await self._insert("projects", {"name": name, "key": key or name.upper()})

    async def repository(self, name: str, project_id: str | None = None) -> str:
        return await self._insert("repositories", {"name": name, "service": name,
                                                   "project_id": project_id})

    async def person(self, email: str) -> str:
        person = await self._insert("people", {"display_name": email, "email": email})
        return await self._insert("person_identities", {"person_id": person, "email": email,
                                                        "name": email})

    async def commit(self, repository_id: str, identity_id: str, when: datetime) -> str:
        sha = uuid.uuid4().hex + "00000000"
        return await self._insert("commits", {
            "repository_id": repository_id, "sha": sha, "author_identity_id": identity_id,
            "authored_at": when, "committed_at": when, "message": "work"})

    async def team(self, name: str, project_id: str | None) -> str:
        return await self._insert("teams", {"name": name, "project_id": project_id})

    async def sprint(self, project_id: str, name: str, started: datetime,
                     ended: datetime) -> str:
        return await self._insert("sprints", {"project_id": project_id, "name": name,
                                              "state": "closed", "started_at": started,
                                              "ended_at": ended, "completed_at": ended})

    async def item(self, project_id: str | None, *, type: str = "story", status: str = "Done",
                   created: datetime, resolved: datetime | None = None,
                   points: float | None = None, sprint_id: str | None = None,
                   labels: Sequence[str] = (), key: str | None = None,
                   changes: Sequence[tuple[datetime, str]] = ()) -> str:
        ident = await self._insert("work_items", {
            "project_id": project_id, "type": type, "status": status, "points": points,
            "sprint_id": sprint_id, "labels": list(labels), "key": key,
            "created_at_source": created, "resolved_at": resolved})
        previous = None
        for moment, status_name in changes:
            await self._insert("work_item_status_changes", {
                "work_item_id": ident, "changed_at": moment, "from_status": previous,
                "to_status": status_name})
            previous = status_name
        return ident
