"""DORA figures follow ETL loads: a committed load queues a refresh through data_loaded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pulse_etl.model import stable_id
from pulse_etl.plugin import service_for
from pulse_etl.service import load_batch
from quart import Quart

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture

FINISHED = datetime(2026, 2, 10, 15, tzinfo=UTC)


def production_deployment(key: str, finished: datetime) -> dict[str, object]:
    """A successful production deployment of the api service."""
    return {
        "id": stable_id("deployments", "test", key),
        "source": "test",
        "external_id": key,
        "service": "api",
        "environment": "production",
        "result": "success",
        "started_at": finished - timedelta(minutes=10),
        "finished_at": finished,
        "sha": key * 40 if len(key) == 1 else key,
    }


async def summary_count(tenant: TenantFixture) -> int:
    """The deployment count of February 2026 in the summary."""
    response = await tenant.viewer_client.get(
        "/api/v1/metrics/dora/summary?start=2026-02-01T00:00:00Z&end=2026-03-01T00:00:00Z"
    )
    assert response.status_code == 200, await response.get_data()
    document = await response.get_json()
    return int(document["metrics"]["deployment_frequency"]["deployments"])


async def test_a_load_refreshes_the_figures(
    dora_app: Quart, engine: PulseEngine, dora_tenant: TenantFixture
) -> None:
    service = service_for(engine)
    assert await summary_count(dora_tenant) == 0
    await load_batch(
        service, dora_tenant.id, {"deployments": [production_deployment("a", FINISHED)]}, "test"
    )
    assert await engine.queue.wait_idle(30)
    assert await summary_count(dora_tenant) == 1  # cached answer dropped, facts refreshed
    await load_batch(
        service,
        dora_tenant.id,
        {"deployments": [production_deployment("b", FINISHED + timedelta(days=1))]},
        "test",
    )
    assert await engine.queue.wait_idle(30)
    assert await summary_count(dora_tenant) == 2
