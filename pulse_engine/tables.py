"""The engine's own tables: tenants, users, credentials, capabilities, audit, idempotency,
plugins' facts refreshes (:mod:`pulse_engine.facts`).

Tables marked ``info={"pulse_private": True}`` hold credentials; the app role (what
plugins query through) has no privilege on them at all.
"""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

ROLES = ("viewer", "analyst", "admin", "superadmin")


def define_core_tables(metadata: MetaData) -> dict[str, Table]:
    """Define the core tables on ``metadata`` and return them by name."""
    tenants = Table(
        "tenants",
        metadata,
        Column("id", UUID(as_uuid=False), primary_key=True),
        Column("name", String(200), nullable=False, unique=True),
        Column("active", Boolean, nullable=False, server_default=text("true")),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    users = Table(
        "users",
        metadata,
        Column("id", UUID(as_uuid=False), primary_key=True),
        Column("tenant_id", UUID(as_uuid=False), ForeignKey("tenants.id", ondelete="CASCADE")),
        Column("email", String(320), nullable=False, unique=True),
        Column("password_hash", Text, nullable=False),
        Column("role", String(20), nullable=False),
        Column("active", Boolean, nullable=False, server_default=text("true")),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Index("ix_users_tenant", "tenant_id"),
        info={"pulse_private": True},
    )
    refresh_tokens = Table(
        "refresh_tokens",
        metadata,
        Column("jti", String(64), primary_key=True),
        Column("family_id", String(64), nullable=False),
        Column("user_id", UUID(as_uuid=False), ForeignKey("users.id", ondelete="CASCADE")),
        Column("tenant_id", UUID(as_uuid=False)),
        Column("expires_at", DateTime(timezone=True), nullable=False),
        Column("used_at", DateTime(timezone=True)),
        Column("revoked_at", DateTime(timezone=True)),
        Index("ix_refresh_tokens_family", "family_id"),
        info={"pulse_private": True},
    )
    revoked_access_tokens = Table(
        "revoked_access_tokens",
        metadata,
        Column("jti", String(64), primary_key=True),
        Column("expires_at", DateTime(timezone=True), nullable=False),
        info={"pulse_private": True},
    )
    api_keys = Table(
        "api_keys",
        metadata,
        Column("id", UUID(as_uuid=False), primary_key=True),
        Column("tenant_id", UUID(as_uuid=False), ForeignKey("tenants.id", ondelete="CASCADE")),
        Column("name", String(200), nullable=False),
        Column("prefix", String(16), nullable=False, unique=True),
        Column("key_hash", String(128), nullable=False),
        Column("role", String(20), nullable=False),
        Column("scopes", ARRAY(String(100)), nullable=False, server_default="{}"),
        Column("created_by", UUID(as_uuid=False)),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("expires_at", DateTime(timezone=True)),
        Column("last_used_at", DateTime(timezone=True)),
        Column("revoked_at", DateTime(timezone=True)),
        Index("ix_api_keys_tenant", "tenant_id"),
        info={"pulse_private": True},
    )
    tenant_plugins = Table(
        "tenant_plugins",
        metadata,
        Column("tenant_id", UUID(as_uuid=False), ForeignKey("tenants.id", ondelete="CASCADE")),
        Column("plugin", String(100), nullable=False),
        Column("enabled", Boolean, nullable=False),
        Column("config", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("updated_by", UUID(as_uuid=False)),
        PrimaryKeyConstraint("tenant_id", "plugin"),
    )
    audit_log = Table(
        "audit_log",
        metadata,
        Column("tenant_id", UUID(as_uuid=False)),
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("actor_id", String(64)),
        Column("actor_role", String(20)),
        Column("action", String(100), nullable=False),
        Column("target", String(300)),
        Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("client_address", String(64)),
        Index("ix_audit_log_tenant_at", "tenant_id", "at"),
    )
    processed_messages = Table(
        "processed_messages",
        metadata,
        Column("consumer", String(200), nullable=False),
        Column("message_id", String(64), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("consumer", "message_id"),
    )
    facts_refresh_requests = Table(
        "facts_refresh_requests",
        metadata,
        Column("tenant_id", UUID(as_uuid=False), nullable=False),
        Column("facts", String(100), nullable=False, comment="the FactsRefresh's name"),
        Column("requested_at", DateTime(timezone=True), nullable=False),
        Column("since", DateTime(timezone=True),
               comment="the earliest event time to recompute from (unless full_refresh)"),
        Column("full_refresh", Boolean, nullable=False, server_default=text("false")),
        PrimaryKeyConstraint("tenant_id", "facts"),
        comment="refreshes asked for and not done yet: queued again when a process starts",
    )
    facts_refresh_state = Table(
        "facts_refresh_state",
        metadata,
        Column("tenant_id", UUID(as_uuid=False), nullable=False),
        Column("facts", String(100), nullable=False, comment="the FactsRefresh's name"),
        Column("refreshed_at", DateTime(timezone=True), nullable=False,
               comment="when the last refresh began: the facts reflect loads committed before"),
        Column("full_refresh_at", DateTime(timezone=True)),
        PrimaryKeyConstraint("tenant_id", "facts"),
    )
    return {
        table.name: table
        for table in (
            tenants,
            users,
            refresh_tokens,
            revoked_access_tokens,
            api_keys,
            tenant_plugins,
            audit_log,
            processed_messages,
            facts_refresh_requests,
            facts_refresh_state,
        )
    }
