"""Query parameters of the GitHub analytics endpoints, and their resolution into a scope.

Every endpoint takes the window (``start``, ``end``: ISO 8601 dates or date-times, UTC
when no offset is written, default the :data:`DEFAULT_WINDOW_DAYS` days before now), the
zone of its buckets (``tz``) and the filters (``project``, ``team``, ``repository``,
``person``). :func:`open_scope` checks what needs the tenant and the data, naming the
parameter in a 422: the zone against the database, the window against the tenant's
longest window and its number of buckets, and each filter value against the tenant's
rows (unknown ones refused). ``person`` is a per-person breakdown: it needs a role the
tenant's privacy setting allows (403 otherwise).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_engine import (
    BoundedDatetime,
    PageQuery,
    Problem,
    QueryList,
    TimeZoneName,
    calendar_buckets,
    check_time_zone,
    check_window,
    current_principal,
    invalid_field,
)
from pulse_github.config import GithubConfig, GithubSettings, allows_people, tenant_config

if TYPE_CHECKING:
    from pulse_engine import Engine

Interval = Literal["day", "week", "month", "all"]

DEFAULT_WINDOW_DAYS = 90


class ScopeQuery(BaseModel):
    """The window and filters every GitHub analytics endpoint takes."""

    model_config = ConfigDict(extra="forbid")

    start: BoundedDatetime | None = Field(
        None, description="Start of the window (inclusive), ISO 8601 date or date-time (UTC "
        f"when no offset is written). Default: {DEFAULT_WINDOW_DAYS} days before end.")
    end: BoundedDatetime | None = Field(
        None, description="End of the window (exclusive), like start. Default: now.")
    tz: TimeZoneName = Field(
        "UTC", description="IANA zone of the day, week (Monday) and month buckets and of "
        "active days.")
    project: QueryList | None = Field(None, description="Projects by id, key or name.")
    team: QueryList | None = Field(
        None, description="Teams by id or name: the repositories of their projects.")
    repository: QueryList | None = Field(None, description="Repositories by id or name.")
    person: QueryList | None = Field(
        None, description="People by id or email (their merged identities); a per-person "
        "breakdown, for the roles the tenant allows.")


class IntervalQuery(ScopeQuery):
    """A scope and a bucket size."""

    interval: Interval = Field("all", description="Bucket size; all: the whole window.")


class ListQuery(ScopeQuery, PageQuery):
    """A scope and a page."""


class IntervalListQuery(IntervalQuery, PageQuery):
    """A scope, a bucket size and a page."""


class AbsenceQuery(ScopeQuery):
    """``contributor-absence-factor``: a scope and what a contribution weighs."""

    by: Literal["commits", "lines"] = Field(
        "commits", description="Weigh people by their non-merge commits, or by the lines "
        "they added and deleted.")


class SiloQuery(ListQuery):
    """``knowledge-silos``: a scope, a page, and the least activity that counts."""

    kind: Literal["file", "directory"] = Field("file", description="Files or directories.")
    min_commits: int = Field(
        2, ge=1, le=1_000_000, description="Least non-merge commits in the window for a "
        "file or directory to be reported.")


@dataclass(frozen=True)
class Scope:
    """A request resolved against its tenant: window, buckets, filters and privacy."""

    tenant_id: str
    start: datetime
    end: datetime
    tz: str
    interval: str
    #: the repositories the filters leave (maybe none; all of the tenant's without filters)
    repository_ids: tuple[str, ...]
    person_ids: tuple[str, ...] | None
    config: GithubConfig
    #: whether the caller may see per-person breakdowns
    people_visible: bool
    #: no project, team or repository filter: ``repository_ids`` are all of the tenant's
    every_repository: bool = False

    @cached_property
    def bucket_bounds(self) -> list[tuple[datetime, datetime]]:
        """Every bucket of the scope's window, ``(start, end)`` clipped to the window; the key
        of a bucket is its unclipped start (what :func:`pulse_github.queries.bucket_sql`
        gives)."""
        return [(lower.astimezone(UTC), upper.astimezone(UTC)) for lower, upper
                in calendar_buckets(self.start, self.end, self.interval, self.tz)]

    @cached_property
    def day_starts(self) -> list[datetime]:
        """The start of every day (in ``tz``) of the window, the first one's unclipped (the
        days of :func:`pulse_github.queries.day_sql`)."""
        return [start for start, _ in replace(self, interval="day").bucket_bounds]

    def params(self) -> dict[str, object]:
        """The bind parameters every query of this scope uses."""
        return {
            "start": self.start, "end": self.end, "tz": self.tz,
            "bucket_starts": [start for start, _ in self.bucket_bounds],
            "day_starts": self.day_starts,
            "tenant": self.tenant_id, "repos": list(self.repository_ids),
            "people": list(self.person_ids or ()),
            "bots": self.config.bot_patterns or ["$^"],
            "environments": self.config.production_environments,
        }

    @staticmethod
    def repository_clause(alias: str) -> str:
        """SQL restricting ``alias`` (a tenant table) to the tenant and the scope's
        repositories (the leading columns of every index of the tables read)."""
        return (f" {alias}.tenant_id = CAST(:tenant AS uuid)"
                f" AND {alias}.repository_id = ANY(CAST(:repos AS uuid[]))")

    def person_clause(self, column: str) -> str:
        """SQL restricting a person id ``column`` to the filtered people ("" for all)."""
        if self.person_ids is None:
            return ""
        return f" AND {column} = ANY(CAST(:people AS uuid[]))"

    def with_window(self, start: datetime, end: datetime) -> Scope:
        """The same scope over another window."""
        return replace(self, start=start, end=end)


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

_LOOKUPS = {
    "team": """
        SELECT t.project_id, v.value FROM teams t
        CROSS JOIN LATERAL (VALUES (t.id::text), (lower(t.name)), (lower(t.external_id))) v(value)
        WHERE v.value = ANY(:names)""",
    "project": """
        SELECT p.id, v.value FROM projects p
        CROSS JOIN LATERAL (VALUES (p.id::text), (lower(p.key)), (lower(p.name)),
                                   (lower(p.external_id))) v(value)
        WHERE v.value = ANY(:names)""",
    "repository": """
        SELECT r.id, v.value FROM repositories r
        CROSS JOIN LATERAL (VALUES (r.id::text), (lower(r.name)), (lower(r.external_id))) v(value)
        WHERE v.value = ANY(:names)""",
    "person": """
        SELECT p.id, v.value FROM people p
        CROSS JOIN LATERAL (VALUES (p.id::text), (lower(p.email))) v(value)
        WHERE v.value = ANY(:names)
        UNION ALL
        SELECT i.person_id, v.value FROM person_identities i
        CROSS JOIN LATERAL (VALUES (lower(i.email)), (lower(i.username))) v(value)
        WHERE v.value = ANY(:names)""",
}


async def lookup(session: AsyncSession, parameter: str, values: Sequence[str]) -> set[str]:
    """The ids ``values`` name (ids written in any case); 422 naming ``parameter`` for a
    value that names nothing."""
    names = [str(uuid.UUID(value)) if _UUID.match(value) else value.lower() for value in values]
    rows = (await session.execute(text(_LOOKUPS[parameter]), {"names": names})).all()
    found = {str(row[1]) for row in rows}
    unknown = [value for value, name in zip(values, names, strict=True) if name not in found]
    if unknown:
        raise invalid_field(parameter, f"unknown {parameter}: {', '.join(unknown[:5])}")
    return {str(row[0]) for row in rows if row[0] is not None}


async def _repositories(session: AsyncSession, query: ScopeQuery) -> tuple[str, ...]:
    """The repositories the project, team and repository filters leave (every one of the
    tenant's without filters)."""
    chosen: set[str] | None = None
    projects: set[str] | None = None
    if query.team:
        projects = await lookup(session, "team", query.team)
    if query.project:
        named = await lookup(session, "project", query.project)
        projects = named if projects is None else projects & named
    if projects is not None:
        rows = await session.execute(
            text("SELECT id FROM repositories WHERE project_id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": sorted(projects)})
        chosen = {str(row[0]) for row in rows}
    if query.repository:
        named = await lookup(session, "repository", query.repository)
        chosen = named if chosen is None else chosen & named
    if chosen is None:  # every repository, named so that each query reads its indexes
        rows = await session.execute(text("SELECT id FROM repositories"))
        chosen = {str(row[0]) for row in rows}
    return tuple(sorted(chosen))


def window(query: ScopeQuery, max_days: int) -> tuple[datetime, datetime]:
    """``(start, end)`` in UTC with the defaults; 422 for a reversed or too long window."""
    end = query.end or datetime.now(UTC).replace(microsecond=0)
    start = query.start or end - timedelta(days=DEFAULT_WINDOW_DAYS)
    if end <= start:
        raise invalid_field("end", "must be after start")
    if end - start > timedelta(days=max_days):
        raise invalid_field("start", f"the window may span at most {max_days} days")
    return start, end


def people_forbidden() -> Problem:
    """The 403 answer to a per-person request from a role the tenant does not allow."""
    return Problem(403, "person-breakdown-forbidden",
                   "This tenant shows per-person breakdowns only to the roles its GitHub "
                   "analytics setting (person_breakdown_roles) allows.")


async def open_scope(engine: Engine, settings: GithubSettings, tenant_id: str,
                     query: ScopeQuery, *, interval: str = "all", role: str | None = None,
                     needs_people: bool = False) -> Scope:
    """Resolve a request's :class:`Scope`.

    :param role: the caller's role (default: the current principal's).
    :param needs_people: the endpoint is a per-person breakdown: 403 for a role the
        tenant does not allow.
    """
    config = await tenant_config(engine, tenant_id)
    if role is None:
        role = current_principal().role
    visible = allows_people(config, role)
    if (needs_people or query.person) and not visible:
        raise people_forbidden()
    bounds = window(query, config.max_window_days or settings.max_window_days)
    check_window(*bounds, interval, max_buckets=settings.max_buckets)
    await check_time_zone(engine, query.tz)
    async with engine.db.tenant_session(tenant_id) as session:
        repositories = await _repositories(session, query)
        people = (tuple(sorted(await lookup(session, "person", query.person)))
                  if query.person else None)
    return Scope(tenant_id, bounds[0], bounds[1], query.tz, interval, repositories, people,
                 config, visible,
                 every_repository=not (query.team or query.project or query.repository))


class CouplingQuery(ListQuery):
    """``change-coupling``: a scope, a page and code-maat's thresholds (its defaults)."""

    min_revs: int = Field(5, ge=1, le=1_000_000,
                          description="Least non-merge commits of each file of a pair.")
    min_shared_revs: int = Field(5, ge=1, le=1_000_000,
                                 description="Least commits changing both files.")
    min_degree: float = Field(0.30, ge=0, le=1, allow_inf_nan=False,
                              description="Least degree: shared / mean of both files' commits.")
    max_changeset_size: int = Field(30, ge=2, le=1000,
                                    description="Commits changing more files are skipped.")


class GraphQuery(ScopeQuery):
    """``reviews/graph``: a scope and the most edges to return (heaviest first)."""

    limit: int = Field(200, ge=1, le=1000, description="Most edges, heaviest first.")
