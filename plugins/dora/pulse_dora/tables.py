"""DORA's materialised facts: narrow, indexed copies of the unified model, derived at load time.

They are recomputed by :mod:`pulse_dora.refresh` after ETL loads, from pulse-etl's tables
and the tenant's DORA configuration, so that every metric is one range scan of one index:

* ``dora_deployments``: every finished deployment with its project, whether it is a
  rework (hotfix) deployment, whether an incident is linked to it and whether the next
  deployment of its service and environment failed;
* ``dora_changes``: every change with the first successful deployment that shipped it, per
  environment, and its lead time;
* ``dora_incidents``: every incident with its service's project, its restore time and the
  deployment it is linked to (explicit reference, else the tenant's link window);
* ``dora_pull_requests``: every merged pull request with its coding, pickup and review
  time and when its merge commit first reached production (the lead-time breakdown);
* ``dora_refresh_state``: per tenant, its production environments and latest deployments
  as of the last refresh (the engine's ``facts_refresh_state`` says when that was).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)

from pulse_engine import timestamp_column, uuid_column

metadata = MetaData()




dora_deployments = Table(
    "dora_deployments",
    metadata,
    uuid_column("tenant_id", nullable=False),
    uuid_column("deployment_id", nullable=False),
    uuid_column("repository_id"),
    uuid_column("project_id"),
    Column("service", String(300), nullable=False),
    Column("environment", String(200), nullable=False),
    Column("result", String(20), nullable=False),
    timestamp_column("started_at"),
    timestamp_column("finished_at", nullable=False),
    Column("is_rework", Boolean, nullable=False, server_default=text("false")),
    Column("has_incident", Boolean, nullable=False, server_default=text("false")),
    Column("followed_by_failure", Boolean, nullable=False, server_default=text("false")),
    PrimaryKeyConstraint("tenant_id", "deployment_id"),
    Index(
        "ix_dora_deployments_window",
        "tenant_id", "environment", "finished_at",
        postgresql_include=["result", "project_id", "repository_id", "is_rework",
                            "has_incident", "followed_by_failure"],
    ),
    Index(
        "ix_dora_deployments_service",
        "tenant_id", "service", "environment", "finished_at",
        postgresql_include=["result"],
    ),
)

dora_changes = Table(
    "dora_changes",
    metadata,
    uuid_column("tenant_id", nullable=False),
    uuid_column("repository_id", nullable=False),
    Column("sha", String(64), nullable=False),
    Column("environment", String(200), nullable=False),
    uuid_column("deployment_id", nullable=False),
    uuid_column("project_id"),
    timestamp_column("deployed_at", nullable=False),
    timestamp_column("authored_at"),
    Column("lead_seconds", Float),
    Column("is_merge", Boolean, nullable=False, server_default=text("false")),
    PrimaryKeyConstraint("tenant_id", "repository_id", "sha", "environment"),
    Index(
        "ix_dora_changes_window",
        "tenant_id", "environment", "deployed_at",
        postgresql_include=["lead_seconds", "is_merge", "project_id", "repository_id", "sha"],
    ),
    Index("ix_dora_changes_deployment", "tenant_id", "deployment_id"),
    Index("ix_dora_changes_sha", "tenant_id", "sha"),
)

dora_incidents = Table(
    "dora_incidents",
    metadata,
    uuid_column("tenant_id", nullable=False),
    uuid_column("incident_id", nullable=False),
    Column("service", String(300)),
    uuid_column("project_id"),
    timestamp_column("created_at", nullable=False),
    timestamp_column("resolved_at"),
    Column("restore_seconds", Float),
    uuid_column("deployment_id"),
    Column("deployment_environment", String(200)),
    Column("link_reason", String(40)),
    PrimaryKeyConstraint("tenant_id", "incident_id"),
    Index(
        "ix_dora_incidents_resolved",
        "tenant_id", "resolved_at",
        postgresql_include=["restore_seconds", "project_id", "deployment_id",
                            "deployment_environment"],
    ),
    Index("ix_dora_incidents_deployment", "tenant_id", "deployment_id"),
    Index("ix_dora_incidents_service_open", "tenant_id", "service", "created_at"),
)

dora_pull_requests = Table(
    "dora_pull_requests",
    metadata,
    uuid_column("tenant_id", nullable=False),
    uuid_column("pull_request_id", nullable=False),
    uuid_column("repository_id", nullable=False),
    uuid_column("project_id"),
    timestamp_column("merged_at", nullable=False),
    Column("merge_commit_sha", String(64)),
    Column("coding_seconds", Float,
           comment="opened minus its first non-merge commit's author time"),
    Column("pickup_seconds", Float,
           comment="first review or comment by someone other than the author minus opened"),
    Column("review_seconds", Float, comment="merged minus that first response"),
    timestamp_column("deployed_at", comment="first successful production deployment shipping "
                     "the merge commit (the tenant's production set at the refresh)"),
    PrimaryKeyConstraint("tenant_id", "pull_request_id"),
    Index(
        "ix_dora_pull_requests_merged",
        "tenant_id", "merged_at",
        postgresql_include=["repository_id", "project_id", "merge_commit_sha", "coding_seconds",
                            "pickup_seconds", "review_seconds", "deployed_at"],
    ),
    Index("ix_dora_pull_requests_deployed", "tenant_id", "deployed_at"),
)

dora_refresh_state = Table(
    "dora_refresh_state",
    metadata,
    uuid_column("tenant_id", nullable=False),
    timestamp_column("refreshed_at", nullable=False),
    Column("production_environments", Text, nullable=False, server_default="",
           comment="the tenant's environments its configuration calls production"),
    timestamp_column("last_deployment_at"),
    timestamp_column("last_production_deployment_at"),
    PrimaryKeyConstraint("tenant_id"),
)

TABLES = (dora_deployments, dora_changes, dora_incidents, dora_pull_requests,
          dora_refresh_state)
