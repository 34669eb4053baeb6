"""Helpers for the tables a plugin declares (:func:`pulse_engine.hookspecs.register_tables`):
copying them onto the engine's metadata, and the column types every tenant table repeats."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, Table
from sqlalchemy.dialects.postgresql import UUID


def copy_tables(tables: Iterable[Table], metadata: MetaData) -> None:
    """Copy ``tables`` onto ``metadata`` (the body of a ``register_tables`` hook); a table
    already there (registered by an earlier call) is left as it is."""
    for table in tables:
        if table.name not in metadata.tables:
            table.to_metadata(metadata)


def uuid_column(name: str, nullable: bool = True) -> Column[Any]:
    """A UUID column read and written as text (how tenant and row ids travel in Pulse)."""
    return Column(name, UUID(as_uuid=False), nullable=nullable)


def timestamp_column(name: str, nullable: bool = True, comment: str | None = None) -> Column[Any]:
    """A ``timestamp with time zone`` column."""
    return Column(name, DateTime(timezone=True), nullable=nullable, comment=comment)
