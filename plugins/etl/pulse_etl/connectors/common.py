"""Row builders shared by connectors: people, identities and repositories."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from pulse_etl.model import person_id_for, stable_id

Row = dict[str, Any]
Fragment = dict[str, list[Row]]

#: A full commit SHA mentioned in free text (an incident's body names what broke).
SHA_REFERENCE = re.compile(r"\b([0-9a-f]{40})\b")


def merge(*fragments: Fragment) -> Fragment:
    """Concatenate batch fragments (entity name to rows) into one batch."""
    batch: Fragment = {}
    for fragment in fragments:
        for entity, rows in fragment.items():
            batch.setdefault(entity, []).extend(rows)
    return batch


def sha_reference(texts: Iterable[str | None]) -> str | None:
    """The first full commit SHA in ``texts``, if any."""
    for text in texts:
        found = SHA_REFERENCE.search(text or "")
        if found:
            return found.group(1)
    return None


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


def account_rows(
    source: str, external_id: str, *, email: str | None = None, name: str | None = None,
    username: str | None = None,
) -> tuple[str, Fragment]:
    """An account of a source API: its identity id and its people/identity rows.

    APIs often hide an account's email or name; columns they do not carry are left out of
    the identity row, so they keep what a fuller object stored.
    """
    identity_id, identity, person = identity_rows(
        source, external_id, email=email, name=name, username=username
    )
    for column in ("email", "name"):
        if identity[column] is None:
            del identity[column]
    return identity_id, {"person_identities": [identity], "people": [person]}


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


def check_patterns(patterns: list[str]) -> list[str]:
    """Validate a list of regular expressions (a pydantic field validator body)."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"not a regular expression: {pattern!r} ({error})") from None
    return patterns


def matches_any(patterns: Sequence[str], value: str | None) -> bool:
    """Whether ``value`` matches one of ``patterns`` (``re.search``, case-insensitive).

    No patterns match everything: a connector's deployment-name filter is off by default.
    """
    if not patterns:
        return True
    return value is not None and any(re.search(p, value, re.IGNORECASE) for p in patterns)
