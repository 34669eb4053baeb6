"""Recompute a tenant's DORA facts (:mod:`pulse_dora.tables`) from pulse-etl's tables.

Every step is one set-based statement in one tenant-bound transaction, serialised per
tenant by an advisory lock. A refresh with ``since`` recomputes only the deployments
finished, the changes shipped and the incidents created at or after ``since`` (the
earliest time a load touched); deployments finished earlier cannot change what later
rows derive from, and the link window only looks back, so the result equals a full
refresh. Without ``since`` everything is recomputed (after a configuration change).
Two flags of older deployments can still change and are re-checked: ``has_incident``
(for the deployments re-linked or unlinked incidents point to) and ``followed_by_failure``
(for the latest deployment before ``since`` of each service and environment).

The engine keeps the refresh's bookkeeping (:data:`DORA_FACTS`, a ``FactsRefresh``): a
load's ``data_loaded`` records a request and queues it on ``dora.refresh``, the refresh
that covers a request deletes it, and a starting process queues again those left, so a
message lost with a killed server or a dropped connection loses no refresh. Tests and
benchmarks call ``DORA_FACTS.refresh(engine, tenant_id, since)`` directly.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_dora.config import DoraConfig, tenant_config
from pulse_engine import FactsRefresh, analyze_if_rewritten

if TYPE_CHECKING:
    from pulse_engine import Engine

log = logging.getLogger(__name__)

#: Memory each sort or hash of a refresh may use before spilling to disk (this transaction
#: only): a full refresh joins millions of deployment, commit and change rows.
REFRESH_WORK_MEM = "64MB"

#: Cache tag of every cached DORA answer; dropped for a tenant after each refresh.
DORA_CACHE_TAG = "dora.data"

#: SQL: whether ``{column}`` names a production environment under the tenant's config.
PRODUCTION_MATCH = (
    "(lower({column}) = ANY(CAST(:production_names AS text[])) "
    "OR {column} ~* ANY(CAST(:production_patterns AS text[])))"
)


#: SQL: the distinct environments of the tenant's deployments (a skip scan of an index).
ENVIRONMENTS_CTE = """
environments(name) AS (
    SELECT min(environment) FROM dora_deployments WHERE tenant_id = :tenant
    UNION ALL
    SELECT (SELECT min(d.environment) FROM dora_deployments d
            WHERE d.tenant_id = :tenant AND d.environment > environments.name)
    FROM environments WHERE environments.name IS NOT NULL
)
"""

_STATE = f"""
WITH RECURSIVE {ENVIRONMENTS_CTE},
latest AS (
    SELECT e.name, {PRODUCTION_MATCH.format(column="e.name")} AS production,
           (SELECT max(d.finished_at) FROM dora_deployments d
            WHERE d.tenant_id = :tenant AND d.environment = e.name) AS finished_at
    FROM environments e WHERE e.name IS NOT NULL
)
INSERT INTO dora_refresh_state (tenant_id, refreshed_at, production_environments,
    last_deployment_at, last_production_deployment_at)
SELECT :tenant, clock_timestamp(),
       coalesce(string_agg(name, ',' ORDER BY name) FILTER (WHERE production), ''),
       max(finished_at), max(finished_at) FILTER (WHERE production)
FROM latest
ON CONFLICT (tenant_id) DO UPDATE SET refreshed_at = EXCLUDED.refreshed_at,
    production_environments = EXCLUDED.production_environments,
    last_deployment_at = EXCLUDED.last_deployment_at,
    last_production_deployment_at = EXCLUDED.last_production_deployment_at
"""


def config_parameters(config: DoraConfig) -> dict[str, Any]:
    """The bind parameters every DORA statement derives from the tenant's configuration."""
    return {
        "production_names": list(config.production_environments),
        "production_patterns": list(config.production_environment_patterns),
        "branch_patterns": list(config.hotfix_branch_patterns),
        "label_patterns": list(config.hotfix_label_patterns),
        "link_window": timedelta(days=config.incident_link_window_days),
    }


def _since(column: str, since: datetime | None) -> str:
    return f"AND {column} >= :since" if since is not None else ""


def _deployment_statements(since: datetime | None) -> list[str]:
    return [
        "DELETE FROM dora_deployments WHERE tenant_id = :tenant "
        + _since("finished_at", since),
        f"""
        INSERT INTO dora_deployments (tenant_id, deployment_id, repository_id, project_id,
            service, environment, result, started_at, finished_at, is_rework)
        SELECT d.tenant_id, d.id, d.repository_id, r.project_id, d.service, d.environment,
               coalesce(d.result, 'unknown'), d.started_at, d.finished_at,
               coalesce(d.ref, '') ~* ANY(CAST(:branch_patterns AS text[]))
               OR coalesce(d.name, '') ~* ANY(CAST(:label_patterns AS text[]))
        FROM deployments d
        LEFT JOIN repositories r ON r.tenant_id = d.tenant_id AND r.id = d.repository_id
        WHERE d.tenant_id = :tenant AND d.finished_at IS NOT NULL {_since("d.finished_at", since)}
        """,
    ]


def _change_statements(since: datetime | None) -> list[str]:
    return [
        "DELETE FROM dora_changes WHERE tenant_id = :tenant " + _since("deployed_at", since),
        # deployment_commits ships each commit once per repository and environment; the
        # ON CONFLICT keeps the earliest deployment should two services share a repository.
        # Rows arrive in primary-key order so the key index is appended to, not written
        # page by page at random (half the buffer writes of a full refresh).
        f"""
        INSERT INTO dora_changes (tenant_id, repository_id, sha, environment, deployment_id,
            project_id, deployed_at, authored_at, lead_seconds, is_merge)
        SELECT dc.tenant_id, dc.repository_id, dc.sha, dc.environment, d.deployment_id,
               d.project_id, d.finished_at, c.authored_at,
               extract(epoch FROM d.finished_at - c.authored_at), c.is_merge
        FROM dora_deployments d
        JOIN deployment_commits dc
          ON dc.tenant_id = d.tenant_id AND dc.deployment_id = d.deployment_id
        JOIN commits c
          ON c.tenant_id = dc.tenant_id AND c.repository_id = dc.repository_id
         AND c.sha = dc.sha
        WHERE d.tenant_id = :tenant AND d.result = 'success' {_since("d.finished_at", since)}
        ORDER BY dc.repository_id, dc.sha
        ON CONFLICT (tenant_id, repository_id, sha, environment) DO UPDATE
        SET deployment_id = EXCLUDED.deployment_id, deployed_at = EXCLUDED.deployed_at,
            lead_seconds = EXCLUDED.lead_seconds
        WHERE EXCLUDED.deployed_at < dora_changes.deployed_at
        """,
    ]



#: SQL: the first successful deployment to the production set that shipped a merge commit.
_FIRST_PRODUCTION_DEPLOYMENT = """(SELECT min(c.deployed_at) FROM dora_changes c
     WHERE c.tenant_id = :tenant AND c.repository_id = {alias}.repository_id
       AND c.sha = {alias}.merge_commit_sha
       AND c.environment = ANY(CAST(:environments AS text[])))"""


def _pull_request_statements(since: datetime | None) -> list[str]:
    """Recompute the merged pull requests' phases, set-based.

    A refresh with ``since`` recomputes the pull requests merged from then on (a load's
    commits, opened and merge times all precede the merge), then re-checks when older
    ones reached production: those whose merge commit a recomputed change ships, and
    those that reached it from ``since`` on (their change rows were recomputed).
    """
    statements = [
        "DELETE FROM dora_pull_requests WHERE tenant_id = :tenant " + _since("merged_at", since),
        f"""
        INSERT INTO dora_pull_requests (tenant_id, pull_request_id, repository_id, project_id,
            merged_at, merge_commit_sha, coding_seconds, pickup_seconds, review_seconds,
            deployed_at)
        WITH prs AS MATERIALIZED (
            SELECT p.id, p.number, p.repository_id, r.project_id,
                   p.created_at_source AS opened_at, p.merged_at, p.merge_commit_sha,
                   coalesce(ai.person_id, p.author_identity_id) AS author
            FROM pull_requests p
            LEFT JOIN person_identities ai
              ON ai.tenant_id = p.tenant_id AND ai.id = p.author_identity_id
            LEFT JOIN repositories r ON r.tenant_id = p.tenant_id AND r.id = p.repository_id
            WHERE p.tenant_id = :tenant AND p.merged_at IS NOT NULL
              {_since("p.merged_at", since)}
        ),
        first_commits AS MATERIALIZED (
            SELECT c.repository_id, c.pull_request_number, min(c.authored_at) AS authored_at
            FROM commits c
            WHERE c.tenant_id = :tenant AND c.pull_request_number IS NOT NULL
              AND NOT c.is_merge
              AND (c.repository_id, c.pull_request_number)
                  IN (SELECT repository_id, number FROM prs)
            GROUP BY c.repository_id, c.pull_request_number
        ),
        responses AS MATERIALIZED (
            SELECT rv.pull_request_id, rv.submitted_at AS responded_at,
                   coalesce(ri.person_id, rv.reviewer_identity_id) AS responder
            FROM reviews rv
            LEFT JOIN person_identities ri
              ON ri.tenant_id = rv.tenant_id AND ri.id = rv.reviewer_identity_id
            WHERE rv.tenant_id = :tenant AND rv.pull_request_id IN (SELECT id FROM prs)
            UNION ALL
            SELECT rc.pull_request_id, rc.created_at_source,
                   coalesce(ci.person_id, rc.author_identity_id)
            FROM review_comments rc
            LEFT JOIN person_identities ci
              ON ci.tenant_id = rc.tenant_id AND ci.id = rc.author_identity_id
            WHERE rc.tenant_id = :tenant AND rc.pull_request_id IN (SELECT id FROM prs)
        ),
        first_responses AS (
            SELECT prs.id, min(x.responded_at) AS responded_at
            FROM prs JOIN responses x ON x.pull_request_id = prs.id
            WHERE x.responder IS DISTINCT FROM prs.author
            GROUP BY prs.id
        )
        SELECT CAST(:tenant AS uuid), prs.id, prs.repository_id, prs.project_id, prs.merged_at,
               prs.merge_commit_sha,
               extract(epoch FROM prs.opened_at - fc.authored_at),
               extract(epoch FROM fr.responded_at - prs.opened_at),
               extract(epoch FROM prs.merged_at - fr.responded_at),
               {_FIRST_PRODUCTION_DEPLOYMENT.format(alias="prs")}
        FROM prs
        LEFT JOIN first_commits fc
          ON fc.repository_id = prs.repository_id AND fc.pull_request_number = prs.number
        LEFT JOIN first_responses fr ON fr.id = prs.id
        ORDER BY prs.id
        """,
    ]
    if since is not None:
        statements.append(f"""
        UPDATE dora_pull_requests target SET deployed_at = recomputed.deployed_at
        FROM (
            SELECT p.pull_request_id, {_FIRST_PRODUCTION_DEPLOYMENT.format(alias="p")}
                   AS deployed_at
            FROM dora_pull_requests p
            WHERE p.tenant_id = :tenant AND p.merged_at < :since
              AND (p.deployed_at >= :since OR p.pull_request_id = ANY(ARRAY(
                  SELECT s.id FROM dora_changes c
                  JOIN pull_requests s ON s.tenant_id = c.tenant_id
                   AND s.repository_id = c.repository_id AND s.merge_commit_sha = c.sha
                  WHERE c.tenant_id = :tenant AND c.deployed_at >= :since
                    AND c.environment = ANY(CAST(:environments AS text[])))))
        ) recomputed
        WHERE target.tenant_id = :tenant AND target.pull_request_id = recomputed.pull_request_id
          AND target.deployed_at IS DISTINCT FROM recomputed.deployed_at
        """)
    return statements


async def _delete_incidents(
    session: AsyncSession, since: datetime | None, params: dict[str, Any]
) -> list[str]:
    """Delete the incidents a refresh recomputes; return the deployments they linked
    (an incremental refresh re-checks those; a full one re-checks every deployment)."""
    statement = "DELETE FROM dora_incidents WHERE tenant_id = :tenant"
    if since is None:
        await session.execute(text(statement), params)
        return []
    result = await session.execute(
        text(f"{statement} AND created_at >= :since RETURNING deployment_id"), params
    )
    return sorted({str(value) for value in result.scalars() if value is not None})


def _incident_statements(since: datetime | None) -> list[str]:
    return [
        f"""
        INSERT INTO dora_incidents (tenant_id, incident_id, service, project_id, created_at,
            resolved_at, restore_seconds, deployment_id, deployment_environment, link_reason)
        SELECT i.tenant_id, i.id, scope.service, scope.project_id, i.created_at_source,
               i.resolved_at, extract(epoch FROM i.resolved_at - i.created_at_source),
               link.deployment_id, link.environment, link.reason
        FROM incidents i
        LEFT JOIN repositories r ON r.tenant_id = i.tenant_id AND r.id = i.repository_id
        CROSS JOIN LATERAL (
            SELECT coalesce(i.service, r.service) AS service,
                   coalesce(r.project_id, (
                       SELECT s.project_id FROM repositories s
                       WHERE s.tenant_id = i.tenant_id AND s.service = i.service
                       ORDER BY s.id LIMIT 1)) AS project_id
        ) scope
        LEFT JOIN LATERAL (
            SELECT linked.deployment_id, linked.environment, linked.reason FROM (
                -- 1. the deployment the incident's source names (its id or external id,
                --    as pulse-etl records it in incidents.deployment_id)
                SELECT d.deployment_id, d.environment, 'explicit' AS reason, 1 AS rank,
                       d.finished_at
                FROM dora_deployments d
                WHERE i.link_reason = 'explicit' AND d.tenant_id = i.tenant_id
                  AND d.deployment_id = i.deployment_id
                UNION ALL
                -- 2. an explicit commit SHA: the first production deployment that shipped it
                SELECT c.deployment_id, c.environment, 'explicit_commit', 2, c.deployed_at
                FROM dora_changes c
                WHERE i.deployment_ref IS NOT NULL AND c.tenant_id = i.tenant_id
                  AND c.sha = i.deployment_ref
                  AND c.environment = ANY(CAST(:environments AS text[]))
                UNION ALL
                -- 3. an explicit SHA no shipped change records (its commits are not
                --    loaded): the first successful production deployment of it, in the
                --    incident's repository or its service's (an index lookup each)
                SELECT head.deployment_id, head.environment, 'explicit_commit', 3,
                       head.finished_at
                FROM (
                    SELECT d.deployment_id, d.environment, d.finished_at
                    FROM repositories sr
                    JOIN deployments src ON src.tenant_id = sr.tenant_id
                     AND src.repository_id = sr.id AND src.sha = i.deployment_ref
                    JOIN dora_deployments d
                      ON d.tenant_id = src.tenant_id AND d.deployment_id = src.id
                    WHERE i.deployment_ref IS NOT NULL AND sr.tenant_id = i.tenant_id
                      AND (sr.id = i.repository_id OR sr.service = scope.service)
                      AND d.environment = ANY(CAST(:environments AS text[]))
                      AND d.result = 'success'
                    ORDER BY d.finished_at, d.deployment_id LIMIT 1
                ) head
                UNION ALL
                -- 4. the latest successful production deployment of the service within
                --    the tenant's link window before the incident started (per production
                --    environment a backward walk of the service index that stops at the
                --    first match, whatever the statistics say)
                SELECT latest.deployment_id, latest.environment, 'latest_deployment', 4,
                       latest.finished_at
                FROM unnest(CAST(:environments AS text[])) AS production(name)
                CROSS JOIN LATERAL (
                    SELECT d.deployment_id, d.environment, d.finished_at
                    FROM dora_deployments d
                    WHERE d.tenant_id = i.tenant_id AND d.service = scope.service
                      AND d.environment = production.name AND d.result = 'success'
                      AND d.finished_at <= i.created_at_source
                      AND d.finished_at > i.created_at_source - CAST(:link_window AS interval)
                    ORDER BY d.finished_at DESC, d.deployment_id LIMIT 1
                ) latest
            ) linked
            ORDER BY linked.rank, linked.finished_at DESC, linked.deployment_id
            LIMIT 1
        ) link ON true
        WHERE i.tenant_id = :tenant {_since("i.created_at_source", since)}
        """,
    ]


_HAS_INCIDENT = """
UPDATE dora_deployments d SET has_incident = NOT d.has_incident
WHERE d.tenant_id = :tenant {candidates}
  AND d.has_incident <> EXISTS (SELECT 1 FROM dora_incidents i
                                WHERE i.tenant_id = d.tenant_id
                                  AND i.deployment_id = d.deployment_id)
"""

#: the deployments whose link may have changed in an incremental refresh: re-inserted
#: ones, ones linked by re-linked incidents, ones the deleted incident rows linked
_LINK_CANDIDATES = """
AND (d.finished_at >= :since
     OR d.deployment_id = ANY(CAST(:unlinked AS uuid[]))
     OR d.deployment_id = ANY(ARRAY(
        SELECT i.deployment_id FROM dora_incidents i
        WHERE i.tenant_id = :tenant AND i.created_at >= :since
          AND i.deployment_id IS NOT NULL)))
"""

_FOLLOWED_BY_FAILURE = """
UPDATE dora_deployments d SET followed_by_failure = NOT d.followed_by_failure
FROM (
    SELECT c.deployment_id, coalesce((
        SELECT n.result = 'failure' FROM dora_deployments n
        WHERE n.tenant_id = c.tenant_id AND n.service = c.service
          AND n.environment = c.environment AND n.finished_at > c.finished_at
        ORDER BY n.finished_at, n.deployment_id LIMIT 1), false) AS followed
    FROM dora_deployments c WHERE c.tenant_id = :tenant {candidates}
) next
WHERE d.tenant_id = :tenant AND d.deployment_id = next.deployment_id
  AND d.followed_by_failure <> next.followed
"""

#: the deployments whose next deployment may have changed in an incremental refresh:
#: re-inserted ones, and the latest ones before ``since`` of each service and environment
#: that got a new deployment
_FOLLOW_CANDIDATES = """
AND (c.finished_at >= :since OR c.deployment_id = ANY(ARRAY(
    SELECT p.deployment_id
    FROM (SELECT DISTINCT service, environment FROM dora_deployments
          WHERE tenant_id = :tenant AND finished_at >= :since) k
    JOIN dora_deployments p
      ON p.tenant_id = :tenant AND p.service = k.service AND p.environment = k.environment
    WHERE p.finished_at = (SELECT max(q.finished_at) FROM dora_deployments q
                           WHERE q.tenant_id = :tenant AND q.service = k.service
                             AND q.environment = k.environment AND q.finished_at < :since))))
"""


def _failure_flag_statements(since: datetime | None) -> list[str]:
    """Set ``has_incident`` and ``followed_by_failure`` where they may have changed.

    Only rows whose flag differs are written (an unchanged row keeps its tuple).
    """
    return [
        _HAS_INCIDENT.format(candidates=_LINK_CANDIDATES if since is not None else ""),
        _FOLLOWED_BY_FAILURE.format(candidates=_FOLLOW_CANDIDATES if since is not None else ""),
    ]


def _rework_statements(since: datetime | None) -> list[str]:
    """Mark rework: a hotfix pull request shipped, or a change naming an open incident.

    Both are driven from the few rows that can match (hotfix pull requests; incidents and
    the production deployments of their service while they were open), each step an
    index lookup; the matches are collected once (``ARRAY(...)``) and applied through the
    primary key, a plan that does not depend on statistics of rows written moments ago.
    An incident's end (``open_until``) is computed before the deployments are joined: under
    row-level security PostgreSQL treats ``COALESCE`` as possibly leaky and will not bound
    an index scan by it, so inline it would scan every later deployment of the service.
    """
    open_after = "AND coalesce(di.resolved_at, 'infinity') > :since" if since else ""
    deployed_after = "AND d.finished_at >= :since" if since else ""
    return [
        f"""
        UPDATE dora_deployments target SET is_rework = true
        WHERE target.tenant_id = :tenant AND target.result = 'success' AND NOT target.is_rework
          AND target.deployment_id = ANY(ARRAY(
            SELECT c.deployment_id
            FROM pull_requests p
            JOIN dora_changes c
              ON c.tenant_id = p.tenant_id AND c.repository_id = p.repository_id
             AND c.sha = p.merge_commit_sha
            WHERE p.tenant_id = :tenant AND p.merge_commit_sha IS NOT NULL
              AND (coalesce(p.head_ref, '') ~* ANY(CAST(:branch_patterns AS text[]))
                   OR coalesce(p.title, '') ~* ANY(CAST(:label_patterns AS text[])))
              {_since("c.deployed_at", since)}))
        """,
        f"""
        UPDATE dora_deployments target SET is_rework = true
        WHERE target.tenant_id = :tenant AND NOT target.is_rework
          AND target.deployment_id = ANY(ARRAY(
            WITH open_incidents AS MATERIALIZED (
                SELECT di.tenant_id, di.service, di.created_at, i.external_id,
                       coalesce(di.resolved_at, 'infinity') AS open_until
                FROM dora_incidents di
                JOIN incidents i ON i.tenant_id = di.tenant_id AND i.id = di.incident_id
                WHERE di.tenant_id = :tenant AND length(i.external_id) >= 3 {open_after}
            )
            SELECT DISTINCT hit.deployment_id
            FROM open_incidents o
            CROSS JOIN unnest(CAST(:environments AS text[])) AS production(name)
            CROSS JOIN LATERAL (
                SELECT d.deployment_id FROM dora_deployments d
                WHERE d.tenant_id = o.tenant_id AND d.service = o.service
                  AND d.environment = production.name
                  AND d.finished_at >= o.created_at AND d.finished_at < o.open_until
                  {deployed_after}
                  AND d.result = 'success'
                  AND EXISTS (
                      SELECT 1 FROM dora_changes c
                      JOIN commits m
                        ON m.tenant_id = c.tenant_id AND m.repository_id = c.repository_id
                       AND m.sha = c.sha
                      WHERE c.tenant_id = d.tenant_id AND c.deployment_id = d.deployment_id
                        AND strpos(m.message, o.external_id) > 0)
            ) hit))
        """,
    ]


_PRODUCTION_NAMES = f"""
WITH RECURSIVE {ENVIRONMENTS_CTE}
SELECT name FROM environments WHERE name IS NOT NULL
  AND {PRODUCTION_MATCH.format(column="name")} ORDER BY name
"""


async def production_environments(
    session: AsyncSession, tenant_id: str, config: DoraConfig
) -> list[str]:
    """The environments of the tenant's deployments that its configuration calls production."""
    params = {"tenant": tenant_id, **config_parameters(config)}
    return [row[0] for row in (await session.execute(text(_PRODUCTION_NAMES), params)).all()]


async def _run(session: AsyncSession, statements: list[str], params: dict[str, Any]) -> int:
    """Execute statements in order; return the row count of the last one."""
    count = 0
    for statement in statements:
        started = time.perf_counter()
        result: Any = await session.execute(text(statement), params)
        count = int(result.rowcount or 0)
        log.debug("dora refresh statement: %d rows in %.3f s", count,
                  time.perf_counter() - started)
    return count


async def recompute(
    engine: Engine, session: AsyncSession, tenant_id: str, since: datetime | None
) -> dict[str, int]:
    """Recompute the tenant's DORA facts inside ``session`` (the :data:`DORA_FACTS`
    refresh's transaction: tenant-bound, holding the tenant's lock on these facts).

    :param since: recompute only what a load at or after this time can have changed;
        ``None`` recomputes everything.
    :returns: rows written per fact table (``rework``: changes whose rework flag moved).
    """
    config = await tenant_config(engine, tenant_id)
    params: dict[str, Any] = {"tenant": tenant_id, "since": since, **config_parameters(config)}
    deployments = await _run(session, _deployment_statements(since), params)
    await analyze_if_rewritten(session, "dora_deployments", deployments)
    changes = await _run(session, _change_statements(since), params)
    await analyze_if_rewritten(session, "dora_changes", changes)
    # production is resolved against the deployments just written
    params["environments"] = await production_environments(session, tenant_id, config)
    statements = _pull_request_statements(since)
    await _run(session, statements[:1], params)
    pull_requests = await _run(session, statements[1:2], params)
    await analyze_if_rewritten(session, "dora_pull_requests", pull_requests)
    await _run(session, statements[2:], params)
    params["unlinked"] = await _delete_incidents(session, since, params)
    incidents = await _run(session, _incident_statements(since), params)
    await analyze_if_rewritten(session, "dora_incidents", incidents)
    await _run(session, _failure_flag_statements(since), params)
    reworked = 0
    for statement in _rework_statements(since):
        reworked += await _run(session, [statement], params)
    await session.execute(text(_STATE), params)
    return {"dora_deployments": deployments, "dora_changes": changes,
            "dora_incidents": incidents, "dora_pull_requests": pull_requests,
            "rework": reworked}


#: Entities whose changes can move a DORA figure.
DORA_INPUTS = frozenset(
    {"deployments", "deployment_commits", "commits", "incidents", "pull_requests", "reviews",
     "review_comments"}
)

#: pulse-dora's facts and their refresh (queue ``dora.refresh``; see :mod:`pulse_engine`'s
#: ``FactsRefresh``): recorded, queued and re-queued by the engine, recomputed here.
DORA_FACTS = FactsRefresh(
    name="dora",
    recompute=recompute,
    inputs=DORA_INPUTS,
    cache_tags=(DORA_CACHE_TAG,),
    vacuum_tables=("dora_deployments", "dora_changes", "dora_incidents", "dora_pull_requests"),
    work_mem=REFRESH_WORK_MEM,
)
