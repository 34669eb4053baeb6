"""Small value helpers shared by the job and integration modules."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any


def iso(value: datetime | None) -> str | None:
    """An optional time as ISO 8601."""
    return value.isoformat() if value is not None else None


def is_uuid(value: Any) -> bool:
    """Whether ``value`` is (the text of) a UUID."""
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return value is not None
