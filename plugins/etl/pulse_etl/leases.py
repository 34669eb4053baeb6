"""Leases: which worker holds a running job, and when a job nobody holds may be taken.

A worker claims a job by writing its ``lease_owner`` and a fresh ``heartbeat_at``, and keeps
the lease with a heartbeat every ``PULSE_ETL_HEARTBEAT_SECONDS``. A lease lapses when the
heartbeat is older than ``PULSE_ETL_LEASE_SECONDS``: its worker stalled or died, and
another may take the job over (resuming from the last committed cursor).

Nobody has to: :mod:`pulse_etl.sweeper` queues such jobs again by itself.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text, update

from pulse_etl import model

if TYPE_CHECKING:
    from pulse_engine import Engine


def new_lease_owner() -> str:
    """A lease owner name unique to this attempt: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def lease_lapsed(session: Any, row: Any, lease_seconds: float) -> bool:
    """Whether nobody holds the job ``row``: ``running`` with a heartbeat older than the
    lease, or ``queued`` and untouched for longer than the lease (its queue message went
    with a stopped process). Compared on the database's clock."""
    if row.status not in ("queued", "running"):
        return False
    lapsed = await session.scalar(
        text("SELECT coalesce(CAST(:moment AS timestamptz), CAST(:updated AS timestamptz))"
             " < now() - CAST(:lease AS interval)"),
        {"moment": row.heartbeat_at, "updated": row.updated_at,
         "lease": timedelta(seconds=lease_seconds)})
    return bool(lapsed)


@dataclass(frozen=True)
class Claim:
    """The outcome of trying to claim a job.

    :ivar claimed: whether this worker holds the job now.
    :ivar row: the job row as it stands (None when there is no such job).
    :ivar wait: seconds until another worker's lease lapses (when held by another).
    """

    claimed: bool
    row: Any
    wait: float = 0.0


async def claim_job(engine: Engine, tenant_id: str, job_id: str, owner: str,
                    lease_seconds: float) -> Claim:
    """Take the lease of a job that is queued, or running under a lapsed lease.

    A job asked to cancel before it started is cancelled instead; a finished job is left
    as it is.
    """
    table = model.etl_jobs
    async with engine.db.tenant_session(tenant_id) as session:
        row = (
            await session.execute(select(table).where(table.c.id == job_id).with_for_update())
        ).first()
        if row is None or row.status in model.FINAL_JOB_STATUSES:
            return Claim(False, row)
        if row.cancel_requested:
            row = (
                await session.execute(
                    update(table).where(table.c.id == job_id).values(
                        status="cancelled", finished_at=func.now(), updated_at=func.now()
                    ).returning(table)
                )
            ).one()
            return Claim(False, row)
        now = await session.scalar(select(func.now()))
        if row.status == "running" and row.heartbeat_at is not None:
            age = (now - row.heartbeat_at).total_seconds()
            if age < lease_seconds:
                return Claim(False, row, max(0.05, lease_seconds - age))
        row = (
            await session.execute(
                update(table).where(table.c.id == job_id).values(
                    status="running", lease_owner=owner, heartbeat_at=func.now(),
                    attempts=table.c.attempts + 1,
                    started_at=func.coalesce(table.c.started_at, func.now()),
                    updated_at=func.now(),
                ).returning(table)
            )
        ).one()
    return Claim(True, row)

