"""``embeddings``' scope b-tree covers the exact read (where the table exists).

Revision ID: ml_0002
Revises: ml_0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pulse_ml_monitor.tables import EMBEDDINGS_TABLE, EMBEDDINGS_VECTORS_INDEX

revision: str = "ml_0002"
down_revision: str | Sequence[str] | None = "ml_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Replace ``ix_embeddings_scope`` by ``ix_embeddings_scope_vectors`` (its key, with
    ``INCLUDE (entity_id, embedding)``) on an existing ``embeddings`` table.

    A filtered similarity query of a small tenant reads its rows index-only from it
    instead of one heap page per row (docs/ml-monitor.md). A database migrated by
    ``ml_0001`` after this index joined the table's DDL has it already.
    """
    table = op.get_bind().execute(
        sa.text("SELECT to_regclass(:name) IS NOT NULL"), {"name": f"public.{EMBEDDINGS_TABLE}"}
    ).scalar()
    if table:
        op.execute(EMBEDDINGS_VECTORS_INDEX)
        op.execute("DROP INDEX IF EXISTS ix_embeddings_scope")


def downgrade() -> None:
    """Bring back the plain scope index; drop the covering one."""
    op.execute(
        f"CREATE INDEX IF NOT EXISTS ix_embeddings_scope ON {EMBEDDINGS_TABLE} "
        "(tenant_id, model, entity_type)"
    )
    op.execute("DROP INDEX IF EXISTS ix_embeddings_scope_vectors")
