"""Query parameters of the DORA endpoints: parsed, validated, and resolved against the data.

Every bad parameter is a 422 ``validation-error`` problem whose ``errors[].field`` names
it. Names of teams, projects and repositories are resolved to ids here (unknown ones are
refused), and the default environment set is resolved from the tenant's configuration
against the environments its deployments actually use.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_dora.config import DoraConfig, DoraSettings
from pulse_dora.refresh import production_environments
from pulse_engine import Problem

INTERVALS = ("day", "week", "month", "all")
BENCHMARKS = ("2021", "2023", "2024")
DEFAULT_WINDOW_DAYS = 30
MAX_LIST_VALUES = 50


def invalid(parameter: str, message: str) -> Problem:
    """A 422 problem naming one offending query parameter."""
    return Problem(
        422,
        "validation-error",
        f"Invalid query parameter '{parameter}': {message}",
        errors=[{"field": parameter, "message": message, "type": "value_error"}],
    )


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
    project_ids: tuple[str, ...] | None
    repository_ids: tuple[str, ...] | None
    services: tuple[str, ...] | None
    config: DoraConfig
    filters: dict[str, list[str]] = field(default_factory=dict)

    def previous(self) -> Scope:
        """The window of the same length just before this one."""
        length = self.end - self.start
        return Scope(
            self.tenant_id, self.start - length, self.start, self.tz, self.interval,
            self.environments, self.explicit_environment, self.project_ids,
            self.repository_ids, self.services, self.config, self.filters,
        )

    def with_interval(self, interval: str) -> Scope:
        """The same scope bucketed by another interval."""
        return Scope(
            self.tenant_id, self.start, self.end, self.tz, interval, self.environments,
            self.explicit_environment, self.project_ids, self.repository_ids, self.services,
            self.config, self.filters,
        )


def parse_zone(raw: str | None, parameter: str = "tz") -> str:
    """An IANA time zone name (default UTC)."""
    if raw is None or raw == "":
        return "UTC"
    if len(raw) > 64 or raw.startswith(("/", ".")) or ".." in raw:
        raise invalid(parameter, "not an IANA time zone name")
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid(parameter, "not an IANA time zone name") from None
    return raw


def parse_time(raw: str | None, parameter: str, zone: ZoneInfo) -> datetime | None:
    """An ISO 8601 date or date-time; dates and naive times are read in ``zone``."""
    if raw is None or raw == "":
        return None
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), time(), tzinfo=zone)
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(parameter, "not an ISO 8601 date or date-time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)


def parse_choice(raw: str | None, parameter: str, choices: tuple[str, ...], default: str) -> str:
    """One of ``choices`` (``default`` when absent)."""
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise invalid(parameter, f"must be one of {', '.join(choices)}")
    return raw


def parse_list(raw: str | None, parameter: str) -> list[str]:
    """A comma-separated list of values (repeated parameters are joined first)."""
    if raw is None:
        return []
    values = [value.strip() for value in raw.split(",") if value.strip()]
    if len(values) > MAX_LIST_VALUES:
        raise invalid(parameter, f"at most {MAX_LIST_VALUES} values")
    if any(len(value) > 300 for value in values):
        raise invalid(parameter, "values are at most 300 characters")
    return values


def parse_window(
    args: Mapping[str, str],
    config: DoraConfig,
    settings: DoraSettings,
    *,
    start_name: str = "start",
    end_name: str = "end",
    tz_name: str = "tz",
    end_inclusive_dates: bool = False,
) -> tuple[datetime, datetime, str]:
    """``(start, end, tz)`` of the request, in UTC; refuses reversed and too long windows.

    Default: the 30 days before the start of tomorrow in ``tz``. With
    ``end_inclusive_dates`` an end given as a date includes that whole day (GitLab style).
    """
    zone_name = parse_zone(args.get(tz_name), tz_name)
    zone = ZoneInfo(zone_name)
    end = parse_time(args.get(end_name), end_name, zone)
    if end is not None and end_inclusive_dates and len(args.get(end_name, "")) == 10:
        end = datetime.combine(end.date() + timedelta(days=1), time(), tzinfo=zone)
    start = parse_time(args.get(start_name), start_name, zone)
    if end is None:
        tomorrow = datetime.now(zone).date() + timedelta(days=1)
        end = datetime.combine(tomorrow, time(), tzinfo=zone)
    if start is None:
        start = end - timedelta(days=DEFAULT_WINDOW_DAYS)
    if end <= start:
        raise invalid(end_name, f"must be after {start_name}")
    max_days = config.max_window_days or settings.max_window_days
    if end - start > timedelta(days=max_days):
        raise invalid(start_name, f"the window may span at most {max_days} days")
    return start.astimezone(UTC), end.astimezone(UTC), zone_name


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _ids_and_names(values: list[str]) -> tuple[list[str], list[str]]:
    ids = [str(uuid.UUID(value)) for value in values if _UUID.match(value)]
    return ids, [value.lower() for value in values]


async def _resolve(
    session: AsyncSession, parameter: str, values: list[str], sql: str
) -> list[tuple[str, str, str]]:
    """Rows ``(id, project_or_service, matched_value)`` for every value; 422 for unknown ones."""
    if not values:
        return []
    ids, names = _ids_and_names(values)
    rows = (await session.execute(text(sql), {"ids": ids, "names": names})).all()
    matched = {str(row[2]).lower() for row in rows}
    unknown = [value for value in values if value.lower() not in matched]
    if unknown:
        raise invalid(parameter, f"unknown {parameter}: {', '.join(unknown[:5])}")
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
    args: Mapping[str, str],
    config: DoraConfig,
    settings: DoraSettings,
    *,
    interval: str = "all",
    environments: list[str] | None = None,
) -> Scope:
    """The :class:`Scope` of a request's window, time zone and filters.

    :param environments: environments chosen by the caller's own parameter (GitLab
        tiers); by default the ``environment`` parameter, else the production set.
    """
    start, end, tz = parse_window(args, config, settings)
    explicit = environments if environments is not None else parse_list(
        args.get("environment"), "environment"
    )
    chosen = explicit or await production_environments(session, tenant_id, config)
    project_ids: set[str] | None = None
    teams = parse_list(args.get("team"), "team")
    projects = parse_list(args.get("project"), "project")
    if teams:
        rows = await _resolve(session, "team", teams, _TEAMS)
        project_ids = {project for _, project, _ in rows if project}
    if projects:
        rows = await _resolve(session, "project", projects, _PROJECTS)
        wanted = {project for project, _, _ in rows}
        project_ids = wanted if project_ids is None else project_ids & wanted
    repositories = parse_list(args.get("repository"), "repository")
    repository_rows = await _resolve(session, "repository", repositories, _REPOSITORIES)
    return Scope(
        tenant_id=tenant_id,
        start=start,
        end=end,
        tz=tz,
        interval=interval,
        environments=tuple(chosen),
        explicit_environment=bool(explicit),
        project_ids=tuple(sorted(project_ids)) if project_ids is not None else None,
        repository_ids=tuple(sorted({row[0] for row in repository_rows}))
        if repository_rows else None,
        services=tuple(sorted({row[1] for row in repository_rows if row[1]}))
        if repository_rows else None,
        config=config,
        filters={"team": teams, "project": projects, "repository": repositories},
    )
