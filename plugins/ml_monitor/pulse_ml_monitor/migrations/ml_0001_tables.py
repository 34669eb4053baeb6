"""pulse-ml-monitor's tables; the pgvector ``embeddings`` table only where pgvector exists.

Revision ID: ml_0001
Revises:
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pulse_ml_monitor.tables import EMBEDDINGS_DDL, TABLES

revision: str = "ml_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("ml_monitor",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the tables; create ``embeddings`` when the vector extension is installed.

    The engine creates the extension before any plugin migrates, where the server has it.
    On a server without pgvector the vector table is skipped (no failure): the plugin's
    vector features answer 503 and ``/health/ml`` says why (see docs/ml-monitor.md for a
    server that gets pgvector later).
    """
    bind = op.get_bind()
    for table in TABLES:
        table.create(bind, checkfirst=True)
    has_vector = bind.execute(
        sa.text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
    ).scalar()
    if has_vector:
        for statement in EMBEDDINGS_DDL:
            op.execute(statement)


def downgrade() -> None:
    """Drop the tables."""
    op.execute("DROP TABLE IF EXISTS embeddings")
    for table in reversed(TABLES):
        op.drop_table(table.name)
