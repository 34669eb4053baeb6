"""Index the commit each revert names, so reverts become incidents in either arrival order.

A partial expression index over the few commits whose message says "This reverts commit
<sha>" (what ``git revert`` and GitHub's revert button write): loading a commit looks up,
through it, the reverts already stored that name it.

Revision ID: etl_0002
Revises: etl_0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "etl_0002"
down_revision: str | Sequence[str] | None = "etl_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the expressions of pulse_etl.model.REVERTED_SHA and IS_REVERT, as of this revision
_REVERTED_SHA = "substring(message from 'This reverts commit ([0-9a-f]{40})')"
_IS_REVERT = "message LIKE '%This reverts commit %'"


def upgrade() -> None:
    """Create the partial expression index."""
    op.execute(
        f"CREATE INDEX ix_commits_reverted ON commits (tenant_id, repository_id, "
        f"({_REVERTED_SHA})) WHERE {_IS_REVERT}"
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_index("ix_commits_reverted", table_name="commits")
