"""Per-file changes of commits: ``commit_files``; indexes for pull-request analytics.

One row per file a commit changed: the path after the commit, the previous path of a
rename, added and deleted lines (null for a binary file) and whether the file is binary;
``pull_request_id`` when the GitHub connector stored the row from a merged pull request's
files. Row-level security is applied by the engine's migration runner, as for every
tenant table.

The indexes serve windows of pull requests by creation and merge time, reviews by
submission time, and a pull request's own commits (by the number their subject names).

Tenants that loaded commits before this revision get the files by running their git job
again: the connector's cursor of an earlier version is not trusted to cover the files, so
that run reads the whole history once (commits already stored are left unchanged).

Revision ID: etl_0004
Revises: etl_0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "etl_0004"
down_revision: str | Sequence[str] | None = "etl_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``commit_files`` and the indexes."""
    op.create_table(
        "commit_files",
        sa.Column("tenant_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("repository_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("sha", sa.String(length=64), nullable=False),
        sa.Column("commit_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("path", sa.Text(), nullable=False,
                  comment="the path after the commit (a rename's new path)"),
        sa.Column("previous_path", sa.Text(), nullable=True,
                  comment="the path before a rename; null otherwise"),
        sa.Column("additions", sa.Integer(), nullable=True, comment="null for a binary file"),
        sa.Column("deletions", sa.Integer(), nullable=True, comment="null for a binary file"),
        sa.Column("is_binary", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("pull_request_id", sa.UUID(as_uuid=False), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "repository_id", "sha", "path"),
    )
    op.create_index("ix_commit_files_path", "commit_files",
                    ["tenant_id", "repository_id", "path"], unique=False)
    op.create_index("ix_commits_pull_request", "commits",
                    ["tenant_id", "repository_id", "pull_request_number"], unique=False,
                    postgresql_where=sa.text("pull_request_number IS NOT NULL"))
    op.create_index("ix_pull_requests_repository_created", "pull_requests",
                    ["tenant_id", "repository_id", "created_at_source"], unique=False)
    op.create_index("ix_pull_requests_repository_merged", "pull_requests",
                    ["tenant_id", "repository_id", "merged_at"], unique=False)
    op.create_index("ix_reviews_submitted", "reviews", ["tenant_id", "submitted_at"],
                    unique=False)


def downgrade() -> None:
    """Drop the indexes and ``commit_files``."""
    op.drop_index("ix_reviews_submitted", table_name="reviews")
    op.drop_index("ix_pull_requests_repository_merged", table_name="pull_requests")
    op.drop_index("ix_pull_requests_repository_created", table_name="pull_requests")
    op.drop_index("ix_commits_pull_request", table_name="commits")
    op.drop_table("commit_files")
