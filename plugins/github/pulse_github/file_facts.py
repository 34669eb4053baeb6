"""Recompute a tenant's per-file facts (``github_file_changes``, its path dictionary
``github_paths`` and the pairs of files changed together ``github_file_pairs``, see
:mod:`pulse_github.tables`) from pulse-etl's commits, commit files
and identities, in full or from ``since`` as the per-pull-request facts are, through their
own refresh (:data:`GITHUB_FILE_FACTS`, queue ``github_files.refresh``): they do not depend
on the tenant's configuration (bot patterns and production environments are the
per-pull-request facts'), so a configuration change does not rewrite them.

A fact is one file of a non-merge commit with an author identity (the rows the file
analytics counted when they joined a window's commits to their ``commit_files``). With
``since`` the commits recomputed are those authored at or after it (a commit's SHA covers
its author time, so a loaded commit keeps its time) and the merge commits of the pull
requests opened at or after it (the GitHub connector loads a merged pull request's files
as its merge commit's, in the load of the pull request, whose opening is then at or after
``since``; a rebase merge's commit can be older): their facts are deleted and written
again, and the result equals a full recompute. Both are read per repository through the
indexes led by (tenant, repository, time). A change of identities' persons is
a full refresh (as the refresh's callers already ask for identity loads). Paths get ids
the first time a commit has them; a full recompute renumbers them.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_engine import FactsRefresh, analyze_if_rewritten
from pulse_github.queries import commit_pairs_sql
from pulse_github.refresh import FACTS_CACHE_TAG, REFRESH_WORK_MEM
from pulse_github.tables import PAIRED_MAX_CHANGESET

if TYPE_CHECKING:
    from pulse_engine import Engine

#: SQL: the directory of a path ``column`` ('' for a file at the root).
DIRECTORY = "regexp_replace({}, '/?[^/]*$', '')"

#: SQL of the CTE ``targets``: the commits an incremental refresh recomputes (see the
#: module docstring).
_TARGETS = """
targets AS MATERIALIZED (
    SELECT c.id, c.repository_id, c.sha, c.authored_at FROM repositories r
    JOIN commits c ON c.tenant_id = r.tenant_id AND c.repository_id = r.id
     AND c.authored_at >= :since
    WHERE r.tenant_id = :tenant
    UNION
    SELECT c.id, c.repository_id, c.sha, c.authored_at FROM repositories r
    JOIN pull_requests pr ON pr.tenant_id = r.tenant_id AND pr.repository_id = r.id
     AND pr.created_at_source >= :since
    JOIN commits c ON c.tenant_id = pr.tenant_id AND c.repository_id = pr.repository_id
     AND c.sha = pr.merge_commit_sha
    WHERE r.tenant_id = :tenant AND pr.merge_commit_sha IS NOT NULL
)"""


def _paths_sql(incremental: bool) -> str:
    """The statement adding the paths (and their directories) the recomputed commits'
    files have and the dictionary lacks."""
    if incremental:
        source = f"""WITH {_TARGETS},
files AS MATERIALIZED (
    SELECT DISTINCT f.repository_id, f.path FROM targets t
    JOIN commit_files f ON f.tenant_id = :tenant AND f.repository_id = t.repository_id
     AND f.sha = t.sha
),"""
    else:
        source = """WITH files AS MATERIALIZED (
    SELECT DISTINCT f.repository_id, f.path FROM commit_files f WHERE f.tenant_id = :tenant
),"""
    return f"""
{source}
wanted AS (
    SELECT repository_id, false AS is_directory, path FROM files
    UNION
    SELECT repository_id, true, {DIRECTORY.format('path')} FROM files
)
INSERT INTO github_paths (tenant_id, repository_id, is_directory, path)
SELECT CAST(:tenant AS uuid), w.repository_id, w.is_directory, w.path FROM wanted w
WHERE NOT EXISTS (
    SELECT 1 FROM github_paths p
    WHERE p.tenant_id = :tenant AND p.repository_id = w.repository_id
      AND p.is_directory = w.is_directory AND p.path = w.path)
ORDER BY w.repository_id, w.is_directory, w.path
"""


def _facts_sql(incremental: bool) -> str:
    """The statement writing the facts of every commit (``incremental``: of the targets),
    in author-time order (a window's rows are then adjacent on disk). A full refresh finds
    each path's directory once per path of the dictionary, an incremental one per file row
    (a few)."""
    if incremental:
        head = f"WITH {_TARGETS}"
        directory = f"""JOIN github_paths d ON d.tenant_id = c.tenant_id
 AND d.repository_id = f.repository_id AND d.is_directory
 AND d.path = {DIRECTORY.format('f.path')}"""
        directory_id = "d.id"
        chosen = "AND c.id IN (SELECT id FROM targets)"
    else:
        head = f"""WITH directories AS MATERIALIZED (
    SELECT p.id AS path_id, d.id AS directory_id FROM github_paths p
    JOIN github_paths d ON d.tenant_id = p.tenant_id AND d.repository_id = p.repository_id
     AND d.is_directory AND d.path = {DIRECTORY.format('p.path')}
    WHERE p.tenant_id = :tenant AND NOT p.is_directory
)"""
        directory = "JOIN directories d ON d.path_id = p.id"
        directory_id = "d.directory_id"
        chosen = ""
    return f"""
{head}
INSERT INTO github_file_changes (tenant_id, authored_at, repository_id, path_id,
                                 directory_id, person_id, commit_id, changeset, additions,
                                 deletions)
SELECT c.tenant_id, c.authored_at, c.repository_id, p.id, {directory_id}, ai.person_id, c.id,
       count(*) OVER (PARTITION BY c.authored_at, c.id), f.additions, f.deletions
FROM commits c
JOIN person_identities ai ON ai.tenant_id = c.tenant_id AND ai.id = c.author_identity_id
JOIN commit_files f ON f.tenant_id = c.tenant_id AND f.repository_id = c.repository_id
 AND f.sha = c.sha
JOIN github_paths p ON p.tenant_id = c.tenant_id AND p.repository_id = f.repository_id
 AND NOT p.is_directory AND p.path = f.path
{directory}
WHERE c.tenant_id = :tenant AND NOT c.is_merge AND c.authored_at IS NOT NULL {chosen}
ORDER BY c.authored_at, c.id
"""


def _delete_since_sql(table: str) -> str:
    """The statement deleting the recomputed commits' rows of ``table`` (a fact table with
    ``authored_at`` and ``commit_id``)."""
    return f"""
WITH {_TARGETS}
DELETE FROM {table} g USING targets t
WHERE g.tenant_id = :tenant AND g.authored_at = t.authored_at AND g.commit_id = t.id
"""


def _pairs_sql(incremental: bool) -> str:
    """The statement writing the pairs of files (the smaller path id first) of every commit
    changing 2 to :data:`PAIRED_MAX_CHANGESET` files (``incremental``: of the targets), from
    the facts just written: a self-join by commit (a commit's rows share its author time),
    in author-time order as the facts."""
    chosen = ""
    if incremental:
        chosen = (" AND (a.authored_at, a.commit_id) IN"
                  " (SELECT authored_at, id FROM targets)")
    return f"""
{f"WITH {_TARGETS}" if incremental else ""}
INSERT INTO github_file_pairs (tenant_id, authored_at, repository_id, person_id, commit_id,
                               changeset, first_path_id, second_path_id)
SELECT a.tenant_id, a.authored_at, a.repository_id, a.person_id, a.commit_id, a.changeset,
       a.path_id, b.path_id
{commit_pairs_sql(
    f"a.tenant_id = :tenant AND a.changeset BETWEEN 2 AND {PAIRED_MAX_CHANGESET}{chosen}",
    f"b.tenant_id = :tenant AND b.changeset BETWEEN 2 AND {PAIRED_MAX_CHANGESET}")}
ORDER BY a.authored_at
"""


async def recompute_file_changes(engine: Engine, session: AsyncSession, tenant_id: str,
                                 since: datetime | None) -> dict[str, int]:
    """Recompute the tenant's per-file facts inside ``session`` (the
    :data:`GITHUB_FILE_FACTS` refresh's tenant-bound transaction, holding the tenant's lock
    on these facts; ``since``: see the module docstring, ``None``: all). Returns the fact
    rows written."""
    params: dict[str, Any] = {"tenant": tenant_id, "since": since}
    incremental = since is not None
    if incremental:
        for table in ("github_file_pairs", "github_file_changes"):
            await session.execute(text(_delete_since_sql(table)), params)
    else:
        for table in ("github_file_pairs", "github_file_changes"):
            await session.execute(
                text(f"DELETE FROM {table} WHERE tenant_id = :tenant"), params)
        await session.execute(text("DELETE FROM github_paths WHERE tenant_id = :tenant"), params)
        # every commit file is joined: hash joins, whatever the estimates (a path's rows of
        # commit_files are estimated from every repository's; at the benchmark's scale 0.1
        # the planner expected 57 rows instead of 1.4 million and looked each commit up)
        await session.execute(text("SET LOCAL enable_nestloop = off"))
    paths: Any = await session.execute(text(_paths_sql(incremental)), params)
    await analyze_if_rewritten(session, "github_paths", int(paths.rowcount or 0))
    result: Any = await session.execute(text(_facts_sql(incremental)), params)
    written = int(result.rowcount or 0)
    await analyze_if_rewritten(session, "github_file_changes", written)
    result = await session.execute(text(_pairs_sql(incremental)), params)
    paired = int(result.rowcount or 0)
    await analyze_if_rewritten(session, "github_file_pairs", paired)
    return {"github_file_changes": written, "github_file_pairs": paired}


#: pulse-github's per-file facts and their refresh (queue ``github_files.refresh``), kept by
#: the engine: after each load of commits, commit files or identities (in full when
#: identities changed: their persons are in the facts), never for a configuration change.
GITHUB_FILE_FACTS = FactsRefresh(
    name="github_files",
    recompute=recompute_file_changes,
    inputs=frozenset({"commits", "commit_files", "person_identities"}),
    full_refresh_inputs=frozenset({"person_identities"}),
    cache_tags=(FACTS_CACHE_TAG,),
    vacuum_tables=("github_file_changes", "github_file_pairs"),
    follow_configuration=False,
    work_mem=REFRESH_WORK_MEM,
)
