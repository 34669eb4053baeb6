"""The loader: idempotent upserts on natural keys, created vs updated, COPY staging, RLS."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pulse_etl import model
from pulse_etl.loader import Loader
from pulse_etl.model import stable_id
from pulse_etl.service import EtlService
from sqlalchemy import func, select, text

from pulse_engine.bulk import SESSION_BULK_ROLE, bulk_copy_available
from pulse_engine.testing import TenantFixture


def _commits(count: int, repository_id: str, message: str = "m") -> list[dict]:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    return [
        {"id": stable_id("commits", repository_id, f"{i:040x}"), "repository_id": repository_id,
         "sha": f"{i:040x}", "authored_at": start + timedelta(minutes=i), "message": message,
         "additions": i, "deletions": 0, "files_changed": 1, "is_merge": False, "source": "test"}
        for i in range(count)
    ]


@pytest.mark.parametrize("count", [10, 2500])
async def test_upsert_counts_created_updated_and_skips_unchanged(
    etl: EtlService, etl_tenant: TenantFixture, count: int
) -> None:
    repository_id = stable_id("repositories", "test", "r")
    batch = {"repositories": [{"id": repository_id, "source": "test", "external_id": "r",
                               "name": "r", "service": "r"}],
             "commits": _commits(count, repository_id)}
    loader = Loader(copy_threshold=1000)
    engine = etl.engine
    async with engine.db.tenant_session(etl_tenant.id) as session:
        first = await loader.load(session, etl_tenant.id, batch)
    assert first == {"repositories": {"created": 1, "updated": 0},
                     "commits": {"created": count, "updated": 0}}
    async with engine.db.tenant_session(etl_tenant.id) as session:
        again = await loader.load(session, etl_tenant.id, batch)
        xmin_before = set((await session.execute(text("SELECT xmin::text FROM commits"))).scalars())
    assert again == {"repositories": {"created": 0, "updated": 0},
                     "commits": {"created": 0, "updated": 0}}
    changed = _commits(count, repository_id)
    changed[0]["message"] = "edited"
    async with engine.db.tenant_session(etl_tenant.id) as session:
        third = await loader.load(session, etl_tenant.id, {"commits": changed})
        xmin_after = set((await session.execute(text("SELECT xmin::text FROM commits"))).scalars())
    assert third == {"commits": {"created": 0, "updated": 1}}
    assert len(xmin_after - xmin_before) == 1  # only the edited row was rewritten


async def test_omitted_columns_keep_their_values(etl: EtlService, etl_tenant: TenantFixture
                                                 ) -> None:
    repository_id = stable_id("repositories", "test", "keep")
    rows = _commits(1, repository_id)
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        await etl.loader.load(session, etl_tenant.id, {"commits": rows})
        partial = {k: v for k, v in rows[0].items() if k != "additions"} | {"message": "new"}
        stats = await etl.loader.load(session, etl_tenant.id, {"commits": [partial]})
        row = (await session.execute(select(model.commits))).one()
    assert stats == {"commits": {"created": 0, "updated": 1}}
    assert (row.additions, row.message) == (0, "new")


async def test_rows_are_invisible_to_other_tenants(etl: EtlService, etl_app, etl_tenant
                                                   ) -> None:
    from pulse_engine.testing import make_tenant

    other = await make_tenant(etl_app)
    repository_id = stable_id("repositories", "test", "iso")
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        await etl.loader.load(session, etl_tenant.id, {"commits": _commits(5, repository_id)})
    async with etl.engine.db.tenant_session(other.id) as session:
        seen = await session.scalar(select(func.count()).select_from(model.commits))
        # the same natural keys for another tenant are separate rows
        stats = await etl.loader.load(session, other.id, {"commits": _commits(5, repository_id)})
    assert seen == 0
    assert stats == {"commits": {"created": 5, "updated": 0}}


async def test_unknown_entity_or_column_is_refused(etl: EtlService, etl_tenant: TenantFixture
                                                   ) -> None:
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        with pytest.raises(KeyError):
            await etl.loader.load(session, etl_tenant.id, {"nope": [{"a": 1}]})
        with pytest.raises(KeyError):
            await etl.loader.load(session, etl_tenant.id, {"projects": [
                {"id": str(uuid.uuid4()), "source": "s", "external_id": "x", "name": "n",
                 "bogus": 1}]})


async def _table_rows(etl: EtlService, tenant_id: str, table) -> list[tuple]:
    columns = [c for c in table.c if c.name not in ("tenant_id", "created_at", "updated_at")]
    async with etl.engine.db.tenant_session(tenant_id) as session:
        return sorted((await session.execute(select(*columns))).all())


async def test_first_load_insert_and_upsert_paths_write_identical_rows(
    etl: EtlService, etl_app
) -> None:
    from pulse_engine.testing import make_tenant

    repository_id = stable_id("repositories", "test", "paths")
    rows = _commits(1200, repository_id)
    parents = [{"repository_id": repository_id, "sha": row["sha"], "position": 0,
                "parent_sha": f"{i - 1:040x}"} for i, row in enumerate(rows) if i]
    batch = {"commits": rows, "commit_parents": parents}
    first_load, staged_first_load, values_upsert, staged_upsert = [
        await make_tenant(etl_app) for _ in range(4)]
    async with etl.engine.db.tenant_session(first_load.id) as session:
        assert bulk_copy_available(session)
        copied = await Loader(copy_threshold=1).load(session, first_load.id, batch)
    async with etl.engine.db.tenant_session(staged_first_load.id) as session:
        del session.info[SESSION_BULK_ROLE]  # as on a database without the bulk role
        staged_first = await Loader(copy_threshold=1).load(session, staged_first_load.id, batch)
    async with etl.engine.db.tenant_session(values_upsert.id) as session:
        valued = await Loader(copy_threshold=10**9).load(session, values_upsert.id, batch)
    async with etl.engine.db.tenant_session(staged_upsert.id) as session:
        await Loader(copy_threshold=10**9).load(
            session, staged_upsert.id, {"commits": rows[:1], "commit_parents": parents[:1]})
        changed = [dict(row) for row in rows]
        changed[0]["message"] = "edited"
        staged = await Loader(copy_threshold=1).load(
            session, staged_upsert.id, {"commits": changed, "commit_parents": parents})
        changed[0]["message"] = rows[0]["message"]
        restored = await Loader(copy_threshold=1).load(
            session, staged_upsert.id, {"commits": changed})
    expected = {"commits": {"created": 1200, "updated": 0},
                "commit_parents": {"created": 1199, "updated": 0}}
    assert copied == staged_first == valued == expected
    assert staged == {"commits": {"created": 1199, "updated": 1},
                      "commit_parents": {"created": 1198, "updated": 0}}
    assert restored == {"commits": {"created": 0, "updated": 1}}
    for table in (model.commits, model.commit_parents):
        reference = await _table_rows(etl, first_load.id, table)
        assert len(reference) == expected[table.name]["created"]
        assert await _table_rows(etl, staged_first_load.id, table) == reference
        assert await _table_rows(etl, values_upsert.id, table) == reference
        assert await _table_rows(etl, staged_upsert.id, table) == reference


@pytest.mark.parametrize(("probe", "stored", "changed"), [
    ("_any_stored", slice(0, 20), 0),  # the staged first-load insert loses a race
    ("_ends_stored", slice(20, 40), 25),  # the COPY meets keys its probe did not see
])
async def test_a_first_load_meeting_a_stored_key_falls_back_to_the_upsert(
    etl: EtlService, etl_tenant: TenantFixture, monkeypatch: pytest.MonkeyPatch,
    probe: str, stored: slice, changed: int,
) -> None:
    repository_id = stable_id("repositories", "test", f"race{probe}")
    rows = _commits(50, repository_id)
    loader = Loader(copy_threshold=10)
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        await loader.load(session, etl_tenant.id, {"commits": rows[stored]})

    async def nothing_stored(*_args: object) -> bool:  # as if a concurrent writer won
        return False

    monkeypatch.setattr(Loader, probe, staticmethod(nothing_stored))
    rows[changed]["message"] = "changed"
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        stats = await loader.load(session, etl_tenant.id, {"commits": rows})
        count = await session.scalar(select(func.count()).select_from(model.commits))
    assert stats == {"commits": {"created": 30, "updated": 1}}
    assert count == 50


async def test_only_new_rows_are_copied_and_a_rerun_goes_straight_to_the_upsert(
    etl: EtlService, etl_tenant: TenantFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pulse_etl import loader as loader_module

    copied: list[int] = []
    real_copy = loader_module.copy_tenant_rows

    async def counting_copy(session: object, table: str, columns: object, rows: object) -> int:
        count = await real_copy(session, table, columns, rows)  # type: ignore[arg-type]
        copied.append(count)
        return count

    monkeypatch.setattr(loader_module, "copy_tenant_rows", counting_copy)
    repository_id = stable_id("repositories", "test", "rerun")
    rows = _commits(40, repository_id)
    loader = Loader(copy_threshold=10)
    for expected_copies, expected in ((1, {"created": 40, "updated": 0}),
                                      (1, {"created": 0, "updated": 0})):
        async with etl.engine.db.tenant_session(etl_tenant.id) as session:
            stats = await loader.load(session, etl_tenant.id, {"commits": rows})
        assert stats == {"commits": expected}
        assert len(copied) == expected_copies
    more = _commits(80, repository_id)[40:]
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        stats = await loader.load(session, etl_tenant.id, {"commits": more})
    assert stats == {"commits": {"created": 40, "updated": 0}}
    assert copied == [40, 40]


async def test_duplicates_and_mixed_columns_in_a_new_batch_are_grouped_instead(
    etl: EtlService, etl_tenant: TenantFixture
) -> None:
    repository_id = stable_id("repositories", "test", "mixed")
    rows = _commits(30, repository_id)
    duplicate = {**rows[3], "message": "the last one wins"}
    partial = {k: v for k, v in _commits(31, repository_id)[30].items() if k != "message"}
    loader = Loader(copy_threshold=10)
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        stats = await loader.load(session, etl_tenant.id, {"commits": [*rows, duplicate]})
        assert stats == {"commits": {"created": 30, "updated": 0}}
        more = _commits(60, repository_id)[31:]
        stats = await loader.load(session, etl_tenant.id,
                                  {"commits": [*more[:10], partial, *more[10:]]})
        assert stats == {"commits": {"created": 30, "updated": 0}}
        messages = dict((await session.execute(
            select(model.commits.c.sha, model.commits.c.message))).all())
    assert len(messages) == 60
    assert messages[rows[3]["sha"]] == "the last one wins"
    assert messages[partial["sha"]] is None


async def test_rows_must_not_name_a_tenant_and_need_their_key(
    etl: EtlService, etl_tenant: TenantFixture
) -> None:
    repository_id = stable_id("repositories", "test", "keys")
    row = _commits(1, repository_id)[0]
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        with pytest.raises(KeyError, match="tenant_id"):
            await etl.loader.load(session, etl_tenant.id,
                                  {"commits": [{**row, "tenant_id": etl_tenant.id}]})
        with pytest.raises(KeyError, match="natural key"):
            await etl.loader.load(session, etl_tenant.id,
                                  {"commits": [{k: v for k, v in row.items() if k != "sha"}]})


async def test_bulk_loads_refresh_planner_statistics(etl: EtlService) -> None:
    from pulse_etl.loads import ANALYZE_AFTER_ROWS

    async def last_analyzed(table: str) -> object:
        async with etl.engine.db.system_session() as session:
            return await session.scalar(
                text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = :table"),
                {"table": table},
            )

    before = await last_analyzed("commits")
    small = {"commits": {"created": 3, "updated": 0}}
    assert await etl.loads.analyze_bulk_loaded(small) == []
    bulk = {
        "commits": {"created": ANALYZE_AFTER_ROWS, "updated": 0},
        "reviews": {"created": 1, "updated": 0},
        "not_a_table": {"created": 10**6, "updated": 0},
    }
    assert await etl.loads.analyze_bulk_loaded(bulk) == ["commits"]
    after = await last_analyzed("commits")
    assert after is not None and after != before


async def test_a_load_that_grows_a_table_by_a_tenth_refreshes_its_statistics(
    etl: EtlService,
) -> None:
    from pulse_etl.loads import ANALYZE_GROWTH_SHARE, ANALYZE_MIN_ROWS

    async with etl.engine.db.system_session() as session:
        await session.execute(text("ANALYZE review_comments"))
        described = await session.scalar(
            text("SELECT reltuples FROM pg_class WHERE oid = to_regclass('review_comments')")
        )
    share = int(ANALYZE_GROWTH_SHARE * max(described, 0))
    below = max(ANALYZE_MIN_ROWS, share + 1) - 1
    assert await etl.loads.analyze_bulk_loaded(
        {"review_comments": {"created": below, "updated": 0}}) == []
    assert await etl.loads.analyze_bulk_loaded(
        {"review_comments": {"created": 0, "updated": below + 1}}) == ["review_comments"]


def test_a_load_s_since_is_its_earliest_event_status_changes_included() -> None:
    """``since`` (what ``data_loaded`` hands on) reaches back to a status change of an older
    work item the batch does not carry, and exists for a batch of status changes alone."""
    from pulse_etl.loads import earliest_event

    day = datetime(2026, 3, 1, tzinfo=UTC)
    changes = [{"work_item_id": "a", "changed_at": day - timedelta(days=40)},
               {"work_item_id": "b", "changed_at": day - timedelta(days=3)}]
    items = [{"id": "c", "created_at_source": day - timedelta(days=10)}]
    assert earliest_event({"work_item_status_changes": changes}) == day - timedelta(days=40)
    assert earliest_event({"work_items": items,
                           "work_item_status_changes": changes[1:]}) == day - timedelta(days=10)
    assert earliest_event({"work_items": items,
                           "work_item_status_changes": changes}) == day - timedelta(days=40)
    assert earliest_event({"people": [{"id": "p"}]}) is None
