"""The audit log: who did what, to what, when and from where.

Security-relevant actions (logins, token revocations, refresh-token reuse, user and role
changes, API keys, capability switches) are written with :func:`record` inside the same
transaction as the change they describe, so an action and its audit entry commit or fail
together. Entries never hold secrets: no passwords, tokens or key hashes.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_engine.pagination import Page, fetch_page
from pulse_engine.tokens import Principal

if TYPE_CHECKING:
    from pulse_engine.engine_api import Engine

SYSTEM_ACTOR = "system"
"""The actor id of actions without an authenticated caller (the CLI, failed logins)."""


async def record(
    engine: Engine,
    session: AsyncSession,
    *,
    tenant_id: str | None,
    actor: Principal | None,
    action: str,
    target: str | None,
    details: dict[str, Any],
    client_address: str | None,
) -> None:
    """Append one entry to the audit log within ``session``'s transaction.

    :param tenant_id: the tenant the action concerns (None for cross-tenant actions).
    :param actor: the authenticated caller, or None for the operator CLI and anonymous calls.
    :param action: a dotted verb such as ``auth.login`` or ``user.role_changed``.
    :param target: what was acted on, as ``kind:id`` (``user:...``, ``api_key:...``).
    :param details: JSON-ready facts about the action; never secrets.
    :param client_address: the caller's network address, when there is one.
    """
    table = engine.core_tables["audit_log"]
    await session.execute(
        insert(table).values(
            tenant_id=tenant_id,
            actor_id=actor.user_id if actor else SYSTEM_ACTOR,
            actor_role=actor.role if actor else None,
            action=action,
            target=target,
            details=details,
            client_address=client_address[:64] if client_address else None,
        )
    )


def _entry(row: Any) -> dict[str, Any]:
    at: datetime = row.at
    return {
        "id": row.id,
        "tenant_id": row.tenant_id,
        "at": at.isoformat(),
        "actor_id": row.actor_id,
        "actor_role": row.actor_role,
        "action": row.action,
        "target": row.target,
        "details": row.details,
        "client_address": row.client_address,
    }


async def entries(
    engine: Engine, *, tenant_id: str | None, limit: int, cursor: str | None
) -> Page:
    """The newest entries first; one tenant's, or every entry when ``tenant_id`` is None.

    Only a superadmin may read across tenants; callers decide the tenant.
    """
    table = engine.core_tables["audit_log"]
    query = select(table)
    if tenant_id is not None:
        query = query.where(table.c.tenant_id == tenant_id)
    async with engine.db.system_session() as session:
        return await fetch_page(
            session,
            query,
            table.c.id,
            kind=int,
            limit=limit,
            cursor=cursor,
            to_item=_entry,
            descending=True,
        )
