"""The lead-time breakdown's facts: one row per merged pull request.

``dora_pull_requests`` holds each merged pull request's coding, pickup and review time and
when its merge commit first reached production, so the breakdown is one range scan of
one covering index instead of per-request probes of commits, reviews and comments. The
refresh fills it; a full refresh is recorded for every tenant with facts (as in
``dora_0004``).

Revision ID: dora_0005
Revises: dora_0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "dora_0005"
down_revision: str | Sequence[str] | None = "dora_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UUID = sa.UUID(as_uuid=False)
_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the table and its indexes; record a full refresh per tenant with facts."""
    op.create_table(
        "dora_pull_requests",
        sa.Column("tenant_id", _UUID, nullable=False),
        sa.Column("pull_request_id", _UUID, nullable=False),
        sa.Column("repository_id", _UUID, nullable=False),
        sa.Column("project_id", _UUID, nullable=True),
        sa.Column("merged_at", _TZ, nullable=False),
        sa.Column("merge_commit_sha", sa.String(64), nullable=True),
        sa.Column("coding_seconds", sa.Float(), nullable=True,
                  comment="opened minus its first non-merge commit's author time"),
        sa.Column("pickup_seconds", sa.Float(), nullable=True,
                  comment="first review or comment by someone other than the author minus "
                  "opened"),
        sa.Column("review_seconds", sa.Float(), nullable=True,
                  comment="merged minus that first response"),
        sa.Column("deployed_at", _TZ, nullable=True,
                  comment="first successful production deployment shipping the merge commit "
                  "(the tenant's production set at the refresh)"),
        sa.PrimaryKeyConstraint("tenant_id", "pull_request_id"),
    )
    op.create_index(
        "ix_dora_pull_requests_merged", "dora_pull_requests", ["tenant_id", "merged_at"],
        postgresql_include=["repository_id", "project_id", "merge_commit_sha", "coding_seconds",
                            "pickup_seconds", "review_seconds", "deployed_at"],
    )
    op.create_index(
        "ix_dora_pull_requests_deployed", "dora_pull_requests", ["tenant_id", "deployed_at"]
    )
    op.execute(
        "INSERT INTO dora_refresh_requests (tenant_id, requested_at, since, full_refresh) "
        "SELECT tenant_id, timestamptz 'epoch', NULL, true FROM dora_refresh_state "
        "ON CONFLICT (tenant_id) DO UPDATE SET full_refresh = true, "
        "requested_at = least(dora_refresh_requests.requested_at, EXCLUDED.requested_at)"
    )


def downgrade() -> None:
    """Drop the table."""
    op.drop_table("dora_pull_requests")
