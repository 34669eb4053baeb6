"""The request's principal and tenant, and the tenant-bound database session plugins use.

Inside a request handler::

    from pulse_engine.tenancy import current_principal, tenant_session

    async with tenant_session() as session:
        rows = await session.execute(select(my_table))   # only this tenant's rows

The tenant always comes from the verified token, never from the URL or body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from quart import current_app, g
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_engine.problems import Problem
from pulse_engine.tokens import Principal


def current_principal() -> Principal:
    """The authenticated caller of the current request (401 when there is none)."""
    principal = getattr(g, "principal", None)
    if principal is None:
        raise Problem(401, "unauthorized", "This route needs an access token.")
    return principal  # type: ignore[no-any-return]


def current_tenant_id() -> str:
    """The caller's tenant; a superadmin without a tenant gets 400 on tenant-scoped routes."""
    tenant_id = current_principal().tenant_id
    if tenant_id is None:
        raise Problem(
            400,
            "tenant-required",
            "This route reads one tenant's data; call it with a tenant user's token.",
        )
    return tenant_id


@asynccontextmanager
async def tenant_session() -> AsyncIterator[AsyncSession]:
    """A transaction bound to the caller's tenant (row-level security applies)."""
    engine = current_app.extensions["pulse"]
    async with engine.db.tenant_session(current_tenant_id()) as session:
        yield session
