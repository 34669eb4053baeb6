"""The demo tenant: finding it, creating it with an admin login, and whether it holds demo
data."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from pulse_engine import create_tenant, create_user
from pulse_etl import model
from pulse_etl.demo.plan import DEMO_SOURCE

if TYPE_CHECKING:
    from pulse_engine import Engine

#: Name of the tenant ``pulse demo`` creates.
DEMO_TENANT_NAME = "Demo"
#: Login of the demo tenant's admin user.
DEMO_ADMIN_EMAIL = "admin@demo.pulse.local"


@dataclass(frozen=True)
class DemoLogin:
    """The admin login created with the demo tenant (the password is shown once)."""

    email: str
    password: str


async def find_demo_tenant(engine: Engine) -> str | None:
    """The id of the tenant named :data:`DEMO_TENANT_NAME`, if there is one."""
    table = engine.core_tables["tenants"]
    async with engine.db.system_session() as session:
        found = await session.scalar(select(table.c.id).where(table.c.name == DEMO_TENANT_NAME))
    return str(found) if found is not None else None


async def create_demo_tenant(engine: Engine) -> tuple[str, DemoLogin]:
    """Create the Demo tenant and its admin user with a generated password."""
    tenant = await create_tenant(engine, actor=None, name=DEMO_TENANT_NAME,
                                 client_address=None)
    tenant_id = str(tenant["id"])
    password = secrets.token_urlsafe(15)
    await create_user(engine, actor=None, tenant_id=tenant_id, email=DEMO_ADMIN_EMAIL,
                      password=password, role="admin", client_address=None)
    return tenant_id, DemoLogin(DEMO_ADMIN_EMAIL, password)


async def has_demo_data(engine: Engine, tenant_id: str) -> bool:
    """Whether the tenant holds demo rows (its demo projects)."""
    async with engine.db.tenant_session(tenant_id) as session:
        count = await session.scalar(
            select(func.count()).select_from(model.projects)
            .where(model.projects.c.source == DEMO_SOURCE)
        )
    return bool(count)
