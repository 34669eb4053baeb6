"""Migration etl_0007: a window's commits, pull requests and reviews, with the columns the
activity analytics read, come from their indexes alone (index-only scans)."""

from __future__ import annotations

from pulse_etl.migrations.etl_0007_activity_covering import COVERING
from sqlalchemy import text
from sqlalchemy.engine import Connection

from pulse_engine.app import PulseEngine
from pulse_engine.testing import downgrade_plugin

TENANT = "CAST('00000000-0000-0000-0000-000000000001' AS uuid)"
REPOSITORY = "CAST('00000000-0000-0000-0000-000000000002' AS uuid)"
WINDOW = "BETWEEN '2026-01-01' AND '2026-04-01'"
#: A read each index answers alone once it includes its columns: ``(index, statement)``.
READS = {
    "ix_commits_repository_authored": (
        "SELECT author_identity_id, is_merge, author_tz_offset, additions, deletions, "
        f"files_changed FROM commits WHERE tenant_id = {TENANT} "
        f"AND repository_id = {REPOSITORY} AND authored_at {WINDOW}"),
    "ix_commits_author": (
        f"SELECT repository_id FROM commits WHERE tenant_id = {TENANT} "
        f"AND author_identity_id = {REPOSITORY} AND authored_at < '2026-01-01'"),
    "ix_pull_requests_repository_created": (
        f"SELECT author_identity_id FROM pull_requests WHERE tenant_id = {TENANT} "
        f"AND repository_id = {REPOSITORY} AND created_at_source {WINDOW}"),
    "ix_pull_requests_repository_merged": (
        f"SELECT author_identity_id FROM pull_requests WHERE tenant_id = {TENANT} "
        f"AND repository_id = {REPOSITORY} AND merged_at {WINDOW}"),
    "ix_reviews_submitted": (
        "SELECT pull_request_id, reviewer_identity_id, state FROM reviews "
        f"WHERE tenant_id = {TENANT} AND submitted_at {WINDOW}"),
}


async def _state(engine: PulseEngine) -> dict[str, tuple[int, bool]]:
    """Per index: its included columns, and whether its read is an index-only scan."""

    def read(connection: Connection) -> dict[str, tuple[int, bool]]:
        # the tables are empty in a test: forbid the other plans (the table's other
        # non-unique indexes are dropped until the savepoint's rollback), so that the plan
        # shows whether the index alone can answer the read
        connection.execute(text("SET LOCAL enable_seqscan = off"))
        connection.execute(text("SET LOCAL enable_bitmapscan = off"))
        found = {}
        for name, statement in READS.items():
            included = connection.execute(text(
                "SELECT indnatts - indnkeyatts FROM pg_index "
                "WHERE indexrelid = to_regclass(:name)"), {"name": name}).scalar_one()
            savepoint = connection.begin_nested()
            others = connection.execute(text(
                "SELECT o.indexrelid::regclass::text FROM pg_index i "
                "JOIN pg_index o ON o.indrelid = i.indrelid AND o.indexrelid <> i.indexrelid "
                "AND NOT o.indisunique WHERE i.indexrelid = to_regclass(:name)"),
                {"name": name}).scalars().all()
            for other in others:
                connection.execute(text(f"DROP INDEX {other}"))
            plan = "\n".join(connection.execute(text("EXPLAIN " + statement)).scalars())
            savepoint.rollback()
            found[name] = (included, f"Index Only Scan using {name} " in plan)
        return found

    assert engine.db.owner_engine is not None
    async with engine.db.owner_engine.begin() as connection:
        return await connection.run_sync(read)


async def test_the_activity_indexes_cover_their_reads_and_migrate_down_and_up(
        etl_engine: PulseEngine) -> None:
    assert set(READS) == {name for name, *_ in COVERING}
    covered = {name: (len(included), True) for name, _, _, included in COVERING}
    assert await _state(etl_engine) == covered
    await downgrade_plugin(etl_engine, "etl", "etl_0006")
    assert await _state(etl_engine) == {name: (0, False) for name in READS}
    await etl_engine.migrate()
    assert await _state(etl_engine) == covered
