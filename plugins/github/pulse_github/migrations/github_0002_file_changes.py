"""pulse-github's per-file facts: ``github_file_changes`` and its path dictionary
``github_paths``.

One row per file of a non-merge commit (see :mod:`pulse_github.tables`), so that a window
of hotspots, change coupling, knowledge silos and main developers is a range of one index
instead of the window's commits joined to their ``commit_files`` rows. The refresh fills
them with the per-pull-request facts: the refresh state is emptied here, so a process that
starts queues a full refresh for every tenant with pull requests (row-level security on
the new tables is applied by the engine's migration runner, as for every tenant table).

Revision ID: github_0002
Revises: github_0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "github_0002"
down_revision: str | Sequence[str] | None = "github_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UUID = sa.UUID(as_uuid=False)
_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the tables and their indexes; queue every tenant's full refresh."""
    op.create_table(
        "github_paths",
        sa.Column("tenant_id", _UUID, nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("repository_id", _UUID, nullable=False),
        sa.Column("is_directory", sa.Boolean(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False,
                  comment="a directory without its last slash; '' the root"),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "repository_id", "is_directory", "path",
                            name="uq_github_paths_path"),
    )
    op.create_table(
        "github_file_changes",
        sa.Column("tenant_id", _UUID, nullable=False),
        sa.Column("authored_at", _TZ, nullable=False),
        sa.Column("repository_id", _UUID, nullable=False),
        sa.Column("path_id", sa.BigInteger(), nullable=False,
                  comment="github_paths: the path after the commit"),
        sa.Column("directory_id", sa.BigInteger(), nullable=False,
                  comment="github_paths: its directory"),
        sa.Column("person_id", _UUID, nullable=False),
        sa.Column("commit_id", _UUID, nullable=False),
        sa.Column("changeset", sa.Integer(), nullable=False,
                  comment="the commit's files (commit_files rows)"),
        sa.Column("additions", sa.Integer(), nullable=True, comment="null for a binary file"),
        sa.Column("deletions", sa.Integer(), nullable=True, comment="null for a binary file"),
    )
    op.create_index("ix_github_file_changes_authored", "github_file_changes",
                    ["tenant_id", "authored_at"])
    # every tenant's facts lack their files until a full refresh: queued at the next start
    op.execute("DELETE FROM github_refresh_state")


def downgrade() -> None:
    """Drop the tables."""
    op.drop_table("github_file_changes")
    op.drop_table("github_paths")
