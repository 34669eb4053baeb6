"""pulse-portfolio's tables.

* ``portfolio_objectives``: the tenant's objectives (OKR-style), linked to projects, epics
  or labels;
* ``portfolio_work_items``: one row per finished (resolved) work item with its project,
  its start (first status change out of the tenant's to-do statuses, else its creation)
  and its cycle time, recomputed from pulse-etl's work items and status changes by
  :mod:`pulse_portfolio.facts` after loads, so ``portfolio.throughput`` and
  ``portfolio.cycle_time`` are one range read of one covering index.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Float,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from pulse_engine import timestamp_column, uuid_column

metadata = MetaData()

portfolio_objectives = Table(
    "portfolio_objectives",
    metadata,
    Column("tenant_id", UUID(as_uuid=False), nullable=False),
    Column("id", UUID(as_uuid=False), nullable=False),
    Column("name", String(300), nullable=False),
    Column("description", Text, nullable=True),
    Column("due_date", Date, nullable=True),
    Column("projects", ARRAY(UUID(as_uuid=False)), nullable=False, server_default="{}"),
    Column("epics", ARRAY(String(100)), nullable=False, server_default="{}"),
    Column("labels", ARRAY(String(200)), nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("tenant_id", "id"),
    Index("ix_portfolio_objectives_created", "tenant_id", "created_at", "id"),
)

portfolio_work_items = Table(
    "portfolio_work_items",
    metadata,
    uuid_column("tenant_id", nullable=False),
    uuid_column("work_item_id", nullable=False),
    uuid_column("project_id"),
    timestamp_column("resolved_at", nullable=False),
    timestamp_column("started_at", comment="first status change out of the tenant's to-do "
                     "statuses, else the item's creation (null: neither is known)"),
    Column("cycle_seconds", Float, comment="resolved_at minus started_at (negative when the "
           "start is later; the cycle time counts only those >= 0)"),
    PrimaryKeyConstraint("tenant_id", "work_item_id"),
    Index("ix_portfolio_work_items_resolved", "tenant_id", "resolved_at",
          postgresql_include=["project_id", "cycle_seconds"]),
    Index("ix_portfolio_work_items_project", "tenant_id", "project_id", "resolved_at",
          postgresql_include=["cycle_seconds"]),
    comment="finished work items with their start and cycle time (pulse-portfolio's facts, "
    "recomputed after loads)",
)

TABLES = (portfolio_objectives, portfolio_work_items)
