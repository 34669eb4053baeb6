"""ETL ingest benchmark: the loader vs a plain COPY, and the git connector vs ``git log``.

Usage: ``python bench/etl_ingest.py [--rows 50000] [--commits 5000] [--rounds 5]``. Starts
an embedded PostgreSQL in a temporary folder (or uses ``PULSE_TEST_DATABASE_URL``; the
benchmark empties tables, so never point it at a database you keep) with only the
pulse-etl plugin, then measures, as the median of ``rounds`` interleaved rounds:

1. loader rows/s (the first-load path: one binary COPY into the tenant table through the
   engine's bulk-writer role, row-level security and the tenant guard on, created rows
   counted) against a plain asyncpg ``copy_records_to_table`` of the same rows into a
   regular table of the same shape and indexes (target ratio >= 0.8); and, for
   reference, against the same COPY into a temporary table (no WAL). Both start from an
   empty table each round;
2. the git connector against ``git log --numstat`` of the same history, on two generated
   repositories (``git fast-import``, ``--commits`` each): one of minimal commits (one
   line of one small file: git's cheapest diffs, the hardest case for the ratio), and one
   of real code (SQLAlchemy's installed sources added file by file, then edited a run of
   lines at a time with lines of other files, so git diffs real-sized files): parsing
   only, and a full ingest job into PostgreSQL (target: within 3x); with the database
   write floor of that job: a plain COPY of the same rows (people, identities, commits,
   parents, files) into fresh tables of the same shape and indexes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy
from pulse_etl.connectors.git import SOURCE as GIT_SOURCE
from pulse_etl.connectors.git import RowBuilder, stream_log
from pulse_etl.loader import ENTITIES, Loader
from pulse_etl.model import stable_id
from pulse_etl.plugin import service_for
from sqlalchemy import text

from pulse_engine.app import PulseEngine
from pulse_engine.testing import create_tenant, make_settings, running_app


def commit_rows(count: int, repository_id: str) -> list[dict[str, Any]]:
    """``count`` synthetic commit rows."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    author = str(uuid.uuid4())
    return [
        {"id": stable_id("commits", repository_id, f"{i:040x}"), "repository_id": repository_id,
         "sha": f"{i:040x}", "author_identity_id": author, "author_name": "Bench",
         "author_email": "bench@example.test", "authored_at": start + timedelta(seconds=i),
         "author_tz_offset": 60, "committed_at": start + timedelta(seconds=i),
         "message": f"commit number {i} with a typical short subject", "additions": i % 50,
         "deletions": i % 7, "files_changed": 1 + i % 3, "is_merge": False, "source": "bench"}
        for i in range(count)
    ]


async def bench_loader(engine: PulseEngine, rows: int, rounds: int
                       ) -> tuple[float, float, float]:
    """Median seconds, over ``rounds`` interleaved rounds, of the loader, of a plain COPY
    into a regular table shaped and indexed like the loader's target, and of a plain COPY
    into a temporary table of that shape, for ``rows`` commits."""
    repository_id = stable_id("repositories", "bench", "r")
    data = commit_rows(rows, repository_id)
    columns = ["tenant_id", *sorted(data[0])]
    table = ENTITIES["commits"].table.name
    loader = Loader(copy_threshold=1000)
    times: dict[str, list[float]] = {"loader": [], "logged": [], "temporary": []}
    for _ in range(rounds):
        tenant = await create_tenant(engine)
        await empty_tables(engine, [table])  # the loader and the baseline start alike
        started = time.perf_counter()
        async with engine.db.tenant_session(tenant) as session:
            stats = await loader.load(session, tenant, {"commits": data})
        times["loader"].append(time.perf_counter() - started)
        assert stats["commits"]["created"] == rows, stats
        records = [tuple(tenant if c == "tenant_id" else row[c] for c in columns)
                   for row in data]
        # the owner may COPY into a table of its own: no row-level security there
        async with engine.db.system_session() as session:
            await session.execute(text(f"CREATE TABLE bench_logged (LIKE {table} INCLUDING ALL)"))
        started = time.perf_counter()
        async with engine.db.system_session() as session:
            connection = await session.connection()
            raw: Any = (await connection.get_raw_connection()).driver_connection
            await raw.copy_records_to_table("bench_logged", records=records, columns=columns)
        times["logged"].append(time.perf_counter() - started)
        async with engine.db.system_session() as session:
            await session.execute(text("DROP TABLE bench_logged"))
        async with engine.db.tenant_session(tenant) as session:
            connection = await session.connection()
            raw = (await connection.get_raw_connection()).driver_connection
            await raw.execute(f"CREATE TEMP TABLE bench_copy (LIKE {table} INCLUDING ALL)")
            started = time.perf_counter()
            await raw.copy_records_to_table("bench_copy", records=records, columns=columns)
            times["temporary"].append(time.perf_counter() - started)
            await raw.execute("DROP TABLE bench_copy")
    return (statistics.median(times["loader"]), statistics.median(times["logged"]),
            statistics.median(times["temporary"]))


async def empty_tables(engine: PulseEngine, tables: list[str]) -> None:
    """Empty ``tables`` (this benchmark's own database), so each round writes into tables of
    the same size as the baseline's fresh ones."""
    async with engine.db.system_session() as session:
        await session.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))


def generate_repository(path: Path, commits: int) -> None:
    """A linear history of ``commits`` commits touching a few files, via fast-import."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    lines = []
    for i in range(commits):
        content = f"version {i}\n" * (1 + i % 5)
        lines.append("commit refs/heads/main")
        lines.append(f"mark :{i + 1}")
        lines.append(f"author Dev{i % 7} <dev{i % 7}@example.test> {1_600_000_000 + i * 600} +0200")
        lines.append(f"committer Dev{i % 7} <dev{i % 7}@example.test> "
                     f"{1_600_000_000 + i * 600} +0200")
        message = f"change {i}\n"
        lines.append(f"data {len(message.encode())}")
        lines.append(message)
        if i:
            lines.append(f"from :{i}")
        lines.append(f"M 644 inline src/file{i % 20}.txt")
        lines.append(f"data {len(content.encode())}")
        lines.append(content)
    subprocess.run(["git", "-C", str(path), "fast-import", "--quiet"],
                   input="\n".join(lines).encode(), check=True)


def generate_source_repository(path: Path, commits: int, sources: Path) -> None:
    """A history of ``commits`` commits of real code: the ``.py`` files under ``sources``
    are added one per commit, then each further commit edits one or two of them, replacing
    a run of lines with lines of another file (so every diff is of real-sized files)."""
    files = sorted(sources.rglob("*.py"))
    texts = [file.read_text("utf-8", "replace").splitlines(keepends=True) for file in files]
    names = [str(file.relative_to(sources)) for file in files]
    current: dict[int, list[str]] = {}
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    lines = []
    for i in range(commits):
        changed = []
        if i < len(files):
            current[i] = texts[i]
            changed.append(i)
        else:
            for k in range(1 + i % 2):
                target = (i * 7 + k * 13) % len(files)
                donor = texts[(i * 11 + k) % len(files)]
                body = current[target]
                at = (i * 31) % max(1, len(body))
                size = 3 + i % 25
                start = (i * 17) % max(1, len(donor))
                current[target] = body[:at] + donor[start:start + size] + body[at + size // 2:]
                changed.append(target)
        lines.append("commit refs/heads/main")
        lines.append(f"mark :{i + 1}")
        who = f"Dev{i % 23} <dev{i % 23}@example.test> {1_600_000_000 + i * 900} +0100"
        lines += [f"author {who}", f"committer {who}"]
        message = f"Change {i}: update {names[changed[0]]}\n"
        lines.append(f"data {len(message.encode())}")
        lines.append(message)
        if i:
            lines.append(f"from :{i}")
        for index in changed:
            content = "".join(current[index]).encode()
            lines.append(f"M 644 inline {names[index]}")
            lines.append(f"data {len(content)}")
            lines.append(content.decode())
    subprocess.run(["git", "-C", str(path), "fast-import", "--quiet"],
                   input="\n".join(lines).encode(), check=True)


def git_log_seconds(repo: Path) -> float:
    """Seconds of ``git log --numstat main`` with its output discarded."""
    started = time.perf_counter()
    subprocess.run(["git", "-C", str(repo), "log", "--numstat", "main"],
                   stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


async def copy_floor(engine: PulseEngine, tenant: str, batch: dict[str, list[dict[str, Any]]]
                     ) -> float:
    """Seconds of a plain COPY of ``batch`` (entity to rows) into regular tables shaped and
    indexed like the targets, in one transaction as their owner."""
    async with engine.db.system_session() as session:
        connection = await session.connection()
        raw: Any = (await connection.get_raw_connection()).driver_connection
        prepared = []
        for entity, rows in batch.items():
            table = ENTITIES[entity].table.name
            columns = ["tenant_id", *sorted(rows[0])]
            records = [tuple(tenant if c == "tenant_id" else row[c] for c in columns)
                       for row in rows]
            await raw.execute(f"CREATE TABLE bench_floor_{table} (LIKE {table} INCLUDING ALL)")
            prepared.append((f"bench_floor_{table}", columns, records))
        started = time.perf_counter()
        for table, columns, records in prepared:
            await raw.copy_records_to_table(table, records=records, columns=columns)
        floor = time.perf_counter() - started
        for table, _columns, _records in prepared:
            await raw.execute(f"DROP TABLE {table}")
    return floor


async def bench_git(engine: PulseEngine, repo: Path, commits: int, rounds: int
                    ) -> tuple[float, float, float, float]:
    """Median seconds, over ``rounds`` interleaved rounds, of ``git log --numstat``, of
    parsing it, of a full ingest job (a new tenant each round), and of a plain COPY of the
    rows that job writes (its database floor), for the repository at ``repo``."""
    service = service_for(engine)
    times: dict[str, list[float]] = {"raw": [], "parse": [], "ingest": [], "floor": []}
    for _ in range(rounds):
        times["raw"].append(await asyncio.to_thread(git_log_seconds, repo))
        started = time.perf_counter()
        parsed = [c async for c in stream_log(str(repo), ["main"])]
        times["parse"].append(time.perf_counter() - started)
        assert len(parsed) == commits
        tenant = await create_tenant(engine)
        await empty_tables(engine, [ENTITIES[entity].table.name for entity in (
            "repositories", "people", "person_identities", "commits", "commit_parents",
            "commit_files")])
        job = await service.create_job(tenant, {"connector": "git", "config": {
            "path": str(repo), "branch": "main"}}, None, enqueue=False)
        started = time.perf_counter()
        status = await service.run_job(tenant, job["id"])
        times["ingest"].append(time.perf_counter() - started)
        assert status == "succeeded", await service.get_job(tenant, job["id"])
        document = await service.get_job(tenant, job["id"])
        assert document["stats"]["commits"]["created"] == commits, document
        rows = RowBuilder(stable_id("repositories", GIT_SOURCE, repo.name)).rows(parsed, None)
        times["floor"].append(await copy_floor(engine, tenant, rows))
    raw, parse, ingest, floor = (statistics.median(times[name])
                                 for name in ("raw", "parse", "ingest", "floor"))
    return raw, parse, ingest, floor


async def main(rows: int, commits: int, rounds: int) -> None:
    """Run both benchmarks and print the numbers and ratios."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "repos").mkdir()
        os.environ["PULSE_ETL_GIT_ROOTS"] = str(root / "repos")
        os.environ.setdefault("XDG_RUNTIME_DIR", str(root))
        url = os.environ.get("PULSE_TEST_DATABASE_URL")
        server = None
        if url is None:
            import pgserver

            server = pgserver.get_server(root / "pg", cleanup_mode="stop")
            url = server.get_uri()
        try:
            # only pulse-etl: what other plugins do with the announced loads (pulse-dora's
            # refresh) is their own work, not the connector's
            settings = make_settings(url, root / "data", plugins=["etl"])
            async with running_app(settings) as app:
                engine: PulseEngine = app.extensions["pulse"]
                loaded, logged, temporary = await bench_loader(engine, rows, rounds)
                print(f"loader: {rows} rows in {loaded:.3f}s = {rows / loaded:,.0f} rows/s "
                      f"(median of {rounds})")
                print(f"plain COPY into a regular table, same shape and indexes: {logged:.3f}s "
                      f"= {rows / logged:,.0f} rows/s")
                print(f"loader / plain COPY throughput ratio: {logged / loaded:.2f} "
                      "(target >= 0.8)")
                print(f"plain COPY into a temporary table (no WAL): {temporary:.3f}s "
                      f"= {rows / temporary:,.0f} rows/s; loader / that: "
                      f"{temporary / loaded:.2f}")
                minimal, source = root / "repos" / "minimal", root / "repos" / "source"
                generate_repository(minimal, commits)
                generate_source_repository(source, commits, Path(sqlalchemy.__file__).parent)
                for label, repo in (("minimal commits (one line of one small file)", minimal),
                                    ("real code (SQLAlchemy's sources, edited)", source)):
                    raw, parse, ingest, floor = await bench_git(engine, repo, commits, rounds)
                    print(f"{label}:")
                    print(f"  git log --numstat: {commits} commits in {raw:.3f}s")
                    print(f"  git connector parse: {parse:.3f}s ({parse / raw:.2f}x git log)")
                    print(f"  git connector full ingest: {ingest:.3f}s "
                          f"({ingest / raw:.2f}x git log; target <= 3x)")
                    print(f"  database floor (plain COPY of the same rows): {floor:.3f}s "
                          f"({floor / raw:.2f}x git log); parse + floor: "
                          f"{(parse + floor) / raw:.2f}x git log")
        finally:
            if server is not None:
                server.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--commits", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rows, arguments.commits, arguments.rounds))
