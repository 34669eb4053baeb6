"""One claimed execution of a job: what the connector is given while it runs.

:class:`JobRun` is the :class:`~pulse_etl.connector.SyncRun` of a claimed job. Each batch
the connector commits is loaded together with its cursors and the job's stats in one
transaction that also checks the lease, so a worker killed mid-job leaves the job
``running`` with a stale heartbeat, and whoever takes it over resumes from the last
committed cursor. A heartbeat keeps the lease alive and notices cancel requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, update
from sqlalchemy.exc import DBAPIError

from pulse_engine import Problem
from pulse_etl import model
from pulse_etl.configs import build_config, check_outbound
from pulse_etl.connector import Connector, JobCancelled, LeaseLost
from pulse_etl.cursors import cursor_scope, read_cursor, save_cursor
from pulse_etl.jobs import enqueue_job, publish_progress
from pulse_etl.loader import Batch, Stats, merge_stats

if TYPE_CHECKING:
    from pulse_etl.service import EtlService

log = logging.getLogger(__name__)

#: The longest error text stored on a job.
MAX_ERROR_LENGTH = 2000
#: PostgreSQL errors after which a batch was rolled back whole and trying again is safe:
#: deadlock, serialization failure, lock not available, and a unique violation (two loads
#: inserting the same new entity at once: the upsert's arbiter is the natural key, so the
#: later insert trips over the primary key; on the next attempt it finds the row and
#: updates it).
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001", "55P03", "23505"})
#: Runs of one job (attempts) after which a transient error fails it after all.
MAX_TRANSIENT_ATTEMPTS = 5


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is a database conflict that a later attempt can get past, raised
    through SQLAlchemy (``.orig``) or by the driver itself (the bulk loader's statements)."""
    return getattr(getattr(error, "orig", error), "sqlstate", None) in TRANSIENT_SQLSTATES


ProgressCallback = Callable[[dict[str, Any]], Awaitable[None] | None]


def error_text(error: BaseException) -> str:
    """The text a failed job records for ``error``."""
    if isinstance(error, Problem):
        errors = error.extra.get("errors")
        return f"{error.detail} {json.dumps(errors)}"[:MAX_ERROR_LENGTH] if errors else error.detail
    orig = getattr(error, "orig", None)
    if isinstance(error, DBAPIError) and orig is not None:
        # the database's own message only: the statement and its parameters stay in the log
        reason = str(orig).splitlines()[0] if str(orig) else type(orig).__name__
        sqlstate = getattr(orig, "sqlstate", None)
        return f"database error {sqlstate or ''}: {reason}"[:MAX_ERROR_LENGTH]
    return f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH]


def _cancelling_this_task() -> bool:
    """Whether somebody asked the running task itself to stop."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class JobRun:
    """One claimed execution of a job (see the module docstring)."""

    def __init__(self, service: EtlService, tenant_id: str, row: Any, owner: str,
                 on_progress: ProgressCallback | None) -> None:
        """Prepare the run of a claimed job ``row`` held by ``owner``."""
        self.service = service
        self.engine = service.engine
        self.settings = service.settings
        self.outbound = service.outbound
        self.tenant_id = tenant_id
        self.job_id = str(row.id)
        self.owner = owner
        self.row = row
        self.connector_name = row.connector
        self.stats: Stats = dict(row.stats or {})
        self.progress = float(row.progress or 0.0)
        self.on_progress = on_progress
        self.secrets: Mapping[str, Any] = {}
        self.config: Any = None
        self.scope = ""
        self._cancel_seen = False

    async def execute(self) -> str:
        """Run the connector with a heartbeat; record the outcome; return the status."""
        try:
            connector, self.config = await self._prepare()
        except Exception as error:
            return await self._finish("failed", error_text(error))
        # the connector runs in its own task: a cancel the heartbeat sees stops that task
        # only, so it can never land in this one's bookkeeping (finishing, announcing)
        run = asyncio.create_task(connector.run(self))
        heartbeat = asyncio.create_task(self._heartbeat(run))
        try:
            await run
        except LeaseLost:
            log.warning("job %s: lease lost to another worker", self.job_id)
            return "running"
        except JobCancelled:
            return await self._finish("cancelled", None)
        except asyncio.CancelledError:
            if run.cancelled() and self._cancel_seen and not _cancelling_this_task():
                return await self._finish("cancelled", None)
            run.cancel()  # the caller's cancel (a stopping worker): the connector stops too
            raise
        except Exception as error:
            if is_transient(error) and self.row.attempts < MAX_TRANSIENT_ATTEMPTS:
                log.warning("job %s: %s; queued again, to resume from its cursor",
                            self.job_id, type(getattr(error, "orig", error)).__name__)
                await self._queue_again()
                return "queued"
            log.warning("job %s (%s) failed", self.job_id, self.connector_name, exc_info=True)
            return await self._finish("failed", error_text(error))
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        return await self._finish("succeeded", None)

    async def _queue_again(self) -> None:
        """Give the lease back and queue the job: the next run resumes from the cursor
        the last committed batch saved (the failed batch was rolled back whole)."""
        table = model.etl_jobs
        async with self.engine.db.tenant_session(self.tenant_id) as session:
            released = await session.execute(
                update(table)
                .where(table.c.id == self.job_id, table.c.lease_owner == self.owner)
                .values(status="queued", lease_owner=None, heartbeat_at=None,
                        updated_at=func.now())
            )
        if released.rowcount:  # type: ignore[attr-defined]
            await enqueue_job(self.engine, self.tenant_id, self.job_id)

    async def _prepare(self) -> tuple[Connector, Any]:
        service = self.service
        connector = service.connectors.get(self.connector_name)
        public = dict(self.row.config or {})
        if self.row.integration_id:
            async with self.engine.db.tenant_session(self.tenant_id) as session:
                integration, self.secrets = await service.integrations.with_secrets(
                    session, str(self.row.integration_id)
                )
            public = dict(integration.config or {})
        else:
            self.secrets = service.box.decrypt(self.row.secrets)
        config = build_config(connector, public, self.secrets)
        connector.check(config, self.settings)
        await check_outbound(connector, config, self.outbound)
        self.scope = cursor_scope(
            str(self.row.integration_id) if self.row.integration_id else None,
            connector.name, public,
        )
        return connector, config

    async def _heartbeat(self, run: asyncio.Task[Any]) -> None:
        table = model.etl_jobs
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            try:
                async with self.engine.db.tenant_session(self.tenant_id) as session:
                    cancel = await session.scalar(
                        update(table)
                        .where(table.c.id == self.job_id, table.c.lease_owner == self.owner)
                        .values(heartbeat_at=func.now())
                        .returning(table.c.cancel_requested)
                    )
            except Exception:
                log.warning("job %s: heartbeat failed", self.job_id, exc_info=True)
                continue
            if cancel:
                self._cancel_seen = True
                run.cancel()
                return

    # --- SyncRun -------------------------------------------------------------------------

    async def cursor(self, stream: str) -> dict[str, Any] | None:
        """The saved cursor of ``stream``."""
        return await read_cursor(self.engine, self.tenant_id, self.scope, stream)

    async def commit(
        self,
        batch: Batch,
        *,
        cursors: Mapping[str, dict[str, Any]] | None = None,
        progress: float | None = None,
    ) -> Stats:
        """Load ``batch``, save ``cursors`` and the job's stats in one transaction."""
        table = model.etl_jobs
        loads = self.service.loads
        if progress is not None:
            self.progress = max(0.0, min(1.0, progress))
        async with self.engine.db.tenant_session(self.tenant_id) as session:
            loaded = await loads.load(session, self.tenant_id, batch)
            stats = loaded.stats
            for stream, value in (cursors or {}).items():
                await save_cursor(
                    session, self.tenant_id, self.scope, stream, self.connector_name, value
                )
            total = merge_stats(copy.deepcopy(self.stats), stats)
            cancel = await session.scalar(
                update(table)
                .where(table.c.id == self.job_id, table.c.lease_owner == self.owner)
                .values(stats=total, progress=self.progress, heartbeat_at=func.now(),
                        updated_at=func.now())
                .returning(table.c.cancel_requested)
            )
            if cancel is None:
                raise LeaseLost(self.job_id)
        self.stats = total
        await loads.after_load(self.tenant_id, self.job_id, self.connector_name, loaded)
        await self._announce("running")
        if cancel:
            raise JobCancelled(self.job_id)
        return stats

    async def report(self, progress: float) -> None:
        """Record progress without data."""
        self.progress = max(0.0, min(1.0, progress))
        table = model.etl_jobs
        async with self.engine.db.tenant_session(self.tenant_id) as session:
            await session.execute(
                update(table)
                .where(table.c.id == self.job_id, table.c.lease_owner == self.owner)
                .values(progress=self.progress, heartbeat_at=func.now())
            )
        await self._announce("running")

    async def _announce(self, status: str, error: str | None = None) -> None:
        document = {"id": self.job_id, "status": status, "progress": self.progress,
                    "stats": self.stats, "error": error}
        await publish_progress(self.engine, self.tenant_id, document)
        if self.on_progress is not None:
            result = self.on_progress(document)
            if asyncio.iscoroutine(result):
                await result

    async def _finish(self, status: str, error: str | None) -> str:
        table = model.etl_jobs
        if status == "succeeded":
            self.progress = 1.0
        async with self.engine.db.tenant_session(self.tenant_id) as session:
            await session.execute(
                update(table)
                .where(table.c.id == self.job_id, table.c.lease_owner == self.owner)
                .values(status=status, error=error, progress=self.progress,
                        finished_at=datetime.now(UTC), updated_at=func.now())
            )
        await self._announce(status, error)
        return status
