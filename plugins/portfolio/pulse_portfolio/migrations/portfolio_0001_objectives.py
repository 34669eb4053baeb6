"""The objectives table (the engine puts it under row-level security after migrating).

Revision ID: portfolio_0001
Revises:
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "portfolio_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("portfolio",)
depends_on: str | Sequence[str] | None = None

_UUID = sa.UUID(as_uuid=False)


def upgrade() -> None:
    """Create ``portfolio_objectives``."""
    op.create_table(
        "portfolio_objectives",
        sa.Column("tenant_id", _UUID, nullable=False),
        sa.Column("id", _UUID, nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("projects", postgresql.ARRAY(_UUID), nullable=False, server_default="{}"),
        sa.Column("epics", postgresql.ARRAY(sa.String(100)), nullable=False,
                  server_default="{}"),
        sa.Column("labels", postgresql.ARRAY(sa.String(200)), nullable=False,
                  server_default="{}"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        comment="objectives (OKR-style) linked to projects, epics or labels",
    )
    op.create_index("ix_portfolio_objectives_created", "portfolio_objectives",
                    ["tenant_id", "created_at", "id"])


def downgrade() -> None:
    """Drop it."""
    op.drop_table("portfolio_objectives")
