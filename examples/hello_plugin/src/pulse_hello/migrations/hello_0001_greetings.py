"""Greetings table.

Revision ID: hello_0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "hello_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("hello",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the greetings table."""
    op.create_table(
        "hello_greetings",
        sa.Column("tenant_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("message", sa.String(length=200), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )


def downgrade() -> None:
    """Drop the greetings table."""
    op.drop_table("hello_greetings")
