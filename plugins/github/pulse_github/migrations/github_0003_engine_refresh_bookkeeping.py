"""The refresh's bookkeeping moves to the engine (``pulse_engine.facts``, core_0003).

When each tenant's facts were last refreshed moves from ``github_refresh_state`` to
``facts_refresh_state`` (facts ``github``), and the old table is dropped. Tenants with
pull requests or commits and no refresh recorded get a first full refresh when a process
starts (``GITHUB_FACTS.first_refresh_when``), as ``github_0002`` asks for.

Revision ID: github_0003
Revises: github_0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "github_0003"
down_revision: str | Sequence[str] | None = "github_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Copy the refresh times to the engine's table; drop the old one."""
    op.execute(
        "INSERT INTO facts_refresh_state (tenant_id, facts, refreshed_at, full_refresh_at) "
        "SELECT tenant_id, 'github', refreshed_at, full_refresh_at FROM github_refresh_state "
        "ON CONFLICT (tenant_id, facts) DO NOTHING"
    )
    op.drop_table("github_refresh_state")


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
