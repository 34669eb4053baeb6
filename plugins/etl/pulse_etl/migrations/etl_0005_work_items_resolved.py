"""An index on work items by resolution time: ``ix_work_items_resolved``.

Throughput and cycle time read the items finished in a window (``resolved_at`` in
``[start, end)``) and the newest resolution; without an index each read scanned every
work item of the tenant. Partial (``resolved_at IS NOT NULL``): open items are never
looked up by it.

Revision ID: etl_0005
Revises: etl_0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "etl_0005"
down_revision: str | Sequence[str] | None = "etl_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the index."""
    op.create_index("ix_work_items_resolved", "work_items", ["tenant_id", "resolved_at"],
                    unique=False, postgresql_where=sa.text("resolved_at IS NOT NULL"))


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_work_items_resolved", table_name="work_items")
