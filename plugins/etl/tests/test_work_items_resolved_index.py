"""Migration etl_0005: ``ix_work_items_resolved`` serves windows of finished work items."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Connection

from pulse_engine.app import PulseEngine
from pulse_engine.migrations import alembic_config

#: The shapes pulse-portfolio reads: items finished in a window, and the newest resolution.
WINDOW = ("EXPLAIN SELECT resolved_at FROM work_items WHERE tenant_id = "
          "CAST('00000000-0000-0000-0000-000000000001' AS uuid) AND resolved_at >= now() "
          "- interval '90 days' AND resolved_at < now() ORDER BY resolved_at")
NEWEST = ("EXPLAIN SELECT max(resolved_at) FROM work_items WHERE tenant_id = "
          "CAST('00000000-0000-0000-0000-000000000001' AS uuid)")


async def test_the_resolved_index_migrates_down_and_up_and_serves_the_window(
        etl_engine: PulseEngine) -> None:
    engine = etl_engine
    seen: list[tuple[bool, bool, bool]] = []

    def cycle(connection: Connection) -> None:
        config = alembic_config("etl", engine.migration_folders["etl"], engine.metadata)
        config.attributes["connection"] = connection

        def state() -> tuple[bool, bool, bool]:
            exists = connection.execute(text(
                "SELECT to_regclass('ix_work_items_resolved') IS NOT NULL")).scalar_one()
            # the table is empty in a test: forbid sequential scans, so the plan shows
            # whether the index can answer the query at all (its predicate is implied)
            connection.execute(text("SET LOCAL enable_seqscan = off"))
            plans = ["\n".join(connection.execute(text(sql)).scalars()) for sql in (WINDOW, NEWEST)]
            connection.execute(text("RESET enable_seqscan"))
            return (exists, *("ix_work_items_resolved" in plan for plan in plans))

        seen.append(state())
        command.downgrade(config, "etl_0004")
        seen.append(state())
        command.upgrade(config, "heads")
        seen.append(state())

    assert engine.db.owner_engine is not None
    async with engine.db.owner_engine.begin() as connection:
        await connection.run_sync(cycle)
    assert seen == [(True, True, True), (False, False, False), (True, True, True)]
