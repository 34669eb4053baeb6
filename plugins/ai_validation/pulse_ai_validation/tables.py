"""pulse-ai-validation's own table: learning feedback when pulse-ml-monitor is absent."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import UUID

metadata = MetaData()

feedback = Table(
    "ai_validation_feedback",
    metadata,
    Column("tenant_id", UUID(as_uuid=False), nullable=False),
    Column("id", UUID(as_uuid=False), nullable=False),
    Column("question", Text),
    Column("failed_sql", Text, nullable=False),
    Column("error", Text),
    Column("error_kind", String(100)),
    Column("corrected_sql", Text),
    Column("outcome", String(20), nullable=False),
    Column("recorded_by", String(64)),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("tenant_id", "id"),
    Index("ix_ai_validation_feedback_kind", "tenant_id", "error_kind", "recorded_at"),
)

TABLES = (feedback,)
