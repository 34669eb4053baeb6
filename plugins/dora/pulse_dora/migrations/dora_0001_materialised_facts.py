"""DORA's materialised facts: deployments, changes, incidents and refresh state.

Revision ID: dora_0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "dora_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("dora",)
depends_on: str | Sequence[str] | None = None

_UUID = sa.UUID(as_uuid=False)
_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the DORA tables and their covering indexes."""
    op.create_table(
        "dora_deployments",
        sa.Column("tenant_id", _UUID, nullable=False),
        sa.Column("deployment_id", _UUID, nullable=False),
        sa.Column("repository_id", _UUID, nullable=True),
        sa.Column("project_id", _UUID, nullable=True),
        sa.Column("service", sa.String(300), nullable=False),
        sa.Column("environment", sa.String(200), nullable=False),
        sa.Column("result", sa.String(20), nullable=False),
        sa.Column("started_at", _TZ, nullable=True),
        sa.Column("finished_at", _TZ, nullable=False),
        sa.Column("is_rework", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "deployment_id"),
    )
    op.create_index(
        "ix_dora_deployments_window",
        "dora_deployments",
        ["tenant_id", "environment", "finished_at"],
        postgresql_include=["result", "project_id", "repository_id", "is_rework"],
    )
    op.create_index(
        "ix_dora_deployments_service",
        "dora_deployments",
        ["tenant_id", "service", "environment", "finished_at"],
        postgresql_include=["result"],
    )
    op.create_table(
        "dora_changes",
        sa.Column("tenant_id", _UUID, nullable=False),
        sa.Column("repository_id", _UUID, nullable=False),
        sa.Column("sha", sa.String(64), nullable=False),
        sa.Column("environment", sa.String(200), nullable=False),
        sa.Column("deployment_id", _UUID, nullable=False),
        sa.Column("project_id", _UUID, nullable=True),
        sa.Column("deployed_at", _TZ, nullable=False),
        sa.Column("authored_at", _TZ, nullable=True),
        sa.Column("lead_seconds", sa.Float(), nullable=True),
        sa.Column("is_merge", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "repository_id", "sha", "environment"),
    )
    op.create_index(
        "ix_dora_changes_window",
        "dora_changes",
        ["tenant_id", "environment", "deployed_at"],
        postgresql_include=["lead_seconds", "is_merge", "project_id", "repository_id", "sha"],
    )
    op.create_index(
        "ix_dora_changes_deployment", "dora_changes", ["tenant_id", "deployment_id"]
    )
    op.create_index("ix_dora_changes_sha", "dora_changes", ["tenant_id", "sha"])
    op.create_table(
        "dora_incidents",
        sa.Column("tenant_id", _UUID, nullable=False),
        sa.Column("incident_id", _UUID, nullable=False),
        sa.Column("service", sa.String(300), nullable=True),
        sa.Column("project_id", _UUID, nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("resolved_at", _TZ, nullable=True),
        sa.Column("restore_seconds", sa.Float(), nullable=True),
        sa.Column("deployment_id", _UUID, nullable=True),
        sa.Column("deployment_environment", sa.String(200), nullable=True),
        sa.Column("link_reason", sa.String(40), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "incident_id"),
    )
    op.create_index(
        "ix_dora_incidents_resolved",
        "dora_incidents",
        ["tenant_id", "resolved_at"],
        postgresql_include=[
            "restore_seconds", "project_id", "deployment_id", "deployment_environment"
        ],
    )
    op.create_index(
        "ix_dora_incidents_deployment", "dora_incidents", ["tenant_id", "deployment_id"]
    )
    op.create_index(
        "ix_dora_incidents_service_open",
        "dora_incidents",
        ["tenant_id", "service", "created_at"],
    )
    op.create_table(
        "dora_refresh_state",
        sa.Column("tenant_id", _UUID, nullable=False),
        sa.Column("refreshed_at", _TZ, nullable=False),
        sa.Column(
            "production_environments",
            sa.Text(),
            server_default="",
            nullable=False,
            comment="the tenant's environments its configuration calls production",
        ),
        sa.Column("last_deployment_at", _TZ, nullable=True),
        sa.Column("last_production_deployment_at", _TZ, nullable=True),
        sa.PrimaryKeyConstraint("tenant_id"),
    )


def downgrade() -> None:
    """Drop the DORA tables."""
    for table in ("dora_refresh_state", "dora_incidents", "dora_changes", "dora_deployments"):
        op.drop_table(table)
