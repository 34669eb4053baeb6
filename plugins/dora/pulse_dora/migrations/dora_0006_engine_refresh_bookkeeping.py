"""The refresh's bookkeeping moves to the engine (``pulse_engine.facts``, core_0003).

Recorded requests move from ``dora_refresh_requests`` to ``facts_refresh_requests`` and
when each tenant's facts were last refreshed to ``facts_refresh_state`` (both under the
facts' name ``dora``); ``dora_refresh_requests`` is dropped. ``dora_refresh_state`` stays
for what it holds beside the time (production environments, latest deployments).

Revision ID: dora_0006
Revises: dora_0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "dora_0006"
down_revision: str | Sequence[str] | None = "dora_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Copy the requests and refresh times to the engine's tables; drop the old table."""
    op.execute(
        "INSERT INTO facts_refresh_requests (tenant_id, facts, requested_at, since, "
        "full_refresh) SELECT tenant_id, 'dora', requested_at, since, full_refresh "
        "FROM dora_refresh_requests ON CONFLICT (tenant_id, facts) DO NOTHING"
    )
    op.execute(
        "INSERT INTO facts_refresh_state (tenant_id, facts, refreshed_at) "
        "SELECT tenant_id, 'dora', refreshed_at FROM dora_refresh_state "
        "ON CONFLICT (tenant_id, facts) DO NOTHING"
    )
    op.drop_table("dora_refresh_requests")


def downgrade() -> None:
    """Recreate ``dora_refresh_requests`` with the engine's recorded dora requests."""
    op.create_table(
        "dora_refresh_requests",
        sa.Column("tenant_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True,
                  comment="the earliest event time to recompute from (unless full_refresh)"),
        sa.Column("full_refresh", sa.Boolean(), server_default=sa.text("false"),
                  nullable=False),
        sa.PrimaryKeyConstraint("tenant_id"),
        comment="refreshes asked for and not done yet: re-queued when a process starts",
    )
    op.execute(
        "INSERT INTO dora_refresh_requests (tenant_id, requested_at, since, full_refresh) "
        "SELECT tenant_id, requested_at, since, full_refresh FROM facts_refresh_requests "
        "WHERE facts = 'dora'"
    )
    op.execute("DELETE FROM facts_refresh_requests WHERE facts = 'dora'")
    op.execute("DELETE FROM facts_refresh_state WHERE facts = 'dora'")
