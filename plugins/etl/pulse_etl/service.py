"""ETL jobs and integrations: creation, validation, the queue worker and the job runner.

A job is a row in ``etl_jobs`` plus a message on the ``etl.jobs`` queue. A worker claims
the job with a lease (``lease_owner``, ``heartbeat_at``) and keeps it alive with a
heartbeat while the connector runs. Each batch the connector commits is loaded together
with its cursor and the job's stats in one transaction that also checks the lease; so a
worker killed mid-job leaves the job ``running`` with a stale heartbeat, and the
redelivered message (or a retry) resumes it from the last committed cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_engine import Consumer, Message, Page, Problem, fetch_page, field_errors
from pulse_etl import derive, model
from pulse_etl.connector import (
    ConfigError,
    Connector,
    JobCancelled,
    LeaseLost,
)
from pulse_etl.crypto import SecretBox
from pulse_etl.loader import Batch, Loader, Stats, merge_stats
from pulse_etl.settings import EtlSettings

if TYPE_CHECKING:
    from pulse_engine import Engine

log = logging.getLogger(__name__)

JOB_QUEUE = "etl.jobs"
PROGRESS_EVENT = "etl.job.progress"
DATA_LOADED_EVENT = "etl.data.loaded"
#: Rows one load must write into a table before its planner statistics are refreshed.
ANALYZE_AFTER_ROWS = 5000
FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
MAX_ERROR_LENGTH = 2000

ProgressCallback = Callable[[dict[str, Any]], Awaitable[None] | None]


#: The columns whose earliest value bounds what a load can change in derived facts.
EVENT_TIME_COLUMNS: dict[str, tuple[str, ...]] = {
    "deployments": ("started_at", "finished_at"),
    "incidents": ("created_at_source",),
    "commits": ("authored_at",),
    "pull_requests": ("created_at_source",),
    "work_items": ("created_at_source",),
}


def changed_rows(stats: Stats, entity: str) -> bool:
    """Whether a load created or updated rows of ``entity``."""
    counts = stats.get(entity, {})
    return bool(counts.get("created") or counts.get("updated"))


def earliest_event(batch: Batch) -> datetime | None:
    """The earliest event time among a batch's rows (what ``data_loaded`` calls ``since``)."""
    times = [
        value
        for entity, columns in EVENT_TIME_COLUMNS.items()
        for row in batch.get(entity, ())
        for column in columns
        if isinstance(value := row.get(column), datetime)
    ]
    return min(times, default=None)


@dataclass(frozen=True)
class Loaded:
    """What loading one batch did.

    :ivar stats: rows created and updated per entity.
    :ivar since: the earliest event time the load touched (``data_loaded``'s ``since``):
        the batch's own event times, and where deployments it moved used to finish.
    """

    stats: Stats
    since: datetime | None


def new_job_id() -> str:
    """A time-ordered UUID (version 7 layout), so ids sort by creation time."""
    millis = int(time.time() * 1000)
    value = (millis & ((1 << 48) - 1)) << 80 | int.from_bytes(secrets.token_bytes(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return str(uuid.UUID(int=value))


def validation_problem(errors: list[dict[str, Any]], detail: str) -> Problem:
    """A 422 problem listing the offending fields."""
    return Problem(422, "validation-error", detail, errors=errors)


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
        "created_at": _iso(row.created_at),
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
        "heartbeat_at": _iso(row.heartbeat_at),
    }


def integration_document(row: Any) -> dict[str, Any]:
    """The public JSON of an integration row: secrets are reported by name only."""
    return {
        "id": str(row.id),
        "connector": row.connector,
        "name": row.name,
        "config": row.config,
        "has_secrets": bool(row.secrets),
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class EtlService:
    """The ETL plugin's state and operations for one engine."""

    def __init__(self, engine: Engine, settings: EtlSettings | None = None) -> None:
        """Bind to ``engine``; reads :class:`EtlSettings` from the environment by default."""
        self.engine = engine
        self.settings = settings or EtlSettings()
        self.loader = Loader(copy_threshold=self.settings.copy_threshold)
        self._box: SecretBox | None = None
        self._connectors: dict[str, Connector] | None = None

    @property
    def box(self) -> SecretBox:
        """The secrets box (created on first use)."""
        if self._box is None:
            self._box = SecretBox.from_settings(self.engine.settings, self.settings)
        return self._box

    # --- connectors and configs ----------------------------------------------------------

    def connectors(self) -> dict[str, Connector]:
        """Every registered connector by name (first registration of a name wins)."""
        if self._connectors is None:
            found: dict[str, Connector] = {}
            for _plugin, result in self.engine.call_hook_sync(
                "register_connectors", engine=self.engine
            ):
                for connector in result if isinstance(result, list | tuple) else [result]:
                    found.setdefault(connector.name, connector)
            self._connectors = found
        return self._connectors

    def connector(self, name: Any) -> Connector:
        """The named connector, or a 422 naming the ``connector`` field."""
        connector = self.connectors().get(name) if isinstance(name, str) else None
        if connector is None:
            raise validation_problem(
                [{"field": "connector", "message": f"unknown connector {name!r}",
                  "type": "unknown_connector"}],
                f"Unknown connector; known: {', '.join(sorted(self.connectors()))}.",
            )
        return connector

    def validate_config(
        self, connector: Connector, raw: Any, field: str = "config"
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Validate a configuration; return ``(public config, secrets)`` or raise 422."""
        if not isinstance(raw, dict):
            raise validation_problem(
                [{"field": field, "message": "must be an object", "type": "dict_type"}],
                "The configuration must be a JSON object.",
            )
        try:
            config = connector.config_model.model_validate(raw)
        except ValidationError as error:
            raise validation_problem(
                field_errors(error, f"{field}." if field else ""),
                "The connector configuration is not valid.",
            ) from None
        try:
            connector.check(config, self.settings)
        except ConfigError as error:
            raise validation_problem(
                [{"field": f"{field}.{error.field}", "message": error.message,
                  "type": "config_refused"}],
                f"The connector configuration is refused: {error.message}",
            ) from None
        document = config.model_dump(mode="json", exclude_none=True)
        secret_values = {k: document.pop(k) for k in list(document) if k in connector.secret_fields}
        return document, secret_values

    def build_config(self, connector: Connector, public: Mapping[str, Any],
                     secret_values: Mapping[str, Any]) -> BaseModel:
        """The validated config model of a stored job or integration."""
        return connector.config_model.model_validate({**public, **secret_values})

    # --- integrations ------------------------------------------------------------------

    async def create_integration(
        self, tenant_id: str, body: Mapping[str, Any], created_by: str | None
    ) -> dict[str, Any]:
        """Create an integration from ``{"connector", "name", "config"}``."""
        connector = self.connector(body.get("connector"))
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise validation_problem(
                [{"field": "name", "message": "a non-empty string of at most 200 characters",
                  "type": "string_type"}],
                "The integration needs a name.",
            )
        public, secret_values = self.validate_config(connector, body.get("config", {}))
        integration_id = str(uuid.uuid4())
        table = model.integrations
        async with self.engine.db.tenant_session(tenant_id) as session:
            exists = await session.scalar(select(table.c.id).where(table.c.name == name))
            if exists is not None:
                raise Problem(409, "conflict", "An integration with this name exists.",
                              errors=[{"field": "name", "message": "already used"}])
            row = (
                await session.execute(
                    insert(table)
                    .values(
                        tenant_id=tenant_id, id=integration_id, connector=connector.name,
                        name=name, config=public, secrets=self.box.encrypt(secret_values),
                        created_by=created_by,
                    )
                    .returning(table)
                )
            ).one()
            await session.execute(
                insert(model.webhook_routes).values(
                    integration_id=integration_id, owner_tenant_id=tenant_id,
                    connector=connector.name,
                )
            )
        return integration_document(row)

    async def update_integration(
        self, tenant_id: str, integration_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Replace an integration's name and/or config; omitted secrets are kept."""
        table = model.integrations
        async with self.engine.db.tenant_session(tenant_id) as session:
            row = await self._integration_row(session, integration_id)
            connector = self.connector(row.connector)
            values: dict[str, Any] = {"updated_at": func.now()}
            if "name" in body:
                name = body["name"]
                if not isinstance(name, str) or not name.strip() or len(name) > 200:
                    raise validation_problem(
                        [{"field": "name", "message": "a non-empty string",
                          "type": "string_type"}], "The integration needs a name.")
                values["name"] = name
            if "config" in body:
                old_secrets = self.box.decrypt(row.secrets)
                raw = body["config"]
                if isinstance(raw, dict):
                    raw = {**{k: v for k, v in old_secrets.items() if k not in raw}, **raw}
                public, secret_values = self.validate_config(connector, raw)
                values["config"] = public
                values["secrets"] = self.box.encrypt(secret_values)
            updated = (
                await session.execute(
                    update(table).where(table.c.id == integration_id).values(**values)
                    .returning(table)
                )
            ).one()
        return integration_document(updated)

    async def delete_integration(self, tenant_id: str, integration_id: str) -> None:
        """Delete an integration, its webhook route and its cursors (data stays)."""
        async with self.engine.db.tenant_session(tenant_id) as session:
            await self._integration_row(session, integration_id)
            await session.execute(
                delete(model.integrations).where(model.integrations.c.id == integration_id)
            )
            await session.execute(
                delete(model.sync_cursors).where(model.sync_cursors.c.scope == integration_id)
            )
            await session.execute(
                delete(model.webhook_routes).where(
                    model.webhook_routes.c.integration_id == integration_id,
                    model.webhook_routes.c.owner_tenant_id == tenant_id,
                )
            )

    async def get_integration(self, tenant_id: str, integration_id: str) -> dict[str, Any]:
        """One integration (404 when the tenant has none with this id)."""
        async with self.engine.db.tenant_session(tenant_id) as session:
            return integration_document(await self._integration_row(session, integration_id))

    async def list_integrations(self, tenant_id: str, limit: int, cursor: str | None) -> Page:
        """The tenant's integrations ordered by name."""
        table = model.integrations
        async with self.engine.db.tenant_session(tenant_id) as session:
            return await fetch_page(
                session, select(table), table.c.name, kind=str, limit=limit, cursor=cursor,
                to_item=integration_document,
            )

    async def _integration_row(self, session: AsyncSession, integration_id: Any) -> Any:
        table = model.integrations
        row = None
        if _is_uuid(integration_id):
            row = (
                await session.execute(select(table).where(table.c.id == str(integration_id)))
            ).first()
        if row is None:
            raise Problem(404, "not-found", "No such integration.")
        return row

    async def integration_secrets(self, session: AsyncSession, integration_id: str
                                  ) -> tuple[Any, dict[str, Any]]:
        """An integration row and its decrypted secrets (inside a tenant session)."""
        row = await self._integration_row(session, integration_id)
        return row, self.box.decrypt(row.secrets)

    # --- jobs --------------------------------------------------------------------------

    async def create_job(
        self, tenant_id: str, body: Mapping[str, Any], created_by: str | None,
        *, enqueue: bool = True,
    ) -> dict[str, Any]:
        """Create a job from ``{"connector", "integration_id" | "config"}`` and enqueue it."""
        connector = self.connector(body.get("connector"))
        integration_id = body.get("integration_id")
        public: dict[str, Any] = {}
        secret_token: str | None = None
        if integration_id is not None and "config" in body:
            raise validation_problem(
                [{"field": "config", "message": "give integration_id or config, not both",
                  "type": "conflict"}], "Give integration_id or config, not both.")
        if integration_id is None:
            public, secret_values = self.validate_config(connector, body.get("config", {}))
            secret_token = self.box.encrypt(secret_values)
        job_id = new_job_id()
        table = model.etl_jobs
        async with self.engine.db.tenant_session(tenant_id) as session:
            if integration_id is not None:
                if not _is_uuid(integration_id):
                    raise validation_problem(
                        [{"field": "integration_id", "message": "not a UUID",
                          "type": "uuid_type"}], "integration_id is not valid.")
                integration = (
                    await session.execute(
                        select(model.integrations).where(
                            model.integrations.c.id == str(integration_id))
                    )
                ).first()
                if integration is None or integration.connector != connector.name:
                    raise validation_problem(
                        [{"field": "integration_id",
                          "message": f"no {connector.name} integration with this id",
                          "type": "not_found"}], "integration_id is not valid.")
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
            await self.enqueue(tenant_id, job_id)
        return job_document(row)

    async def enqueue(self, tenant_id: str, job_id: str) -> None:
        """Publish the job's message on :data:`JOB_QUEUE`."""
        await self.engine.queue.publish(JOB_QUEUE, {"job_id": job_id}, tenant_id=tenant_id)

    async def get_job(self, tenant_id: str, job_id: Any) -> dict[str, Any]:
        """One job (404 when the tenant has none with this id)."""
        async with self.engine.db.tenant_session(tenant_id) as session:
            return job_document(await self._job_row(session, job_id))

    async def list_jobs(self, tenant_id: str, limit: int, cursor: str | None) -> Page:
        """The tenant's jobs, newest first."""
        table = model.etl_jobs
        async with self.engine.db.tenant_session(tenant_id) as session:
            return await fetch_page(
                session, select(table), table.c.id, kind=str, limit=limit, cursor=cursor,
                to_item=job_document, descending=True,
            )

    async def cancel_job(self, tenant_id: str, job_id: Any) -> dict[str, Any]:
        """Cancel a queued job at once, or ask a running one to stop (409 when finished)."""
        table = model.etl_jobs
        async with self.engine.db.tenant_session(tenant_id) as session:
            row = await self._job_row(session, job_id, for_update=True)
            if row.status in FINAL_STATUSES:
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
        await self._progress_event(tenant_id, document)
        return document

    async def retry_job(self, tenant_id: str, job_id: Any) -> dict[str, Any]:
        """Queue a job again; it resumes from its saved cursor.

        Retryable: a failed or cancelled job, and one nobody is working on (its queue
        message went with a stopped process): ``running`` with a heartbeat older than the
        lease, or ``queued`` for longer than the lease.
        """
        table = model.etl_jobs
        async with self.engine.db.tenant_session(tenant_id) as session:
            row = await self._job_row(session, job_id, for_update=True)
            lapsed = await session.scalar(
                text("SELECT coalesce(CAST(:moment AS timestamptz), CAST(:updated AS timestamptz))"
                     " < now() - CAST(:lease AS interval)"),
                {"moment": row.heartbeat_at, "updated": row.updated_at,
                 "lease": timedelta(seconds=self.settings.lease_seconds)})
            abandoned = row.status in ("queued", "running") and bool(lapsed)
            if row.status not in ("failed", "cancelled") and not abandoned:
                raise Problem(
                    409, "job-not-retryable",
                    f"Only failed or cancelled jobs, or jobs no worker has held for "
                    f"{self.settings.lease_seconds:g} s, can be retried (it is {row.status}).")
            row = (
                await session.execute(
                    update(table).where(table.c.id == row.id).values(
                        status="queued", error=None, cancel_requested=False, finished_at=None,
                        lease_owner=None, heartbeat_at=None, updated_at=func.now(),
                    ).returning(table)
                )
            ).one()
        await self.enqueue(tenant_id, str(row.id))
        return job_document(row)

    async def _job_row(self, session: AsyncSession, job_id: Any, *, for_update: bool = False
                       ) -> Any:
        table = model.etl_jobs
        row = None
        if _is_uuid(job_id):
            query = select(table).where(table.c.id == str(job_id))
            if for_update:
                query = query.with_for_update()
            row = (await session.execute(query)).first()
        if row is None:
            raise Problem(404, "not-found", "No such job.")
        return row

    # --- running jobs --------------------------------------------------------------------

    def consumer(self) -> Consumer:
        """The queue consumer running jobs (one job at a time per worker slot)."""
        return Consumer(queue=JOB_QUEUE, handler=self.handle_message, prefetch=2,
                        max_retries=5, retry_delay=5.0)

    async def handle_message(self, message: Message) -> None:
        """Run the job a queue message names (no-op for finished or unknown jobs)."""
        job_id = message.body.get("job_id")
        if message.tenant_id is None or not _is_uuid(job_id):
            log.warning("ignoring malformed ETL job message %s", message.id)
            return
        await self.run_job(message.tenant_id, str(job_id))

    async def run_job(
        self, tenant_id: str, job_id: str, *, on_progress: ProgressCallback | None = None
    ) -> str:
        """Claim and run one job to its end; returns the final (or current) status.

        Waits for another worker's lease to lapse when the job is held; returns at once
        when the job is finished.
        """
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        while True:
            claimed, row, wait = await self._claim(tenant_id, job_id, owner)
            if claimed:
                break
            if row is None or row.status in FINAL_STATUSES:
                return row.status if row is not None else "missing"
            await asyncio.sleep(wait)
        run = JobRun(self, tenant_id, row, owner, on_progress)
        return await run.execute()

    async def _claim(self, tenant_id: str, job_id: str, owner: str
                     ) -> tuple[bool, Any, float]:
        table = model.etl_jobs
        lease = self.settings.lease_seconds
        async with self.engine.db.tenant_session(tenant_id) as session:
            row = (
                await session.execute(select(table).where(table.c.id == job_id).with_for_update())
            ).first()
            if row is None or row.status in FINAL_STATUSES:
                return False, row, 0.0
            if row.cancel_requested:
                row = (
                    await session.execute(
                        update(table).where(table.c.id == job_id).values(
                            status="cancelled", finished_at=func.now(), updated_at=func.now()
                        ).returning(table)
                    )
                ).one()
                return False, row, 0.0
            now = await session.scalar(select(func.now()))
            if row.status == "running" and row.heartbeat_at is not None:
                age = (now - row.heartbeat_at).total_seconds()
                if age < lease:
                    return False, row, max(0.05, lease - age)
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
        await self._progress_event(tenant_id, job_document(row))
        return True, row, 0.0

    async def _progress_event(self, tenant_id: str, document: Mapping[str, Any]) -> None:
        await self.engine.events.publish(
            tenant_id,
            PROGRESS_EVENT,
            {key: document[key] for key in ("id", "status", "progress", "stats", "error")},
        )

    async def after_load(self, tenant_id: str, job_id: str | None, connector: str,
                         loaded: Loaded) -> None:
        """After a committed load that changed rows: refresh planner statistics of bulk-loaded
        tables, drop the tenant's ETL cache tags, and announce the load (event and hook)."""
        stats = loaded.stats
        if not any(c.get("created") or c.get("updated") for c in stats.values()):
            return
        await self.analyze_bulk_loaded(stats)
        await self.engine.cache.invalidate_tags(tenant_id, model.DATA_CACHE_TAGS)
        await self.engine.events.publish(
            tenant_id, DATA_LOADED_EVENT,
            {"job_id": job_id, "connector": connector, "stats": stats},
        )
        await self.engine.announce_data_loaded(tenant_id, stats, loaded.since)

    async def analyze_bulk_loaded(self, stats: Stats) -> list[str]:
        """``ANALYZE`` the tables a load grew by at least :data:`ANALYZE_AFTER_ROWS` rows.

        Autovacuum catches up eventually, but the queries that follow a bulk load (metric
        refreshes) would be planned on statistics that describe near-empty tables; that
        turns index lookups into scans. Runs as the owner (the app role may not analyze).

        :returns: the tables analyzed.
        """
        tables = sorted(
            entity
            for entity, counts in stats.items()
            if counts.get("created", 0) + counts.get("updated", 0) >= ANALYZE_AFTER_ROWS
            and entity in model.metadata.tables
        )
        if tables:
            async with self.engine.db.system_session() as session:
                for table in tables:
                    await session.execute(text(f'ANALYZE "{table}"'))
        return tables

    async def load(self, session: AsyncSession, tenant_id: str, batch: Batch) -> Loaded:
        """Load a batch and recompute what it changed (shipped commits, incident links)."""
        # where re-sent deployments stood before this batch moves them
        previous = await derive.stored_deployments(
            session, tenant_id, batch.get("deployments", ()))
        stats = await self.loader.load(session, tenant_id, batch)
        derived = await self.derive(session, tenant_id, batch, stats, previous)
        touched = [finished for _, _, finished in previous.groups if finished is not None]
        touched += [t for t in (earliest_event(batch), earliest_event(derived)) if t is not None]
        return Loaded(stats, min(touched, default=None))

    async def derive(self, session: AsyncSession, tenant_id: str, batch: Batch,
                     stats: Stats, previous: derive.StoredDeployments) -> Batch:
        """Recompute derived facts after ``batch`` (in the same transaction); returns the
        rows derived and loaded (incidents of reverts), whose counts join ``stats``.

        :param previous: the batch's deployments as stored before it
            (:func:`pulse_etl.derive.stored_deployments`).
        """
        derived: Batch = {}
        if changed_rows(stats, "commits"):
            reverts = await derive.revert_incidents(session, tenant_id, batch.get("commits", ()))
            if reverts:
                derived = {"incidents": reverts}
                merge_stats(stats, await self.loader.load(session, tenant_id, derived))

        groups: list[tuple[str, str, datetime | None]] = []
        if changed_rows(stats, "deployments"):
            await derive.forget_shipped(session, tenant_id, previous.ids)
            groups.extend(previous.groups)
            for row in batch.get("deployments", ()):
                if row.get("repository_id") and row.get("environment"):
                    groups.append((row["repository_id"], row["environment"],
                                   row.get("finished_at")))
        if changed_rows(stats, "commit_parents") or changed_rows(stats, "commits"):
            commits = batch.get("commits", ())
            repositories = sorted({row["repository_id"] for row in commits})
            groups.extend(await derive.groups_missing_commits(session, tenant_id, repositories))
            groups.extend(await derive.groups_with_late_parents(session, tenant_id, commits))
        if groups:
            await derive.materialise_deployment_commits(session, tenant_id, groups)
        if changed_rows(stats, "incidents") or changed_rows(stats, "deployments"):
            await derive.link_incidents(session, tenant_id)
        return derived

    async def cursor(self, tenant_id: str, scope: str, stream: str) -> dict[str, Any] | None:
        """A saved cursor."""
        table = model.sync_cursors
        async with self.engine.db.tenant_session(tenant_id) as session:
            value = await session.scalar(
                select(table.c.cursor).where(table.c.scope == scope, table.c.stream == stream)
            )
        return value if isinstance(value, dict) else None

    @staticmethod
    async def save_cursor(session: AsyncSession, tenant_id: str, scope: str, stream: str,
                          connector: str, value: Mapping[str, Any]) -> None:
        """Upsert a cursor inside the caller's transaction."""
        table = model.sync_cursors
        statement = pg_insert(table).values(
            tenant_id=tenant_id, scope=scope, stream=stream, connector=connector,
            cursor=dict(value),
        )
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=["tenant_id", "scope", "stream"],
                set_={"cursor": statement.excluded.cursor, "updated_at": func.now()},
            )
        )


def cursor_scope(integration_id: str | None, connector: str, config: Mapping[str, Any]) -> str:
    """Where a job's cursors live: its integration, or a digest of its ad-hoc config."""
    if integration_id:
        return str(integration_id)
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return f"{connector}:{hashlib.sha256(canonical.encode()).hexdigest()[:40]}"


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return value is not None


class JobRun:
    """One claimed execution of a job: the :class:`~pulse_etl.connector.SyncRun` given to
    the connector, the heartbeat, and the bookkeeping of the job row."""

    def __init__(self, service: EtlService, tenant_id: str, row: Any, owner: str,
                 on_progress: ProgressCallback | None) -> None:
        """Prepare the run of a claimed job ``row``."""
        self.service = service
        self.engine = service.engine
        self.settings = service.settings
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
            return await self._finish("failed", _error_text(error))
        task = asyncio.current_task()
        heartbeat = asyncio.create_task(self._heartbeat(task))
        try:
            await connector.run(self)
        except LeaseLost:
            log.warning("job %s: lease lost to another worker", self.job_id)
            return "running"
        except JobCancelled:
            return await self._finish("cancelled", None)
        except asyncio.CancelledError:
            if self._cancel_seen:
                uncancel = getattr(task, "uncancel", None)
                if uncancel is not None:
                    uncancel()
                return await self._finish("cancelled", None)
            raise
        except Exception as error:
            log.warning("job %s (%s) failed", self.job_id, self.connector_name, exc_info=True)
            return await self._finish("failed", _error_text(error))
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        return await self._finish("succeeded", None)

    async def _prepare(self) -> tuple[Connector, Any]:
        connector = self.service.connector(self.connector_name)
        public = dict(self.row.config or {})
        if self.row.integration_id:
            async with self.engine.db.tenant_session(self.tenant_id) as session:
                integration, self.secrets = await self.service.integration_secrets(
                    session, str(self.row.integration_id)
                )
            public = dict(integration.config or {})
        else:
            self.secrets = self.service.box.decrypt(self.row.secrets)
        config = self.service.build_config(connector, public, self.secrets)
        connector.check(config, self.settings)
        self.scope = cursor_scope(
            str(self.row.integration_id) if self.row.integration_id else None,
            connector.name, public,
        )
        return connector, config

    async def _heartbeat(self, task: asyncio.Task[Any] | None) -> None:
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
            if cancel and task is not None:
                self._cancel_seen = True
                task.cancel()
                return

    # --- SyncRun -------------------------------------------------------------------------

    async def cursor(self, stream: str) -> dict[str, Any] | None:
        """The saved cursor of ``stream``."""
        return await self.service.cursor(self.tenant_id, self.scope, stream)

    async def commit(
        self,
        batch: Batch,
        *,
        cursors: Mapping[str, dict[str, Any]] | None = None,
        progress: float | None = None,
    ) -> Stats:
        """Load ``batch``, save ``cursors`` and the job's stats in one transaction."""
        table = model.etl_jobs
        if progress is not None:
            self.progress = max(0.0, min(1.0, progress))
        async with self.engine.db.tenant_session(self.tenant_id) as session:
            loaded = await self.service.load(session, self.tenant_id, batch)
            stats = loaded.stats
            for stream, value in (cursors or {}).items():
                await self.service.save_cursor(
                    session, self.tenant_id, self.scope, stream, self.connector_name, value
                )
            total = merge_stats(json.loads(json.dumps(self.stats)), stats)
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
        await self.service.after_load(self.tenant_id, self.job_id, self.connector_name, loaded)
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
        await self.service._progress_event(self.tenant_id, document)
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


def _error_text(error: BaseException) -> str:
    if isinstance(error, Problem):
        errors = error.extra.get("errors")
        return f"{error.detail} {json.dumps(errors)}"[:MAX_ERROR_LENGTH] if errors else error.detail
    return f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH]


async def load_batch(service: EtlService, tenant_id: str, batch: Batch, connector: str
                     ) -> Stats:
    """Load one batch outside a job (webhooks, imports), then invalidate and announce."""
    async with service.engine.db.tenant_session(tenant_id) as session:
        loaded = await service.load(session, tenant_id, batch)
    await service.after_load(tenant_id, None, connector, loaded)
    return loaded.stats


async def count_rows(service: EtlService, tenant_id: str, table_name: str) -> int:
    """Rows of one model table for a tenant (tests, CLI summaries)."""
    table = model.metadata.tables[table_name]
    async with service.engine.db.tenant_session(tenant_id) as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)

