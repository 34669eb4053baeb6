"""Jobs interrupted by a stopped process finish by themselves.

:func:`requeue_lapsed`, run by every process at start and then every
``PULSE_ETL_SWEEP_SECONDS`` (:func:`sweep_forever`, started by the plugin's ``startup``),
puts each job whose lease lapsed (:func:`pulse_etl.leases.lease_lapsed`: ``running`` with
a stale heartbeat, or ``queued`` and untouched for longer than the lease) back on the
queue, with the in-memory queue (whose messages died with the process) and a broker alike.
It is one conditional ``UPDATE`` over rows locked with ``SKIP LOCKED``, which also stamps
the rows, so processes sweeping together queue each job once; a message that reaches a job
someone else holds or has finished is a no-op (:func:`pulse_etl.leases.claim_job`). The
job resumes from its last committed cursor.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import text

from pulse_etl.jobs import enqueue_job

if TYPE_CHECKING:
    from pulse_engine import Engine

log = logging.getLogger(__name__)

#: Jobs one sweep re-queues at most (the next sweep takes the rest).
SWEEP_BATCH = 500

_LAPSED = text("""
UPDATE etl_jobs SET status = 'queued', lease_owner = NULL, heartbeat_at = NULL,
                    updated_at = now()
WHERE (tenant_id, id) IN (
    SELECT tenant_id, id FROM etl_jobs
    WHERE status IN ('queued', 'running')
      AND coalesce(heartbeat_at, updated_at) < now() - CAST(:lease AS interval)
    ORDER BY updated_at
    LIMIT :batch
    FOR UPDATE SKIP LOCKED)
RETURNING tenant_id, id
""")


async def requeue_lapsed(engine: Engine, lease_seconds: float) -> list[tuple[str, str]]:
    """Queue again every job nobody holds (see :func:`lease_lapsed`); returns their
    ``(tenant, job)`` ids. Safe to run in several processes at once."""
    async with engine.db.system_session() as session:
        rows = (await session.execute(_LAPSED, {
            "lease": timedelta(seconds=lease_seconds), "batch": SWEEP_BATCH})).all()
    jobs = [(str(row.tenant_id), str(row.id)) for row in rows]
    for tenant_id, job_id in jobs:
        log.info("job %s: lease lapsed, queued again", job_id)
        await enqueue_job(engine, tenant_id, job_id)
    return jobs


async def sweep_forever(engine: Engine, lease_seconds: float, interval: float) -> None:
    """Run :func:`requeue_lapsed` now and then every ``interval`` seconds (the plugin runs
    it as a :class:`pulse_engine.BackgroundTask`); a failed sweep is logged and retried."""
    while True:
        try:
            await requeue_lapsed(engine, lease_seconds)
        except Exception:
            log.warning("ETL lease sweep failed; retrying in %.0f s", interval, exc_info=True)
        await asyncio.sleep(interval)
