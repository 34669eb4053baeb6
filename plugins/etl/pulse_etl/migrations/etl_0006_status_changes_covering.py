"""``ix_work_item_status_changes_item`` carries ``to_status``: an item's start is read
from the index alone.

A work item's start is its first status change out of the to-do statuses (pulse-portfolio's
cycle time, one look-up per finished item). The index on ``(tenant_id, work_item_id,
changed_at)`` found the item's changes in order, but each change's ``to_status`` was read
from the table. With ``INCLUDE (to_status)`` the look-up is an index-only scan. Same name
and keys: every query the index served before, it still serves.

Revision ID: etl_0006
Revises: etl_0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "etl_0006"
down_revision: str | Sequence[str] | None = "etl_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_work_item_status_changes_item"
KEYS = ["tenant_id", "work_item_id", "changed_at"]


def upgrade() -> None:
    """Recreate the index with ``to_status`` included."""
    op.drop_index(NAME, table_name="work_item_status_changes")
    op.create_index(NAME, "work_item_status_changes", KEYS, unique=False,
                    postgresql_include=["to_status"])


def downgrade() -> None:
    """Recreate the index without ``to_status``."""
    op.drop_index(NAME, table_name="work_item_status_changes")
    op.create_index(NAME, "work_item_status_changes", KEYS, unique=False)
