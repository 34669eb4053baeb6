"""Pull-request flow and review analytics: the SQL over the per-pull-request facts
(``github_pull_requests``, derived from pull requests, reviews, review comments, commits
and shipped deployments by :mod:`pulse_github.refresh`), reviews and deployments.

One fact row per pull request (:func:`facts_sql`), for the pull requests of the scope's
repositories whose ``anchor`` time (opened, merged, closed) lies in the window, opened by
an account that is not a bot:

* ``started``: the earliest author time of its own commits (those whose subject names it,
  and its head commit), else its opening;
* ``first_review``: the first review or review comment by someone else who is not a bot;
* ``reviewed_before_merge``, ``rounds``: whether such a review came before the merge, and
  the review rounds (1 + the reviews that requested changes, when it was reviewed);
* ``deployed``: the first successful deployment to a production environment (the tenant's
  ``production_environments``) that shipped its merge commit.

Phases (seconds): coding = opened - started (0 when the first commit came later), pickup =
first review - opened, review = merge - first review, deploy = deployed - merge; cycle time
= deployed - started; time to merge = merge - started.
"""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_engine import percentile_cont
from pulse_github.params import Scope
from pulse_github.queries import (
    AGE_BUCKETS,
    FILE_BUCKETS,
    LINE_BUCKETS,
    at_least_zero,
    bot_sql,
    bucket_key,
    bucket_sql,
    clip,
    people_named,
    person,
    seconds,
    stats_of,
    stats_sql,
)

#: The phases of a merged pull request's cycle, and the expressions of their seconds.
PHASES: dict[str, str] = {
    "coding": at_least_zero(seconds("opened", "started")),
    "pickup": at_least_zero(seconds("first_review", "opened")),
    "review": at_least_zero(seconds("merged_at", "first_review")),
    "deploy": at_least_zero(seconds("deployed", "merged_at")),
}
CYCLE = at_least_zero(seconds("deployed", "started"))
TO_MERGE = at_least_zero(seconds("merged_at", "started"))


#: The fact column of each anchor a caller names (pull_requests' column names).
ANCHORS: dict[str, str] = {
    "created_at_source": "opened_at", "merged_at": "merged_at", "closed_at": "closed_at"}


def facts_sql(scope: Scope, anchor: str, name: str = "facts") -> str:
    """SQL of the CTE ``name`` (see the module docstring), for pull requests whose
    ``anchor`` time (``created_at_source``, ``merged_at``, ``closed_at``) is in the
    window; ``anchor`` is its own column. One range scan of the facts' index on that time
    (:mod:`pulse_github.tables`, kept current by :mod:`pulse_github.refresh`)."""
    column = ANCHORS[anchor]
    return f"""
{name} AS (
    SELECT f.pull_request_id AS id, f.repository_id, f.number, f.state, f.head_ref,
           f.opened_at AS opened, f.merged_at, f.closed_at, f.{column} AS anchor,
           f.additions, f.deletions, f.changed_files, f.author_person_id AS author,
           f.started_at AS started, f.first_review_at AS first_review,
           f.reviewed_before_merge, f.review_rounds AS rounds, f.deployed_at AS deployed
    FROM github_pull_requests f
    WHERE{scope.repository_clause('f')} AND f.{column} >= :start AND f.{column} < :end
      AND NOT f.author_is_bot{scope.person_clause('f.author_person_id')}
)"""


def _series(scope: Scope, rows: list[Any], build: Any) -> list[dict[str, Any]]:
    """One point per bucket of the window (empty buckets included)."""
    by_bucket = {bucket_key(row.bucket): row for row in rows}
    points = []
    for start, end in scope.bucket_bounds:
        lower, upper = clip(scope, start, end)
        points.append({"start": lower, "end": upper, **build(by_bucket.get(bucket_key(start)))})
    return points


def _empty_stats() -> dict[str, Any]:
    return {"median": None, "p75": None, "p90": None, "mean": None, "sample_size": 0}


async def cycle_time(session: AsyncSession, scope: Scope) -> list[dict[str, Any]]:
    """Per bucket of merge time: cycle time, time to merge and the four phases."""
    columns = ", ".join([stats_sql(CYCLE, "cycle"), stats_sql(TO_MERGE, "to_merge"),
                         *(stats_sql(expression, name) for name, expression in PHASES.items())])
    sql = f"""
WITH {facts_sql(scope, 'merged_at')}
SELECT {bucket_sql(scope, 'anchor')} AS bucket, count(*) AS merged, {columns}
FROM facts GROUP BY 1
"""
    rows = list(await session.execute(text(sql), scope.params()))

    def build(row: Any) -> dict[str, Any]:
        names = ("cycle", "to_merge", *PHASES)
        if row is None:
            return {"merged": 0, "cycle_time": _empty_stats(), "time_to_merge": _empty_stats(),
                    "phases": {name: _empty_stats() for name in PHASES}}
        found = {name: stats_of(row, name) for name in names}
        return {"merged": int(row.merged), "cycle_time": found["cycle"],
                "time_to_merge": found["to_merge"],
                "phases": {name: found[name] for name in PHASES}}

    return _series(scope, rows, build)


async def review_times(session: AsyncSession, scope: Scope) -> dict[str, Any]:
    """Time to first review of the pull requests opened in the window (per bucket of their
    opening), and review rounds of those merged in it (per bucket of their merge)."""
    first = at_least_zero(seconds("first_review", "opened"))
    opened_sql = f"""
WITH {facts_sql(scope, 'created_at_source')}
SELECT {bucket_sql(scope, 'anchor')} AS bucket, count(*) AS opened,
       count(*) FILTER (WHERE first_review IS NULL) AS unreviewed, {stats_sql(first, 'first')}
FROM facts GROUP BY 1
"""
    merged_sql = f"""
WITH {facts_sql(scope, 'merged_at')}
SELECT {bucket_sql(scope, 'anchor')} AS bucket, count(*) AS merged,
       {stats_sql('rounds', 'rounds')}
FROM facts GROUP BY 1
"""
    opened = list(await session.execute(text(opened_sql), scope.params()))
    merged = list(await session.execute(text(merged_sql), scope.params()))
    return {
        "time_to_first_review": _series(scope, opened, lambda row: {
            "opened": int(row.opened) if row else 0,
            "without_review": int(row.unreviewed) if row else 0,
            **(stats_of(row, "first") if row else _empty_stats())}),
        "review_rounds": _series(scope, merged, lambda row: {
            "merged": int(row.merged) if row else 0,
            **(stats_of(row, "rounds") if row else _empty_stats())}),
    }


def _case(expression: str, bounds: tuple[tuple[str, Any], ...]) -> str:
    """SQL: the label of the first bucket whose upper bound ``expression`` is below."""
    whens = " ".join(f"WHEN {expression} < {upper} THEN '{label}'"
                     for label, upper in bounds if upper is not None)
    return f"CASE {whens} ELSE '{bounds[-1][0]}' END"


async def sizes(session: AsyncSession, scope: Scope) -> dict[str, Any]:
    """Merged pull requests by size (changed lines, changed files), with the time to
    merge of each line bucket (size against cycle time): one statement, whose grouping
    sets count the window's facts per line bucket, per file bucket and in all."""
    lines = "(coalesce(additions, 0) + coalesce(deletions, 0))"
    sql = f"""
WITH {facts_sql(scope, 'merged_at')}, labelled AS (
    SELECT CASE WHEN additions IS NULL AND deletions IS NULL THEN NULL
                ELSE {_case(lines, LINE_BUCKETS)} END AS lines_bucket,
           CASE WHEN changed_files IS NULL THEN NULL
                ELSE {_case('changed_files', FILE_BUCKETS)} END AS files_bucket,
           {TO_MERGE} AS to_merge, {CYCLE} AS cycle
    FROM facts
)
SELECT GROUPING(lines_bucket) AS by_files, GROUPING(files_bucket) AS by_lines,
       lines_bucket, files_bucket, count(*) AS n,
       {stats_sql('to_merge', 'to_merge')}, {stats_sql('cycle', 'cycle')}
FROM labelled GROUP BY GROUPING SETS ((lines_bucket), (files_bucket), ())
"""
    rows = list(await session.execute(text(sql), scope.params()))
    total = next((int(row.n) for row in rows if row.by_files and row.by_lines), 0)
    by_lines = {row.lines_bucket: row for row in rows if not row.by_files}
    by_files = {row.files_bucket: int(row.n) for row in rows if not row.by_lines}
    sized = {label: row for label, row in by_lines.items() if label is not None}
    return {
        "merged": total,
        "unsized": int(by_lines[None].n) if None in by_lines else 0,
        "lines": [{"bucket": label, "max_lines": None if upper is None else upper - 1,
                   "count": int(sized[label].n) if label in sized else 0}
                  for label, upper in LINE_BUCKETS],
        "files": [{"bucket": label, "max_files": None if upper is None else upper - 1,
                   "count": by_files.get(label, 0)}
                  for label, upper in FILE_BUCKETS],
        "size_vs_time": [{
            "bucket": label,
            "time_to_merge": stats_of(sized[label], "to_merge")
            if label in sized else _empty_stats(),
            "cycle_time": stats_of(sized[label], "cycle")
            if label in sized else _empty_stats(),
        } for label, _ in LINE_BUCKETS],
    }


async def outcomes(session: AsyncSession, scope: Scope) -> list[dict[str, Any]]:
    """Per bucket: pull requests merged, closed without merge, and merged without review
    (no review or review comment by someone else before the merge)."""
    sql = f"""
WITH {facts_sql(scope, 'closed_at')}, {facts_sql(scope, 'merged_at', 'merged_facts')}
SELECT bucket, sum(merged) AS merged, sum(closed) AS closed, sum(unreviewed) AS unreviewed
FROM (
    SELECT {bucket_sql(scope, 'anchor')} AS bucket, 0 AS merged, count(*) AS closed,
           0 AS unreviewed
    FROM facts WHERE merged_at IS NULL GROUP BY 1
    UNION ALL
    SELECT {bucket_sql(scope, 'anchor')}, count(*), 0,
           count(*) FILTER (WHERE NOT coalesce(reviewed_before_merge, false))
    FROM merged_facts GROUP BY 1
) counted GROUP BY bucket
"""
    rows = list(await session.execute(text(sql), scope.params()))

    def build(row: Any) -> dict[str, Any]:
        merged = int(row.merged) if row else 0
        closed = int(row.closed) if row else 0
        unreviewed = int(row.unreviewed) if row else 0
        return {"merged": merged, "closed_unmerged": closed,
                "merge_rate": merged / (merged + closed) if merged + closed else None,
                "merged_without_review": unreviewed,
                "merged_without_review_rate": unreviewed / merged if merged else None}

    return _series(scope, rows, build)


async def open_aging(session: AsyncSession, scope: Scope, limit: int,
                     after: tuple[str, str] | None) -> dict[str, Any]:
    """Pull requests open at the window's end (opened before it, neither merged nor
    closed before it), by age; and the oldest of them, a page at a time."""
    age = seconds("CAST(:end AS timestamptz)", "pr.created_at_source")
    sql = f"""
SELECT pr.id, pr.repository_id, pr.number, pr.title, pr.created_at_source, {age} AS age,
       pr.author_identity_id
FROM pull_requests pr
LEFT JOIN person_identities pa ON pa.tenant_id = pr.tenant_id AND pa.id = pr.author_identity_id
WHERE{scope.repository_clause('pr')} AND pr.created_at_source < :end
  AND (pr.merged_at IS NULL OR pr.merged_at >= :end)
  AND (pr.closed_at IS NULL OR pr.closed_at >= :end)
  AND (pr.state = 'open' OR pr.merged_at IS NOT NULL OR pr.closed_at IS NOT NULL)
  AND (pa.id IS NULL OR NOT {bot_sql('pa')}){scope.person_clause('pa.person_id')}
"""
    counts_sql = f"""
SELECT {_case('age / 86400.0', AGE_BUCKETS)} AS bucket, count(*) AS prs,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY age) AS median
FROM ({sql}) aging GROUP BY ROLLUP (1)
"""
    counts = {row.bucket: row for row in await session.execute(text(counts_sql),
                                                               scope.params())}
    page_sql = f"""
SELECT * FROM ({sql}) aging
WHERE CAST(:after_at AS timestamptz) IS NULL
   OR (created_at_source, id) > (CAST(:after_at AS timestamptz), CAST(:after_id AS uuid))
ORDER BY created_at_source, id LIMIT :limit
"""
    rows = list(await session.execute(text(page_sql), {
        **scope.params(), "limit": limit,
        "after_at": datetime.fromisoformat(after[0]) if after else None,
        "after_id": after[1] if after else None}))
    total = counts.get(None)
    return {
        "open": int(total.prs) if total else 0,
        "median_age": float(total.median) if total and total.median is not None else None,
        "buckets": [{"bucket": label, "count": int(counts[label].prs) if label in counts
                     else 0} for label, _ in AGE_BUCKETS],
        "items": [{"id": str(row.id), "repository_id": str(row.repository_id),
                   "number": int(row.number), "title": row.title,
                   "opened_at": row.created_at_source, "age": float(row.age)} for row in rows],
    }


async def branch_lifetime(session: AsyncSession, scope: Scope) -> dict[str, Any]:
    """Lifetime of the pull requests' head branches whose last pull request was merged or
    closed in the window: from the branch's first commit (or first pull request's opening)
    to that last merge or close, per bucket of the end."""
    sql = f"""
WITH {facts_sql(scope, 'closed_at')}, branches AS (
    SELECT repository_id, head_ref, min(started) AS born,
           max(coalesce(merged_at, closed_at)) AS ended, bool_or(merged_at IS NOT NULL) AS merged
    FROM facts WHERE head_ref IS NOT NULL GROUP BY repository_id, head_ref
)
SELECT {bucket_sql(scope, 'ended')} AS bucket, count(*) AS branches,
       count(*) FILTER (WHERE merged) AS merged,
       {stats_sql(seconds('ended', 'born'), 'life')}
FROM branches GROUP BY 1
"""
    rows = list(await session.execute(text(sql), scope.params()))
    return {"series": _series(scope, rows, lambda row: {
        "branches": int(row.branches) if row else 0,
        "merged": int(row.merged) if row else 0,
        **(stats_of(row, "life") if row else _empty_stats())})}


def _review_edges_sql(scope: Scope) -> str:
    """SQL of the CTE ``given``: reviews submitted in the window on the scope's pull
    requests, by someone other than the author, neither of them a bot."""
    return f"""
given AS (
    SELECT ri.person_id AS reviewer, pa.person_id AS author, r.pull_request_id
    FROM reviews r
    JOIN pull_requests pr ON pr.tenant_id = r.tenant_id AND pr.id = r.pull_request_id
    JOIN person_identities ri ON ri.tenant_id = r.tenant_id AND ri.id = r.reviewer_identity_id
    LEFT JOIN person_identities pa
      ON pa.tenant_id = pr.tenant_id AND pa.id = pr.author_identity_id
    WHERE r.tenant_id = CAST(:tenant AS uuid) AND r.submitted_at >= :start
      AND r.submitted_at < :end AND r.state <> 'pending'
      AND pr.repository_id = ANY(CAST(:repos AS uuid[]))
      AND ri.person_id IS DISTINCT FROM pa.person_id AND NOT {bot_sql('ri')}
      AND (pa.id IS NULL OR NOT {bot_sql('pa')})
)"""


async def review_load(session: AsyncSession, scope: Scope, limit: int,
                      after: tuple[int, str] | None) -> list[dict[str, Any]]:
    """Per person: reviews given (and pull requests reviewed) against reviews received,
    ordered by reviews given descending."""
    person_filter = scope.person_clause("person_id")
    sql = f"""
WITH {_review_edges_sql(scope)},
load AS (
    SELECT person_id, sum(given) AS given, sum(prs) AS prs, sum(received) AS received
    FROM (
        SELECT reviewer AS person_id, count(*) AS given,
               count(DISTINCT pull_request_id) AS prs, 0 AS received
        FROM given GROUP BY reviewer
        UNION ALL
        SELECT author, 0, 0, count(*) FROM given WHERE author IS NOT NULL GROUP BY author
    ) sides GROUP BY person_id
)
SELECT * FROM load
WHERE (CAST(:after_count AS bigint) IS NULL OR given < :after_count
       OR (given = :after_count AND person_id > CAST(:after_id AS uuid))){person_filter}
ORDER BY given DESC, person_id LIMIT :limit
"""
    rows = list(await session.execute(text(sql), {
        **scope.params(), "limit": limit, "after_count": after[0] if after else None,
        "after_id": after[1] if after else None}))
    people = await people_named(session, [row.person_id for row in rows])
    return [{"person": people.get(str(row.person_id), person(row.person_id, None, None)),
             "reviews_given": int(row.given),
             "pull_requests_reviewed": int(row.prs), "reviews_received": int(row.received)}
            for row in rows]


async def review_graph(session: AsyncSession, scope: Scope, limit: int) -> dict[str, Any]:
    """Who reviews whom: the ``limit`` heaviest edges (reviewer to author, weight = the
    reviews given) and the people they join, with their totals over every edge."""
    person_filter = ""
    if scope.person_ids is not None:
        person_filter = (" WHERE reviewer = ANY(CAST(:people AS uuid[]))"
                         " OR author = ANY(CAST(:people AS uuid[]))")
    sql = f"""
WITH {_review_edges_sql(scope)},
edges AS (
    SELECT reviewer, author, count(*) AS weight FROM given WHERE author IS NOT NULL
    GROUP BY reviewer, author
)
SELECT *, count(*) OVER () AS total_edges FROM edges{person_filter}
ORDER BY weight DESC, reviewer, author LIMIT :limit
"""
    rows = list(await session.execute(text(sql), {**scope.params(), "limit": limit}))
    ids = {str(row.reviewer) for row in rows} | {str(row.author) for row in rows}
    people = await people_named(session, sorted(ids))
    given: dict[str, int] = {}
    received: dict[str, int] = {}
    for row in rows:
        given[str(row.reviewer)] = given.get(str(row.reviewer), 0) + int(row.weight)
        received[str(row.author)] = received.get(str(row.author), 0) + int(row.weight)
    return {
        "nodes": [{"person": people.get(node, person(node, None, None)),
                   "given": given.get(node, 0),
                   "received": received.get(node, 0)} for node in sorted(ids)],
        "edges": [{"reviewer": str(row.reviewer), "author": str(row.author),
                   "weight": int(row.weight)} for row in rows],
        "total_edges": int(rows[0].total_edges) if rows else 0,
        "truncated": bool(rows) and int(rows[0].total_edges) > len(rows),
    }


async def release_cadence(session: AsyncSession, scope: Scope) -> dict[str, Any]:
    """Successful production deployments (deploy tags, releases, deployments) per bucket,
    and per repository with the median time between consecutive ones.

    One read hashes the window's deployments per repository, each with its release times
    (seconds since the epoch, as :func:`pulse_github.queries.seconds` takes them): at most
    the window's releases, which are counted into the buckets (the last bucket start at or
    before each, as ``width_bucket`` finds it), sorted and differenced here, the gaps'
    median as PostgreSQL's ``percentile_cont`` computes it. In SQL, the window function
    over the releases sorted per repository and the percentiles cost three times the read
    itself at the benchmark's scale 1.0, and sorting the times by repository in SQL (for
    ``array_agg(... ORDER BY ...)``) as much as the read."""
    sql = """
WITH per AS (
    SELECT d.repository_id, count(*) AS releases, max(d.finished_at) AS last_release,
           array_agg(date_part('epoch', d.finished_at)) AS times
    FROM deployments d
    WHERE d.tenant_id = CAST(:tenant AS uuid) AND d.repository_id = ANY(CAST(:repos AS uuid[]))
      AND d.result = 'success' AND d.environment = ANY(CAST(:environments AS text[]))
      AND d.finished_at >= :start AND d.finished_at < :end
    GROUP BY d.repository_id
)
SELECT per.*, repo.name FROM per
LEFT JOIN repositories repo
  ON repo.tenant_id = CAST(:tenant AS uuid) AND repo.id = per.repository_id
"""
    rows = list(await session.execute(text(sql), scope.params()))
    starts = [start for start, _ in scope.bucket_bounds]
    edges = np.array([start.timestamp() for start in starts])
    counts = np.zeros(len(starts), dtype=np.int64)
    repositories = []
    for row in rows:
        times = np.sort(np.array(row.times, dtype=np.float64))
        found = np.searchsorted(edges, times, side="right") - 1
        counts += np.bincount(found[found >= 0], minlength=len(starts))
        repositories.append({
            "repository": {"id": str(row.repository_id), "name": row.name},
            "releases": int(row.releases), "last_release_at": row.last_release,
            "median_seconds_between": percentile_cont(np.diff(times).tolist(), 0.5)})
    repositories.sort(key=lambda entry: (-entry["releases"], entry["repository"]["id"]))
    points = [SimpleNamespace(bucket=start, releases=int(count))
              for start, count in zip(starts, counts, strict=True) if count]
    return {
        "series": _series(scope, points, lambda row: {
            "releases": row.releases if row else 0}),
        "repositories": repositories,
    }
