"""The bookkeeping of plugins' refreshed facts (:mod:`pulse_engine.facts`).

``facts_refresh_requests`` records each refresh asked for until a refresh covers it;
``facts_refresh_state`` when each tenant's facts were last recomputed. Both are keyed by
tenant and the facts' name, and put under row-level security by the engine after migrating.

Revision ID: core_0003
Revises: core_0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "core_0003"
down_revision: str | Sequence[str] | None = "core_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the two tables."""
    op.create_table(
        "facts_refresh_requests",
        sa.Column("tenant_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("facts", sa.String(100), nullable=False, comment="the FactsRefresh's name"),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True,
                  comment="the earliest event time to recompute from (unless full_refresh)"),
        sa.Column("full_refresh", sa.Boolean(), server_default=sa.text("false"),
                  nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "facts"),
        comment="refreshes asked for and not done yet: queued again when a process starts",
    )
    op.create_table(
        "facts_refresh_state",
        sa.Column("tenant_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("facts", sa.String(100), nullable=False, comment="the FactsRefresh's name"),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False,
                  comment="when the last refresh began: the facts reflect loads committed before"),
        sa.Column("full_refresh_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "facts"),
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_table("facts_refresh_state")
    op.drop_table("facts_refresh_requests")
