"""Row builders shared by connectors: people, identities and repositories."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pulse_etl.model import person_id_for, stable_id

Row = dict[str, Any]


def identity_rows(
    source: str, external_id: str, *, email: str | None = None, name: str | None = None,
    username: str | None = None,
) -> tuple[str, Row, Row]:
    """The identity id, its ``person_identities`` row and its default ``people`` row.

    Identities with the same email (from any source) share one person.
    """
    email = email.strip().lower() if email else None
    identity_id = stable_id("person_identities", source, external_id)
    person_id = person_id_for(email, source, external_id)
    person: Row = {
        "id": person_id,
        "source": "email" if email else source,
        "external_id": email or external_id,
        "display_name": name or username,
        "email": email,
    }
    identity: Row = {
        "id": identity_id,
        "source": source,
        "external_id": external_id,
        "person_id": person_id,
        "email": email,
        "name": name,
        "username": username,
    }
    return identity_id, identity, person


def repository_row(
    source: str, external_id: str, *, name: str | None = None, url: str | None = None,
    default_branch: str | None = None, service: str | None = None,
) -> Row:
    """A ``repositories`` row (its id derived from ``(source, external_id)``)."""
    return {
        "id": stable_id("repositories", source, external_id),
        "source": source,
        "external_id": external_id,
        "name": name or external_id,
        "url": url,
        "default_branch": default_branch,
        "service": service or name or external_id,
    }


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time (``Z`` allowed) or epoch seconds as an aware datetime, or None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed
