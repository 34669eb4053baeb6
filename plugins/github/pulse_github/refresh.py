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
(their names decide what a bot is), and once for every tenant a starting process finds
without facts (:func:`queue_missing`). Loads and configuration changes publish to
:data:`REFRESH_QUEUE` (:func:`request_refresh`); its consumer refreshes once per message
(:meth:`pulse_engine.Database.process_once`) and drops the tenant's cached answers under
:data:`FACTS_CACHE_TAG`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_engine import Consumer, Message, analyze_tables
from pulse_github.config import GithubConfig, tenant_config
from pulse_github.file_facts import refresh_file_changes
from pulse_github.queries import bot_sql

if TYPE_CHECKING:
    from pulse_engine import Engine

log = logging.getLogger(__name__)

#: Queue on which a refresh is requested (message tenant = the tenant, body ``{"since"}``).
REFRESH_QUEUE = "github.refresh"
#: Cache tag of every cached answer that reads the facts; dropped after each refresh.
FACTS_CACHE_TAG = "github.facts"
#: Rows one refresh writes from which the table's planner statistics are refreshed.
ANALYZE_AFTER_ROWS = 10_000
#: Memory each sort or hash of a refresh may use (this transaction only).
REFRESH_WORK_MEM = "64MB"


@dataclass(frozen=True)
class RefreshStats:
    """What one refresh wrote, and how long it took."""

    pull_requests: int
    full: bool
    seconds: float


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


_STATE = """
INSERT INTO github_refresh_state (tenant_id, refreshed_at, full_refresh_at)
VALUES (:tenant, :began, CASE WHEN CAST(:full AS boolean) THEN CAST(:began AS timestamptz) END)
ON CONFLICT (tenant_id) DO UPDATE SET refreshed_at = EXCLUDED.refreshed_at,
    full_refresh_at = coalesce(EXCLUDED.full_refresh_at, github_refresh_state.full_refresh_at)
"""


def config_parameters(config: GithubConfig) -> dict[str, Any]:
    """The bind parameters the refresh derives from the tenant's configuration."""
    return {
        "bots": config.bot_patterns or ["$^"],
        "environments": list(config.production_environments),
    }


async def refresh_session(
    session: AsyncSession, tenant_id: str, config: GithubConfig, since: datetime | None = None
) -> RefreshStats:
    """Recompute the tenant's facts inside ``session`` (a tenant-bound transaction).

    :param since: recompute only what a load at or after this time can have changed;
        ``None`` recomputes everything.
    """
    began = time.perf_counter()
    params: dict[str, Any] = {
        "tenant": tenant_id,
        "since": since,
        "full": since is None,
        **config_parameters(config),
    }
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('pulse_github.refresh:' || :tenant))"),
        {"tenant": tenant_id},
    )
    params["began"] = await session.scalar(text("SELECT clock_timestamp()"))
    await session.execute(
        text("SELECT set_config('work_mem', :work_mem, true)"), {"work_mem": REFRESH_WORK_MEM}
    )
    if since is None:
        await session.execute(
            text("DELETE FROM github_pull_requests WHERE tenant_id = :tenant"), params
        )
    result: Any = await session.execute(text(recompute_sql(since is not None)), params)
    written = int(result.rowcount or 0)
    if written >= ANALYZE_AFTER_ROWS:
        await analyze_tables(session, ["github_pull_requests"])
    await refresh_file_changes(session, tenant_id, since)
    await session.execute(text(_STATE), params)
    return RefreshStats(written, since is None, time.perf_counter() - began)


async def refresh_tenant(
    engine: Engine, tenant_id: str, since: datetime | None = None
) -> RefreshStats:
    """Recompute one tenant's facts with its configuration, then drop its cached answers."""
    config = await tenant_config(engine, tenant_id)
    async with engine.db.tenant_session(tenant_id) as session:
        stats = await refresh_session(session, tenant_id, config, since)
    await engine.cache.invalidate_tags(tenant_id, [FACTS_CACHE_TAG])
    log.info(
        "github facts of a tenant refreshed (%d pull requests) in %.3f s",
        stats.pull_requests,
        stats.seconds,
    )
    return stats


async def request_refresh(
    engine: Engine, tenant_id: str, since: datetime | None, message_id: str | None = None
) -> None:
    """Queue a refresh of the tenant's facts from ``since`` (None: all)."""
    await engine.queue.publish(
        REFRESH_QUEUE,
        {"since": since.isoformat() if since is not None else None},
        tenant_id=tenant_id,
        message_id=message_id,
    )


_MISSING = """
SELECT t.id FROM tenants t
WHERE EXISTS (SELECT 1 FROM pull_requests pr WHERE pr.tenant_id = t.id)
  AND NOT EXISTS (SELECT 1 FROM github_refresh_state s WHERE s.tenant_id = t.id)
"""


async def queue_missing(engine: Engine) -> int:
    """Queue a full refresh of every tenant with pull requests and no facts yet (at process
    start; the message id names the tenant, so processes starting together run it once).
    Returns how many were queued."""
    async with engine.db.system_session() as session:
        tenants = [str(value) for value in (await session.scalars(text(_MISSING))).all()]
    for tenant_id in tenants:
        await request_refresh(engine, tenant_id, None, message_id=f"github-initial-{tenant_id}")
    return len(tenants)


def refresh_consumer(engine: Engine) -> Consumer:
    """The consumer of :data:`REFRESH_QUEUE`: refreshes the message's tenant, once per
    message."""

    async def handle(message: Message) -> None:
        tenant_id = message.tenant_id
        if tenant_id is None:
            return
        raw = message.body.get("since")
        since = datetime.fromisoformat(raw) if isinstance(raw, str) else None
        config = await tenant_config(engine, tenant_id)
        async with engine.db.process_once(REFRESH_QUEUE, message.id, tenant_id) as session:
            if session is None:
                return
            await refresh_session(session, tenant_id, config, since)
        await engine.cache.invalidate_tags(tenant_id, [FACTS_CACHE_TAG])

    return Consumer(queue=REFRESH_QUEUE, handler=handle, prefetch=2, max_retries=3)
