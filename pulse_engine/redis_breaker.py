"""The one circuit breaker for a Redis outage, shared by everything that uses Redis.

While Redis fails, every user (the response cache, the rate limiter) takes its fallback at
once instead of each finding out by a timeout of its own: the first error anywhere opens
the breaker for ``pause_seconds``; the first call after the pause tries Redis again, and a
success closes it. The outage and the recovery are each logged once.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


class RedisBreaker:
    """Open (Redis skipped) for a pause after an error; closed (Redis used) otherwise."""

    def __init__(self, pause_seconds: float = 5.0) -> None:
        self.pause_seconds = pause_seconds
        self._open_until: float | None = None

    @property
    def available(self) -> bool:
        """Whether calls should reach Redis now (closed, or the pause has elapsed)."""
        return self._open_until is None or time.monotonic() >= self._open_until

    @property
    def tripped(self) -> bool:
        """Whether the last outage has not been followed by a success yet."""
        return self._open_until is not None

    def trip(self, user: str, error: BaseException) -> None:
        """Open the breaker after ``user`` saw ``error`` (logged for a new outage only)."""
        if self._open_until is None:
            log.warning(
                "Redis unavailable to the %s (%s: %s); every Redis user takes its fallback "
                "for %.1f s at a time until it answers",
                user, type(error).__name__, error, self.pause_seconds,
            )
        self._open_until = time.monotonic() + self.pause_seconds

    def succeeded(self) -> None:
        """Close the breaker after a call that reached Redis."""
        if self._open_until is not None:
            log.warning("Redis reachable again")
            self._open_until = None
