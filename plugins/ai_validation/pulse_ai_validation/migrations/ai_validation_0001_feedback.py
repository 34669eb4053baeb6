"""pulse-ai-validation's learning feedback (used when pulse-ml-monitor is not installed).

Revision ID: ai_validation_0001
Revises:
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ai_validation_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("ai_validation",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``ai_validation_feedback``."""
    op.create_table(
        "ai_validation_feedback",
        sa.Column("tenant_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("question", sa.Text(), nullable=True),
        sa.Column("failed_sql", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_kind", sa.String(100), nullable=True),
        sa.Column("corrected_sql", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("recorded_by", sa.String(64), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    op.create_index("ix_ai_validation_feedback_kind", "ai_validation_feedback",
                    ["tenant_id", "error_kind", "recorded_at"])


def downgrade() -> None:
    """Drop ``ai_validation_feedback``."""
    op.drop_table("ai_validation_feedback")
