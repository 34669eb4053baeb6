"""Health checks of the GitHub analytics, as aggregate counts only.

Health endpoints are public and these checks look across tenants, so they never name a
tenant; each says what to do about what it counts.

* ``freshness``: per source (``git``, ``github``...), the newest commit and the newest pull
  request seen, and how many tenants' newest commit or pull request of that source is
  older than ``PULSE_GITHUB_STALE_AFTER_DAYS`` (``degraded``: their connector has
  probably stopped running).
* ``review_data``: tenants with pull requests merged in the last 30 days and not one
  review or review comment on any of them (``degraded``: review analytics read empty;
  the connector's token may lack pull-request read access, or the source has no reviews).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from pulse_github.config import GithubSettings

if TYPE_CHECKING:
    from pulse_engine import Engine

# the newest row per repository through its indexes (one backward index step each)
_FRESHNESS = """
WITH newest AS (
    SELECT r.tenant_id, r.id,
           (SELECT c.source FROM commits c WHERE c.tenant_id = r.tenant_id
              AND c.repository_id = r.id ORDER BY c.authored_at DESC NULLS LAST LIMIT 1)
             AS commit_source,
           (SELECT max(c.authored_at) FROM commits c WHERE c.tenant_id = r.tenant_id
              AND c.repository_id = r.id) AS last_commit,
           (SELECT p.source FROM pull_requests p WHERE p.tenant_id = r.tenant_id
              AND p.repository_id = r.id ORDER BY p.created_at_source DESC NULLS LAST LIMIT 1)
             AS pr_source,
           (SELECT max(p.created_at_source) FROM pull_requests p
              WHERE p.tenant_id = r.tenant_id AND p.repository_id = r.id) AS last_pr
    FROM repositories r
),
per_tenant AS (
    SELECT kind, source, tenant_id, max(at) AS at FROM (
        SELECT 'commit' AS kind, commit_source AS source, tenant_id, last_commit AS at
        FROM newest WHERE last_commit IS NOT NULL
        UNION ALL
        SELECT 'pull_request', pr_source, tenant_id, last_pr FROM newest
        WHERE last_pr IS NOT NULL
    ) seen GROUP BY kind, source, tenant_id
)
SELECT kind, source, max(at) AS newest, count(*) AS tenants,
       count(*) FILTER (WHERE at < now() - CAST(:stale AS interval)) AS stale_tenants
FROM per_tenant GROUP BY kind, source ORDER BY kind, source
"""

_REVIEWS = """
SELECT count(*) AS tenants FROM (
    SELECT p.tenant_id FROM pull_requests p
    WHERE p.merged_at >= now() - interval '30 days'
    GROUP BY p.tenant_id
    HAVING NOT bool_or(EXISTS (SELECT 1 FROM reviews r WHERE r.tenant_id = p.tenant_id
                                 AND r.pull_request_id = p.id)
                       OR EXISTS (SELECT 1 FROM review_comments rc
                                  WHERE rc.tenant_id = p.tenant_id
                                    AND rc.pull_request_id = p.id))
) quiet
"""


def health_checks(engine: Engine, settings: GithubSettings
                  ) -> dict[str, Callable[[], Awaitable[dict[str, Any]]]]:
    """The ``{name: check}`` mapping for ``register_health_checks``."""
    stale = timedelta(days=settings.stale_after_days)

    async def freshness() -> dict[str, Any]:
        async with engine.db.system_session() as session:
            rows = (await session.execute(text(_FRESHNESS), {"stale": stale})).all()
        sources = [{"kind": row.kind, "source": row.source, "newest": row.newest.isoformat()
                    if row.newest else None, "tenants": int(row.tenants),
                    "stale_tenants": int(row.stale_tenants)} for row in rows]
        stale_total = sum(source["stale_tenants"] for source in sources)
        found: dict[str, Any] = {
            "status": "degraded" if stale_total else "healthy",
            "stale_after_days": settings.stale_after_days, "sources": sources}
        if stale_total:
            found["reason"] = (
                f"{stale_total} tenant source(s) have no commit or pull request newer than "
                f"{settings.stale_after_days} days: check that their git or GitHub ETL jobs "
                "still run and succeed (GET /app/etl/jobs).")
        return found

    async def review_data() -> dict[str, Any]:
        async with engine.db.system_session() as session:
            quiet = int(await session.scalar(text(_REVIEWS)) or 0)
        found: dict[str, Any] = {"status": "degraded" if quiet else "healthy",
                                 "tenants_without_reviews": quiet}
        if quiet:
            found["reason"] = (
                f"{quiet} tenant(s) merged pull requests in the last 30 days without a single "
                "review or review comment stored: review analytics read empty. Check that "
                "the GitHub connector's token can read pull requests (reviews are read with "
                "them), or that the source records reviews at all.")
        return found

    return {"freshness": freshness, "review_data": review_data}
