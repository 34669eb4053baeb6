"""Materialise what makes a deployment a change failure: two flags, no configuration.

``has_incident``: an incident is linked to the deployment; ``followed_by_failure``: the
next deployment of the same service and environment failed. The change failure rate then
counts flags in the window's index-only scan instead of probing incidents (and the next
deployment) for every deployment it reads. Both flags are facts of the data alone, so
they are backfilled here for every tenant; the tenant's configuration decides at query
time whether ``followed_by_failure`` counts.

Revision ID: dora_0002
Revises: dora_0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "dora_0002"
down_revision: str | Sequence[str] | None = "dora_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INCLUDE = ["result", "project_id", "repository_id", "is_rework"]


def upgrade() -> None:
    """Add and backfill the flags; cover them by the window index."""
    for flag in ("has_incident", "followed_by_failure"):
        op.add_column(
            "dora_deployments",
            sa.Column(flag, sa.Boolean(), server_default=sa.text("false"), nullable=False),
        )
    op.execute(
        "UPDATE dora_deployments d SET has_incident = true WHERE EXISTS ("
        "SELECT 1 FROM dora_incidents i WHERE i.tenant_id = d.tenant_id "
        "AND i.deployment_id = d.deployment_id)"
    )
    # the next deployment: the earliest one finished strictly later (as the refresh says)
    op.execute(
        "UPDATE dora_deployments d SET followed_by_failure = true WHERE coalesce(("
        "SELECT n.result = 'failure' FROM dora_deployments n "
        "WHERE n.tenant_id = d.tenant_id AND n.service = d.service "
        "AND n.environment = d.environment AND n.finished_at > d.finished_at "
        "ORDER BY n.finished_at, n.deployment_id LIMIT 1), false)"
    )
    op.drop_index("ix_dora_deployments_window", table_name="dora_deployments")
    op.create_index(
        "ix_dora_deployments_window",
        "dora_deployments",
        ["tenant_id", "environment", "finished_at"],
        postgresql_include=[*_INCLUDE, "has_incident", "followed_by_failure"],
    )


def downgrade() -> None:
    """Drop the flags (and restore the window index without them)."""
    op.drop_index("ix_dora_deployments_window", table_name="dora_deployments")
    op.create_index(
        "ix_dora_deployments_window",
        "dora_deployments",
        ["tenant_id", "environment", "finished_at"],
        postgresql_include=_INCLUDE,
    )
    for flag in ("has_incident", "followed_by_failure"):
        op.drop_column("dora_deployments", flag)
