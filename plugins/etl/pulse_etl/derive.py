"""Derived facts of the model, recomputed in the transaction of the batch that changed them.

* ``deployment_commits``: per METRICS.md, the commits a successful deployment shipped are
  those reachable from its SHA and not reachable from any earlier successful deployment of
  the same service (repository) and environment. Processing the deployments of a
  (repository, environment) in finish order, the set shipped so far is closed under
  ancestry, so a walk from the deployed SHA that stops at already-shipped commits yields
  exactly that set.
* what an incident's source states about its deployment: a ``deployment_ref`` that names
  a deployment (its id or external id) sets ``incidents.deployment_id``
  (``link_reason = 'explicit'``). Everything else about linking (a SHA, which names a
  commit shipped to several environments; the latest production deployment before the
  incident within a window) depends on the tenant's DORA settings and is decided by
  pulse-dora's refresh alone, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_etl.model import is_revert, reverted_sha, stable_id

#: What a revert's message says before the reverted commit's SHA.
REVERT_MARKER = "This reverts commit "

#: Deployments walked together by one statement at most; batches start at one deployment
#: and double up to this size (see :func:`materialise_deployment_commits`).
MAX_WALK_BATCH = 64

# Stale statistics: right after a bulk load (in the same transaction, or before autovacuum
# analyses a new database) the planner estimates one row per table and would join the
# shipped set by scanning the whole group for every commit walked. So the per-commit
# probes of the walk are subqueries it cannot flatten (``OFFSET 0``): the shipped check
# has a single index to use, and the parents' ``ORDER BY position`` makes the primary
# key (which yields that order) the cheapest of the two indexes with the same prefix.
_SHIPPED = (
    "EXISTS (SELECT 1 FROM deployment_commits s WHERE s.tenant_id = :tenant "
    "AND s.repository_id = :repository AND s.environment = :environment AND s.sha = {sha} "
    "OFFSET 0)"
)
_EARLIER = "EXISTS (SELECT 1 FROM batch e WHERE e.sha = {sha} AND e.rank < {rank})"

# One walk for a batch of deployments (ranked in finish order): every commit reachable
# from a deployed SHA and not shipped yet goes to the first deployment of the batch that
# reaches it. A walk stops at shipped commits and at the SHA of an earlier deployment of
# the batch (that one reaches everything below it first), so on a history deployed along
# its branches each commit is visited once; UNION removes repeated (commit, rank) pairs.
_WALK = f"""
INSERT INTO deployment_commits (tenant_id, deployment_id, repository_id, environment, sha)
WITH RECURSIVE batch(deployment_id, sha, rank) AS (
    SELECT * FROM unnest(CAST(:deployments AS uuid[]), CAST(:shas AS varchar[]))
        WITH ORDINALITY
),
walk(sha, rank) AS (
    SELECT b.sha, b.rank FROM batch b
    WHERE NOT {_SHIPPED.format(sha="b.sha")} AND NOT {_EARLIER.format(sha="b.sha", rank="b.rank")}
    UNION
    SELECT p.parent_sha, w.rank FROM walk w
    CROSS JOIN LATERAL (
        SELECT parent_sha FROM commit_parents
        WHERE tenant_id = :tenant AND repository_id = :repository AND sha = w.sha
        ORDER BY position OFFSET 0
    ) p
    WHERE NOT {_SHIPPED.format(sha="p.parent_sha")}
      AND NOT {_EARLIER.format(sha="p.parent_sha", rank="w.rank")}
),
first AS (
    SELECT DISTINCT ON (sha) sha, rank FROM walk ORDER BY sha, rank
)
SELECT CAST(:tenant AS uuid), b.deployment_id, CAST(:repository AS uuid), :environment,
       first.sha
FROM first JOIN batch b ON b.rank = first.rank
WHERE EXISTS (SELECT 1 FROM commits c WHERE c.tenant_id = :tenant
              AND c.repository_id = :repository AND c.sha = first.sha)
"""


async def materialise_deployment_commits(
    session: AsyncSession,
    tenant_id: str,
    groups: Iterable[tuple[str, str, datetime | None]],
) -> int:
    """Recompute the shipped commits of deployments in the given groups.

    Per group, the rows of deployments finished at or after ``since`` are dropped (those
    of earlier deployments stay: what they shipped is closed under ancestry and is not
    changed by later deployments), then the deployments from ``since`` on are walked in
    finish order, in batches of 1, 2, 4... up to :data:`MAX_WALK_BATCH` deployments per
    statement; each batch stops at what the earlier batches shipped. The first batch is a
    single deployment because the first deployment of a history usually ships most of it.

    :param groups: ``(repository_id, environment, since)``: deployments of that group
        finished at or after ``since`` (all of them when None) are recomputed, in order.
    :returns: the number of deployment_commits rows written.
    """
    written = 0
    for repository_id, environment, since in _earliest(groups):
        params: dict[str, Any] = {
            "tenant": tenant_id,
            "repository": repository_id,
            "environment": environment,
            "since": since,
        }
        since_clause = "AND finished_at >= :since" if since is not None else ""
        rows = (
            await session.execute(
                text(
                    "SELECT id, sha FROM deployments WHERE tenant_id = :tenant "
                    "AND repository_id = :repository AND environment = :environment "
                    "AND result = 'success' AND sha IS NOT NULL AND finished_at IS NOT NULL "
                    f"{since_clause} ORDER BY finished_at, id"
                ),
                params,
            )
        ).all()
        if since is None:
            delete = (
                "DELETE FROM deployment_commits WHERE tenant_id = :tenant "
                "AND repository_id = :repository AND environment = :environment"
            )
        else:
            # by deployment id (the primary key's prefix), not by a join, which stale
            # statistics would turn into a scan of the group's rows per deployment
            params["stale"] = list(
                (
                    await session.execute(
                        text(
                            "SELECT id FROM deployments WHERE tenant_id = :tenant "
                            "AND repository_id = :repository AND environment = :environment "
                            "AND (result IS DISTINCT FROM 'success' OR finished_at IS NULL "
                            "OR finished_at >= :since)"
                        ),
                        params,
                    )
                ).scalars()
            )
            delete = (
                "DELETE FROM deployment_commits WHERE tenant_id = :tenant "
                "AND deployment_id = ANY(CAST(:stale AS uuid[]))"
            )
        await session.execute(text(delete), params)
        start, size = 0, 1
        while start < len(rows):
            batch = rows[start : start + size]
            result: Any = await session.execute(
                text(_WALK),
                {**params, "deployments": [str(row.id) for row in batch],
                 "shas": [row.sha for row in batch]},
            )
            written += result.rowcount or 0
            start += size
            size = min(size * 2, MAX_WALK_BATCH)
    return written


def _earliest(
    groups: Iterable[tuple[str, str, datetime | None]],
) -> list[tuple[str, str, datetime | None]]:
    """One entry per (repository, environment) with the earliest ``since`` (None wins)."""
    merged: dict[tuple[str, str], datetime | None] = {}
    for repository_id, environment, since in groups:
        key = (repository_id, environment)
        if key not in merged:
            merged[key] = since
        else:
            current = merged[key]
            merged[key] = None if current is None or since is None else min(current, since)
    return [(r, e, s) for (r, e), s in merged.items()]


async def groups_missing_commits(
    session: AsyncSession, tenant_id: str, repository_ids: Sequence[str]
) -> list[tuple[str, str, datetime | None]]:
    """Groups of repositories whose successful deployments shipped nothing yet.

    Used after commits land: a deployment recorded before its commits were known is
    recomputed from the first such deployment on.
    """
    if not repository_ids:
        return []
    rows = (
        await session.execute(
            text(
                "SELECT d.repository_id, d.environment, min(d.finished_at) FROM deployments d "
                "WHERE d.tenant_id = :tenant AND d.repository_id = ANY(CAST(:repos AS uuid[])) "
                "AND d.result = 'success' AND d.sha IS NOT NULL AND d.finished_at IS NOT NULL "
                "AND NOT EXISTS (SELECT 1 FROM deployment_commits dc "
                "  WHERE dc.tenant_id = :tenant AND dc.deployment_id = d.id) "
                "GROUP BY d.repository_id, d.environment"
            ),
            {"tenant": tenant_id, "repos": list(repository_ids)},
        )
    ).all()
    return [(str(r), e, s) for r, e, s in rows]


@dataclass(frozen=True)
class StoredDeployments:
    """Where the deployments a batch re-sends stood before it overwrote them.

    :ivar ids: those that were successful (they may have shipped commits).
    :ivar groups: their ``(repository_id, environment, stored finish time)``.
    """

    ids: list[str]
    groups: list[tuple[str, str, datetime | None]]


async def stored_deployments(
    session: AsyncSession, tenant_id: str, deployments: Iterable[Mapping[str, Any]]
) -> StoredDeployments:
    """Read, before a batch overwrites them, the stored versions of ``deployments``.

    A deployment that moves later, to another environment or repository, or stops being
    successful leaves behind commits that a later deployment of its old group now ships:
    its old group is recomputed from where it used to be, and what it shipped is dropped
    first (:func:`forget_shipped`; its new group re-walks it).
    """
    keys = [
        (str(row["source"]), str(row["external_id"]))
        for row in deployments
        if row.get("source") is not None and row.get("external_id") is not None
    ]
    if not keys:
        return StoredDeployments([], [])
    rows = (
        await session.execute(
            text(
                "SELECT d.id, d.repository_id, d.environment, d.finished_at "
                "FROM unnest(CAST(:sources AS text[]), CAST(:external_ids AS text[])) "
                "  AS k(source, external_id) "
                "JOIN deployments d ON d.tenant_id = :tenant AND d.source = k.source "
                "  AND d.external_id = k.external_id "
                "WHERE d.result = 'success' AND d.repository_id IS NOT NULL "
                "AND d.environment IS NOT NULL AND d.finished_at IS NOT NULL"
            ),
            {"tenant": tenant_id, "sources": [source for source, _ in keys],
             "external_ids": [external_id for _, external_id in keys]},
        )
    ).all()
    return StoredDeployments(
        ids=[str(row.id) for row in rows],
        groups=[(str(row.repository_id), row.environment, row.finished_at) for row in rows],
    )


async def forget_shipped(session: AsyncSession, tenant_id: str, deployment_ids: list[str]) -> None:
    """Drop the shipped-commit rows of these deployments (they are about to be re-walked)."""
    if deployment_ids:
        await session.execute(
            text("DELETE FROM deployment_commits WHERE tenant_id = :tenant "
                 "AND deployment_id = ANY(CAST(:ids AS uuid[]))"),
            {"tenant": tenant_id, "ids": deployment_ids},
        )


async def groups_with_late_parents(
    session: AsyncSession, tenant_id: str, commits: Iterable[Mapping[str, Any]]
) -> list[tuple[str, str, datetime | None]]:
    """Groups in which a shipped commit has one of ``commits`` as a parent not shipped there.

    A walk stops at a parent that is not stored yet (connectors that page newest first
    send children before parents), so the deployment that shipped the child shipped too
    little; its group is recomputed from that deployment on once the parent arrives.
    """
    by_repository: dict[str, list[str]] = {}
    for row in commits:
        by_repository.setdefault(str(row["repository_id"]), []).append(str(row["sha"]))
    groups: list[tuple[str, str, datetime | None]] = []
    for repository_id, shas in by_repository.items():
        params = {"tenant": tenant_id, "repository": repository_id, "shas": shas}
        environments = (
            await session.execute(
                text(
                    "SELECT DISTINCT environment FROM deployments WHERE tenant_id = :tenant "
                    "AND repository_id = :repository AND result = 'success' "
                    "AND environment IS NOT NULL"
                ),
                params,
            )
        ).scalars().all()
        for environment in environments:
            since = await session.scalar(
                text(
                    "SELECT min(d.finished_at) FROM unnest(CAST(:shas AS text[])) AS n(sha) "
                    "JOIN commit_parents p ON p.tenant_id = :tenant "
                    "  AND p.repository_id = :repository AND p.parent_sha = n.sha "
                    "JOIN deployment_commits c ON c.tenant_id = :tenant "
                    "  AND c.repository_id = :repository AND c.environment = :environment "
                    "  AND c.sha = p.sha "
                    "JOIN deployments d ON d.tenant_id = :tenant AND d.id = c.deployment_id "
                    f"WHERE NOT {_SHIPPED.format(sha='n.sha')}"
                ),
                {**params, "environment": environment},
            )
            if since is not None:
                groups.append((repository_id, str(environment), since))
    return groups


#: The source of incidents derived from reverts; their external id is ``<repo id>:<sha>``.
REVERT_SOURCE = "revert"

# The reverted SHA is computed before the join: under row-level security a function of a
# column (not LEAKPROOF) cannot bound an index scan, so ``b.sha = substring(...)`` would
# read every commit of the repository. The partial index holds only reverts.
_REVERTS = f"""
WITH reverts AS MATERIALIZED (
    SELECT r.sha AS revert_sha, split_part(r.message, E'\\n', 1) AS title,
           r.committed_at AS resolved_at,
           CAST({reverted_sha("r.message")} AS varchar(64)) AS reverted
    FROM commits r
    WHERE r.tenant_id = :tenant AND r.repository_id = :repository
      AND {is_revert("r.message")} AND ({{which}})
)
SELECT v.revert_sha, v.title, v.resolved_at, b.sha AS reverted_sha,
       b.committed_at AS started_at
FROM reverts v
JOIN commits b ON b.tenant_id = :tenant AND b.repository_id = :repository
 AND b.sha = v.reverted
"""


async def revert_incidents(
    session: AsyncSession, tenant_id: str, commits: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Incident rows for the reverts ``commits`` complete: a revert among them whose
    reverted commit is stored, or a stored revert naming one of them.

    A revert (``This reverts commit <sha>``, as ``git revert`` and GitHub's revert button
    write) means the reverted change failed in production: the incident starts when the
    reverted commit was committed, ends when the revert was, and names the reverted commit
    as its explicit deployment reference (so it links to the first production deployment
    that shipped it).
    """
    by_repository: dict[str, tuple[list[str], list[str]]] = {}
    for row in commits:
        shas, reverting = by_repository.setdefault(str(row["repository_id"]), ([], []))
        shas.append(str(row["sha"]))
        if REVERT_MARKER in str(row.get("message") or ""):
            reverting.append(str(row["sha"]))
    found: list[Any] = []
    for repository_id, (shas, reverting) in by_repository.items():
        params = {"tenant": tenant_id, "repository": repository_id}
        if reverting:
            found += [(repository_id, row) for row in (await session.execute(text(
                _REVERTS.replace("{which}", "r.sha = ANY(CAST(:reverting AS text[]))")),
                {**params, "reverting": reverting})).all()]
        # stored reverts naming one of the batch's commits: the partial index's reverts
        found += [(repository_id, row) for row in (await session.execute(text(
            _REVERTS.replace(
                "{which}", f"{reverted_sha('r.message')} = ANY(CAST(:shas AS text[]))")),
            {**params, "shas": shas})).all()]
    incidents: dict[str, dict[str, Any]] = {}
    for repository_id, row in found:
        external_id = f"{repository_id}:{row.revert_sha}"
        incidents[external_id] = {
            "id": stable_id("incidents", REVERT_SOURCE, external_id),
            "source": REVERT_SOURCE, "external_id": external_id, "title": row.title,
            "repository_id": repository_id, "created_at_source": row.started_at,
            "resolved_at": row.resolved_at, "deployment_ref": row.reverted_sha,
        }
    return list(incidents.values())


_UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

#: SQL: set the tenant's incidents' ``deployment_id`` (``link_reason = 'explicit'``) to the
#: deployment their ``deployment_ref`` names by id or by external id (the id wins; among
#: equal external ids of several sources, the latest finished), and clear it where the
#: reference names none; only rows that change are written. Two joins that an index or a
#: hash can serve, not one ``OR``.
STATE_LINKS = f"""
WITH named AS (
    SELECT DISTINCT ON (named.incident_id) named.incident_id, named.deployment_id
    FROM (
        SELECT i.id AS incident_id, d.id AS deployment_id, 0 AS rank, d.finished_at
        FROM incidents i
        JOIN deployments d ON d.tenant_id = i.tenant_id
         AND d.id = CAST(substring(i.deployment_ref FROM '{_UUID_PATTERN}') AS uuid)
        WHERE i.tenant_id = :tenant AND i.deployment_ref ~ '{_UUID_PATTERN}'
        UNION ALL
        SELECT i.id, d.id, 1, d.finished_at
        FROM incidents i
        JOIN deployments d ON d.tenant_id = i.tenant_id AND d.external_id = i.deployment_ref
        WHERE i.tenant_id = :tenant AND i.deployment_ref IS NOT NULL
    ) named
    ORDER BY named.incident_id, named.rank, named.finished_at DESC NULLS LAST,
             named.deployment_id
),
stated AS (
    SELECT s.id, n.deployment_id,
           CASE WHEN n.deployment_id IS NULL THEN NULL ELSE 'explicit' END AS link_reason
    FROM incidents s LEFT JOIN named n ON n.incident_id = s.id
    WHERE s.tenant_id = :tenant AND (s.deployment_id IS NOT NULL OR n.deployment_id IS NOT NULL)
)
UPDATE incidents i SET deployment_id = stated.deployment_id,
    link_reason = stated.link_reason, updated_at = now()
FROM stated
WHERE i.tenant_id = :tenant AND i.id = stated.id
  AND (i.deployment_id IS DISTINCT FROM stated.deployment_id
       OR i.link_reason IS DISTINCT FROM stated.link_reason)
"""


async def link_incidents(session: AsyncSession, tenant_id: str) -> int:
    """Record which deployment each of the tenant's incidents names (by id or external id),
    and nothing else; returns how many incidents changed.

    An incident whose reference names no stored deployment (a SHA, a deployment not
    loaded yet, or none) has no ``deployment_id`` here; pulse-dora links it by the
    tenant's rules.
    """
    result: Any = await session.execute(text(STATE_LINKS), {"tenant": tenant_id})
    return int(result.rowcount or 0)
