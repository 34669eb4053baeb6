"""DORA's health checks: data freshness and configuration, as aggregate counts only.

Health endpoints are public and these checks look across tenants, so they never name a
tenant: they count tenants in each condition. A tenant admin sees their own tenant's state
in the DORA answers themselves (``filters.environments`` tells which environments were
taken as production).

* ``facts``: tenants whose ETL data has never been turned into DORA facts (no refresh
  yet) make the check ``degraded``: their metrics read as empty.
* ``configuration``: tenants with deployments none of whose environments matches their
  production configuration make it ``degraded``: all their metrics are empty.
* ``freshness``: tenants whose latest production deployment is older than
  ``PULSE_DORA_STALE_AFTER_DAYS``; reported, but ``healthy``: a quiet tenant is no fault.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from pulse_dora.config import DoraSettings

if TYPE_CHECKING:
    from pulse_engine import Engine

_COUNTS = """
SELECT
  (SELECT count(*) FROM dora_refresh_state) AS tenants_with_facts,
  (SELECT count(*) FROM tenants t
     WHERE EXISTS (SELECT 1 FROM deployments d WHERE d.tenant_id = t.id)
       AND NOT EXISTS (SELECT 1 FROM dora_refresh_state s WHERE s.tenant_id = t.id))
     AS tenants_never_refreshed,
  (SELECT count(*) FROM dora_refresh_state
     WHERE last_deployment_at IS NOT NULL AND production_environments = '')
     AS tenants_without_production_environment,
  (SELECT count(*) FROM dora_refresh_state
     WHERE last_production_deployment_at < now() - CAST(:stale AS interval))
     AS tenants_without_recent_production_deployment
"""


def health_checks(
    engine: Engine, settings: DoraSettings
) -> dict[str, Callable[[], Awaitable[dict[str, Any]]]]:
    """The ``{name: check}`` mapping for ``register_health_checks``."""

    async def counts() -> dict[str, int]:
        async with engine.db.system_session() as session:
            row = (
                await session.execute(
                    text(_COUNTS), {"stale": timedelta(days=settings.stale_after_days)}
                )
            ).mappings().one()
        return {name: int(value) for name, value in row.items()}

    async def facts() -> dict[str, Any]:
        found = await counts()
        never = found["tenants_never_refreshed"]
        return {
            "status": "degraded" if never else "healthy",
            "tenants_with_facts": found["tenants_with_facts"],
            "tenants_never_refreshed": never,
        }

    async def configuration() -> dict[str, Any]:
        found = await counts()
        missing = found["tenants_without_production_environment"]
        return {
            "status": "degraded" if missing else "healthy",
            "tenants_without_production_environment": missing,
        }

    async def freshness() -> dict[str, Any]:
        found = await counts()
        return {
            "status": "healthy",
            "stale_after_days": settings.stale_after_days,
            "tenants_without_recent_production_deployment": found[
                "tenants_without_recent_production_deployment"
            ],
        }

    return {"facts": facts, "configuration": configuration, "freshness": freshness}
