"""The loader: batched, idempotent upserts of unified-model rows on their natural keys.

A batch maps entity names (:data:`ENTITIES`) to rows (dicts without ``tenant_id``). Rows
are turned into tuples once (one ``itemgetter`` call per row, grouped by the set of columns
they carry, the last row of a natural key winning), then written in one of three ways:

* **small groups** (fewer than ``copy_threshold`` rows): ``INSERT ... VALUES ... ON CONFLICT
  (natural key) DO UPDATE ... WHERE (columns) IS DISTINCT FROM (new values)``, so unchanged
  rows are not rewritten;
* **large groups of new rows** (neither the first nor the last row's natural key is
  stored yet): one binary ``COPY`` straight into the table through the engine's
  bulk-writer role (:mod:`pulse_engine.bulk`), which may COPY under row-level security
  but only insert rows of the session's tenant; a key that turns out to exist (or that a
  concurrent writer stored meanwhile) makes the COPY fail as a whole, its savepoint is
  rolled back, and the rows take the next path;
* **other large groups**: a binary COPY into a temporary staging table (``ON COMMIT DROP``,
  only the group's columns, no constraints or indexes), then one ``INSERT ... SELECT ...
  ON CONFLICT ... DO UPDATE ... WHERE ... IS DISTINCT FROM``, as for small groups (a plain
  ``INSERT ... SELECT`` when none of the staged keys is stored, on databases without the
  bulk-writer role).

Created and updated rows are counted in the database (``xmax = 0`` of the upserted rows,
aggregated in the statement; the row count of a COPY or plain insert), never by returning
every row. Everything runs in the caller's tenant-bound session and transaction.

``synchronous_commit`` is left alone on purpose: the loader also serves webhook deliveries,
which are acknowledged once committed and never sent again, so an acknowledged batch must
survive a crash.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from typing import Any

import asyncpg
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_engine import bulk_copy_available, copy_tenant_rows, session_tenant
from pulse_etl import model

Row = dict[str, Any]
Batch = Mapping[str, Sequence[Row]]
Stats = dict[str, dict[str, int]]

#: PostgreSQL's limit of bind parameters per statement is 32767; stay well below it.
MAX_PARAMETERS = 30_000

#: Columns a row never sets: the tenant comes from the session, the stamps from the database.
_NOT_FROM_ROWS = frozenset({"tenant_id", "created_at", "updated_at"})

_DIALECT = postgresql.dialect()


@dataclass(frozen=True)
class EntitySpec:
    """How one entity is upserted.

    :param table: the target table.
    :param key: the conflict columns (a unique constraint), ``tenant_id`` first.
    :param insert_only: columns written when a row is created and never updated.
    :param version: a source timestamp column; an incoming row older than the stored one
        (webhooks arrive out of order) does not overwrite it.
    """

    table: Table
    key: tuple[str, ...]
    insert_only: tuple[str, ...] = ()
    version: str | None = None


def _natural(table: Table) -> EntitySpec:
    version = "source_updated_at" if "source_updated_at" in table.c else None
    return EntitySpec(table, ("tenant_id", "source", "external_id"), version=version)


#: Every loadable entity, in load order (referenced entities first).
ENTITIES: dict[str, EntitySpec] = {
    "projects": _natural(model.projects),
    "repositories": _natural(model.repositories),
    "teams": _natural(model.teams),
    "people": EntitySpec(model.people, ("tenant_id", "source", "external_id"),
                         insert_only=("display_name", "email")),
    "person_identities": EntitySpec(
        model.person_identities, ("tenant_id", "source", "external_id"),
        insert_only=("person_id", "mapped_explicitly"),
    ),
    "team_memberships": EntitySpec(model.team_memberships, ("tenant_id", "team_id", "person_id")),
    "commits": EntitySpec(model.commits, ("tenant_id", "repository_id", "sha")),
    "commit_parents": EntitySpec(
        model.commit_parents, ("tenant_id", "repository_id", "sha", "position")
    ),
    "commit_files": EntitySpec(
        model.commit_files, ("tenant_id", "repository_id", "sha", "path")
    ),
    "pull_requests": _natural(model.pull_requests),
    "reviews": _natural(model.reviews),
    "review_comments": _natural(model.review_comments),
    "deployments": _natural(model.deployments),
    "deployment_commits": EntitySpec(
        model.deployment_commits, ("tenant_id", "deployment_id", "sha")
    ),
    "incidents": _natural(model.incidents),
    "sprints": _natural(model.sprints),
    "work_items": _natural(model.work_items),
    "work_item_status_changes": _natural(model.work_item_status_changes),
}


def merge_stats(total: Stats, more: Stats) -> Stats:
    """Add the created/updated counts of ``more`` into ``total`` (returned)."""
    for entity, counts in more.items():
        into = total.setdefault(entity, {"created": 0, "updated": 0})
        for name, value in counts.items():
            into[name] = into.get(name, 0) + value
    return total


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class _Layout:
    """How rows with one particular key order become tuples.

    :ivar columns: the written columns, sorted (``tenant_id`` excluded).
    :ivar values: a row to its values in ``columns`` order.
    :ivar key: a values tuple to its natural key (without ``tenant_id``).
    """

    columns: tuple[str, ...]
    values: Callable[[Row], tuple[Any, ...]]
    key: Callable[[tuple[Any, ...]], Any]


def _getter(names: Sequence[Any]) -> Callable[[Any], tuple[Any, ...]]:
    """``itemgetter`` that always returns a tuple (also for a single item)."""
    if len(names) == 1:
        only = names[0]
        return lambda item: (item[only],)
    return itemgetter(*names)


@lru_cache(maxsize=1024)
def _layout(spec: EntitySpec, names: tuple[str, ...]) -> _Layout:
    """The layout of rows of ``spec`` whose keys are ``names`` (in that order)."""
    table_columns = spec.table.c
    if "tenant_id" in names:
        raise KeyError(f"{spec.table.name} rows must not carry tenant_id (the session's is used)")
    columns = tuple(sorted(name for name in names if name not in _NOT_FROM_ROWS))
    for name in columns:
        if name not in table_columns:
            raise KeyError(f"{spec.table.name} has no column {name!r}")
    key_columns = [name for name in spec.key if name != "tenant_id"]
    missing = [name for name in key_columns if name not in columns]
    if missing:
        raise KeyError(f"{spec.table.name} rows need their natural key: {', '.join(missing)}")
    return _Layout(
        columns=columns,
        values=_getter(columns),
        key=_getter([columns.index(name) for name in key_columns]),
    )


def group_rows(
    spec: EntitySpec, rows: Sequence[Row]
) -> dict[tuple[str, ...], list[tuple[Any, ...]]]:
    """Rows as value tuples, grouped by their column set, deduplicated by natural key.

    Within a group the last row of a natural key wins. Columns follow the sorted order of
    the group's key; ``tenant_id`` is not part of the tuples.

    :raises KeyError: for a column the table does not have, a row without its natural key,
        or a row carrying ``tenant_id``.
    """
    layouts: dict[tuple[str, ...], _Layout] = {}
    groups: dict[tuple[str, ...], dict[Any, tuple[Any, ...]]] = {}
    previous_names: tuple[str, ...] | None = None
    layout: _Layout | None = None
    by_key: dict[Any, tuple[Any, ...]] = {}
    for row in rows:
        names = tuple(row)
        if names != previous_names:
            layout = layouts.get(names)
            if layout is None:
                layout = layouts[names] = _layout(spec, names)
            by_key = groups.setdefault(layout.columns, {})
            previous_names = names
        assert layout is not None
        values = layout.values(row)
        by_key[layout.key(values)] = values
    return {columns: list(by_key.values()) for columns, by_key in groups.items()}


def _cast(table: Table, column: str) -> str:
    return str(table.c[column].type.compile(dialect=_DIALECT))


def _conflict_action(spec: EntitySpec, columns: Sequence[str]) -> str:
    """``ON CONFLICT (key) DO UPDATE ... WHERE changed`` (or ``DO NOTHING``)."""
    table = _quote(spec.table.name)
    changing = [c for c in columns if c not in spec.key and c not in spec.insert_only]
    conflict = ", ".join(_quote(c) for c in spec.key)
    if not changing:
        return f"ON CONFLICT ({conflict}) DO NOTHING"
    assignments = [f"{_quote(c)} = EXCLUDED.{_quote(c)}" for c in changing]
    if "updated_at" in spec.table.c:
        assignments.append('"updated_at" = now()')
    old = ", ".join(f"{table}.{_quote(c)}" for c in changing)
    new = ", ".join(f"EXCLUDED.{_quote(c)}" for c in changing)
    condition = f"ROW({old}) IS DISTINCT FROM ROW({new})"
    if spec.version is not None and spec.version in columns:
        version = _quote(spec.version)
        condition += (
            f" AND ({table}.{version} IS NULL OR EXCLUDED.{version} IS NULL"
            f" OR EXCLUDED.{version} >= {table}.{version})"
        )
    return f"ON CONFLICT ({conflict}) DO UPDATE SET {', '.join(assignments)} WHERE {condition}"


def _upsert_sql(spec: EntitySpec, columns: Sequence[str], source: str) -> str:
    """The counting upsert of ``source`` (a query yielding ``tenant_id, *columns``)."""
    column_list = ", ".join(_quote(c) for c in ("tenant_id", *columns))
    return (
        f"WITH up AS (INSERT INTO {_quote(spec.table.name)} ({column_list}) {source} "
        f"{_conflict_action(spec, columns)} RETURNING (xmax = 0) AS inserted) "
        "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) "
        "FROM up"
    )


class _MixedColumns(Exception):
    """Rows of one batch carry different column sets (they are grouped instead)."""


class Loader:
    """Writes batches of unified-model rows for one tenant.

    :param copy_threshold: rows of one entity (and column set) from which COPY staging is
        used.
    """

    def __init__(self, copy_threshold: int = 1000) -> None:
        """Create a loader."""
        self.copy_threshold = copy_threshold
        self._stage_numbers = itertools.count(1)

    async def load(self, session: AsyncSession, tenant_id: str, batch: Batch) -> Stats:
        """Upsert every entity of ``batch`` in load order; return created/updated per entity.

        :raises KeyError: for an entity name that is not in :data:`ENTITIES`.
        """
        unknown = set(batch) - set(ENTITIES)
        if unknown:
            raise KeyError(f"unknown entities: {', '.join(sorted(unknown))}")
        stats: Stats = {}
        for entity, spec in ENTITIES.items():
            rows = batch.get(entity)
            if not rows:
                continue
            created, updated = await self.upsert(session, tenant_id, spec, rows)
            stats[entity] = {"created": created, "updated": updated}
        return stats

    async def upsert(
        self, session: AsyncSession, tenant_id: str, spec: EntitySpec, rows: Sequence[Row]
    ) -> tuple[int, int]:
        """Upsert ``rows`` of one entity; return ``(created, updated)``.

        Rows are grouped by the set of columns they carry (a connector omits columns it
        does not know, and those keep their stored values); within a group the last row
        of a natural key wins.
        """
        driver = await _driver(session)
        if len(rows) >= self.copy_threshold:
            copied = await self._copied(session, driver, tenant_id, spec, rows)
            if copied is not None:
                return copied, 0
        created = updated = 0
        for columns, group in group_rows(spec, rows).items():
            if len(group) >= self.copy_threshold:
                counts = await self._staged(driver, tenant_id, spec, columns, group)
            else:
                counts = await self._values(driver, tenant_id, spec, columns, group)
            created += counts[0]
            updated += counts[1]
        return created, updated

    async def _values(
        self, driver: Any, tenant_id: str, spec: EntitySpec, columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
    ) -> tuple[int, int]:
        """Upsert ``rows`` with ``VALUES`` lists of bind parameters."""
        created = updated = 0
        width = len(columns)
        casts = [_cast(spec.table, c) for c in columns]
        per_statement = max(1, (MAX_PARAMETERS - 1) // width)
        names = ", ".join(_quote(c) for c in columns)
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            tuples = []
            number = 2
            for _row in chunk:
                placeholders = [f"CAST(${number + j} AS {casts[j]})" for j in range(width)]
                tuples.append("(" + ", ".join(placeholders) + ")")
                number += width
            source = (
                f"SELECT CAST($1 AS uuid), v.* FROM (VALUES {', '.join(tuples)}) AS v ({names})"
            )
            arguments = [value for row in chunk for value in row]
            record = await driver.fetchrow(_upsert_sql(spec, columns, source), tenant_id,
                                           *arguments)
            created += int(record[0])
            updated += int(record[1])
        return created, updated

    async def _copied(
        self, session: AsyncSession, driver: Any, tenant_id: str, spec: EntitySpec,
        rows: Sequence[Row],
    ) -> int | None:
        """COPY ``rows``, all new and of one column set, straight into the table.

        Rows become tuples while the COPY streams, so that work overlaps with the
        database's. Returns None, having written nothing, when the rows must take the
        grouping paths instead: no bulk-writer role, a stored natural key at either end,
        rows of several column sets, or a key stored meanwhile or twice in the batch.
        """
        bound = session_tenant(session)
        if not bulk_copy_available(session) or bound != str(uuid.UUID(str(tenant_id))):
            return None
        names = rows[0].keys()
        if rows[-1].keys() != names:
            return None
        layout = _layout(spec, tuple(rows[0]))
        values = layout.values
        if await self._ends_stored(
            driver, tenant_id, spec, layout.columns, (values(rows[0]), values(rows[-1]))
        ):
            return None

        def records() -> Iterator[tuple[Any, ...]]:
            for row in rows:
                if row.keys() != names:
                    raise _MixedColumns
                yield values(row)

        try:
            return await copy_tenant_rows(session, spec.table.name, layout.columns, records())
        except (asyncpg.UniqueViolationError, _MixedColumns):
            return None

    @staticmethod
    async def _ends_stored(
        driver: Any, tenant_id: str, spec: EntitySpec, columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
    ) -> bool:
        """Whether the natural key of the first or the last row is already stored.

        Two index probes that send re-runs and overlapping syncs to the upsert at once,
        instead of through a COPY that would fail on its first stored key.
        """
        key = [name for name in spec.key if name != "tenant_id"]
        positions = [columns.index(name) for name in key]
        casts = [_cast(spec.table, name) for name in key]

        def probe(offset: int) -> str:
            matches = " AND ".join(
                f"{_quote(name)} = CAST(${offset + n} AS {cast})"
                for n, (name, cast) in enumerate(zip(key, casts, strict=True))
            )
            return (
                f"EXISTS (SELECT 1 FROM {_quote(spec.table.name)} "
                f"WHERE tenant_id = CAST($1 AS uuid) AND {matches})"
            )

        values = [rows[0][p] for p in positions] + [rows[-1][p] for p in positions]
        sql = f"SELECT {probe(2)} OR {probe(2 + len(key))}"
        return bool(await driver.fetchval(sql, tenant_id, *values))

    async def _staged(
        self, driver: Any, tenant_id: str, spec: EntitySpec, columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
    ) -> tuple[int, int]:
        """COPY ``rows`` into a staging table, then insert (first load) or upsert them."""
        table = _quote(spec.table.name)
        stage = f"etl_stage_{next(self._stage_numbers)}"
        names = ", ".join(_quote(c) for c in columns)
        await driver.execute(
            f"CREATE TEMP TABLE {stage} ON COMMIT DROP AS SELECT {names} FROM {table} "
            "WITH NO DATA"
        )
        await driver.copy_records_to_table(stage, records=rows, columns=list(columns))
        source = f"SELECT CAST($1 AS uuid), {names} FROM {stage}"
        counts: tuple[int, int] | None = None
        if not await self._any_stored(driver, tenant_id, spec, stage):
            inserted = await self._insert_new(driver, spec, columns, source, tenant_id)
            if inserted is not None:
                counts = (inserted, 0)
        if counts is None:
            record = await driver.fetchrow(_upsert_sql(spec, columns, source), tenant_id)
            counts = (int(record[0]), int(record[1]))
        # an error above aborts the transaction, whose end drops the table anyway
        await driver.execute(f"DROP TABLE {stage}")
        return counts

    @staticmethod
    async def _any_stored(driver: Any, tenant_id: str, spec: EntitySpec, stage: str) -> bool:
        """Whether the target already holds a natural key of the staged rows."""
        table = _quote(spec.table.name)
        keys = " AND ".join(
            f"t.{_quote(c)} = s.{_quote(c)}" for c in spec.key if c != "tenant_id"
        )
        return bool(
            await driver.fetchval(
                f"SELECT EXISTS (SELECT 1 FROM {stage} s JOIN {table} t "
                f"ON t.tenant_id = CAST($1 AS uuid) AND {keys})",
                tenant_id,
            )
        )

    @staticmethod
    async def _insert_new(
        driver: Any, spec: EntitySpec, columns: Sequence[str], source: str, tenant_id: str
    ) -> int | None:
        """Plain-insert rows none of which exist; None when a concurrent writer won a key."""
        column_list = ", ".join(_quote(c) for c in ("tenant_id", *columns))
        await driver.execute("SAVEPOINT etl_first_load")
        try:
            status = await driver.execute(
                f"INSERT INTO {_quote(spec.table.name)} ({column_list}) {source}", tenant_id
            )
        except asyncpg.UniqueViolationError:
            await driver.execute("ROLLBACK TO SAVEPOINT etl_first_load")
            await driver.execute("RELEASE SAVEPOINT etl_first_load")
            return None
        await driver.execute("RELEASE SAVEPOINT etl_first_load")
        return int(str(status).rsplit(" ", 1)[-1])


async def _driver(session: AsyncSession) -> Any:
    """The asyncpg connection of ``session``, inside its (begun) transaction."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    if not driver.is_in_transaction():
        raise RuntimeError("the loader needs a session inside a transaction (tenant_session)")
    return driver
