"""Small value helpers shared by the job and integration modules."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any


def iso(value: datetime | None) -> str | None:
    """An optional time as ISO 8601."""
    return value.isoformat() if value is not None else None


def is_uuid(value: Any) -> bool:
    """Whether ``value`` is (the text of) a UUID in its canonical form: the only one the
    database driver takes (``uuid.UUID`` also reads ``urn:uuid:``, braces...)."""
    text = str(value)
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False
