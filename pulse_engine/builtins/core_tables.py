"""Built-in plugin: the engine's own migrations (its tables are defined by the engine)."""

from __future__ import annotations

from pathlib import Path

from pulse_engine import hookimpl
from pulse_engine.migrations import CORE_MIGRATIONS


@hookimpl
def register_migrations() -> Path:
    """The engine's own migration history (tracked in ``pulse_migrations_pulse_core_tables``)."""
    return CORE_MIGRATIONS
