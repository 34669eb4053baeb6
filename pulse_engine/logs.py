"""Structured JSON logs, one object per line, carrying the request id when there is one."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from quart import g, has_request_context, has_websocket_context

_STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class RequestContextFilter(logging.Filter):
    """Stamp every record logged while serving a request with that request's id."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add ``request_id`` when there is a current request and the record has none."""
        if not hasattr(record, "request_id") and (has_request_context() or has_websocket_context()):
            request_id = getattr(g, "request_id", None)
            if request_id is not None:
                record.request_id = request_id
        return True


class JsonFormatter(logging.Formatter):
    """Format a record as JSON with its extra attributes (``request_id``, ``tenant_id``...)."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record."""
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def configure_logging(level: str, *, json_format: bool = True) -> None:
    """Send the root logger to stderr, as JSON unless told otherwise (idempotent)."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    for handler in root.handlers:
        if getattr(handler, "_pulse", False):
            return
    handler = logging.StreamHandler(sys.stderr)
    handler._pulse = True  # type: ignore[attr-defined]
    handler.addFilter(RequestContextFilter())
    if json_format:
        handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    # Alembic narrates every migration context at INFO; health checks open one each time
    logging.getLogger("alembic").setLevel(logging.WARNING)
