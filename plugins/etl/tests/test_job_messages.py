"""Job messages: a message for a job another worker holds does not hold a consumer slot."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pulse_etl import model
from pulse_etl.jobs import JOB_QUEUE
from pulse_etl.service import EtlService
from sqlalchemy import func, update

from pulse_engine import Message
from pulse_engine.testing import TenantFixture

from .conftest import build_repository
from .test_jobs import finished


async def test_a_message_for_a_held_job_returns_at_once_and_the_sweep_finishes_the_job(
        etl: EtlService, etl_tenant: TenantFixture, git_root: Path) -> None:
    repo = build_repository(git_root / "held", commits=3)
    job = await etl.create_job(etl_tenant.id, {"connector": "git", "config": {
        "path": str(repo), "branch": "main"}}, None, enqueue=False)
    # another worker holds the job (a live lease), then vanishes without a word
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        await session.execute(update(model.etl_jobs).where(model.etl_jobs.c.id == job["id"])
                              .values(status="running", lease_owner="elsewhere", attempts=1,
                                      heartbeat_at=func.now()))
    # a second message for it (a redelivery, a sweep) is done long before the lease lapses,
    # leaving the job to its holder: the consumer slot is free for other jobs
    duplicate = Message(id="duplicate", queue=JOB_QUEUE, body={"job_id": job["id"]},
                        tenant_id=etl_tenant.id)
    await asyncio.wait_for(etl.worker.handle_message(duplicate), etl.settings.lease_seconds / 2)
    held = await etl.get_job(etl_tenant.id, job["id"])
    assert (held["status"], held["attempts"]) == ("running", 1), held
    # the holder's lease lapses: the sweep queues the job again and it finishes
    await finished(etl_tenant.viewer_client, job["id"], "succeeded")
    final = await etl.get_job(etl_tenant.id, job["id"])
    assert final["attempts"] == 2, final
