"""Record each requested refresh until it is done, so none is lost with a queued message.

A load announces itself after its commit; the refresh request is written to
``dora_refresh_requests`` before it is queued and deleted by the refresh that covers it.
A process that starts re-queues what is still there (an in-memory queue lost with a killed
server, a broker that dropped a message).

Revision ID: dora_0003
Revises: dora_0002
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "dora_0003"
down_revision: str | Sequence[str] | None = "dora_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the table (the engine puts it under row-level security after migrating)."""
    op.create_table(
        "dora_refresh_requests",
        sa.Column("tenant_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True,
                  comment="the earliest event time to recompute from (unless full_refresh)"),
        sa.Column("full_refresh", sa.Boolean(), server_default=sa.text("false"),
                  nullable=False),
        sa.PrimaryKeyConstraint("tenant_id"),
        comment="refreshes asked for and not done yet: re-queued when a process starts",
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("dora_refresh_requests")
