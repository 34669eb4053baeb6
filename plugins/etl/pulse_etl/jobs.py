"""Jobs: creating, reading, cancelling and retrying ETL jobs, and their queue messages.

A job is a row in ``etl_jobs`` plus a message on :data:`JOB_QUEUE`; the worker
(:mod:`pulse_etl.worker`) runs it. Every change of a job's status is published as
:data:`PROGRESS_EVENT`.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_engine import Page, Problem, fetch_page, invalid_field
from pulse_etl import model
from pulse_etl.configs import validate_config
from pulse_etl.leases import lease_lapsed
from pulse_etl.values import is_uuid, iso

if TYPE_CHECKING:
    from pulse_engine import Engine
    from pulse_etl.service import EtlService

#: The queue of job messages (``{"job_id"}``, with the tenant).
JOB_QUEUE = "etl.jobs"
#: The event published when a job's status, progress or stats change.
PROGRESS_EVENT = "etl.job.progress"


def new_job_id() -> str:
    """A time-ordered UUID (version 7 layout), so ids sort by creation time."""
    millis = int(time.time() * 1000)
    value = (millis & ((1 << 48) - 1)) << 80 | int.from_bytes(secrets.token_bytes(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return str(uuid.UUID(int=value))


def job_document(row: Any) -> dict[str, Any]:
    """The public JSON of a job row."""
    return {
        "id": str(row.id),
        "connector": row.connector,
        "integration_id": str(row.integration_id) if row.integration_id else None,
        "status": row.status,
        "progress": row.progress,
        "stats": row.stats,
        "error": row.error,
        "attempts": row.attempts,
        "cancel_requested": row.cancel_requested,
        "created_at": iso(row.created_at),
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
        "heartbeat_at": iso(row.heartbeat_at),
    }


async def publish_progress(engine: Engine, tenant_id: str, document: Mapping[str, Any]) -> None:
    """Publish a job's state as :data:`PROGRESS_EVENT` to the tenant."""
    await engine.events.publish(
        tenant_id,
        PROGRESS_EVENT,
        {key: document[key] for key in ("id", "status", "progress", "stats", "error")},
    )


async def enqueue_job(engine: Engine, tenant_id: str, job_id: str) -> None:
    """Publish the job's message on :data:`JOB_QUEUE`."""
    await engine.queue.publish(JOB_QUEUE, {"job_id": job_id}, tenant_id=tenant_id)


class Jobs:
    """Job CRUD for one engine."""

    def __init__(self, service: EtlService) -> None:
        """Work with ``service``'s engine, connectors, settings and secrets box."""
        self.service = service

    async def create(self, tenant_id: str, body: Mapping[str, Any], created_by: str | None,
                     *, enqueue: bool = True) -> dict[str, Any]:
        """Create a job from ``{"connector", "integration_id" | "config"}`` and enqueue it."""
        service = self.service
        connector = service.connectors.get(body.get("connector"))
        integration_id = body.get("integration_id")
        public: dict[str, Any] = {}
        secret_token: str | None = None
        if integration_id is not None and "config" in body:
            raise invalid_field("config", "give integration_id or config, not both",
                                type="conflict")
        if integration_id is None:
            public, secret_values = await validate_config(
                connector, body.get("config", {}), service.settings, service.outbound)
            secret_token = service.box.encrypt(secret_values)
        job_id = new_job_id()
        table = model.etl_jobs
        async with service.engine.db.tenant_session(tenant_id) as session:
            if integration_id is not None:
                if not is_uuid(integration_id):
                    raise invalid_field("integration_id", "not a UUID", type="uuid_type")
                integration = (
                    await session.execute(
                        select(model.integrations).where(
                            model.integrations.c.id == str(integration_id))
                    )
                ).first()
                if integration is None or integration.connector != connector.name:
                    raise invalid_field("integration_id",
                                        f"no {connector.name} integration with this id",
                                        type="not_found")
            row = (
                await session.execute(
                    insert(table).values(
                        tenant_id=tenant_id, id=job_id, connector=connector.name,
                        integration_id=str(integration_id) if integration_id else None,
                        config=public, secrets=secret_token, status="queued",
                        created_by=created_by,
                    ).returning(table)
                )
            ).one()
        if enqueue:
            await enqueue_job(service.engine, tenant_id, job_id)
        return job_document(row)

    async def get(self, tenant_id: str, job_id: Any) -> dict[str, Any]:
        """One job (404 when the tenant has none with this id)."""
        async with self.service.engine.db.tenant_session(tenant_id) as session:
            return job_document(await self.row(session, job_id))

    async def page(self, tenant_id: str, limit: int, cursor: str | None) -> Page:
        """The tenant's jobs, newest first."""
        table = model.etl_jobs
        async with self.service.engine.db.tenant_session(tenant_id) as session:
            return await fetch_page(
                session, select(table), table.c.id, kind=str, limit=limit, cursor=cursor,
                to_item=job_document, descending=True,
            )

    async def cancel(self, tenant_id: str, job_id: Any) -> dict[str, Any]:
        """Cancel a queued job at once, or ask a running one to stop (409 when finished)."""
        table = model.etl_jobs
        engine = self.service.engine
        async with engine.db.tenant_session(tenant_id) as session:
            row = await self.row(session, job_id, for_update=True)
            if row.status in model.FINAL_JOB_STATUSES:
                raise Problem(409, "job-finished", f"The job is already {row.status}.")
            values: dict[str, Any] = {"cancel_requested": True, "updated_at": func.now()}
            if row.status == "queued":
                values.update(status="cancelled", finished_at=func.now())
            row = (
                await session.execute(
                    update(table).where(table.c.id == row.id).values(**values).returning(table)
                )
            ).one()
        document = job_document(row)
        await publish_progress(engine, tenant_id, document)
        return document

    async def retry(self, tenant_id: str, job_id: Any) -> dict[str, Any]:
        """Queue a job again; it resumes from its saved cursor.

        Retryable: a failed or cancelled job, and one nobody is working on (its lease
        lapsed: see :func:`pulse_etl.leases.lease_lapsed`).
        """
        table = model.etl_jobs
        lease = self.service.settings.lease_seconds
        async with self.service.engine.db.tenant_session(tenant_id) as session:
            row = await self.row(session, job_id, for_update=True)
            abandoned = await lease_lapsed(session, row, lease)
            if row.status not in ("failed", "cancelled") and not abandoned:
                raise Problem(
                    409, "job-not-retryable",
                    f"Only failed or cancelled jobs, or jobs no worker has held for "
                    f"{lease:g} s, can be retried (it is {row.status}).")
            row = (
                await session.execute(
                    update(table).where(table.c.id == row.id).values(
                        status="queued", error=None, cancel_requested=False, finished_at=None,
                        lease_owner=None, heartbeat_at=None, updated_at=func.now(),
                    ).returning(table)
                )
            ).one()
        await enqueue_job(self.service.engine, tenant_id, str(row.id))
        return job_document(row)

    @staticmethod
    async def row(session: AsyncSession, job_id: Any, *, for_update: bool = False) -> Any:
        """The job row (inside a tenant session), or a 404 problem."""
        table = model.etl_jobs
        row = None
        if is_uuid(job_id):
            query = select(table).where(table.c.id == str(job_id))
            if for_update:
                query = query.with_for_update()
            row = (await session.execute(query)).first()
        if row is None:
            raise Problem(404, "not-found", "No such job.")
        return row
