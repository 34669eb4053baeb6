"""The per-file facts get their own refresh (``github_files``), which does not follow
configuration changes.

Until now one refresh (facts ``github``) rewrote both kinds of facts, so a change of bot
patterns or production environments rewrote every per-file fact too (14 million rows at
the benchmark's scale 1.0) although none of them depends on the configuration. The
per-file facts stay as they are: each tenant's ``github`` refresh state is copied to
``github_files`` (the per-file facts were written by those refreshes), and each pending
``github`` request is recorded for ``github_files`` too (the next start queues both).

Revision ID: github_0004
Revises: github_0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "github_0004"
down_revision: str | Sequence[str] | None = "github_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Copy the ``github`` refresh state and pending requests to ``github_files``."""
    op.execute(
        "INSERT INTO facts_refresh_state (tenant_id, facts, refreshed_at, full_refresh_at) "
        "SELECT tenant_id, 'github_files', refreshed_at, full_refresh_at "
        "FROM facts_refresh_state WHERE facts = 'github' "
        "ON CONFLICT (tenant_id, facts) DO NOTHING"
    )
    op.execute(
        "INSERT INTO facts_refresh_requests (tenant_id, facts, requested_at, since, "
        "full_refresh) SELECT tenant_id, 'github_files', requested_at, since, full_refresh "
        "FROM facts_refresh_requests WHERE facts = 'github' "
        "ON CONFLICT (tenant_id, facts) DO NOTHING"
    )


def downgrade() -> None:
    """Forget the ``github_files`` bookkeeping (the ``github`` refresh covers both again)."""
    op.execute("DELETE FROM facts_refresh_requests WHERE facts = 'github_files'")
    op.execute("DELETE FROM facts_refresh_state WHERE facts = 'github_files'")
