"""pulse-portfolio's table: the tenant's objectives (OKR-style), linked to projects, epics
or labels."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID

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

TABLES = (portfolio_objectives,)
