"""The loader: batched, idempotent upserts of unified-model rows on their natural keys.

A batch maps entity names (:data:`ENTITIES`) to rows (dicts without ``tenant_id``). Each
entity is written with one ``INSERT ... ON CONFLICT (natural key) DO UPDATE ... WHERE
(columns) IS DISTINCT FROM (new values)``: unchanged rows are not rewritten, and
``RETURNING (xmax = 0)`` tells created from updated rows. Batches of at least
``copy_threshold`` rows are first copied (binary COPY) into a temporary staging table, then
upserted from it in one statement (the staging table lives as long as the pooled
connection and is emptied at every commit). Everything runs in the caller's tenant-bound session, so
row-level security checks every row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_etl import model

Row = dict[str, Any]
Batch = Mapping[str, Sequence[Row]]
Stats = dict[str, dict[str, int]]

#: PostgreSQL's limit of bind parameters per statement is 32767; stay well below it.
MAX_PARAMETERS = 30_000

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

_GENERATED = frozenset({"created_at", "updated_at"})


def merge_stats(total: Stats, more: Stats) -> Stats:
    """Add the created/updated counts of ``more`` into ``total`` (returned)."""
    for entity, counts in more.items():
        into = total.setdefault(entity, {"created": 0, "updated": 0})
        for name, value in counts.items():
            into[name] = into.get(name, 0) + value
    return total


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Loader:
    """Writes batches of unified-model rows for one tenant.

    :param copy_threshold: rows of one entity from which COPY staging is used.
    """

    def __init__(self, copy_threshold: int = 1000) -> None:
        """Create a loader."""
        self.copy_threshold = copy_threshold

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
        created = updated = 0
        for columns, group in _group_by_columns(spec, tenant_id, rows).items():
            if len(group) >= self.copy_threshold:
                counts = await self._upsert_copy(session, spec, columns, group)
            else:
                counts = await self._upsert_values(session, spec, columns, group)
            created += counts[0]
            updated += counts[1]
        return created, updated

    def _upsert_sql(self, spec: EntitySpec, columns: Sequence[str], source: str) -> str:
        table = _quote(spec.table.name)
        column_list = ", ".join(_quote(c) for c in columns)
        changing = [c for c in columns if c not in spec.key and c not in spec.insert_only]
        if changing:
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
            action = f"DO UPDATE SET {', '.join(assignments)} WHERE {condition}"
        else:
            action = "DO NOTHING"
        conflict = ", ".join(_quote(c) for c in spec.key)
        return (
            f"WITH up AS (INSERT INTO {table} ({column_list}) {source} "
            f"ON CONFLICT ({conflict}) {action} RETURNING (xmax = 0) AS inserted) "
            "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) "
            "FROM up"
        )

    async def _upsert_values(
        self, session: AsyncSession, spec: EntitySpec, columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
    ) -> tuple[int, int]:
        created = updated = 0
        per_statement = max(1, MAX_PARAMETERS // len(columns))
        casts = [_cast(spec.table, c) for c in columns]
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            params: dict[str, Any] = {}
            tuples = []
            for i, row in enumerate(chunk):
                names = []
                for j, value in enumerate(row):
                    name = f"p{i}_{j}"
                    params[name] = value
                    names.append(f"CAST(:{name} AS {casts[j]})")
                tuples.append("(" + ", ".join(names) + ")")
            sql = self._upsert_sql(spec, columns, "VALUES " + ", ".join(tuples))
            result = (await session.execute(text(sql), params)).one()
            created += result[0]
            updated += result[1]
        return created, updated

    async def _upsert_copy(
        self, session: AsyncSession, spec: EntitySpec, columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
    ) -> tuple[int, int]:
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        stage = f"etl_stage_{spec.table.name}"
        await driver.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_quote(stage)} "
            f"(LIKE {_quote(spec.table.name)} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        await driver.execute(f"TRUNCATE {_quote(stage)}")
        await driver.copy_records_to_table(stage, records=rows, columns=list(columns))
        column_list = ", ".join(_quote(c) for c in columns)
        sql = self._upsert_sql(spec, columns, f"SELECT {column_list} FROM {_quote(stage)}")
        record = await driver.fetchrow(sql)
        return int(record[0]), int(record[1])


def _cast(table: Table, column: str) -> str:
    return str(table.c[column].type.compile(dialect=_DIALECT))


def _group_by_columns(
    spec: EntitySpec, tenant_id: str, rows: Iterable[Row]
) -> dict[tuple[str, ...], list[tuple[Any, ...]]]:
    """Rows as tuples, grouped by their column set, deduplicated by natural key."""
    table_columns = spec.table.c
    groups: dict[tuple[str, ...], dict[tuple[Any, ...], tuple[Any, ...]]] = {}
    for row in rows:
        names = tuple(
            ["tenant_id", *sorted(name for name in row if name not in _GENERATED)]
        )
        for name in names:
            if name not in table_columns:
                raise KeyError(f"{spec.table.name} has no column {name!r}")
        values = tuple(tenant_id if name == "tenant_id" else row[name] for name in names)
        by_key = groups.setdefault(names, {})
        key = tuple(values[names.index(name)] for name in spec.key)
        by_key[key] = values
    return {names: list(by_key.values()) for names, by_key in groups.items()}


