"""Bounds on the database work of one request: a statement timeout and a temp-file limit.

The request pipeline puts the limits of the current view in :data:`REQUEST_LIMITS`; every
transaction :meth:`pulse_engine.db.Database.tenant_session` (and ``system_session``) opens
while it is set applies them with ``SET LOCAL`` semantics, so background work (ETL jobs,
refreshes) keeps its own, longer horizon. A view that is known to read for longer declares
it with :func:`statement_timeout`. When a client goes away, Quart cancels the request's
task and asyncpg cancels its running statement on the server.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

TIMEOUT_ATTRIBUTE = "_pulse_statement_timeout"
BODY_LIMIT_ATTRIBUTE = "_pulse_body_limit"
#: ``pulse_request_limits(statement_ms, temp_kb)``: created by the migrations (see there)
LIMITS_FUNCTION = "pulse_request_limits"


@dataclass(frozen=True)
class RequestLimits:
    """The limits the transactions of one request run under."""

    statement_timeout_ms: int
    temp_file_limit_kb: int


REQUEST_LIMITS: ContextVar[RequestLimits | None] = ContextVar("pulse_request_limits", default=None)


def statement_timeout(seconds: float) -> Callable[[F], F]:
    """Give one view a statement timeout other than ``PULSE_STATEMENT_TIMEOUT``.

    For known long reads (a report over years of data); the temp-file limit still applies.
    """
    if seconds <= 0:
        raise ValueError("a statement timeout must be positive")

    def decorate(view: F) -> F:
        setattr(view, TIMEOUT_ATTRIBUTE, seconds)
        return view

    return decorate


def limits_for(
    view: object, default_timeout_seconds: float, temp_file_limit_mb: int
) -> RequestLimits:
    """The limits of a request served by ``view``."""
    seconds = getattr(view, TIMEOUT_ATTRIBUTE, default_timeout_seconds)
    return RequestLimits(
        statement_timeout_ms=max(1, int(seconds * 1000)),
        temp_file_limit_kb=temp_file_limit_mb * 1024,
    )


def body_limit(max_bytes: int) -> Callable[[F], F]:
    """Let one view accept request bodies up to ``max_bytes`` instead of
    ``PULSE_MAX_REQUEST_BYTES`` (larger or smaller); a larger body answers ``413``.

    For the few routes that take bulk input (a series of 50,000 points). The host reads
    bodies up to the largest limit any view declares and applies the view's own limit as
    soon as the request is routed (:func:`pulse_engine.request_body.apply_body_limit`).
    """
    if max_bytes < 1024:
        raise ValueError("a body limit must be at least 1024 bytes")

    def decorate(view: F) -> F:
        setattr(view, BODY_LIMIT_ATTRIBUTE, int(max_bytes))
        return view

    return decorate


def body_limit_for(view: object, default_bytes: int) -> int:
    """The largest request body ``view`` accepts (its :func:`body_limit`, else the default)."""
    declared = getattr(view, BODY_LIMIT_ATTRIBUTE, None)
    return default_bytes if declared is None else int(declared)
