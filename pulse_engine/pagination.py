"""Keyset pagination for list endpoints: a capped ``limit`` and an opaque ``cursor``.

A list is ordered by one unique column; the cursor encodes the last value of a page, and
the next page starts after it. Cursors are opaque to clients (URL-safe base64 of JSON) and
carry no authority: every page query is still scoped by the caller's tenant, so a forged
cursor can at most skip rows the caller may read anyway. ``limit`` above
:data:`MAX_LIMIT` is capped, not refused.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, Select
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_engine.problems import Problem
from pulse_engine.request_body import unstorable_text_reason

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_CURSOR_LENGTH = 512
#: the range of PostgreSQL's bigint: an integer cursor outside it matches no key
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1

CursorValue = TypeVar("CursorValue", str, int)


class PageQuery(BaseModel):
    """The query parameters of a list endpoint."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(DEFAULT_LIMIT, ge=1, description=f"Page size, capped at {MAX_LIMIT}.")
    cursor: str | None = Field(None, max_length=MAX_CURSOR_LENGTH, description="From next_cursor.")

    @property
    def capped_limit(self) -> int:
        """``limit``, at most :data:`MAX_LIMIT`."""
        return min(self.limit, MAX_LIMIT)


@dataclass
class Page:
    """One page of a list and the cursor of the next one (None on the last page)."""

    items: list[dict[str, Any]]
    next_cursor: str | None

    def as_dict(self) -> dict[str, Any]:
        """The JSON body of a list response."""
        return {"items": self.items, "next_cursor": self.next_cursor}


def encode_cursor(value: str | int) -> str:
    """An opaque cursor for the last sort value of a page."""
    return base64.urlsafe_b64encode(json.dumps([value]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, kind: type[CursorValue]) -> CursorValue | None:
    """The sort value inside a cursor, or None without one; 400 for a malformed cursor."""
    if cursor is None or cursor == "":
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        decoded = None
    if isinstance(decoded, list) and len(decoded) == 1 and type(decoded[0]) is kind:
        value = decoded[0]
        storable = (
            unstorable_text_reason(value) is None
            if isinstance(value, str)
            else BIGINT_MIN <= value <= BIGINT_MAX
        )
        if storable:
            return value  # type: ignore[no-any-return]
    raise invalid_cursor()


def invalid_cursor() -> Problem:
    """The 400 ``invalid-cursor`` problem, for a cursor a list cannot page from."""
    return Problem(400, "invalid-cursor", "The cursor is not valid; use a next_cursor value.")


async def fetch_page(
    session: AsyncSession,
    query: Select[Any],
    column: ColumnElement[Any],
    *,
    kind: type[CursorValue],
    limit: int,
    cursor: str | None,
    to_item: Callable[[Any], dict[str, Any]],
    descending: bool = False,
) -> Page:
    """Run ``query`` for one page ordered by the unique ``column``, starting after ``cursor``."""
    after = decode_cursor(cursor, kind)
    if after is not None:
        query = query.where(column < after if descending else column > after)
    query = query.order_by(column.desc() if descending else column.asc()).limit(limit + 1)
    rows = (await session.execute(query)).all()
    items = [to_item(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_cursor(rows[limit - 1]._mapping[column])
    return Page(items=items, next_cursor=next_cursor)
