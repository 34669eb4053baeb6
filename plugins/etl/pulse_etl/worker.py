"""The queue worker: runs the job each ``etl.jobs`` message names.

Several workers (in one or more processes) may receive the same job (a redelivered
message, a retry, the lease sweep's message): the lease (:mod:`pulse_etl.leases`) lets one
run it at a time. A message for a job someone holds is done at once and frees its consumer
slot: if the holder dies, its lease lapses and the sweep (:mod:`pulse_etl.sweeper`) queues
the job again. :meth:`JobWorker.run` called directly (``pulse etl run``, tests) waits for the
lease instead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from pulse_engine import Consumer, Message
from pulse_etl import model
from pulse_etl.job_run import JobRun, ProgressCallback
from pulse_etl.jobs import JOB_QUEUE, job_document, publish_progress
from pulse_etl.leases import claim_job, new_lease_owner
from pulse_etl.values import is_uuid

if TYPE_CHECKING:
    from pulse_etl.service import EtlService

log = logging.getLogger(__name__)


class JobWorker:
    """Runs jobs for one engine."""

    def __init__(self, service: EtlService) -> None:
        """Run jobs with ``service``'s connectors, settings and loads."""
        self.service = service

    def consumer(self) -> Consumer:
        """The queue consumer running jobs (one job at a time per worker slot)."""
        return Consumer(queue=JOB_QUEUE, handler=self.handle_message, prefetch=2,
                        max_retries=5, retry_delay=5.0)

    async def handle_message(self, message: Message) -> None:
        """Run the job a queue message names (no-op for finished or unknown jobs)."""
        job_id = message.body.get("job_id")
        if message.tenant_id is None or not is_uuid(job_id):
            log.warning("ignoring malformed ETL job message %s", message.id)
            return
        await self.run(message.tenant_id, str(job_id), wait_for_lease=False)

    async def run(self, tenant_id: str, job_id: str, *,
                  on_progress: ProgressCallback | None = None,
                  wait_for_lease: bool = True) -> str:
        """Claim and run one job to its end; returns the final (or current) status.

        When another worker holds the job, waits for its lease to lapse, or with
        ``wait_for_lease=False`` returns its current status at once. Returns at once when
        the job is finished.
        """
        service = self.service
        owner = new_lease_owner()
        while True:
            claim = await claim_job(service.engine, tenant_id, job_id, owner,
                                    service.settings.lease_seconds)
            if claim.claimed:
                await publish_progress(service.engine, tenant_id, job_document(claim.row))
                break
            row = claim.row
            if row is None or row.status in model.FINAL_JOB_STATUSES or not wait_for_lease:
                return row.status if row is not None else "missing"
            await asyncio.sleep(claim.wait)
        run = JobRun(service, tenant_id, claim.row, owner, on_progress)
        return await run.execute()
