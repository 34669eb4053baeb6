"""pgvector: what the server offers, and similarity search that returns what was asked.

:func:`vector_support` reads whether the ``vector`` extension is installed, its version,
whether it has iterative index scans (pgvector 0.8 and later: ``hnsw.iterative_scan``),
whether the ``embeddings`` table exists, and its vector indexes.

:func:`nearest` finds a tenant's ``k`` nearest embeddings of one model (cosine distance),
optionally of some entity types, in three ways, chosen per query:

* **exact**: when the filter matches at most ``exact_below`` rows (a small tenant, a rare
  entity type), the rows are read and sorted by distance: exact, and faster than walking a
  graph for few rows. The read is an index-only scan of the covering b-tree
  ``(tenant_id, model, entity_type) INCLUDE (entity_id, embedding)``: a tenant's vectors
  lie together in its leaf pages, where in the heap each of them is on a page of its own
  (rows arrive in time order, mixed over tenants). The query vector is parsed once per
  statement (an InitPlan), each distance computed once, and the titles read for the ``k``
  answers only;
* **iterative** (pgvector >= 0.8): the HNSW index with ``hnsw.iterative_scan =
  relaxed_order`` set for the transaction (``SET LOCAL``): the scan goes on past
  ``ef_search`` until ``k`` rows pass the filter (or ``hnsw.max_scan_tuples``), and the
  rows are re-sorted by distance;
* **over-fetch** (older pgvector): the HNSW index asked for ``2 k / selectivity``
  candidates (the filter's share of the table's rows; ``ef_search`` raised to match, at
  most 1000), filtered afterwards; when fewer than ``k`` pass, the exact read answers.

Each way ends in the exact read when the index yields fewer than ``k`` rows while more
exist, so a filtered query returns ``min(k, matching rows)`` rows whatever the server.
Row-level security restricts every read to the caller's tenant; the ``tenant_id``
condition is written out as well, so the b-tree serves it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_engine import Problem, StashKey
from pulse_ml_monitor.tables import EMBEDDINGS_TABLE

if TYPE_CHECKING:
    from pulse_engine import Engine

#: Filters matching at most this many rows are answered by an exact scan.
EXACT_BELOW = 20_000
#: pgvector's largest ``hnsw.ef_search``.
MAX_EF_SEARCH = 1000

Strategy = Literal["exact", "iterative", "overfetch"]


@dataclass(frozen=True)
class VectorSupport:
    """What the connected PostgreSQL offers for vectors."""

    available: bool
    version: str | None
    iterative_scan: bool
    table: bool
    indexes: tuple[dict[str, str], ...] = field(default=())
    reason: str | None = None

    @property
    def usable(self) -> bool:
        """Whether similarity search can run (extension and table present)."""
        return self.available and self.table


def parse_version(version: str | None) -> tuple[int, ...]:
    """``"0.8.5"`` as ``(0, 8, 5)`` (``()`` for None or nonsense)."""
    if not version:
        return ()
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def has_iterative_scan(version: str | None) -> bool:
    """Whether a pgvector version has iterative index scans (0.8.0 and later)."""
    return parse_version(version) >= (0, 8, 0)


#: The support found, per engine.
SUPPORT = StashKey[VectorSupport]()


async def read_support(session: AsyncSession) -> VectorSupport:
    """Read the extension, the table and its indexes."""
    version = await session.scalar(
        text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    )
    if version is None:
        offered = await session.scalar(
            text("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
        )
        reason = (
            "pgvector is not installed in this PostgreSQL" if offered is None
            else f"pgvector {offered} is available but not created in this database"
        )
        return VectorSupport(False, None, False, False, reason=reason)
    table = await session.scalar(
        text("SELECT to_regclass(:name) IS NOT NULL"), {"name": f"public.{EMBEDDINGS_TABLE}"}
    )
    indexes: tuple[dict[str, str], ...] = ()
    if table:
        rows = await session.execute(
            text(
                "SELECT i.indexname, am.amname, i.indexdef FROM pg_indexes i "
                "JOIN pg_class c ON c.relname = i.indexname "
                "JOIN pg_am am ON am.oid = c.relam "
                "WHERE i.schemaname = 'public' AND i.tablename = :table "
                "AND am.amname IN ('hnsw', 'ivfflat') ORDER BY i.indexname"
            ),
            {"table": EMBEDDINGS_TABLE},
        )
        indexes = tuple(
            {"name": name, "method": method, "definition": definition}
            for name, method, definition in rows
        )
    missing: str | None = None if table else (
        "the embeddings table is missing: pgvector was not installed when pulse-ml-monitor "
        "migrated"
    )
    return VectorSupport(True, str(version), has_iterative_scan(str(version)), bool(table),
                         indexes, missing)


async def vector_support(engine: Engine, *, refresh: bool = False) -> VectorSupport:
    """The engine's :class:`VectorSupport` (read once, then kept; ``refresh`` re-reads)."""
    known = engine.stash.get(SUPPORT)
    if known is not None and not refresh:
        return known
    async with engine.db.system_session() as session:
        found = await read_support(session)
    engine.stash[SUPPORT] = found
    return found


def vectors_unavailable(support: VectorSupport) -> Problem:
    """The 503 a vector endpoint answers when the server cannot do vectors."""
    return Problem(
        503, "vectors-unavailable",
        f"Vector search is unavailable: {support.reason or 'pgvector is missing'}.",
    )


@dataclass(frozen=True)
class Neighbour:
    """One similar entity."""

    entity_type: str
    entity_id: str
    title: str | None
    distance: float


@dataclass(frozen=True)
class SearchResult:
    """The neighbours, and how they were found."""

    neighbours: list[Neighbour]
    strategy: Strategy
    candidates: int


#: The query vector, parsed once per statement (an InitPlan), not once per row: under a
#: generic plan ``CAST(:query AS vector)`` beside a column is re-parsed for every row.
_QUERY_VECTOR = "(SELECT CAST(CAST(:query AS text) AS vector))"

_SELECT = (
    "SELECT entity_type, CAST(entity_id AS text) AS entity_id, title, "
    "embedding <=> CAST(CAST(:query AS text) AS vector) AS distance FROM " + EMBEDDINGS_TABLE
)


def scope_filter(entity_types: tuple[str, ...] | None, exclude: tuple[str, str] | None) -> str:
    """The ``WHERE`` of a search: tenant, model, optionally entity types and an excluded
    entity (parameters ``:tenant``, ``:model``, ``:types``, ``:exclude_type``, ``:exclude_id``)."""
    clauses = ["tenant_id = CAST(:tenant AS uuid)", "model = :model"]
    if entity_types:
        clauses.append("entity_type = ANY(CAST(:types AS text[]))")
    if exclude is not None:
        clauses.append(
            "NOT (entity_type = :exclude_type AND entity_id = CAST(:exclude_id AS uuid))"
        )
    return " AND ".join(clauses)


def exact_statement(where: str) -> str:
    """The exact read of the rows matching ``where``: the ``k`` nearest, with titles.

    The distances are computed in a subquery behind ``OFFSET 0`` (no ``ORDER BY`` on the
    distance operator reaches the planner, so the HNSW index is not used and every
    matching row is measured) over columns the covering b-tree holds (index-only); the
    ``k`` nearest are then joined to their rows for the title.
    """
    return (
        "WITH nearest AS MATERIALIZED (SELECT entity_type, entity_id, model, distance FROM ("
        f"SELECT entity_type, entity_id, model, embedding <=> {_QUERY_VECTOR} AS distance "
        f"FROM {EMBEDDINGS_TABLE} WHERE {where} OFFSET 0) AS measured "
        "ORDER BY distance, entity_type, CAST(entity_id AS text) LIMIT :k) "
        "SELECT n.entity_type, CAST(n.entity_id AS text) AS entity_id, e.title, n.distance "
        f"FROM nearest AS n JOIN {EMBEDDINGS_TABLE} AS e "
        "ON e.tenant_id = CAST(:tenant AS uuid) AND e.entity_type = n.entity_type "
        "AND e.entity_id = n.entity_id AND e.model = n.model "
        "ORDER BY n.distance, n.entity_type, CAST(n.entity_id AS text)"
    )


async def _set(session: AsyncSession, name: str, value: str) -> None:
    """``SET LOCAL name = value`` (as ``set_config(..., true)``, which takes parameters)."""
    await session.execute(text("SELECT set_config(:name, :value, true)"),
                          {"name": name, "value": value})


async def nearest(
    session: AsyncSession,
    support: VectorSupport,
    *,
    tenant_id: str,
    model: str,
    query: str,
    k: int,
    entity_types: tuple[str, ...] | None = None,
    exclude: tuple[str, str] | None = None,
    ef_search: int = 100,
    max_scan_tuples: int = 20_000,
    exact_below: int = EXACT_BELOW,
    allow_iterative: bool = True,
    force: Strategy | None = None,
) -> SearchResult:
    """The ``k`` nearest embeddings of ``tenant_id`` and ``model`` to the vector literal
    ``query`` (see the module's doc for how). ``allow_iterative=False`` over-fetches even
    where the server has iterative scans (``PULSE_ML_ITERATIVE_SCAN=off``); ``force``
    picks a way (benchmarks, tests)."""
    where = scope_filter(entity_types, exclude)
    params: dict[str, Any] = {"tenant": tenant_id, "model": model, "query": query, "k": k}
    if entity_types:
        params["types"] = list(entity_types)
    if exclude is not None:
        params["exclude_type"], params["exclude_id"] = exclude
    matching = int(await session.scalar(
        text(f"SELECT count(*) FROM (SELECT 1 FROM {EMBEDDINGS_TABLE} WHERE {where} "
             "LIMIT :cap) AS m"),
        {**params, "cap": exact_below + 1},
    ) or 0)
    strategy: Strategy
    if force is not None:
        strategy = force
    elif matching <= exact_below:
        strategy = "exact"
    else:
        strategy = "iterative" if support.iterative_scan and allow_iterative else "overfetch"
    if strategy == "iterative":
        await _set(session, "hnsw.ef_search", str(max(ef_search, k)))
        await _set(session, "hnsw.iterative_scan", "relaxed_order")
        await _set(session, "hnsw.max_scan_tuples", str(max_scan_tuples))
        rows = (await session.execute(
            text(f"WITH relaxed AS MATERIALIZED ({_SELECT} WHERE {where} "
                 "ORDER BY embedding <=> CAST(CAST(:query AS text) AS vector) LIMIT :k) "
                 "SELECT * FROM relaxed ORDER BY distance, entity_type, entity_id"),
            params,
        )).all()
        candidates = len(rows)
    elif strategy == "overfetch":
        # the index holds every tenant's rows: the filter keeps about matching / table
        table_rows = float(await session.scalar(
            text("SELECT reltuples FROM pg_class WHERE oid = CAST(:table AS regclass)"),
            {"table": EMBEDDINGS_TABLE},
        ) or -1)
        ratio = table_rows / max(1, matching) if table_rows > 0 else math.inf
        fetch = min(MAX_EF_SEARCH, max(ef_search, math.ceil(2 * k * ratio))) \
            if math.isfinite(ratio) else MAX_EF_SEARCH
        await _set(session, "hnsw.ef_search", str(fetch))
        rows = (await session.execute(
            text(f"WITH candidates AS MATERIALIZED ("
                 f"SELECT entity_type, entity_id, title, model, tenant_id, "
                 f"embedding <=> CAST(CAST(:query AS text) AS vector) AS distance "
                 f"FROM {EMBEDDINGS_TABLE} WHERE tenant_id = CAST(:tenant AS uuid) "
                 "ORDER BY embedding <=> CAST(CAST(:query AS text) AS vector) LIMIT :fetch) "
                 "SELECT entity_type, CAST(entity_id AS text) AS entity_id, title, distance "
                 f"FROM candidates WHERE {where} "
                 "ORDER BY distance, entity_type, entity_id LIMIT :k"),
            {**params, "fetch": fetch},
        )).all()
        candidates = fetch
    else:
        rows = []
        candidates = 0
    if strategy == "exact" or (len(rows) < k and len(rows) < matching):
        if strategy != "exact":
            strategy = "exact"
        rows = (await session.execute(text(exact_statement(where)), params)).all()
        candidates = matching
    neighbours = [
        Neighbour(row.entity_type, row.entity_id, row.title, float(row.distance))
        for row in rows
    ]
    return SearchResult(neighbours, strategy, candidates)
