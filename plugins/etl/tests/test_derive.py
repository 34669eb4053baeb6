"""Incident links: explicit references win, and a shared SHA names the production deploy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pulse_etl import derive, model
from pulse_etl.model import stable_id
from pulse_etl.service import EtlService
from sqlalchemy import select

from pulse_engine.testing import TenantFixture

SHA = "a" * 40
T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)


def deployment(environment: str, finished: datetime) -> dict[str, object]:
    """A successful deployment of SHA to an environment."""
    return {
        "id": stable_id("deployments", "test", environment),
        "source": "test",
        "external_id": environment,
        "service": "api",
        "environment": environment,
        "result": "success",
        "started_at": finished - timedelta(minutes=5),
        "finished_at": finished,
        "sha": SHA,
    }


def incident(key: str, created: datetime, reference: str | None) -> dict[str, object]:
    """An incident of the api service, optionally naming a deployment or SHA."""
    return {
        "id": stable_id("incidents", "test", key),
        "source": "test",
        "external_id": key,
        "service": "api",
        "created_at_source": created,
        "resolved_at": created + timedelta(hours=1),
        "deployment_ref": reference,
    }


async def test_shared_sha_links_to_production_and_windows_apply(
    etl: EtlService, etl_tenant: TenantFixture
) -> None:
    # staging got the SHA after production: the explicit SHA must still name production
    production = deployment("production", T0)
    staging = deployment("staging", T0 + timedelta(hours=2))
    batch = {
        "deployments": [production, staging],
        "incidents": [
            incident("by-sha", T0 + timedelta(hours=3), SHA),
            incident("implicit", T0 + timedelta(days=1), None),
            incident("too-late", T0 + timedelta(days=9), None),
            incident("unknown-ref", T0 + timedelta(hours=1), "no-such-deploy"),
        ],
    }
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        await etl.loader.load(session, etl_tenant.id, batch)
        await derive.link_incidents(session, etl_tenant.id)
        rows = {
            row.external_id: (row.deployment_id, row.link_reason)
            for row in await session.execute(select(model.incidents))
        }
    assert rows["by-sha"] == (production["id"], "explicit")
    assert rows["implicit"] == (production["id"], "latest_deployment")
    assert rows["too-late"] == (None, None)  # outside the 7-day window
    # a reference that matches nothing falls back to the window rule
    assert rows["unknown-ref"] == (production["id"], "latest_deployment")
