"""Migration etl_0006: an item's start is read from ``ix_work_item_status_changes_item``
alone (an index-only scan: ``to_status`` is included)."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Connection

from pulse_engine.app import PulseEngine
from pulse_engine.migrations import alembic_config

#: The look-up pulse-portfolio makes per finished item: its first change out of to-do.
START = ("EXPLAIN SELECT min(changed_at) FROM work_item_status_changes WHERE tenant_id = "
         "CAST('00000000-0000-0000-0000-000000000001' AS uuid) AND work_item_id = "
         "CAST('00000000-0000-0000-0000-000000000002' AS uuid) "
         "AND lower(to_status) <> ALL(CAST('{to do,backlog}' AS text[]))")
INCLUDED = ("SELECT indnatts - indnkeyatts FROM pg_index "
            "WHERE indexrelid = to_regclass('ix_work_item_status_changes_item')")


async def test_the_status_change_index_includes_the_status_and_migrates_down_and_up(
        etl_engine: PulseEngine) -> None:
    engine = etl_engine
    seen: list[tuple[int, bool]] = []

    def cycle(connection: Connection) -> None:
        config = alembic_config("etl", engine.migration_folders["etl"], engine.metadata)
        config.attributes["connection"] = connection

        def state() -> tuple[int, bool]:
            included = connection.execute(text(INCLUDED)).scalar_one()
            # the table is empty in a test: forbid the other plans, so the plan shows
            # whether the index alone can answer the look-up
            connection.execute(text("SET LOCAL enable_seqscan = off"))
            connection.execute(text("SET LOCAL enable_bitmapscan = off"))
            plan = "\n".join(connection.execute(text(START)).scalars())
            connection.execute(text("RESET enable_seqscan"))
            connection.execute(text("RESET enable_bitmapscan"))
            return included, "Index Only Scan using ix_work_item_status_changes_item" in plan

        seen.append(state())
        command.downgrade(config, "etl_0005")
        seen.append(state())
        command.upgrade(config, "heads")
        seen.append(state())

    assert engine.db.owner_engine is not None
    async with engine.db.owner_engine.begin() as connection:
        await connection.run_sync(cycle)
    assert seen == [(1, True), (0, False), (1, True)]
