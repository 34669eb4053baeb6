"""Facts a plugin derives from a tenant's data and keeps current in a worker.

A metric plugin that answers from its own tables (pulse-dora's ``dora_changes``,
pulse-github's per-pull-request facts, pulse-portfolio's work-item facts) declares one
:class:`FactsRefresh` and calls it from its hooks::

    FACTS = FactsRefresh(name="dora", recompute=recompute,
                         inputs=frozenset({"deployments", "commits"}), cache_tags=("dora.data",))

    @hookimpl
    def register_queue_consumers(engine): return [FACTS.consumer(engine)]
    @hookimpl
    async def startup(engine): await FACTS.start(engine)
    @hookimpl
    async def shutdown(engine): await FACTS.stop(engine)
    @hookimpl
    async def data_loaded(engine, tenant_id, stats, since):
        await FACTS.loaded(engine, tenant_id, stats, since)

The engine keeps the bookkeeping every such plugin needs, in two tables of its own:

* ``facts_refresh_requests``: a refresh asked for and not done yet, written before its
  message is queued and deleted, in the refresh's own transaction, by the first refresh
  that began after it and reached back as far. A process that starts queues again what is
  still there, so a message lost with a killed server or a dropped broker connection is
  not a refresh lost; answers say ``refresh_pending`` while one is recorded.
* ``facts_refresh_state``: when each tenant's facts were last recomputed (``data_until``
  of the answers: the facts reflect every load committed before then).

A refresh runs under a per-tenant, per-facts advisory lock (two workers never recompute
the same facts at once), once per queued message (the idempotent consumer), and then
drops the tenant's cached answers under ``cache_tags``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import TextClause, text

from pulse_engine.background import BackgroundTask
from pulse_engine.bulk import analyze_tables
from pulse_engine.db import set_work_mem
from pulse_engine.events import CAPABILITY_CHANGED_EVENT
from pulse_engine.metrics import Freshness
from pulse_engine.queue import Consumer, Message
from pulse_engine.stash import StashKey

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from pulse_engine.engine_api import Engine

log = logging.getLogger(__name__)

#: A statement that wrote at least this many rows of a fact table is followed by ANALYZE
#: (:func:`analyze_if_rewritten`), and a refresh that did is followed by a VACUUM.
REWRITTEN_ROWS = 10_000

#: With a broker that keeps messages, a request is queued again at start only when it
#: has waited this long (its message was probably lost): a refresh can take minutes.
REQUEUE_AFTER = timedelta(hours=1)

#: ``recompute(engine, session, tenant_id, since)``: rows written per fact table.
Recompute = Callable[["Engine", "AsyncSession", str, "datetime | None"],
                     Awaitable[Mapping[str, int]]]


@dataclass(frozen=True)
class RefreshResult:
    """What one refresh did: rows written per fact table, whether it was full, how long."""

    rows: Mapping[str, int]
    full: bool
    seconds: float

    def __getitem__(self, table: str) -> int:
        """Rows written to ``table`` (0 when the refresh did not write it)."""
        return self.rows.get(table, 0)


async def analyze_if_rewritten(session: AsyncSession, table: str, written: int) -> None:
    """ANALYZE ``table`` inside the refresh after a statement wrote ``written`` rows of it.

    The statements that follow join what was just written; planned on statistics that
    predate it (a table thought empty) they can take minutes instead of seconds.
    """
    if written >= REWRITTEN_ROWS:
        await analyze_tables(session, [table])


def full_refresh_request(facts: str, tenants: str) -> TextClause:
    """The statement a plugin's migration executes (``op.execute(...)``) to record a full
    refresh of the facts named ``facts`` for every tenant ``tenants`` picks (a SQL
    condition on ``tenants t``, such as ``EXISTS (SELECT 1 FROM pull_requests x WHERE
    x.tenant_id = t.id)``): new facts over existing data. The requests are dated twice
    :data:`REQUEUE_AFTER` ago, so that every starting process queues them, with a broker
    too; a request already there becomes a full one."""
    overdue = int((2 * REQUEUE_AFTER).total_seconds())
    return text(f"""
INSERT INTO facts_refresh_requests (tenant_id, facts, requested_at, since, full_refresh)
SELECT t.id, CAST(:facts AS varchar), clock_timestamp() - interval '{overdue} seconds', NULL,
       true
FROM tenants t WHERE {tenants}
ON CONFLICT (tenant_id, facts) DO UPDATE SET full_refresh = true, since = NULL
""").bindparams(facts=facts)


_REQUEST = """
INSERT INTO facts_refresh_requests (tenant_id, facts, requested_at, since, full_refresh)
VALUES (:tenant, :facts, clock_timestamp(), CAST(:since AS timestamptz),
        CAST(:since AS timestamptz) IS NULL)
ON CONFLICT (tenant_id, facts) DO UPDATE SET requested_at = EXCLUDED.requested_at,
    full_refresh = facts_refresh_requests.full_refresh OR EXCLUDED.full_refresh,
    since = least(facts_refresh_requests.since, EXCLUDED.since)
"""

# a request is covered by a refresh that began after it was made (the load it follows had
# committed) and reached back at least as far
_COVERED = """
DELETE FROM facts_refresh_requests
WHERE tenant_id = :tenant AND facts = :facts AND requested_at <= :began
  AND (CAST(:since AS timestamptz) IS NULL OR (NOT full_refresh AND since >= :since))
"""

_STATE = """
INSERT INTO facts_refresh_state (tenant_id, facts, refreshed_at, full_refresh_at)
VALUES (:tenant, :facts, :began, CASE WHEN CAST(:since AS timestamptz) IS NULL
                                      THEN CAST(:began AS timestamptz) END)
ON CONFLICT (tenant_id, facts) DO UPDATE SET refreshed_at = EXCLUDED.refreshed_at,
    full_refresh_at = coalesce(EXCLUDED.full_refresh_at, facts_refresh_state.full_refresh_at)
"""

_FRESHNESS = """
SELECT (SELECT refreshed_at FROM facts_refresh_state
        WHERE tenant_id = :tenant AND facts = :facts) AS data_until,
       EXISTS (SELECT 1 FROM facts_refresh_requests
               WHERE tenant_id = :tenant AND facts = :facts) AS pending
"""

def _since_body(since: datetime | None) -> dict[str, Any]:
    return {"since": since.isoformat() if since is not None else None}


@dataclass(frozen=True)
class FactsRefresh:
    """A plugin's derived facts and how to keep them current.

    :param name: names the facts (``dora``); the queue is ``{name}.refresh``.
    :param recompute: ``async (engine, session, tenant_id, since) -> {table: rows}``:
        recompute the tenant's facts inside ``session`` (a tenant-bound transaction that
        holds this tenant's lock on these facts, with ``work_mem`` set); ``since`` is the
        earliest event time a load touched (recompute what it can have changed), ``None``
        recomputes everything.
    :param inputs: the ETL entities (table names) whose created or updated rows can move a
        fact: a load that changed none of them queues nothing.
    :param full_refresh_inputs: entities whose *updated* rows need a full refresh
        (pulse-github: an identity's new name can make a bot of every pull request).
    :param cache_tags: the tenant's cached answers dropped when a load is announced and
        again after each refresh.
    :param vacuum_tables: fact tables vacuumed after a refresh that rewrote
        :data:`REWRITTEN_ROWS` of them (index-only scans read the heap until then).
    :param follow_configuration: a full refresh on every capability or configuration
        change of the tenant (the facts depend on its configuration).
    :param work_mem: PostgreSQL ``work_mem`` of the refresh transaction.
    """

    name: str
    recompute: Recompute
    inputs: frozenset[str]
    full_refresh_inputs: frozenset[str] = frozenset()
    cache_tags: tuple[str, ...] = ()
    vacuum_tables: tuple[str, ...] = ()
    follow_configuration: bool = True
    work_mem: str = "64MB"
    _listener: StashKey[BackgroundTask] = field(default_factory=StashKey, compare=False,
                                                repr=False)

    @property
    def queue(self) -> str:
        """The queue the refreshes go through."""
        return f"{self.name}.refresh"

    async def request(self, engine: Engine, tenant_id: str, since: datetime | None,
                      *, message_id: str | None = None) -> None:
        """Record a refresh of the tenant's facts from ``since`` (None: all), then queue it."""
        async with engine.db.tenant_session(tenant_id) as session:
            await session.execute(text(_REQUEST), {"tenant": tenant_id, "facts": self.name,
                                                   "since": since})
        await engine.queue.publish(self.queue, _since_body(since), tenant_id=tenant_id,
                                   message_id=message_id)

    async def freshness(self, session: AsyncSession, tenant_id: str) -> Freshness:
        """How current the tenant's facts are (read in ``session``).

        ``data_until``: when the last refresh began; the facts reflect every load committed
        before then (``None``: never refreshed). ``refresh_pending``: a request is recorded
        that no refresh has covered yet, so data has arrived that the facts do not reflect.
        """
        row = (await session.execute(text(_FRESHNESS), {"tenant": tenant_id,
                                                        "facts": self.name})).one()
        return Freshness(data_until=row.data_until, refresh_pending=bool(row.pending))

    async def refresh_in(self, engine: Engine, session: AsyncSession, tenant_id: str,
                         since: datetime | None) -> RefreshResult:
        """Recompute inside ``session`` (tenant-bound), record it and the requests it covers."""
        began = time.perf_counter()
        params: dict[str, Any] = {"tenant": tenant_id, "facts": self.name, "since": since}
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('pulse.facts:' || :facts || ':' "
                 "|| :tenant))"), params)
        params["began"] = await session.scalar(text("SELECT clock_timestamp()"))
        await set_work_mem(session, self.work_mem)
        rows = dict(await self.recompute(engine, session, tenant_id, since))
        await session.execute(text(_STATE), params)
        await session.execute(text(_COVERED), params)
        return RefreshResult(rows=rows, full=since is None, seconds=time.perf_counter() - began)

    async def _after_commit(self, engine: Engine, tenant_id: str,
                            result: RefreshResult) -> None:
        rewritten = [table for table in self.vacuum_tables if result[table] >= REWRITTEN_ROWS]
        if rewritten:
            await engine.db.vacuum_analyze(rewritten)
        if self.cache_tags:
            await engine.cache.invalidate_tags(tenant_id, list(self.cache_tags))
        log.info("%s facts of a tenant refreshed in %.3f s", self.name, result.seconds)

    async def refresh(self, engine: Engine, tenant_id: str,
                      since: datetime | None = None) -> RefreshResult:
        """Refresh the tenant's facts now, in this process (CLI, tests, benchmarks)."""
        async with engine.db.tenant_session(tenant_id) as session:
            result = await self.refresh_in(engine, session, tenant_id, since)
        await self._after_commit(engine, tenant_id, result)
        return result

    def consumer(self, engine: Engine) -> Consumer:
        """The consumer of :attr:`queue`: refreshes the message's tenant, once per message."""

        async def handle(message: Message) -> None:
            tenant_id = message.tenant_id
            if tenant_id is None:
                return
            raw = message.body.get("since")
            since = datetime.fromisoformat(raw) if isinstance(raw, str) else None
            async with engine.db.process_once(self.queue, message.id, tenant_id) as session:
                if session is None:
                    return
                result = await self.refresh_in(engine, session, tenant_id, since)
            await self._after_commit(engine, tenant_id, result)

        return Consumer(queue=self.queue, handler=handle, prefetch=2, max_retries=3)

    async def loaded(self, engine: Engine, tenant_id: str, stats: dict[str, dict[str, int]],
                     since: datetime | None) -> bool:
        """For ``data_loaded``: request a refresh when the load changed one of
        :attr:`inputs` (in full when it updated one of :attr:`full_refresh_inputs`), then
        drop the cached answers, which from here on say ``refresh_pending``. Returns whether
        a refresh was requested."""
        if not any(entity in self.inputs and (counts.get("created") or counts.get("updated"))
                   for entity, counts in stats.items()):
            return False
        if any(stats.get(entity, {}).get("updated") for entity in self.full_refresh_inputs):
            since = None
        await self.request(engine, tenant_id, since)
        # answers cached between the load's commit and the request say nothing is pending
        if self.cache_tags:
            await engine.cache.invalidate_tags(tenant_id, list(self.cache_tags))
        return True

    async def requeue_pending(self, engine: Engine) -> int:
        """Queue again the recorded refreshes not done yet; returns how many were queued.

        All of them when the queue lives in memory (a stopped process took their
        messages), else those older than :data:`REQUEUE_AFTER`. Each message id names the
        request, so processes starting together run it once.
        """
        async with engine.db.system_session() as session:
            older = "" if not engine.queue.survives_restart else (
                " AND requested_at < clock_timestamp() - CAST(:age AS interval)")
            pending = (await session.execute(text(
                "SELECT tenant_id, since, full_refresh, requested_at "
                "FROM facts_refresh_requests WHERE facts = :facts" + older),
                {"facts": self.name, "age": REQUEUE_AFTER})).all()
        for row in pending:
            since = None if row.full_refresh else row.since
            await engine.queue.publish(
                self.queue, _since_body(since), tenant_id=str(row.tenant_id),
                message_id=str(uuid.uuid5(uuid.NAMESPACE_URL, (
                    f"pulse:facts:{self.name}:{row.tenant_id}:{row.requested_at.isoformat()}"))))
        return len(pending)

    async def _follow_configuration(self, engine: Engine) -> None:
        async with engine.events.subscribe(None) as subscription:
            async for event in subscription:
                tenant_id = event.data.get("tenant_id")
                if event.type != CAPABILITY_CHANGED_EVENT or not isinstance(tenant_id, str):
                    continue
                if self.cache_tags:
                    await engine.cache.invalidate_tags(tenant_id, list(self.cache_tags))
                # every process gets the event; the message id derived from it makes the
                # consumer's idempotency check run the refresh once
                await self.request(engine, tenant_id, None,
                                   message_id=f"{self.name}-config-{event.id}")

    async def start(self, engine: Engine) -> None:
        """For ``startup``: follow configuration changes (unless told not to) and queue the
        refreshes left pending (a failure to queue them is logged: they stay recorded)."""
        if self.follow_configuration:
            engine.stash[self._listener] = BackgroundTask(
                f"{self.name}-facts-config", self._follow_configuration(engine))
        try:
            count = await self.requeue_pending(engine)
        except Exception:  # the requests stay recorded: the next start queues them again
            log.warning("pending %s refreshes could not be queued", self.name, exc_info=True)
            return
        if count:
            log.info("queued %d %s refreshes left pending", count, self.name)

    async def stop(self, engine: Engine) -> None:
        """For ``shutdown``: stop following configuration changes."""
        listener = engine.stash.pop(self._listener)
        if listener is not None:
            await listener.stop()
