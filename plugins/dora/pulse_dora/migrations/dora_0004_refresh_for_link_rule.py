"""Recompute every tenant's facts under the incident-link rule DORA now owns alone.

pulse-etl no longer resolves an incident's SHA reference (``etl_0003``); DORA's refresh
does, by the tenant's production environments, and also through the deployed SHA when
the commits are not loaded. Facts computed before then are refreshed: a full refresh is
recorded for every tenant that has facts, requested "long ago" so that a starting
process queues it whatever its queue (since dora_0006 the engine's
``FactsRefresh.requeue_pending`` does, from ``facts_refresh_requests``).

Revision ID: dora_0004
Revises: dora_0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "dora_0004"
down_revision: str | Sequence[str] | None = "dora_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Record a full refresh for each tenant with facts."""
    op.execute(
        "INSERT INTO dora_refresh_requests (tenant_id, requested_at, since, full_refresh) "
        "SELECT tenant_id, timestamptz 'epoch', NULL, true FROM dora_refresh_state "
        "ON CONFLICT (tenant_id) DO UPDATE SET full_refresh = true, "
        "requested_at = least(dora_refresh_requests.requested_at, EXCLUDED.requested_at)"
    )


def downgrade() -> None:
    """Nothing to undo: a recorded refresh is deleted by the refresh that runs it."""
