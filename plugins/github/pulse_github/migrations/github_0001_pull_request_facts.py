"""pulse-github's per-pull-request facts: ``github_pull_requests`` and its refresh state.

One row per pull request with the times its flow analytics read (see
:mod:`pulse_github.tables`), so that a window of cycle time, reviews, sizes, outcomes and
branch lifetime is a range scan of one index. The refresh fills it: a process that starts
queues a full refresh for every tenant with pull requests and no refresh state yet (every
tenant right after this revision). Row-level security is applied by the engine's
migration runner, as for every tenant table.

Revision ID: github_0001
Revises:
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "github_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("github",)
depends_on: str | Sequence[str] | None = None

_UUID = sa.UUID(as_uuid=False)
_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the tables and their indexes."""
    op.create_table(
        "github_pull_requests",
        sa.Column("tenant_id", _UUID, nullable=False),
        sa.Column("pull_request_id", _UUID, nullable=False),
        sa.Column("repository_id", _UUID, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("head_ref", sa.String(255), nullable=True),
        sa.Column("opened_at", _TZ, nullable=True),
        sa.Column("merged_at", _TZ, nullable=True),
        sa.Column("closed_at", _TZ, nullable=True),
        sa.Column("additions", sa.Integer(), nullable=True),
        sa.Column("deletions", sa.Integer(), nullable=True),
        sa.Column("changed_files", sa.Integer(), nullable=True),
        sa.Column("author_person_id", _UUID, nullable=True),
        sa.Column(
            "author_is_bot",
            sa.Boolean(),
            server_default=sa.text("false"),
            nullable=False,
            comment="the author's login or name matches the tenant's bot_patterns",
        ),
        sa.Column(
            "started_at",
            _TZ,
            nullable=True,
            comment="earliest author time of its own commits and head commit, else opened",
        ),
        sa.Column(
            "first_review_at",
            _TZ,
            nullable=True,
            comment="first review or review comment by someone else who is not a bot",
        ),
        sa.Column(
            "reviewed_before_merge", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column(
            "review_rounds",
            sa.SmallInteger(),
            server_default=sa.text("0"),
            nullable=False,
            comment="1 + reviews requesting changes when reviewed by someone else, else 0",
        ),
        sa.Column(
            "deployed_at",
            _TZ,
            nullable=True,
            comment="first successful production deployment shipping the merge commit "
            "(the tenant's production_environments at the refresh)",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "pull_request_id"),
    )
    for name, column in (("opened", "opened_at"), ("merged", "merged_at"), ("closed", "closed_at")):
        op.create_index(
            f"ix_github_pull_requests_{name}",
            "github_pull_requests",
            ["tenant_id", "repository_id", column],
        )
    op.create_index(
        "ix_github_pull_requests_deployed", "github_pull_requests", ["tenant_id", "deployed_at"]
    )
    op.create_table(
        "github_refresh_state",
        sa.Column("tenant_id", _UUID, nullable=False),
        sa.Column("refreshed_at", _TZ, nullable=False, comment="when the last refresh began"),
        sa.Column(
            "full_refresh_at", _TZ, nullable=True, comment="when the last full refresh began"
        ),
        sa.PrimaryKeyConstraint("tenant_id"),
    )


def downgrade() -> None:
    """Drop the tables."""
    op.drop_table("github_refresh_state")
    op.drop_table("github_pull_requests")
