"""The indexes that find a window's commits, pull requests and reviews carry the columns
the activity analytics read: those reads are index-only scans.

pulse-github's contributor answers (contributors, activity, commit patterns, the absence
factor, churn, new and departed contributors) read every commit of a window with its
author identity, merge flag, UTC offset and line counts; the pull requests opened and
merged in it with their author; the reviews submitted in it with their pull request,
reviewer and state. The indexes on ``(tenant_id, repository_id, authored_at)``,
``(tenant_id, author_identity_id, authored_at)``, the pull requests' creation and merge
times and ``(tenant_id, submitted_at)`` found those rows, and each row was then read from
the table (a commit row holds its message). With the columns included, the index answers
alone once a page is all-visible (vacuumed). Same names and keys: every query these
indexes served before, they still serve.

Revision ID: etl_0007
Revises: etl_0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "etl_0007"
down_revision: str | Sequence[str] | None = "etl_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: ``(index, table, keys, included columns)``.
COVERING: tuple[tuple[str, str, list[str], list[str]], ...] = (
    ("ix_commits_repository_authored", "commits", ["tenant_id", "repository_id", "authored_at"],
     ["author_identity_id", "is_merge", "author_tz_offset", "additions", "deletions",
      "files_changed"]),
    ("ix_commits_author", "commits", ["tenant_id", "author_identity_id", "authored_at"],
     ["repository_id"]),
    ("ix_pull_requests_repository_created", "pull_requests",
     ["tenant_id", "repository_id", "created_at_source"], ["author_identity_id"]),
    ("ix_pull_requests_repository_merged", "pull_requests",
     ["tenant_id", "repository_id", "merged_at"], ["author_identity_id"]),
    ("ix_reviews_submitted", "reviews", ["tenant_id", "submitted_at"],
     ["pull_request_id", "reviewer_identity_id", "state"]),
)


def upgrade() -> None:
    """Recreate each index with its columns included."""
    for name, table, keys, included in COVERING:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, keys, unique=False, postgresql_include=included)


def downgrade() -> None:
    """Recreate each index without included columns."""
    for name, table, keys, _ in COVERING:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, keys, unique=False)
