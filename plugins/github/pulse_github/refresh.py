"""Recompute a tenant's per-pull-request facts (:mod:`pulse_github.tables`) from pulse-etl's
tables and the tenant's configuration.

One set-based statement in one tenant-bound transaction, serialised per tenant by an
advisory lock. A refresh with ``since`` (the earliest event time a load touched, as
``data_loaded`` gives it) recomputes only the pull requests whose facts the load can have
changed, and the result equals a full refresh:

* those opened, merged or closed at or after ``since``, and every open one: a load's pull
  requests are in it with their opening (so ``since`` is at or before it), and reviews and
  review comments are loaded with their pull request (by the GitHub connector and the
  webhooks); a commit authored at or after ``since`` cannot move the start of a pull
  request merged or closed before then (its start is at or before its opening, which is
  before the commit);
* those whose merge commit a successful production deployment finished at or after
  ``since`` shipped (a deployment can only make ``deployed_at`` earlier from then on), and
  those deployed at or after ``since`` (a re-sent deployment that moved: ``since`` is at or
  before where it used to finish).

Without ``since`` every pull request is recomputed: after a configuration change (bot
patterns and production environments are in the facts), a load of changed identities
(their names decide what a bot is), and once for every tenant with data when the facts
change shape (recorded by the migration, ``github_0003``). The bookkeeping is the
engine's (:data:`GITHUB_FACTS`, a ``FactsRefresh``):
loads and configuration changes record a request and queue it on ``github.refresh``, a
starting process queues again those a stopped one left, the refresh runs once per message
under the tenant's lock and drops the tenant's cached answers under
:data:`FACTS_CACHE_TAG`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_engine import FactsRefresh, analyze_if_rewritten
from pulse_github.config import GithubConfig, tenant_config
from pulse_github.queries import bot_sql

if TYPE_CHECKING:
    from pulse_engine import Engine

#: Cache tag of every cached answer that reads the facts; dropped after each refresh.
FACTS_CACHE_TAG = "github.facts"
#: Memory each sort or hash of a refresh may use (this transaction only).
REFRESH_WORK_MEM = "64MB"


#: SQL: the pull requests an incremental refresh recomputes (see the module docstring).
_TARGETS = """
    SELECT pr.id FROM pull_requests pr
    WHERE pr.tenant_id = :tenant
      AND (pr.created_at_source >= :since OR pr.merged_at >= :since OR pr.closed_at >= :since
           OR (pr.merged_at IS NULL AND pr.closed_at IS NULL))
    UNION
    SELECT f.pull_request_id FROM github_pull_requests f
    WHERE f.tenant_id = :tenant AND f.deployed_at >= :since
    UNION
    SELECT pr.id FROM deployments d
    JOIN deployment_commits dc ON dc.tenant_id = d.tenant_id AND dc.deployment_id = d.id
    JOIN pull_requests pr ON pr.tenant_id = dc.tenant_id
     AND pr.repository_id = dc.repository_id AND pr.merge_commit_sha = dc.sha
    WHERE d.tenant_id = :tenant AND d.finished_at >= :since AND d.result = 'success'
      AND d.environment = ANY(CAST(:environments AS text[]))
"""

_COLUMNS = (
    "repository_id",
    "number",
    "state",
    "head_ref",
    "opened_at",
    "merged_at",
    "closed_at",
    "additions",
    "deletions",
    "changed_files",
    "author_person_id",
    "author_is_bot",
    "started_at",
    "first_review_at",
    "reviewed_before_merge",
    "review_rounds",
    "deployed_at",
)


def _reviewer(alias: str) -> str:
    """SQL: identity ``alias`` is someone other than the pull request's author, no bot."""
    return f"{alias}.person_id IS DISTINCT FROM prs.author AND NOT {bot_sql(alias)}"


def recompute_sql(incremental: bool) -> str:
    """The statement writing the facts of every pull request (``incremental``: of the
    targets, over the rows stored for them)."""
    chosen = f"AND pr.id IN ({_TARGETS})" if incremental else ""
    upsert = ""
    if incremental:
        upsert = "ON CONFLICT (tenant_id, pull_request_id) DO UPDATE SET " + ", ".join(
            f"{name} = EXCLUDED.{name}" for name in _COLUMNS
        )
    return f"""
INSERT INTO github_pull_requests (tenant_id, pull_request_id, {", ".join(_COLUMNS)})
WITH prs AS MATERIALIZED (
    SELECT pr.id, pr.repository_id, pr.number, pr.state, pr.head_ref,
           pr.created_at_source, pr.merged_at, pr.closed_at, pr.additions, pr.deletions,
           pr.changed_files, pr.head_sha, pr.merge_commit_sha, pa.person_id AS author,
           pa.id IS NOT NULL AND {bot_sql("pa")} AS author_is_bot
    FROM pull_requests pr
    LEFT JOIN person_identities pa
      ON pa.tenant_id = pr.tenant_id AND pa.id = pr.author_identity_id
    WHERE pr.tenant_id = :tenant {chosen}
),
own AS (
    SELECT c.repository_id, c.pull_request_number AS number, min(c.authored_at) AS at
    FROM commits c
    WHERE c.tenant_id = :tenant AND c.pull_request_number IS NOT NULL AND NOT c.is_merge
      AND (c.repository_id, c.pull_request_number) IN (SELECT repository_id, number FROM prs)
    GROUP BY c.repository_id, c.pull_request_number
),
heads AS (
    SELECT prs.id, c.authored_at AS at
    FROM prs JOIN commits c
      ON c.tenant_id = :tenant AND c.repository_id = prs.repository_id AND c.sha = prs.head_sha
),
given AS (
    SELECT r.pull_request_id, r.submitted_at AS at, true AS is_review,
           r.state = 'changes_requested' AS changes
    FROM reviews r
    JOIN prs ON prs.id = r.pull_request_id
    JOIN person_identities ri ON ri.tenant_id = r.tenant_id AND ri.id = r.reviewer_identity_id
    WHERE r.tenant_id = :tenant AND r.submitted_at IS NOT NULL AND r.state <> 'pending'
      AND {_reviewer("ri")}
    UNION ALL
    SELECT rc.pull_request_id, rc.created_at_source, false, false
    FROM review_comments rc
    JOIN prs ON prs.id = rc.pull_request_id
    JOIN person_identities ri ON ri.tenant_id = rc.tenant_id AND ri.id = rc.author_identity_id
    WHERE rc.tenant_id = :tenant AND rc.created_at_source IS NOT NULL AND {_reviewer("ri")}
),
reviewed AS (
    SELECT g.pull_request_id, min(g.at) AS first_review,
           bool_or(g.at <= coalesce(prs.merged_at, 'infinity')) AS before_merge,
           CASE WHEN bool_or(g.is_review) THEN 1 + count(*) FILTER (WHERE g.changes)
                ELSE 0 END AS rounds
    FROM given g JOIN prs ON prs.id = g.pull_request_id
    GROUP BY g.pull_request_id
),
shipped AS (
    SELECT prs.id, min(d.finished_at) AS at
    FROM prs
    JOIN deployment_commits dc
      ON dc.tenant_id = :tenant AND dc.repository_id = prs.repository_id
     AND dc.environment = ANY(CAST(:environments AS text[])) AND dc.sha = prs.merge_commit_sha
    JOIN deployments d ON d.tenant_id = dc.tenant_id AND d.id = dc.deployment_id
    WHERE prs.merged_at IS NOT NULL AND d.result = 'success'
    GROUP BY prs.id
)
SELECT CAST(:tenant AS uuid), prs.id, prs.repository_id, prs.number, prs.state, prs.head_ref,
       prs.created_at_source, prs.merged_at, prs.closed_at, prs.additions, prs.deletions,
       prs.changed_files, prs.author, prs.author_is_bot,
       least(prs.created_at_source, own.at, heads.at), reviewed.first_review,
       coalesce(reviewed.before_merge, false), coalesce(reviewed.rounds, 0), shipped.at
FROM prs
LEFT JOIN own ON own.repository_id = prs.repository_id AND own.number = prs.number
LEFT JOIN heads ON heads.id = prs.id
LEFT JOIN reviewed ON reviewed.pull_request_id = prs.id
LEFT JOIN shipped ON shipped.id = prs.id
ORDER BY prs.id
{upsert}
"""


def config_parameters(config: GithubConfig) -> dict[str, Any]:
    """The bind parameters the refresh derives from the tenant's configuration."""
    return {
        "bots": config.bot_patterns or ["$^"],
        "environments": list(config.production_environments),
    }


async def recompute(
    engine: Engine, session: AsyncSession, tenant_id: str, since: datetime | None
) -> dict[str, int]:
    """Recompute the tenant's facts inside ``session`` (the :data:`GITHUB_FACTS` refresh's
    transaction: tenant-bound, holding the tenant's lock on these facts).

    :param since: recompute only what a load at or after this time can have changed;
        ``None`` recomputes everything.
    :returns: rows written per fact table.
    """
    config = await tenant_config(engine, tenant_id)
    params: dict[str, Any] = {"tenant": tenant_id, "since": since, **config_parameters(config)}
    if since is None:
        await session.execute(
            text("DELETE FROM github_pull_requests WHERE tenant_id = :tenant"), params
        )
    result: Any = await session.execute(text(recompute_sql(since is not None)), params)
    written = int(result.rowcount or 0)
    await analyze_if_rewritten(session, "github_pull_requests", written)
    return {"github_pull_requests": written}


#: Entities whose changes can move a fact (commit parents: the commits a deployment
#: shipped; identities: a bot's login or name).
FACT_INPUTS = frozenset({"pull_requests", "reviews", "review_comments", "commits",
                         "commit_parents", "deployments", "deployment_commits",
                         "person_identities"})

#: pulse-github's per-pull-request facts and their refresh (queue ``github.refresh``), kept
#: by the engine (the per-file facts are :data:`pulse_github.file_facts.GITHUB_FILE_FACTS`).
GITHUB_FACTS = FactsRefresh(
    name="github",
    recompute=recompute,
    inputs=FACT_INPUTS,
    # an identity's changed name or login can make a bot of every pull request
    full_refresh_inputs=frozenset({"person_identities"}),
    cache_tags=(FACTS_CACHE_TAG,),
    vacuum_tables=("github_pull_requests",),
    work_mem=REFRESH_WORK_MEM,
)
