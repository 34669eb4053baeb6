"""Loading batches: the loader, what each load derives, and what follows a committed load.

Every load goes through :meth:`Loads.load` inside the caller's transaction (a job's batch
with its cursor, a webhook delivery with its delivery record, the demo); once that
transaction has committed, :meth:`Loads.after_load` refreshes planner statistics, drops the
tenant's ETL cache tags and announces the load.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_etl import derive, model
from pulse_etl.loader import Batch, Loader, Stats, merge_stats

if TYPE_CHECKING:
    from pulse_engine import Engine

#: The event published after a committed load that changed rows.
DATA_LOADED_EVENT = "etl.data.loaded"
#: Rows one load must write into a table before its planner statistics are refreshed.
ANALYZE_AFTER_ROWS = 5000
#: A smaller load refreshes them too when it grew the table by this share of the rows the
#: statistics describe (or the table was never analyzed), from :data:`ANALYZE_MIN_ROWS` up.
ANALYZE_GROWTH_SHARE = 0.1
ANALYZE_MIN_ROWS = 50

#: The columns whose earliest value bounds what a load can change in derived facts.
EVENT_TIME_COLUMNS: dict[str, tuple[str, ...]] = {
    "deployments": ("started_at", "finished_at"),
    "incidents": ("created_at_source",),
    "commits": ("authored_at",),
    "pull_requests": ("created_at_source",),
    "work_items": ("created_at_source",),
    # a status change of an older item the batch does not carry (pulse-portfolio's facts)
    "work_item_status_changes": ("changed_at",),
}


#: SQL: the rows each table's planner statistics describe (-1: never analyzed, or missing).
_DESCRIBED_ROWS = """
SELECT name, coalesce((SELECT reltuples FROM pg_class WHERE oid = to_regclass(name)), -1)
FROM unnest(CAST(:tables AS text[])) AS name
"""


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


class Loads:
    """Loads batches for one engine and finishes committed loads."""

    def __init__(self, engine: Engine, loader: Loader) -> None:
        """Load through ``loader`` into ``engine``'s database."""
        self.engine = engine
        self.loader = loader

    async def load(self, session: AsyncSession, tenant_id: str, batch: Batch) -> Loaded:
        """Load a batch and recompute what it changed (shipped commits, incident links)."""
        # where re-sent deployments stood before this batch moves them
        previous = await derive.stored_deployments(
            session, tenant_id, batch.get("deployments", ()))
        stats = await self.loader.load(session, tenant_id, batch)
        derived = await self._derive(session, tenant_id, batch, stats, previous)
        touched = [finished for _, _, finished in previous.groups if finished is not None]
        touched += [t for t in (earliest_event(batch), earliest_event(derived)) if t is not None]
        return Loaded(stats, min(touched, default=None))

    async def _derive(self, session: AsyncSession, tenant_id: str, batch: Batch,
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

    async def after_load(self, tenant_id: str, job_id: str | None, connector: str,
                         loaded: Loaded) -> None:
        """After a committed load that changed rows: refresh planner statistics of bulk-loaded
        tables, announce the load to the plugins (``data_loaded``: they record the refreshes
        it calls for), then drop the tenant's ETL cache tags and publish the event. In that
        order, an answer computed after the drop can see that a refresh is pending."""
        stats = loaded.stats
        if not any(c.get("created") or c.get("updated") for c in stats.values()):
            return
        await self.analyze_bulk_loaded(stats)
        await self.engine.announce_data_loaded(tenant_id, stats, loaded.since)
        await self.engine.cache.invalidate_tags(tenant_id, model.DATA_CACHE_TAGS)
        await self.engine.events.publish(
            tenant_id, DATA_LOADED_EVENT,
            {"job_id": job_id, "connector": connector, "stats": stats},
        )

    async def analyze_bulk_loaded(self, stats: Stats) -> list[str]:
        """``ANALYZE`` the tables a load grew a lot: by :data:`ANALYZE_AFTER_ROWS` rows, or
        by :data:`ANALYZE_GROWTH_SHARE` of what their statistics describe (a table never
        analyzed describes nothing), from :data:`ANALYZE_MIN_ROWS` rows up.

        Autovacuum catches up eventually, but the queries that follow a load (metric
        refreshes) would be planned on statistics that describe near-empty tables; that
        turns hash joins into nested loops over thousands of rows (a demo-sized load took
        minutes to refresh that way). Runs as the owner (the app role may not analyze).

        :returns: the tables analyzed.
        """
        grown = {
            entity: counts.get("created", 0) + counts.get("updated", 0)
            for entity, counts in stats.items()
            if entity in model.metadata.tables
        }
        candidates = sorted(entity for entity, rows in grown.items() if rows >= ANALYZE_MIN_ROWS)
        if not candidates:
            return []
        async with self.engine.db.system_session() as session:
            result = await session.execute(text(_DESCRIBED_ROWS), {"tables": candidates})
            described: dict[str, float] = dict(result.tuples().all())
            tables = [
                table
                for table in candidates
                if grown[table] >= ANALYZE_AFTER_ROWS
                or described[table] < 0
                or grown[table] >= ANALYZE_GROWTH_SHARE * described[table]
            ]
            for table in tables:
                await session.execute(text(f'ANALYZE "{table}"'))
        return tables

    async def load_batch(self, tenant_id: str, batch: Batch, connector: str) -> Stats:
        """Load one batch outside a job (webhooks, imports), then finish the load."""
        async with self.engine.db.tenant_session(tenant_id) as session:
            loaded = await self.load(session, tenant_id, batch)
        await self.after_load(tenant_id, None, connector, loaded)
        return loaded.stats
