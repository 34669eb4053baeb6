"""Keeping the ``embeddings`` table current with the ETL data, over the queue.

After an ETL load touches work items, pull requests or incidents (the ``data_loaded``
hook), ``{"entities": [...]}`` is published for the tenant on :data:`EMBED_QUEUE`; the
consumer (:func:`index_tenant`) reads the rows of each entity type updated since the
tenant's watermark for the embedder in use (``ml_embedding_state``, with a margin for
transactions that committed late), embeds their text and upserts the vectors; a row whose
text has not changed (same hash) is left alone. Rows deleted from the source lose their
vector. The ETL tables are read by name in SQL: this plugin imports no other.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_engine import Consumer, Message
from pulse_ml_monitor.embedder import Embedder, EmbedderSlot, vector_literal
from pulse_ml_monitor.tables import EMBEDDINGS_TABLE

if TYPE_CHECKING:
    from pulse_engine import Engine

log = logging.getLogger(__name__)

#: Queue on which an embedding pass is requested (tenant = the tenant).
EMBED_QUEUE = "ml.embed"
#: Rows embedded per statement.
BATCH = 500
#: Rows updated this long before the watermark are read again (late commits).
WATERMARK_MARGIN = timedelta(minutes=10)


@dataclass(frozen=True)
class Source:
    """An entity type whose text is embedded: its ETL table and the text's SQL."""

    entity_type: str
    table: str
    text_sql: str
    title_sql: str


SOURCES: dict[str, Source] = {
    source.entity_type: source
    for source in (
        Source("work_item", "work_items",
               "concat_ws(' ', key, title, type, array_to_string(labels, ' '))",
               "concat_ws(' ', key, title)"),
        Source("pull_request", "pull_requests", "concat_ws(' ', title, head_ref)", "title"),
        Source("incident", "incidents", "concat_ws(' ', title, service, severity)", "title"),
    )
}
#: The ETL tables whose load triggers an embedding pass.
SOURCE_TABLES = frozenset(source.table for source in SOURCES.values())


def content_hash(model: str, content: str) -> str:
    """The hash stored beside a vector: the same text under the same model is not redone."""
    return hashlib.sha256(f"{model}\x00{content}".encode()).hexdigest()


async def _table_exists(session: AsyncSession, table: str) -> bool:
    return bool(await session.scalar(text("SELECT to_regclass(:name) IS NOT NULL"),
                                     {"name": f"public.{table}"}))


async def upsert_vectors(
    session: AsyncSession, embedder: Embedder, tenant_id: str, entity_type: str,
    rows: list[dict[str, Any]],
) -> int:
    """Embed the ``rows`` (``id``, ``content``, ``title``, ``updated_at``) whose text changed
    since they were last embedded (or that are new) and upsert their vectors; returns how
    many were written."""
    if not rows:
        return 0
    stored: dict[str, str] = dict((await session.execute(
        text(f"SELECT CAST(entity_id AS text), content_hash FROM {EMBEDDINGS_TABLE} "
             "WHERE tenant_id = CAST(:t AS uuid) AND entity_type = :type AND model = :model "
             "AND entity_id = ANY(CAST(:ids AS uuid[]))"),
        {"t": tenant_id, "type": entity_type, "model": embedder.name,
         "ids": [row["id"] for row in rows]})).tuples().all())
    changed = [
        (row, digest) for row in rows
        if stored.get(row["id"]) != (digest := content_hash(embedder.name,
                                                            row["content"] or ""))
    ]
    if not changed:
        return 0
    vectors = await asyncio.to_thread(embedder.embed,
                                      [row["content"] or "" for row, _ in changed])
    await session.execute(
        text(
            f"INSERT INTO {EMBEDDINGS_TABLE} (tenant_id, entity_type, entity_id, model, "
            "content_hash, title, embedding, source_updated_at) VALUES (CAST(:tenant AS uuid), "
            ":type, CAST(:id AS uuid), :model, :hash, :title, "
            "CAST(CAST(:vector AS text) AS vector), :updated) "
            "ON CONFLICT (tenant_id, entity_type, entity_id, model) DO UPDATE SET "
            "content_hash = excluded.content_hash, title = excluded.title, "
            "embedding = excluded.embedding, source_updated_at = excluded.source_updated_at, "
            "updated_at = now()"
        ),
        [
            {"tenant": tenant_id, "type": entity_type, "id": row["id"],
             "model": embedder.name, "hash": digest, "title": row["title"],
             "vector": vector_literal(vector), "updated": row["updated_at"]}
            for (row, digest), vector in zip(changed, vectors, strict=True)
        ],
    )
    return len(changed)


async def index_entity_type(
    session: AsyncSession, embedder: Embedder, tenant_id: str, source: Source,
    *, full: bool = False,
) -> int:
    """Embed one entity type's rows updated since the watermark; returns vectors written."""
    if not await _table_exists(session, source.table):
        return 0
    watermark = None if full else await session.scalar(
        text("SELECT indexed_until FROM ml_embedding_state WHERE tenant_id = CAST(:t AS uuid) "
             "AND entity_type = :type AND model = :model"),
        {"t": tenant_id, "type": source.entity_type, "model": embedder.name},
    )
    since = (watermark - WATERMARK_MARGIN) if watermark is not None else datetime(1970, 1, 1,
                                                                                   tzinfo=UTC)
    written = 0
    newest = watermark
    after: tuple[datetime, str] | None = None
    while True:
        page_filter = "" if after is None else (
            "AND (updated_at, CAST(id AS text)) > (:after_at, :after_id) "
        )
        rows = (await session.execute(
            text(f"SELECT CAST(id AS text) AS id, {source.text_sql} AS content, "
                 f"{source.title_sql} AS title, updated_at FROM {source.table} "
                 f"WHERE tenant_id = CAST(:t AS uuid) AND updated_at >= :since {page_filter}"
                 "ORDER BY updated_at, CAST(id AS text) LIMIT :batch"),
            {"t": tenant_id, "since": since, "batch": BATCH,
             **({} if after is None else {"after_at": after[0], "after_id": after[1]})},
        )).mappings().all()
        if not rows:
            break
        written += await upsert_vectors(session, embedder, tenant_id, source.entity_type,
                                        [dict(row) for row in rows])
        last = rows[-1]
        after = (last["updated_at"], last["id"])
        newest = last["updated_at"] if newest is None else max(newest, last["updated_at"])
        if len(rows) < BATCH:
            break
    await session.execute(
        text(f"DELETE FROM {EMBEDDINGS_TABLE} e WHERE e.tenant_id = CAST(:t AS uuid) "
             "AND e.entity_type = :type AND NOT EXISTS (SELECT 1 FROM "
             f"{source.table} s WHERE s.tenant_id = e.tenant_id AND s.id = e.entity_id)"),
        {"t": tenant_id, "type": source.entity_type},
    )
    if newest is not None:
        await session.execute(
            text("INSERT INTO ml_embedding_state (tenant_id, entity_type, model, indexed_until, "
                 "indexed_at) VALUES (CAST(:t AS uuid), :type, :model, :until, now()) "
                 "ON CONFLICT (tenant_id, entity_type, model) DO UPDATE SET "
                 "indexed_until = excluded.indexed_until, indexed_at = now()"),
            {"t": tenant_id, "type": source.entity_type, "model": embedder.name,
             "until": newest},
        )
    return written


async def index_tenant(
    engine: Engine, embedder: Embedder, tenant_id: str,
    entity_types: list[str] | None = None, *, full: bool = False,
) -> dict[str, int]:
    """Bring the tenant's vectors of ``entity_types`` (default: all) up to date."""
    written: dict[str, int] = {}
    for entity_type in entity_types or list(SOURCES):
        source = SOURCES.get(entity_type)
        if source is None:
            continue
        async with engine.db.tenant_session(tenant_id) as session:
            # one pass per tenant and type at a time (two workers would write the same rows)
            await session.execute(
                text("SELECT pg_advisory_xact_lock(hashtext('pulse.ml.embed'), "
                     "hashtext(:key))"), {"key": f"{tenant_id}:{entity_type}"})
            written[entity_type] = await index_entity_type(
                session, embedder, tenant_id, source, full=full)
    return written


def embed_consumer(engine: Engine, embedders: EmbedderSlot, usable: Any) -> Consumer:
    """The consumer of :data:`EMBED_QUEUE`.

    :param embedders: the engine's embedder slot.
    :param usable: ``await usable()`` says whether the vector table is there (a message
        for a server without pgvector is acknowledged and dropped).
    """

    async def handle(message: Message) -> None:
        if message.tenant_id is None or not await usable():
            return
        body = message.body if isinstance(message.body, dict) else {}
        entities = body.get("entities")
        types = [e for e in entities if isinstance(e, str)] if isinstance(entities, list) else None
        written = await index_tenant(engine, await embedders.get(), message.tenant_id, types,
                                     full=bool(body.get("full")))
        log.info("embedded %s for tenant %s", written, message.tenant_id)

    return Consumer(EMBED_QUEUE, handle, prefetch=2, max_retries=3, retry_delay=2.0)
