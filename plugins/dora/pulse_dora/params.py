"""Query parameters of the DORA endpoints: pydantic models, then resolution against the data.

The models are read through quart-schema's ``validate_querystring``; each checks its
parameters one by one, so a bad parameter is a 422 ``validation-error`` whose
``errors[].field`` names it. Times are ISO 8601 dates or date-times written between the
engine's :data:`~pulse_engine.EARLIEST` and :data:`~pulse_engine.LATEST` (PostgreSQL and
Python agree on every instant in between, and no bucket series can run away); names and
zones are the engine's :data:`~pulse_engine.QueryList` and
:data:`~pulse_engine.TimeZoneName`. What needs the tenant or the data is checked by
:func:`open_scope`, naming the parameter too: the zone against the names this PostgreSQL
knows, the window against the tenant's longest window and the number of buckets it would
have, teams, projects and repositories against the tenant's rows (resolved to ids;
unknown ones refused). The default environment set is the tenant's production
configuration matched against the environments its deployments actually use.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Annotated, Literal, get_args
from zoneinfo import ZoneInfo

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_dora.config import DoraConfig, DoraSettings, tenant_config
from pulse_dora.refresh import DORA_FACTS, production_environments
from pulse_engine import (
    EARLIEST,
    LATEST,
    Freshness,
    PageQuery,
    QueryList,
    TimeZoneName,
    check_time_zone,
    check_window,
    field_errors,
    invalid_field,
    validation_problem,
)

if TYPE_CHECKING:
    from pulse_engine import Engine

Interval = Literal["day", "week", "month", "all"]
Benchmark = Literal["2021", "2023", "2024"]

DEFAULT_WINDOW_DAYS = 30


def _moment(raw: object) -> object:
    """An ISO 8601 date (``date``) or date-time (``datetime``, naive or aware), in range."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            parsed: date = (
                date.fromisoformat(raw) if len(raw) == 10
                else datetime.fromisoformat(raw.replace("Z", "+00:00"))
            )
        except ValueError:
            raise ValueError("not an ISO 8601 date or date-time") from None
    elif isinstance(raw, date):
        parsed = raw
    else:
        return raw  # pydantic names the wrong type
    # the engine's bounds, applied to the time as written (a date or a time without offset
    # is read in ``tz`` later; an offset is not applied)
    written = parsed if isinstance(parsed, datetime) else datetime.combine(parsed, time())
    if not EARLIEST <= written.replace(tzinfo=UTC) <= LATEST:
        raise ValueError(
            f"must be between {EARLIEST.date().isoformat()} and {LATEST.date().isoformat()}"
        )
    return parsed


def _default_zone(raw: object) -> object:
    return "UTC" if raw is None or raw == "" else raw


_QUERY_LIST: TypeAdapter[list[str]] = TypeAdapter(QueryList)


def _names(raw: object) -> object:
    """A list parameter as the engine's :data:`QueryList` reads it (repeated and/or
    comma-separated; NUL, surrogates, long values and long lists refused), with any error
    reported on the parameter itself rather than on one of its items."""
    if raw is None:
        return None
    try:
        return _QUERY_LIST.validate_python(raw)
    except ValidationError as error:
        problem = error.errors()[0]
        reason = problem.get("ctx", {}).get("error")
        raise ValueError(str(reason) if reason is not None else problem["msg"]) from None


#: A time parameter: ``date`` for an ISO date, ``datetime`` for a date-time.
Moment = Annotated[datetime | date | None, BeforeValidator(_moment)]
Zone = Annotated[TimeZoneName, BeforeValidator(_default_zone)]
Names = Annotated[list[str] | None, BeforeValidator(_names)]


def _names_among(choices: Sequence[str]) -> BeforeValidator:
    def check(raw: object) -> object:
        names = _names(raw)
        if isinstance(names, list):
            unknown = [name for name in names if name not in choices]
            if unknown:
                raise ValueError(f"must be among {', '.join(choices)}")
        return names

    return BeforeValidator(check)


@dataclass(frozen=True)
class WindowRequest:
    """A request's window as written, and the names of its parameters (for errors).

    :ivar end_includes_date: an ``end`` given as a date includes that whole day (GitLab).
    """

    start: date | None
    end: date | None
    tz: str
    start_name: str = "start"
    end_name: str = "end"
    end_includes_date: bool = False


@dataclass(frozen=True)
class FilterRequest:
    """The filters of a request as written (names or ids)."""

    environment: tuple[str, ...] = ()
    team: tuple[str, ...] = ()
    project: tuple[str, ...] = ()
    repository: tuple[str, ...] = ()


class ScopeQuery(BaseModel):
    """The window and filters every DORA endpoint takes."""

    model_config = ConfigDict(extra="forbid")

    start: Moment = Field(
        None,
        description="Start of the window (inclusive): an ISO 8601 date or date-time between "
        "1970-01-01 and 2200-01-01; a date or a time without offset is read in tz. "
        f"Default: {DEFAULT_WINDOW_DAYS} days before end.",
    )
    end: Moment = Field(
        None,
        description="End of the window (exclusive), like start. Default: the start of "
        "tomorrow in tz.",
    )
    tz: Zone = Field(
        "UTC",
        description="IANA time zone in which dates are read and day, week (Monday) and "
        "month buckets start.",
    )
    environment: Names = Field(
        None,
        description="Environments (repeated or comma-separated). Default: the tenant's "
        "production environments.",
    )
    team: Names = Field(
        None, description="Teams by id or name: the repositories of their projects."
    )
    project: Names = Field(None, description="Projects by id, key or name.")
    repository: Names = Field(None, description="Repositories by id, name or service.")

    def window(self) -> WindowRequest:
        """The window as written."""
        return WindowRequest(self.start, self.end, self.tz)

    def filters(self) -> FilterRequest:
        """The filters as written."""
        return FilterRequest(
            tuple(self.environment or ()), tuple(self.team or ()), tuple(self.project or ()),
            tuple(self.repository or ()),
        )


class SummaryQuery(ScopeQuery):
    """``summary``: the window, filters and the benchmark of the performance levels."""

    benchmark: Benchmark = Field("2024", description="The DORA report whose levels apply.")


class SeriesQuery(ScopeQuery):
    """``{metric}``: the window, filters and bucket size."""

    interval: Interval = Field("day", description="Bucket size; all: the whole window.")


class BreakdownQuery(ScopeQuery):
    """``lead-time/breakdown``: the window, filters and bucket size."""

    interval: Interval = Field("all", description="Bucket size; all: the whole window.")


class DrilldownQuery(ScopeQuery, PageQuery):
    """``{metric}/drilldown``: the window, filters and the page."""


GitLabMetric = Literal[
    "deployment_frequency", "lead_time_for_changes", "time_to_restore_service",
    "change_failure_rate",
]
GitLabInterval = Literal["all", "monthly", "daily"]
GitLabTier = Literal["production", "staging", "testing", "development", "other"]
GITLAB_TIERS: tuple[GitLabTier, ...] = get_args(GitLabTier)
#: GitLab's default window: the 90 days before today.
GITLAB_DEFAULT_DAYS = 90


class GitLabQuery(BaseModel):
    """GitLab's DORA API parameters."""

    model_config = ConfigDict(extra="forbid")

    metric: GitLabMetric = Field(description="The metric.")
    start_date: Moment = Field(
        None, description=f"Start (UTC), a date or date-time. Default: {GITLAB_DEFAULT_DAYS} "
        "days before today."
    )
    end_date: Moment = Field(
        None, description="End (UTC); a date includes that whole day. Default: tomorrow."
    )
    interval: GitLabInterval = Field("daily", description="Bucket size.")
    environment_tiers: Annotated[list[GitLabTier] | None, _names_among(GITLAB_TIERS)] = Field(
        None, description="Tiers (repeated or comma-separated). Default: production."
    )

    def window(self) -> WindowRequest:
        """The window as written, with GitLab's default start."""
        start = self.start_date
        if start is None:
            start = datetime.now(UTC).date() - timedelta(days=GITLAB_DEFAULT_DAYS)
        return WindowRequest(start, self.end_date, "UTC", "start_date", "end_date", True)


@dataclass(frozen=True)
class Scope:
    """What one metric computation covers: a tenant, a window, buckets and filters."""

    tenant_id: str
    start: datetime
    end: datetime
    tz: str
    interval: str
    environments: tuple[str, ...]
    explicit_environment: bool
    #: whether ``environments`` is the tenant's production set (given or by default)
    production_set: bool
    project_ids: tuple[str, ...] | None
    repository_ids: tuple[str, ...] | None
    services: tuple[str, ...] | None
    config: DoraConfig
    filters: FilterRequest = field(default_factory=FilterRequest)

    def previous(self) -> Scope:
        """The window of the same length just before this one."""
        length = self.end - self.start
        return replace(self, start=self.start - length, end=self.start)

    def with_interval(self, interval: str) -> Scope:
        """The same scope bucketed by another interval."""
        return replace(self, interval=interval)


def _local(moment: date | None, zone: ZoneInfo, *, next_day: bool = False) -> datetime | None:
    """A written time as an aware datetime: dates at midnight and naive times in ``zone``."""
    if moment is None:
        return None
    if isinstance(moment, datetime):
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)
    day = moment + timedelta(days=1) if next_day else moment
    return datetime.combine(day, time(), tzinfo=zone)


def window_bounds(window: WindowRequest, max_days: int) -> tuple[datetime, datetime]:
    """``(start, end)`` in UTC; refuses a reversed window and one of more than ``max_days``.

    Default end: the start of tomorrow in the window's zone; default start:
    :data:`DEFAULT_WINDOW_DAYS` before the end.
    """
    zone = ZoneInfo(window.tz)
    end = _local(window.end, zone, next_day=window.end_includes_date)
    if end is None:
        tomorrow = datetime.now(zone).date() + timedelta(days=1)
        end = datetime.combine(tomorrow, time(), tzinfo=zone)
    start = _local(window.start, zone) or end - timedelta(days=DEFAULT_WINDOW_DAYS)
    if end <= start:
        raise invalid_field(window.end_name, f"must be after {window.start_name}")
    if end - start > timedelta(days=max_days):
        raise invalid_field(window.start_name, f"the window may span at most {max_days} days")
    return start.astimezone(UTC), end.astimezone(UTC)


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


async def _resolve(
    session: AsyncSession, parameter: str, values: Sequence[str], sql: str
) -> list[tuple[str, str, str]]:
    """Rows ``(id, project_or_service, matched_value)`` for every value; 422 for unknown ones."""
    if not values:
        return []
    ids = [str(uuid.UUID(value)) for value in values if _UUID.match(value)]
    names = [value.lower() for value in values]
    rows = (await session.execute(text(sql), {"ids": ids, "names": names})).all()
    matched = {str(row[2]).lower() for row in rows}
    unknown = [value for value in values if value.lower() not in matched]
    if unknown:
        raise invalid_field(parameter, f"unknown {parameter}: {', '.join(unknown[:5])}")
    return [(str(row[0]), str(row[1]) if row[1] is not None else "", str(row[2])) for row in rows]


_MATCH = "CAST(:ids AS uuid[])"
_TEAMS = f"""
SELECT t.id, t.project_id, m.value FROM teams t
CROSS JOIN LATERAL (VALUES (t.id::text), (lower(t.name)), (lower(t.external_id))) m(value)
WHERE (t.id = ANY({_MATCH}) OR lower(t.name) = ANY(:names) OR lower(t.external_id) = ANY(:names))
  AND m.value = ANY(:names)
"""
_PROJECTS = f"""
SELECT p.id, p.id, m.value FROM projects p
CROSS JOIN LATERAL (VALUES (p.id::text), (lower(p.key)), (lower(p.name)), (lower(p.external_id)))
  m(value)
WHERE (p.id = ANY({_MATCH}) OR lower(p.key) = ANY(:names) OR lower(p.name) = ANY(:names)
       OR lower(p.external_id) = ANY(:names))
  AND m.value = ANY(:names)
"""
_REPOSITORIES = f"""
SELECT r.id, r.service, m.value FROM repositories r
CROSS JOIN LATERAL (VALUES (r.id::text), (lower(r.name)), (lower(r.service))) m(value)
WHERE (r.id = ANY({_MATCH}) OR lower(r.name) = ANY(:names) OR lower(r.service) = ANY(:names))
  AND m.value = ANY(:names)
"""


async def resolve_scope(
    session: AsyncSession,
    tenant_id: str,
    bounds: tuple[datetime, datetime],
    tz: str,
    filters: FilterRequest,
    config: DoraConfig,
    *,
    interval: str = "all",
    environments: Sequence[str] | None = None,
) -> Scope:
    """The :class:`Scope` of a window and the filters as written, resolved against the data.

    :param environments: environments chosen by the caller's own parameter (GitLab
        tiers; may be empty: nothing matches); by default the ``environment`` filter, else
        the production set.
    """
    explicit = environments is not None or bool(filters.environment)
    production = await production_environments(session, tenant_id, config)
    if environments is not None:
        chosen = list(environments)
    else:
        chosen = list(filters.environment) or production
    project_ids: set[str] | None = None
    if filters.team:
        rows = await _resolve(session, "team", filters.team, _TEAMS)
        project_ids = {project for _, project, _ in rows if project}
    if filters.project:
        rows = await _resolve(session, "project", filters.project, _PROJECTS)
        wanted = {project for project, _, _ in rows}
        project_ids = wanted if project_ids is None else project_ids & wanted
    repository_rows = await _resolve(session, "repository", filters.repository, _REPOSITORIES)
    return Scope(
        tenant_id=tenant_id,
        start=bounds[0],
        end=bounds[1],
        tz=tz,
        interval=interval,
        environments=tuple(chosen),
        explicit_environment=explicit,
        production_set=set(chosen) == set(production),
        project_ids=tuple(sorted(project_ids)) if project_ids is not None else None,
        repository_ids=tuple(sorted({row[0] for row in repository_rows}))
        if repository_rows else None,
        services=tuple(sorted({row[1] for row in repository_rows if row[1]}))
        if repository_rows else None,
        config=config,
        filters=filters,
    )


def scope_query(values: dict[str, object]) -> ScopeQuery:
    """A :class:`ScopeQuery` from values given in code; 422 naming what is wrong."""
    try:
        return ScopeQuery.model_validate(values)
    except ValidationError as error:
        raise validation_problem(field_errors(error)) from None


@dataclass(frozen=True)
class ScopedRequest:
    """A request's resolved scope and how current the facts it reads are."""

    scope: Scope
    freshness: Freshness
    config: DoraConfig


async def open_scope(
    engine: Engine,
    settings: DoraSettings,
    tenant_id: str,
    window: WindowRequest,
    filters: FilterRequest,
    *,
    interval: str = "all",
    tiers: Sequence[str] | None = None,
) -> ScopedRequest:
    """Check a request against its tenant and data, and resolve its :class:`Scope`.

    The freshness is read before any fact, so an answer never claims data newer than it
    reflects.

    :param tiers: GitLab environment tiers, instead of the ``environment`` filter.
    """
    config = await tenant_config(engine, tenant_id)
    async with engine.db.tenant_session(tenant_id) as session:
        await check_time_zone(engine, window.tz)
        bounds = window_bounds(window, config.max_window_days or settings.max_window_days)
        check_window(*bounds, interval, max_buckets=settings.max_buckets)
        environments = None
        if tiers is not None:
            environments = await tier_environments(session, tenant_id, tiers, config)
        freshness = await DORA_FACTS.freshness(session, tenant_id)
        scope = await resolve_scope(
            session, tenant_id, bounds, window.tz, filters, config, interval=interval,
            environments=environments,
        )
    return ScopedRequest(scope, freshness, config)


async def tier_environments(
    session: AsyncSession, tenant_id: str, tiers: Sequence[str], config: DoraConfig
) -> list[str]:
    """Environments of GitLab tiers: production per the tenant's config, others by name."""
    production = await production_environments(session, tenant_id, config)
    chosen: list[str] = []
    if "production" in tiers:
        chosen += production
    others = [tier for tier in tiers if tier != "production"]
    if others:
        config_for_tiers = DoraConfig(
            production_environments=[],
            production_environment_patterns=[f"^{tier}" for tier in others],
        )
        chosen += [
            name
            for name in await production_environments(session, tenant_id, config_for_tiers)
            if name not in production
        ]
    return chosen
