"""What ``pulse demo`` does: pick or create the tenant, load the demo unless asked not to,
and say what happened."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pulse_engine import get_tenant
from pulse_etl.demo.loading import load_demo
from pulse_etl.demo.plan import DEFAULT_SEED
from pulse_etl.demo.tenant import create_demo_tenant, find_demo_tenant, has_demo_data
from pulse_etl.loader import Stats

if TYPE_CHECKING:
    from pulse_engine import Engine


@dataclass
class DemoResult:
    """What :func:`run_demo` did."""

    tenant_id: str
    created_tenant: bool
    loaded: bool
    stats: Stats = field(default_factory=dict)
    seconds: float = 0.0
    admin_email: str | None = None
    admin_password: str | None = None


async def run_demo(engine: Engine, *, tenant_id: str | None = None,
                   if_missing: bool = False, seed: int = DEFAULT_SEED) -> DemoResult:
    """Load the demo into ``tenant_id``, or into the Demo tenant (created with an admin).

    With ``if_missing``, nothing is loaded when the target tenant already holds demo data
    (``loaded`` is False). A created admin gets a generated password, returned once.
    """
    created = False
    email = password = None
    if tenant_id is None:
        tenant_id = await find_demo_tenant(engine)
        if tenant_id is None:
            tenant_id, login = await create_demo_tenant(engine)
            created = True
            email, password = login.email, login.password
    else:
        await get_tenant(engine, actor=None, tenant_id=tenant_id)
    if if_missing and not created and await has_demo_data(engine, tenant_id):
        return DemoResult(tenant_id=tenant_id, created_tenant=False, loaded=False)
    started = time.perf_counter()
    stats = await load_demo(engine, tenant_id, seed=seed)
    return DemoResult(tenant_id=tenant_id, created_tenant=created, loaded=True, stats=stats,
                      seconds=time.perf_counter() - started, admin_email=email,
                      admin_password=password)
