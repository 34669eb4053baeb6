"""Alembic environment for Pulse: runs on a connection the engine hands over."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
target_metadata = context.config.attributes.get("metadata")

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    version_table=context.config.attributes["version_table"],
)
with context.begin_transaction():
    context.run_migrations()
