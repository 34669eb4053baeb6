"""The finished work items' facts: ``portfolio_work_items`` (the engine puts it under
row-level security after migrating, as every table with a ``tenant_id``).

One row per resolved work item with its project, its start and its cycle time, so the
throughput and cycle-time metrics are one range read of ``ix_portfolio_work_items_resolved``
(or, for a project, ``ix_portfolio_work_items_project``) instead of the work items and one
look-up of their status history per request. The engine's facts refresh fills it: a full
refresh is recorded here for every tenant with finished work items (the engine's
``full_refresh_request``), which the next starting process queues whatever its queue.

Revision ID: portfolio_0002
Revises: portfolio_0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pulse_engine import full_refresh_request

revision: str = "portfolio_0002"
down_revision: str | Sequence[str] | None = "portfolio_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UUID = sa.UUID(as_uuid=False)
_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the table and its two covering indexes; record the first full refreshes."""
    op.create_table(
        "portfolio_work_items",
        sa.Column("tenant_id", _UUID, nullable=False),
        sa.Column("work_item_id", _UUID, nullable=False),
        sa.Column("project_id", _UUID, nullable=True),
        sa.Column("resolved_at", _TZ, nullable=False),
        sa.Column("started_at", _TZ, nullable=True,
                  comment="first status change out of the tenant's to-do statuses, else the "
                  "item's creation (null: neither is known)"),
        sa.Column("cycle_seconds", sa.Float(), nullable=True,
                  comment="resolved_at minus started_at (negative when the start is later; "
                  "the cycle time counts only those >= 0)"),
        sa.PrimaryKeyConstraint("tenant_id", "work_item_id"),
        comment="finished work items with their start and cycle time (pulse-portfolio's "
        "facts, recomputed after loads)",
    )
    op.create_index("ix_portfolio_work_items_resolved", "portfolio_work_items",
                    ["tenant_id", "resolved_at"],
                    postgresql_include=["project_id", "cycle_seconds"])
    op.create_index("ix_portfolio_work_items_project", "portfolio_work_items",
                    ["tenant_id", "project_id", "resolved_at"],
                    postgresql_include=["cycle_seconds"])
    # pulse-etl's tables may come later in a new database: then no tenant has work items
    if not sa.inspect(op.get_bind()).has_table("work_items"):
        return
    op.execute(full_refresh_request(
        "portfolio", "EXISTS (SELECT 1 FROM work_items w "
        "WHERE w.tenant_id = t.id AND w.resolved_at IS NOT NULL)"))


def downgrade() -> None:
    """Drop it."""
    op.drop_table("portfolio_work_items")
