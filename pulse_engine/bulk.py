"""Bulk writes into tenant tables: ``COPY`` under row-level security, and fresh statistics.

PostgreSQL refuses ``COPY FROM`` into a table whose row-level security applies to the
writer, which is every tenant table for the app role. Without help, a bulk load has to
COPY into a staging table and then ``INSERT ... SELECT``: every row written twice. The
engine therefore keeps a **bulk-writer role** (``<app role>_bulk``: ``NOLOGIN``,
``BYPASSRLS``) that the app role may switch to for one statement, and this module does
that switch around one ``COPY`` inside the caller's tenant-bound transaction.

What keeps tenants apart while it writes:

* the role holds ``INSERT`` and nothing else, and only on tables that opt in with
  ``info={"pulse_bulk_copy": True}``: it can read no row of any table, and cannot update
  or delete;
* the tenant of every copied row is the tenant the session was bound to by
  :meth:`pulse_engine.db.Database.tenant_session`; callers pass rows without it;
* in the database, a statement-level trigger on each opted-in table (installed with the
  tenancy rules, :func:`pulse_engine.migrations.apply_bulk_copy_rules`) rejects the whole
  statement when any row the bulk role inserted names a tenant other than the
  transaction's ``pulse.tenant_id``.

Where the role cannot be created (a managed database whose owner may not grant
``BYPASSRLS``), :func:`bulk_copy_available` is false and callers stage instead.

After writing many rows, queries later in the same transaction are planned on statistics
that do not know them yet (an index lookup turns into a scan, or the reverse), and the
app role may not ``ANALYZE``. :func:`analyze_tables` asks the owner's ``pulse_analyze``
function (``SECURITY DEFINER``, tenant tables only) to, inside the caller's transaction,
where ``ANALYZE`` counts the transaction's own new rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

#: ``session.info`` key of the tenant a session is bound to (set by ``tenant_session``).
SESSION_TENANT = "pulse.tenant_id"
#: ``session.info`` key of the bulk-writer role, absent when there is none.
SESSION_BULK_ROLE = "pulse.bulk_role"
#: ``Table.info`` flag of a tenant table that bulk COPY may write.
BULK_COPY_FLAG = "pulse_bulk_copy"
#: Name of the transition table the tenant guard trigger reads.
GUARD_ROWS = "pulse_bulk_rows"
#: Name of the guard trigger and of its function.
GUARD_NAME = "pulse_bulk_tenant_guard"
#: Name of the owner's function that analyzes a tenant table for the app role.
ANALYZE_FUNCTION = "pulse_analyze"


def bulk_role_name(app_role: str) -> str:
    """The bulk-writer role that belongs to ``app_role``."""
    return f"{app_role}_bulk"


def session_tenant(session: AsyncSession) -> str | None:
    """The tenant a session of ``engine.db.tenant_session`` is bound to (None otherwise)."""
    tenant = session.info.get(SESSION_TENANT)
    return str(tenant) if tenant is not None else None


def bulk_copy_available(session: AsyncSession) -> bool:
    """Whether ``session`` is tenant-bound on a database that has the bulk-writer role."""
    return bool(session.info.get(SESSION_BULK_ROLE)) and SESSION_TENANT in session.info


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def copy_tenant_rows(
    session: AsyncSession,
    table: str,
    columns: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
) -> int:
    """COPY ``rows`` (values in ``columns`` order, no ``tenant_id``) into ``table``.

    Runs inside the session's transaction, as the bulk-writer role for this one
    statement, with the session's tenant put first in every row. ``rows`` is consumed
    while the COPY streams (a generator's work overlaps with the database's). A failure (a
    unique violation, or an exception raised by ``rows``) rolls back to before the COPY,
    role included, and re-raises, so the caller's transaction stays usable. Returns the
    number of rows copied.

    :raises RuntimeError: when :func:`bulk_copy_available` is false for ``session``.
    """
    if not bulk_copy_available(session):
        raise RuntimeError("bulk COPY needs a tenant session on a database with the bulk role")
    role = str(session.info[SESSION_BULK_ROLE])
    tenant = str(session.info[SESSION_TENANT])
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    records = ((tenant, *row) for row in rows)
    await driver.execute(f"SAVEPOINT pulse_bulk_copy; SET LOCAL ROLE {_quote(role)}")
    try:
        status = await driver.copy_records_to_table(
            table, records=records, columns=["tenant_id", *columns]
        )
    except Exception:
        await driver.execute(
            "ROLLBACK TO SAVEPOINT pulse_bulk_copy; RELEASE SAVEPOINT pulse_bulk_copy"
        )
        raise
    await driver.execute("SET LOCAL ROLE NONE; RELEASE SAVEPOINT pulse_bulk_copy")
    return int(str(status).rsplit(" ", 1)[-1])


async def analyze_tables(session: AsyncSession, tables: Sequence[str]) -> list[str]:
    """Refresh the planner statistics of tenant ``tables`` inside the session's transaction.

    A table another transaction is analyzing right now is skipped (its statistics are
    being refreshed anyway); returns the tables analyzed.
    """
    analyzed = []
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    for table in tables:
        if await driver.fetchval(f"SELECT {ANALYZE_FUNCTION}($1::regclass)", _quote(table)):
            analyzed.append(table)
    return analyzed
