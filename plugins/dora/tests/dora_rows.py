"""The row builder of the DORA tests, and small time helpers.

Rows go straight into pulse-etl's tables inside the tenant-bound session, including
``deployment_commits``, so every expected number below is computed by hand from the rows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pulse_dora.refresh import DORA_FACTS
from pulse_etl import model
from sqlalchemy import insert, text

from pulse_engine import RefreshResult
from pulse_engine.app import PulseEngine


def at(text: str) -> datetime:
    """A UTC time from ``YYYY-MM-DD HH:MM``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


#: The environments the tenant's default configuration calls production.
PRODUCTION = ("production", "prod")


def percentile(values: list[float], fraction: float) -> float:
    """PostgreSQL's ``percentile_cont``: linear interpolation between the closest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def new_id() -> str:
    """A fresh UUID string."""
    return str(uuid.uuid4())


class Rows:
    """Builds one tenant's unified-model rows through pulse-etl's tables."""

    def __init__(self, engine: PulseEngine, tenant_id: str) -> None:
        self.engine = engine
        self.tenant_id = tenant_id
        self.shas = 0

    async def add(self, table: Any, **values: Any) -> str:
        """Insert one row (``id`` generated unless given); returns its id."""
        if "id" in table.c and "id" not in values:
            values["id"] = new_id()
        if "source" in table.c and "source" not in values:
            values["source"] = "test"
        if "external_id" in table.c and "external_id" not in values:
            values["external_id"] = values.get("id", new_id())
        async with self.engine.db.tenant_session(self.tenant_id) as session:
            await session.execute(insert(table).values(tenant_id=self.tenant_id, **values))
        return str(values.get("id", ""))

    async def project(self, name: str) -> str:
        """A project."""
        return await self.add(model.projects, name=name, key=name.upper())

    async def team(self, name: str, project_id: str) -> str:
        """A team of a project."""
        return await self.add(model.teams, name=name, project_id=project_id)

    async def repository(self, name: str, project_id: str | None = None) -> str:
        """A repository whose service has its name."""
        return await self.add(
            model.repositories, name=name, service=name, project_id=project_id
        )

    async def commit(
        self, repository_id: str, authored: str, *, is_merge: bool = False,
        message: str = "change", pull_request_number: int | None = None,
    ) -> str:
        """A commit authored at ``authored`` (UTC); returns its SHA."""
        self.shas += 1
        sha = f"{self.shas:040x}"
        await self.add(
            model.commits, repository_id=repository_id, sha=sha, authored_at=at(authored),
            committed_at=at(authored), is_merge=is_merge, message=message,
            pull_request_number=pull_request_number,
        )
        return sha

    async def deployment(
        self, repository_id: str, service: str, finished: str, *, environment: str = "production",
        result: str = "success", shas: tuple[str, ...] = (), ref: str = "main",
        name: str = "deploy",
    ) -> str:
        """A deployment finished at ``finished`` that shipped ``shas``."""
        deployment_id = await self.add(
            model.deployments, repository_id=repository_id, service=service,
            environment=environment, result=result, started_at=at(finished),
            finished_at=at(finished), sha=shas[-1] if shas else None, ref=ref, name=name,
        )
        for sha in shas:
            await self.add(
                model.deployment_commits, deployment_id=deployment_id,
                repository_id=repository_id, environment=environment, sha=sha,
            )
        return deployment_id

    async def incident(
        self, service: str, created: str, resolved: str | None, *,
        deployment_ref: str | None = None, external_id: str | None = None,
    ) -> str:
        """An incident of ``service``."""
        values: dict[str, Any] = {
            "service": service, "created_at_source": at(created),
            "resolved_at": at(resolved) if resolved else None,
            "deployment_ref": deployment_ref, "title": "outage",
        }
        if external_id is not None:
            values["external_id"] = external_id
        return await self.add(model.incidents, **values)

    async def refresh(self, since: datetime | None = None) -> RefreshResult:
        """Recompute the tenant's DORA facts."""
        return await DORA_FACTS.refresh(self.engine, self.tenant_id, since)


async def forget_migration_refreshes(engine: PulseEngine) -> None:
    """Drop the refreshes ``dora_0004`` recorded for every tenant with facts when a test
    re-ran it (the database is shared by the session: later apps would queue them)."""
    async with engine.db.system_session() as session:
        await session.execute(text(
            "DELETE FROM facts_refresh_requests WHERE facts = 'dora' "
            "AND requested_at = timestamptz 'epoch'"))
