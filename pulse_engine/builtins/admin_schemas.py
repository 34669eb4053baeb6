"""Request and response models of the admin API (they also make its OpenAPI schemas).

Request models forbid unknown fields, so a client cannot slip in attributes it may not
set (``id``, ``password_hash``, ``tenant_id`` where the tenant comes from the token...).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from pulse_engine.accounts import SCOPE_PATTERN, TENANT_ROLES
from pulse_engine.pagination import PageQuery
from pulse_engine.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from pulse_engine.plugins import PluginStatus
from pulse_engine.tokens import ROLE_RANK

NEXT_CURSOR = Field(description="Pass as ``cursor`` for the next page; None on the last.")

#: Role names, documented as enums; ``accounts`` checks them (and who may give which).
RoleName = Annotated[
    str, Field(max_length=20), WithJsonSchema({"type": "string", "enum": list(ROLE_RANK)})
]
KeyRoleName = Annotated[
    str, Field(max_length=20), WithJsonSchema({"type": "string", "enum": list(TENANT_ROLES)})
]
Scope = Annotated[str, Field(pattern=SCOPE_PATTERN.pattern)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantQuery(PageQuery):
    """A list's page, and for superadmins the tenant to read (default: every tenant)."""

    tenant_id: uuid.UUID | None = Field(
        None, description="Superadmins: the tenant to read (a tenant admin: their own only)."
    )


class TenantCreate(_Request):
    """A new tenant."""

    name: str = Field(min_length=1, max_length=200, description="A unique name.")


class TenantUpdate(_Request):
    """Activate or deactivate a tenant."""

    active: bool = Field(description="False ends every session of the tenant's users.")


class Tenant(BaseModel):
    """A tenant."""

    id: str = Field(description="The tenant's id (a UUID).")
    name: str = Field(description="Its unique name.")
    active: bool = Field(description="Whether its users may log in and its keys work.")
    created_at: datetime = Field(description="When it was created.")


class TenantPage(BaseModel):
    """A page of tenants."""

    items: list[Tenant] = Field(description="The tenants of this page, by name.")
    next_cursor: str | None = NEXT_CURSOR


class UserCreate(_Request):
    """A new user; ``tenant_id`` only for superadmins (admins create in their own tenant)."""

    email: str = Field(
        min_length=3,
        max_length=320,
        json_schema_extra={"format": "email"},
        description="A unique email address.",
    )
    password: str = Field(
        min_length=MIN_PASSWORD_LENGTH,
        max_length=MAX_PASSWORD_LENGTH,
        description="The initial password (not one of the most common ones).",
    )
    role: RoleName = Field(description="Their role.")
    tenant_id: uuid.UUID | None = Field(
        None, description="Superadmins: the user's tenant (none for a superadmin)."
    )


class UserUpdate(_Request):
    """Change a user's role or active flag."""

    role: RoleName | None = Field(None, description="A new role.")
    active: bool | None = Field(None, description="False deactivates and ends their sessions.")


class User(BaseModel):
    """A user (never its password hash)."""

    id: str = Field(description="The user's id (a UUID).")
    tenant_id: str | None = Field(description="Their tenant (None for a superadmin).")
    email: str = Field(description="Their email, lower-cased.")
    role: str = Field(description="Their role.")
    active: bool = Field(description="Whether they may log in.")
    created_at: datetime = Field(description="When they were created.")
    updated_at: datetime = Field(description="When their record last changed.")


class UserPage(BaseModel):
    """A page of users."""

    items: list[User] = Field(description="The users of this page, by email.")
    next_cursor: str | None = NEXT_CURSOR


class RoleInfo(BaseModel):
    """A role, its rank, and whether the caller may assign it."""

    name: str = Field(description="The role's name.")
    rank: int = Field(description="Higher ranks include the lower ones' rights.")
    assignable: bool = Field(description="Whether the caller may give this role.")


class RoleList(BaseModel):
    """Every role."""

    roles: list[RoleInfo] = Field(description="Every role, lowest rank first.")


class ApiKeyCreate(_Request):
    """A new API key (service account) of a tenant."""

    name: str = Field(min_length=1, max_length=200, description="What the key is for.")
    role: KeyRoleName = Field("viewer", description="The key's role.")
    scopes: list[Scope] = Field(
        default_factory=list,
        max_length=64,
        description="Plugin names (``etl``) or ``<plugin>:read``; empty: the role decides.",
    )
    expires_at: datetime | None = Field(None, description="When the key stops working.")
    tenant_id: uuid.UUID | None = Field(None, description="Superadmins: the key's tenant.")


class ApiKey(BaseModel):
    """An API key's record (never the key or its hash)."""

    id: str = Field(description="The key's id (a UUID).")
    tenant_id: str = Field(description="Its tenant.")
    name: str = Field(description="What it is for.")
    prefix: str = Field(description="The public part of the key, to recognise it.")
    role: str = Field(description="The role it acts with.")
    scopes: list[str] = Field(description="The plugins it may call (empty: any).")
    created_by: str | None = Field(description="The user who created it.")
    created_at: datetime = Field(description="When it was created.")
    expires_at: datetime | None = Field(description="When it stops working, if ever.")
    last_used_at: datetime | None = Field(description="When it last authenticated.")
    revoked_at: datetime | None = Field(description="When it was revoked, if it was.")


class ApiKeyCreated(BaseModel):
    """A new key's record and the full key, which is shown this once only."""

    api_key: ApiKey = Field(description="The key's record.")
    key: str = Field(description="The full key: send as ``Authorization: Bearer <key>``.")


class ApiKeyPage(BaseModel):
    """A page of API keys."""

    items: list[ApiKey] = Field(description="The keys of this page.")
    next_cursor: str | None = NEXT_CURSOR


class PluginSwitch(_Request):
    """Enable or disable a plugin for a tenant; ``config`` replaces the stored one if given."""

    enabled: bool = Field(description="Whether the tenant may use the plugin.")
    config: dict[str, Any] | None = Field(
        None, description="The plugin's tenant configuration (its own schema); None: keep."
    )


class PluginState(BaseModel):
    """A plugin's state for a tenant."""

    plugin: str = Field(description="The plugin's name.")
    enabled: bool = Field(description="Whether the tenant may use it.")
    config: dict[str, Any] = Field(description="The tenant's configuration of it.")
    status: PluginStatus = Field(description="Whether it loaded or failed on this server.")
    version: str | None = Field(description="Its distribution's version.")


class PluginStateList(BaseModel):
    """Every switchable plugin's state for a tenant."""

    items: list[PluginState] = Field(description="Every plugin that is not built in.")


class AuditEntry(BaseModel):
    """One audit-log entry."""

    id: int = Field(description="Increasing with time.")
    tenant_id: str | None = Field(description="The tenant it concerns (None: the system).")
    at: datetime = Field(description="When it happened.")
    actor_id: str | None = Field(description="Who did it (a user, ``api_key:<id>``, or None).")
    actor_role: str | None = Field(description="The role they acted with.")
    action: str = Field(description="What happened (``user.created``, ``auth.login_failed``...).")
    target: str | None = Field(description="What it happened to (``user:<id>``...).")
    details: dict[str, Any] = Field(description="The action's details (never a secret).")
    client_address: str | None = Field(description="The client's address.")


class AuditPage(BaseModel):
    """A page of the audit log, newest first."""

    items: list[AuditEntry] = Field(description="The entries of this page, newest first.")
    next_cursor: str | None = NEXT_CURSOR
