"""Tenants, users, roles and API keys: the rules, shared by the admin API and the CLI.

Who may do what:

* the operator (the CLI, ``actor=None``) and a ``superadmin`` manage every tenant and
  every user; superadmins belong to no tenant, every other user belongs to exactly one;
* a tenant ``admin`` manages only its own tenant's users and API keys, assigns at most
  the ``admin`` role, and never sees another tenant's records (they answer 404, as if
  they did not exist);
* nobody changes their own role or deactivates themselves (no accidental lock-out);
* API keys (service accounts) act with a role of at most ``admin`` and cannot manage
  credentials (users or API keys) themselves, so a leaked key cannot mint new ones.

Emails are globally unique and stored lower-cased. Every change is audited in the same
transaction. Deactivating a user, changing a role or deactivating a tenant ends the
affected login sessions at once, on every process: their refresh tokens and the access
tokens issued with them (:func:`pulse_engine.sessions.revoke_sessions`).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_engine import audit
from pulse_engine.auth import new_api_key
from pulse_engine.pagination import Page, fetch_page
from pulse_engine.passwords import hash_password, validate_password_strength
from pulse_engine.problems import Problem
from pulse_engine.sessions import RevokedSessions, announce_revoked_sessions, revoke_sessions
from pulse_engine.tokens import ROLE_RANK, Principal

if TYPE_CHECKING:
    from pulse_engine.app import PulseEngine
    from pulse_engine.engine_api import Engine

TENANT_ROLES = ("viewer", "analyst", "admin")
"""Roles of users that belong to a tenant; also the roles an API key may carry."""

SUPERADMIN = "superadmin"
EMAIL_PATTERN = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
MAX_EMAIL_LENGTH = 320
SCOPE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,99}$")
MAX_SCOPES = 64


def invalid(field: str, message: str) -> Problem:
    """A 422 problem naming one offending field, shaped like schema validation errors."""
    return Problem(
        422,
        "validation-error",
        message,
        errors=[{"field": field, "message": message, "type": "value_error"}],
    )


def normalise_email(email: str) -> str:
    """The stored form of an email: trimmed and lower-cased; 422 when it is not an email."""
    normalised = email.strip().lower()
    if len(normalised) > MAX_EMAIL_LENGTH or not EMAIL_PATTERN.match(normalised):
        raise invalid("email", "This is not a valid email address.")
    return normalised


def is_superadmin(actor: Principal | None) -> bool:
    """True for the operator (CLI) and superadmin principals."""
    return actor is None or actor.role == SUPERADMIN


def require_user_actor(actor: Principal | None) -> None:
    """Refuse credential management by API keys (403)."""
    if actor is not None and actor.kind != "user":
        raise Problem(403, "api-key-not-allowed", "API keys cannot manage users or API keys.")


def can_see(actor: Principal | None, tenant_id: str | None) -> bool:
    """Whether the actor may see a record of ``tenant_id`` (superadmins see everything)."""
    return is_superadmin(actor) or (actor is not None and tenant_id == actor.tenant_id)


def scoped_tenant(actor: Principal | None, requested: str | None) -> str | None:
    """The tenant a request addresses: any for superadmins, else only the actor's own.

    A tenant admin naming another tenant gets 404, as if the tenant did not exist.
    """
    if is_superadmin(actor):
        return requested
    assert actor is not None
    if requested is not None and requested != actor.tenant_id:
        raise Problem(404, "tenant-not-found", "No such tenant.")
    return actor.tenant_id


def check_assignable_role(actor: Principal | None, role: str, tenant_id: str | None) -> None:
    """Raise unless ``actor`` may give ``role`` to a user of ``tenant_id``."""
    if role not in ROLE_RANK:
        raise invalid("role", f"Unknown role; use one of {', '.join(ROLE_RANK)}.")
    if role == SUPERADMIN and tenant_id is not None:
        raise invalid("tenant_id", "A superadmin belongs to no tenant.")
    if role != SUPERADMIN and tenant_id is None:
        raise invalid("tenant_id", "A user with this role needs a tenant.")
    if not is_superadmin(actor) and role not in TENANT_ROLES:
        raise Problem(
            403, "role-not-assignable", "A tenant admin can assign at most the 'admin' role."
        )


# --- tenants ---------------------------------------------------------------------------


def _tenant(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "active": row.active,
        "created_at": row.created_at.isoformat(),
    }


async def _tenant_row(engine: Engine, session: AsyncSession, tenant_id: str) -> Any:
    table = engine.core_tables["tenants"]
    row = (await session.execute(select(table).where(table.c.id == tenant_id))).first()
    if row is None:
        raise Problem(404, "tenant-not-found", "No such tenant.")
    return row


async def create_tenant(
    engine: Engine, *, actor: Principal | None, name: str, client_address: str | None
) -> dict[str, Any]:
    """Create an active tenant (superadmins and the operator only); 409 if the name is taken."""
    if not is_superadmin(actor):
        raise Problem(403, "forbidden", "Only a superadmin can create tenants.")
    name = name.strip()
    if not name:
        raise invalid("name", "The tenant name must not be empty.")
    table = engine.core_tables["tenants"]
    tenant_id = str(uuid.uuid4())
    try:
        async with engine.db.system_session() as session:
            await session.execute(insert(table).values(id=tenant_id, name=name))
            await audit.record(
                engine,
                session,
                tenant_id=tenant_id,
                actor=actor,
                action="tenant.created",
                target=f"tenant:{tenant_id}",
                details={"name": name},
                client_address=client_address,
            )
            row = await _tenant_row(engine, session, tenant_id)
    except IntegrityError:
        raise Problem(409, "tenant-name-taken", "A tenant with this name exists.") from None
    return _tenant(row)


async def get_tenant(
    engine: Engine, *, actor: Principal | None, tenant_id: str
) -> dict[str, Any]:
    """One tenant, if the actor may see it (404 otherwise)."""
    scoped = scoped_tenant(actor, tenant_id)
    assert scoped is not None
    async with engine.db.system_session() as session:
        return _tenant(await _tenant_row(engine, session, scoped))


async def list_tenants(engine: Engine, *, limit: int, cursor: str | None) -> Page:
    """Every tenant, ordered by name (callers check that the actor is a superadmin)."""
    table = engine.core_tables["tenants"]
    async with engine.db.system_session() as session:
        return await fetch_page(
            session,
            select(table),
            table.c.name,
            kind=str,
            limit=limit,
            cursor=cursor,
            to_item=_tenant,
        )


async def set_tenant_active(
    engine: PulseEngine,
    *,
    actor: Principal | None,
    tenant_id: str,
    active: bool,
    client_address: str | None,
) -> dict[str, Any]:
    """Activate or deactivate a tenant; deactivation ends its users' sessions at once."""
    if not is_superadmin(actor):
        raise Problem(403, "forbidden", "Only a superadmin can activate or deactivate tenants.")
    tenants = engine.core_tables["tenants"]
    revoked = RevokedSessions([], 0.0)
    async with engine.db.system_session() as session:
        await _tenant_row(engine, session, tenant_id)
        await session.execute(
            update(tenants).where(tenants.c.id == tenant_id).values(active=active)
        )
        if not active:
            refresh = engine.core_tables["refresh_tokens"]
            revoked = await revoke_sessions(engine, session, refresh.c.tenant_id == tenant_id)
        await audit.record(
            engine,
            session,
            tenant_id=tenant_id,
            actor=actor,
            action="tenant.activated" if active else "tenant.deactivated",
            target=f"tenant:{tenant_id}",
            details={},
            client_address=client_address,
        )
        updated = _tenant(await _tenant_row(engine, session, tenant_id))
    await announce_revoked_sessions(engine, revoked)
    return updated


# --- users -----------------------------------------------------------------------------


def _user(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "tenant_id": row.tenant_id,
        "email": row.email,
        "role": row.role,
        "active": row.active,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def _user_columns(engine: Engine) -> list[Any]:
    table = engine.core_tables["users"]
    return [c for c in table.c if c.name != "password_hash"]


async def _visible_user(
    engine: Engine, session: AsyncSession, actor: Principal | None, user_id: str
) -> Any:
    table = engine.core_tables["users"]
    row = (
        await session.execute(select(*_user_columns(engine)).where(table.c.id == user_id))
    ).first()
    if row is None or not can_see(actor, row.tenant_id):
        raise Problem(404, "user-not-found", "No such user.")
    return row


async def create_user(
    engine: Engine,
    *,
    actor: Principal | None,
    tenant_id: str | None,
    email: str,
    password: str,
    role: str,
    client_address: str | None,
) -> dict[str, Any]:
    """Create an active user after checking the role, the tenant, the email and the password."""
    require_user_actor(actor)
    tenant_id = scoped_tenant(actor, tenant_id)
    check_assignable_role(actor, role, tenant_id)
    email = normalise_email(email)
    try:
        validate_password_strength(password)
    except ValueError as error:
        raise invalid("password", str(error)) from None
    password_hash = await asyncio.to_thread(hash_password, password)
    table = engine.core_tables["users"]
    user_id = str(uuid.uuid4())
    try:
        async with engine.db.system_session() as session:
            if tenant_id is not None:
                await _tenant_row(engine, session, tenant_id)
            await session.execute(
                insert(table).values(
                    id=user_id,
                    tenant_id=tenant_id,
                    email=email,
                    password_hash=password_hash,
                    role=role,
                )
            )
            await audit.record(
                engine,
                session,
                tenant_id=tenant_id,
                actor=actor,
                action="user.created",
                target=f"user:{user_id}",
                details={"email": email, "role": role},
                client_address=client_address,
            )
            row = await _visible_user(engine, session, actor, user_id)
    except IntegrityError:
        raise Problem(409, "email-taken", "A user with this email already exists.") from None
    return _user(row)


async def get_user(engine: Engine, *, actor: Principal | None, user_id: str) -> dict[str, Any]:
    """One user the actor may see (404 otherwise)."""
    async with engine.db.system_session() as session:
        return _user(await _visible_user(engine, session, actor, user_id))


async def list_users(
    engine: Engine,
    *,
    actor: Principal | None,
    tenant_id: str | None,
    limit: int,
    cursor: str | None,
) -> Page:
    """Users ordered by email: the actor's tenant, or for a superadmin any tenant or all."""
    table = engine.core_tables["users"]
    return await _scoped_page(
        engine,
        actor,
        tenant_id,
        select(*_user_columns(engine)),
        table,
        table.c.email,
        _user,
        limit=limit,
        cursor=cursor,
    )


async def _scoped_page(
    engine: Engine,
    actor: Principal | None,
    tenant_id: str | None,
    query: Any,
    table: Any,
    order: Any,
    to_item: Any,
    *,
    limit: int,
    cursor: str | None,
) -> Page:
    """A page of ``query`` confined to the tenant the actor may list (all, for superadmins)."""
    tenant_id = scoped_tenant(actor, tenant_id)
    if tenant_id is not None:
        query = query.where(table.c.tenant_id == tenant_id)
    async with engine.db.system_session() as session:
        return await fetch_page(
            session, query, order, kind=str, limit=limit, cursor=cursor, to_item=to_item
        )


async def update_user(
    engine: PulseEngine,
    *,
    actor: Principal | None,
    user_id: str,
    role: str | None,
    active: bool | None,
    client_address: str | None,
) -> dict[str, Any]:
    """Change a user's role and/or active flag; each change is audited separately."""
    require_user_actor(actor)
    users = engine.core_tables["users"]
    async with engine.db.system_session() as session:
        row = await _visible_user(engine, session, actor, user_id)
        changes: dict[str, Any] = {}
        if role is not None and role != row.role:
            check_assignable_role(actor, role, row.tenant_id)
            changes["role"] = role
        if active is not None and active != row.active:
            changes["active"] = active
        if not changes:
            return _user(row)
        if actor is not None and actor.user_id == user_id:
            raise Problem(
                409, "cannot-modify-self", "You cannot change your own role or deactivate yourself."
            )
        await session.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(**changes, updated_at=datetime.now(UTC))
        )
        refresh = engine.core_tables["refresh_tokens"]
        revoked = await revoke_sessions(engine, session, refresh.c.user_id == user_id)
        target = f"user:{user_id}"
        if "role" in changes:
            await audit.record(
                engine,
                session,
                tenant_id=row.tenant_id,
                actor=actor,
                action="user.role_changed",
                target=target,
                details={"from": row.role, "to": changes["role"]},
                client_address=client_address,
            )
        if "active" in changes:
            await audit.record(
                engine,
                session,
                tenant_id=row.tenant_id,
                actor=actor,
                action="user.activated" if changes["active"] else "user.deactivated",
                target=target,
                details={},
                client_address=client_address,
            )
        updated = _user(await _visible_user(engine, session, actor, user_id))
    await announce_revoked_sessions(engine, revoked)
    return updated


# --- API keys (service accounts) -------------------------------------------------------


def _api_key(row: Any) -> dict[str, Any]:
    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": row.id,
        "tenant_id": row.tenant_id,
        "name": row.name,
        "prefix": row.prefix,
        "role": row.role,
        "scopes": list(row.scopes or ()),
        "created_by": row.created_by,
        "created_at": row.created_at.isoformat(),
        "expires_at": when(row.expires_at),
        "last_used_at": when(row.last_used_at),
        "revoked_at": when(row.revoked_at),
    }


def _api_key_columns(engine: Engine) -> list[Any]:
    table = engine.core_tables["api_keys"]
    return [c for c in table.c if c.name != "key_hash"]


def _check_scopes(scopes: list[str]) -> list[str]:
    unique = sorted(set(scopes))
    if len(unique) > MAX_SCOPES or not all(SCOPE_PATTERN.match(scope) for scope in unique):
        raise invalid(
            "scopes", f"At most {MAX_SCOPES} scopes of lower-case letters, digits and _.:-"
        )
    return unique


async def create_api_key(
    engine: Engine,
    *,
    actor: Principal | None,
    tenant_id: str | None,
    name: str,
    role: str,
    scopes: list[str],
    expires_at: datetime | None,
    client_address: str | None,
) -> tuple[dict[str, Any], str]:
    """Create a tenant's API key; returns its record and the full key, shown only once."""
    require_user_actor(actor)
    tenant_id = scoped_tenant(actor, tenant_id)
    if tenant_id is None:
        raise invalid("tenant_id", "An API key belongs to a tenant.")
    if role not in TENANT_ROLES:
        raise invalid("role", f"An API key's role is one of {', '.join(TENANT_ROLES)}.")
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise invalid("expires_at", "The expiry must be in the future.")
    scopes = _check_scopes(scopes)
    full_key, prefix, key_hash = new_api_key()
    table = engine.core_tables["api_keys"]
    key_id = str(uuid.uuid4())
    async with engine.db.system_session() as session:
        await _tenant_row(engine, session, tenant_id)
        await session.execute(
            insert(table).values(
                id=key_id,
                tenant_id=tenant_id,
                name=name.strip(),
                prefix=prefix,
                key_hash=key_hash,
                role=role,
                scopes=scopes,
                expires_at=expires_at,
                created_by=actor.user_id if actor else None,
            )
        )
        await audit.record(
            engine,
            session,
            tenant_id=tenant_id,
            actor=actor,
            action="api_key.created",
            target=f"api_key:{key_id}",
            details={"name": name, "prefix": prefix, "role": role, "scopes": scopes},
            client_address=client_address,
        )
        row = (
            await session.execute(select(*_api_key_columns(engine)).where(table.c.id == key_id))
        ).one()
    return _api_key(row), full_key


async def list_api_keys(
    engine: Engine,
    *,
    actor: Principal | None,
    tenant_id: str | None,
    limit: int,
    cursor: str | None,
) -> Page:
    """API keys (never their secrets): the actor's tenant, or for a superadmin any or all."""
    table = engine.core_tables["api_keys"]
    return await _scoped_page(
        engine,
        actor,
        tenant_id,
        select(*_api_key_columns(engine)),
        table,
        table.c.id,
        _api_key,
        limit=limit,
        cursor=cursor,
    )


async def revoke_api_key(
    engine: PulseEngine, *, actor: Principal | None, key_id: str, client_address: str | None
) -> dict[str, Any]:
    """Revoke a key at once on every process (``auth.api_key_revoked``); 404 if not visible."""
    require_user_actor(actor)
    table = engine.core_tables["api_keys"]
    async with engine.db.system_session() as session:
        row = (
            await session.execute(select(*_api_key_columns(engine)).where(table.c.id == key_id))
        ).first()
        if row is None or not can_see(actor, row.tenant_id):
            raise Problem(404, "api-key-not-found", "No such API key.")
        if row.revoked_at is None:
            await session.execute(
                update(table).where(table.c.id == key_id).values(revoked_at=datetime.now(UTC))
            )
            await audit.record(
                engine,
                session,
                tenant_id=row.tenant_id,
                actor=actor,
                action="api_key.revoked",
                target=f"api_key:{key_id}",
                details={"prefix": row.prefix},
                client_address=client_address,
            )
            row = (
                await session.execute(select(*_api_key_columns(engine)).where(table.c.id == key_id))
            ).one()
    engine.authenticator.forget_api_key(row.prefix)  # the others hear it from PostgreSQL
    return _api_key(row)
