"""Query-parameter types, bounded so no request can ask for unbounded work or crash a view.

Use them in pydantic query models (``validate_querystring``):

- :data:`QueryText`: a string without NUL characters or lone surrogates, at most 200
  characters (PostgreSQL refuses NUL; a surrogate cannot be encoded);
- :data:`QueryList`: a filter's values, comma-separated and/or repeated
  (``team=a,b`` or ``team=a&team=b``), each a :data:`QueryText`, at most 50;
- :data:`BoundedDatetime`: an ISO 8601 date or time; a time without a zone is UTC; outside
  :data:`EARLIEST`..:data:`LATEST` it is refused (asyncpg would send year 1 as
  ``-infinity``, and a ``generate_series`` over it never ends);
- :data:`TimeZoneName`: an IANA zone that both Python and PostgreSQL know;
- :func:`check_window`: start before end, and at most :data:`MAX_BUCKETS` buckets;
- :func:`check_time_zone`: a zone the connected PostgreSQL knows too;
- :func:`calendar_buckets`: the local calendar days, weeks or months of a window.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo, available_timezones

from pydantic import AfterValidator, BeforeValidator

from pulse_engine.problems import invalid_field
from pulse_engine.request_body import unstorable_text_reason

if TYPE_CHECKING:
    from pulse_engine.engine_api import Engine

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
#: The most buckets one series may have (about 27 years of days).
MAX_BUCKETS = 10_000
_BUCKET_LENGTH = {"day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=28)}
#: Names Python accepts that PostgreSQL does not, or that are not places.
_NOT_ZONES = ("posix/", "right/")
_NOT_ZONE_NAMES = frozenset({"posixrules", "Factory", "localtime", "leap-seconds.list"})


MAX_TEXT_LENGTH = 200
MAX_LIST_VALUES = 50


def _clean_text(value: str) -> str:
    reason = unstorable_text_reason(value)
    if reason is not None:
        raise ValueError(reason)
    if len(value) > MAX_TEXT_LENGTH:
        raise ValueError(f"must be at most {MAX_TEXT_LENGTH} characters")
    return value


def _split_list(raw: object) -> object:
    values = raw if isinstance(raw, list) else [raw]
    parts: list[str] = []
    for value in values:
        if not isinstance(value, str):
            return raw  # pydantic says what is wrong with it
        parts.extend(part.strip() for part in value.split(","))
    return [part for part in parts if part]


def _bounded_list(values: list[str]) -> list[str]:
    if len(values) > MAX_LIST_VALUES:
        raise ValueError(f"at most {MAX_LIST_VALUES} values")
    return list(dict.fromkeys(values))


QueryText = Annotated[str, AfterValidator(_clean_text)]
QueryList = Annotated[list[QueryText], BeforeValidator(_split_list), AfterValidator(_bounded_list)]


def _parse_time(raw: object) -> object:
    if isinstance(raw, str) and len(raw) == 10:
        try:
            return datetime.combine(date.fromisoformat(raw), time(), UTC)
        except ValueError:
            return raw  # pydantic says what is wrong with it
    return raw


def _bounded(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range") from None
    if not EARLIEST <= utc <= LATEST:
        raise ValueError(f"must be between {EARLIEST.date()} and {LATEST.date()}")
    return utc


@cache
def known_zones() -> frozenset[str]:
    """The IANA zones accepted as ``tz``: what Python knows, less what PostgreSQL refuses."""
    return frozenset(
        name
        for name in available_timezones()
        if name not in _NOT_ZONE_NAMES and not name.startswith(_NOT_ZONES)
    ) | {"UTC"}


def _zone(value: str) -> str:
    _clean_text(value)
    if value not in known_zones():
        raise ValueError("unknown time zone; use an IANA name such as Europe/Paris")
    return value


BoundedDatetime = Annotated[datetime, BeforeValidator(_parse_time), AfterValidator(_bounded)]
TimeZoneName = Annotated[str, AfterValidator(_zone)]


async def check_time_zone(engine: Engine, zone: str, parameter: str = "tz") -> None:
    """Refuse (422 naming ``parameter``) a zone that Python knows and this PostgreSQL does
    not: its tz database may be older or newer than Python's (``America/Coyhaique``)."""
    if zone not in await engine.db.time_zones():
        raise invalid_field(parameter, "not a time zone the database knows")


def calendar_buckets(start: datetime, end: datetime, interval: str,
                     zone: str) -> list[tuple[datetime, datetime]]:
    """Every local calendar day, ISO week (from Monday) or month of ``zone`` that overlaps
    the window ``[start, end)``, as ``(start, end)`` not clipped to the window, aware in
    ``zone`` (a local midnight that a DST change skips or repeats is read as zoneinfo reads
    it: its first occurrence); ``interval`` ``all``: the window itself."""
    if interval == "all":
        return [(start, end)]
    local_zone = ZoneInfo(zone)
    local = start.astimezone(local_zone).replace(tzinfo=None)
    if interval == "day":
        cursor = local.replace(hour=0, minute=0, second=0, microsecond=0)
    elif interval == "week":
        cursor = (local - timedelta(days=local.weekday())).replace(
            hour=0, minute=0, second=0, microsecond=0)
    else:
        cursor = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    found = []
    while cursor.replace(tzinfo=local_zone) < end:
        if interval == "day":
            following = cursor + timedelta(days=1)
        elif interval == "week":
            following = cursor + timedelta(days=7)
        else:
            following = (cursor.replace(day=28) + timedelta(days=4)).replace(day=1)
        found.append((cursor.replace(tzinfo=local_zone), following.replace(tzinfo=local_zone)))
        cursor = following
    return found


def check_window(
    start: datetime,
    end: datetime,
    interval: str,
    *,
    start_field: str = "start",
    max_buckets: int = MAX_BUCKETS,
) -> None:
    """Refuse an empty or reversed window, or one with more than ``max_buckets`` buckets
    (:data:`MAX_BUCKETS` by default; a plugin may allow fewer).

    :raises pulse_engine.Problem: a 422 naming ``start_field`` (or ``interval``).
    """
    if start >= end:
        raise invalid_field(start_field, "must be before the end of the window")
    length = _BUCKET_LENGTH.get(interval)
    if length is not None and (end - start) / length > max_buckets:
        raise invalid_field(
            "interval",
            f"the window holds more than {max_buckets} {interval} buckets: choose a longer "
            "interval or a shorter window",
        )


