"""The refresh's bookkeeping moves to the engine (``pulse_engine.facts``, core_0003).

When each tenant's facts were last refreshed moves from ``github_refresh_state`` to
``facts_refresh_state`` (facts ``github``), and the old table is dropped. A full refresh
is recorded for every tenant with pull requests or commits and no refresh (all of them
after ``github_0002``, which emptied the state for its per-file facts), with the engine's
``full_refresh_request``: the next starting process queues it, whatever its queue.

Revision ID: github_0003
Revises: github_0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pulse_engine import full_refresh_request

revision: str = "github_0003"
down_revision: str | Sequence[str] | None = "github_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Copy the refresh times to the engine's table; drop the old one; record the full
    refreshes the tenants without facts need."""
    op.execute(
        "INSERT INTO facts_refresh_state (tenant_id, facts, refreshed_at, full_refresh_at) "
        "SELECT tenant_id, 'github', refreshed_at, full_refresh_at FROM github_refresh_state "
        "ON CONFLICT (tenant_id, facts) DO NOTHING"
    )
    op.drop_table("github_refresh_state")
    # pulse-etl's tables may come later in a new database: then no tenant has data yet
    inspector = sa.inspect(op.get_bind())
    if not (inspector.has_table("pull_requests") and inspector.has_table("commits")):
        return
    op.execute(full_refresh_request(
        "github",
        "(EXISTS (SELECT 1 FROM pull_requests x WHERE x.tenant_id = t.id) "
        "OR EXISTS (SELECT 1 FROM commits x WHERE x.tenant_id = t.id)) "
        "AND NOT EXISTS (SELECT 1 FROM facts_refresh_state s "
        "WHERE s.tenant_id = t.id AND s.facts = 'github')"))


def downgrade() -> None:
    """Recreate ``github_refresh_state`` from the engine's github rows."""
    op.create_table(
        "github_refresh_state",
        sa.Column("tenant_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False,
                  comment="when the last refresh began"),
        sa.Column("full_refresh_at", sa.DateTime(timezone=True), nullable=True,
                  comment="when the last full refresh began"),
        sa.PrimaryKeyConstraint("tenant_id"),
    )
    op.execute(
        "INSERT INTO github_refresh_state (tenant_id, refreshed_at, full_refresh_at) "
        "SELECT tenant_id, refreshed_at, full_refresh_at FROM facts_refresh_state "
        "WHERE facts = 'github'"
    )
    op.execute("DELETE FROM facts_refresh_state WHERE facts = 'github'")
