"""The app's connections plan every statement for its own parameters: a statement executed
again and again on one connection (the driver prepares it once) never switches to
PostgreSQL's generic plan, which cannot see an analytics window's range."""

from __future__ import annotations

from quart import Quart
from sqlalchemy import text

from pulse_engine.app import PulseEngine
from pulse_engine.db import PLAN_CACHE_MODE
from pulse_engine.testing import make_tenant

PROBE = "SELECT count(*) FROM pg_class WHERE oid > :oid /* plan-cache-probe */"


async def test_a_repeated_statement_keeps_custom_plans(pulse_module_app: Quart) -> None:
    engine: PulseEngine = pulse_module_app.extensions["pulse"]
    tenant = await make_tenant(pulse_module_app)
    async with engine.db.tenant_session(tenant.id) as session:
        assert await session.scalar(text("SHOW plan_cache_mode")) == PLAN_CACHE_MODE
        for oid in range(12):  # past the five custom plans after which PostgreSQL may switch
            await session.scalar(text(PROBE), {"oid": oid})
        plans = (await session.execute(text(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE '%plan-cache-probe%' AND statement NOT LIKE '%pg_prepared%'"
        ))).one()
    assert (plans.generic_plans, plans.custom_plans) == (0, 12)
