"""Request and response models of the admin API (they also make its OpenAPI schemas).

Request models forbid unknown fields, so a client cannot slip in attributes it may not
set (``id``, ``password_hash``, ``tenant_id`` where the tenant comes from the token...).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pulse_engine.pagination import PageQuery


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantQuery(PageQuery):
    """A list's page, and for superadmins the tenant to read (default: every tenant)."""

    tenant_id: uuid.UUID | None = None


class TenantCreate(_Request):
    """A new tenant."""

    name: str = Field(min_length=1, max_length=200)


class TenantUpdate(_Request):
    """Activate or deactivate a tenant."""

    active: bool


class Tenant(BaseModel):
    """A tenant."""

    id: str
    name: str
    active: bool
    created_at: datetime


class TenantPage(BaseModel):
    """A page of tenants."""

    items: list[Tenant]
    next_cursor: str | None


class UserCreate(_Request):
    """A new user; ``tenant_id`` only for superadmins (admins create in their own tenant)."""

    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    role: str = Field(max_length=20)
    tenant_id: uuid.UUID | None = None


class UserUpdate(_Request):
    """Change a user's role or active flag."""

    role: str | None = Field(None, max_length=20)
    active: bool | None = None


class User(BaseModel):
    """A user (never its password hash)."""

    id: str
    tenant_id: str | None
    email: str
    role: str
    active: bool
    created_at: datetime
    updated_at: datetime


class UserPage(BaseModel):
    """A page of users."""

    items: list[User]
    next_cursor: str | None


class RoleInfo(BaseModel):
    """A role, its rank, and whether the caller may assign it."""

    name: str
    rank: int
    assignable: bool


class RoleList(BaseModel):
    """Every role."""

    roles: list[RoleInfo]


class ApiKeyCreate(_Request):
    """A new API key (service account) of a tenant."""

    name: str = Field(min_length=1, max_length=200)
    role: str = Field("viewer", max_length=20)
    scopes: list[str] = Field(default_factory=list, max_length=64)
    expires_at: datetime | None = None
    tenant_id: uuid.UUID | None = None


class ApiKey(BaseModel):
    """An API key's record (never the key or its hash)."""

    id: str
    tenant_id: str
    name: str
    prefix: str
    role: str
    scopes: list[str]
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(BaseModel):
    """A new key's record and the full key, which is shown this once only."""

    api_key: ApiKey
    key: str


class ApiKeyPage(BaseModel):
    """A page of API keys."""

    items: list[ApiKey]
    next_cursor: str | None


class PluginSwitch(_Request):
    """Enable or disable a plugin for a tenant; ``config`` replaces the stored one if given."""

    enabled: bool
    config: dict[str, Any] | None = None


class PluginState(BaseModel):
    """A plugin's state for a tenant."""

    plugin: str
    enabled: bool
    config: dict[str, Any]
    status: str
    version: str | None


class PluginStateList(BaseModel):
    """Every switchable plugin's state for a tenant."""

    items: list[PluginState]


class AuditEntry(BaseModel):
    """One audit-log entry."""

    id: int
    tenant_id: str | None
    at: datetime
    actor_id: str | None
    actor_role: str | None
    action: str
    target: str | None
    details: dict[str, Any]
    client_address: str | None


class AuditPage(BaseModel):
    """A page of the audit log, newest first."""

    items: list[AuditEntry]
    next_cursor: str | None
