"""Loading the demo rows into a tenant, finished like any other load."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pulse_etl import derive
from pulse_etl.demo.plan import DEFAULT_DAYS, DEFAULT_SEED, DEMO_SOURCE
from pulse_etl.demo.rows import generate
from pulse_etl.loader import Stats
from pulse_etl.loads import Loaded, earliest_event

if TYPE_CHECKING:
    from pulse_engine import Engine


async def load_demo(engine: Engine, tenant_id: str, *, seed: int = DEFAULT_SEED,
                    end: datetime | None = None, days: int = DEFAULT_DAYS) -> Stats:
    """Generate and load the demo rows into ``tenant_id`` in one transaction.

    The rows go through the loader with their shipped commits (computed while generating,
    by the rule of :func:`pulse_etl.derive.materialise_deployment_commits`), then incidents
    are linked as after any load. Then it is finished like any load
    (:meth:`pulse_etl.loads.Loads.after_load`): statistics of the bulk-loaded tables
    refreshed, the tenant's ETL cache tags dropped, ``etl.data.loaded`` published, and the
    ``data_loaded`` hook lets metric plugins queue their refreshes.
    """
    from pulse_etl.plugin import service_for

    service = service_for(engine)
    rows = generate(seed, end=end, days=days)
    async with engine.db.tenant_session(tenant_id) as session:
        stats = await service.loader.load(session, tenant_id, rows)
        await derive.link_incidents(session, tenant_id)
    await service.loads.after_load(tenant_id, None, DEMO_SOURCE,
                                   Loaded(stats, earliest_event(rows)))
    return stats
