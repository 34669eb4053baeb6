"""The pairs of files changed together (``github_file_pairs``), kept with the per-file facts.

Change coupling joined a window's per-file facts to each other by commit on every request:
1.4 s at the benchmark's scale 1.0, most of it the join. The pairs are now written by the
per-file facts' refresh (``github_files``), one row per pair of files of a commit changing
at most 30 files, and a window's coupling counts one index range of them. Every tenant with
commits gets a full refresh of its per-file facts recorded, which the next starting process
queues; until it ran, the tenant's change coupling finds no pairs.

Revision ID: github_0005
Revises: github_0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pulse_engine import full_refresh_request

revision: str = "github_0005"
down_revision: str | Sequence[str] | None = "github_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UUID = sa.UUID(as_uuid=False)


def upgrade() -> None:
    """Create the table and its index; record a full refresh of the per-file facts."""
    op.create_table(
        "github_file_pairs",
        sa.Column("tenant_id", _UUID, nullable=False),
        sa.Column("authored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("repository_id", _UUID, nullable=False),
        sa.Column("person_id", _UUID, nullable=False),
        sa.Column("commit_id", _UUID, nullable=False),
        sa.Column("changeset", sa.Integer(), nullable=False,
                  comment="the commit's files (2 or more)"),
        sa.Column("first_path_id", sa.BigInteger(), nullable=False,
                  comment="github_paths: the smaller id"),
        sa.Column("second_path_id", sa.BigInteger(), nullable=False,
                  comment="github_paths: the larger id"),
    )
    op.create_index("ix_github_file_pairs_authored", "github_file_pairs",
                    ["tenant_id", "authored_at"])
    # the number of distinct pairs (ANALYZE samples it): without it the planner multiplies
    # the two columns' distinct counts, expects each pair row of a window to be its own
    # pair and aggregates them after the parallel workers instead of in them
    op.execute("CREATE STATISTICS github_file_pairs_pair (ndistinct) "
               "ON first_path_id, second_path_id FROM github_file_pairs")
    op.execute(full_refresh_request(
        "github_files", "EXISTS (SELECT 1 FROM github_file_changes x WHERE x.tenant_id = t.id)"))


def downgrade() -> None:
    """Drop the table (the coupling of before joins the per-file facts again)."""
    op.drop_table("github_file_pairs")
