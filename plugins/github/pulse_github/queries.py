"""The SQL of the GitHub analytics: each function reads one answer in the caller's
tenant-bound session, bounded by the scope's window and repositories (the leading
columns of the indexes it reads) and, for lists, by a page.

Conventions (the package README states them for users):

* a commit counts in the window of its author time; a person is the ETL model's merged
  identity (``person_identities.person_id``) of its author;
* ``contributors`` and ``commit-patterns`` count every commit (merges too, as ``git log``
  does); hotspots, coupling, silos, main developers, churn and the absence factor count
  non-merge commits, by the path a commit left a file at (a rename's new path); the four
  file answers (hotspots, coupling, silos, main developers) read the per-file facts
  ``github_file_changes`` (:mod:`pulse_github.file_facts`: one row per file of such a
  commit, kept by the refresh), grouping path ids and looking up the texts of the rows
  they answer;
* pull-request and review analytics leave out pull requests opened by bots and reviews
  given by bots (the tenant's ``bot_patterns``), and a person's reviews of their own pull
  requests;
* percentiles are ``percentile_cont`` (linear interpolation between the closest ranks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_engine import set_work_mem
from pulse_github.params import Scope
from pulse_github.tables import PAIRED_MAX_CHANGESET

#: Pull-request size buckets by changed lines (additions + deletions): upper bounds.
LINE_BUCKETS: tuple[tuple[str, int | None], ...] = (
    ("xs", 10), ("s", 50), ("m", 250), ("l", 1000), ("xl", None))
#: Pull-request size buckets by changed files: upper bounds.
FILE_BUCKETS: tuple[tuple[str, int | None], ...] = (
    ("1", 2), ("2-5", 6), ("6-10", 11), ("11-20", 21), ("21+", None))
#: Open pull-request age buckets, in days: upper bounds.
AGE_BUCKETS: tuple[tuple[str, float | None], ...] = (
    ("<1d", 1), ("1-3d", 3), ("3-7d", 7), ("7-14d", 14), ("14-30d", 30), (">30d", None))

#: code-maat's defaults for change coupling.
COUPLING_MIN_REVS = 5
COUPLING_MIN_SHARED = 5
COUPLING_MIN_DEGREE = 0.30
COUPLING_MAX_CHANGESET = 30
#: Memory each sort or hash of an answer over the per-file facts may use (its transaction
#: only): at the benchmark's scale 1.0 a window's 1.15 million file rows group into tens of
#: thousands of (path, person) groups, which the default 4 MB made the planner sort on disk
#: after a parallel scan of the whole table (1.1-1.2 s) instead of hashing the window's
#: index range in memory (0.4-0.6 s).
FILE_FACTS_WORK_MEM = "64MB"


def bot_sql(alias: str) -> str:
    """SQL: whether identity ``alias`` (maybe absent: not a bot) matches a bot pattern."""
    return (f"(coalesce({alias}.username, '') ~* ANY(CAST(:bots AS text[])) "
            f"OR coalesce({alias}.name, '') ~* ANY(CAST(:bots AS text[])))")


def _window(column: str) -> str:
    return f" {column} >= :start AND {column} < :end"


def bucket_sql(scope: Scope, column: str) -> str:
    """SQL: the start of the bucket of ``column`` (the window's start for ``all``; NULL
    before the first bucket).

    The bucket is a binary search of the scope's bucket starts (``width_bucket`` over the
    sorted array :attr:`Scope.bucket_bounds` gives as ``:bucket_starts``): the same starts
    as ``date_trunc(interval, column, tz)`` for a value in the window, without converting
    each value to the zone (at the benchmark's scale 1.0 that conversion cost as much as
    reading the window's commits)."""
    if scope.interval == "all":
        return "CAST(:start AS timestamptz)"
    starts = "CAST(:bucket_starts AS timestamptz[])"
    return f"({starts})[width_bucket({column}, {starts})]"


def day_sql(column: str) -> str:
    """SQL: the number of the day (in the scope's zone ``tz``) of ``column`` within the
    window: a binary search of the window's local midnights (``:day_starts``, see
    :func:`bucket_sql`), the day that ``(column AT TIME ZONE tz)::date`` names."""
    return f"width_bucket({column}, CAST(:day_starts AS timestamptz[]))"


def bucket_key(moment: datetime) -> datetime:
    """A bucket start as a dictionary key (UTC)."""
    return moment.astimezone(UTC)


def clip(scope: Scope, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """A bucket's bounds within the window."""
    return max(start, scope.start), min(end, scope.end)


def stats_sql(expression: str, prefix: str) -> str:
    """SQL: median, p75, p90, mean and sample size of ``expression`` (seconds; NULLs
    dropped), as columns ``<prefix>_p50``..."""
    return (
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {expression}) AS {prefix}_p50, "
        f"percentile_cont(0.75) WITHIN GROUP (ORDER BY {expression}) AS {prefix}_p75, "
        f"percentile_cont(0.9) WITHIN GROUP (ORDER BY {expression}) AS {prefix}_p90, "
        f"avg({expression}) AS {prefix}_mean, count({expression}) AS {prefix}_n"
    )


def stats_of(row: Any, prefix: str) -> dict[str, Any]:
    """The ``{"median", "p75", "p90", "mean", "sample_size"}`` of a row's stats columns."""
    values = row._mapping
    return {
        "median": _float(values[f"{prefix}_p50"]), "p75": _float(values[f"{prefix}_p75"]),
        "p90": _float(values[f"{prefix}_p90"]), "mean": _float(values[f"{prefix}_mean"]),
        "sample_size": int(values[f"{prefix}_n"] or 0),
    }


def _float(value: Any) -> float | None:
    return float(value) if value is not None else None


def at_least_zero(expression: str) -> str:
    """SQL: ``expression`` with negative values as 0 and NULL kept (``greatest`` would
    turn NULL into 0)."""
    return f"(CASE WHEN ({expression}) < 0 THEN 0 ELSE ({expression}) END)"


def seconds(later: str, earlier: str) -> str:
    """SQL: seconds from ``earlier`` to ``later``, as double precision (what the
    percentiles and means take): the difference of their seconds since the epoch, each
    exact to the microsecond in a double until the year 2255, instead of ``extract``'s
    numeric of an interval (a third of the release cadence's time at the benchmark's scale
    1.0)."""
    return f"(date_part('epoch', {later}) - date_part('epoch', {earlier}))"


# --- commits -----------------------------------------------------------------------------

def _commits(scope: Scope, *, merges: bool) -> str:
    """FROM/WHERE of the scope's commits in the window with their author's person ``ai``."""
    merge = "" if merges else " AND NOT c.is_merge"
    return (
        " FROM commits c JOIN person_identities ai ON ai.tenant_id = c.tenant_id"
        f" AND ai.id = c.author_identity_id"
        f" WHERE{scope.repository_clause('c')} AND{_window('c.authored_at')}{merge}"
        f"{scope.person_clause('ai.person_id')}"
    )


def _reviews(scope: Scope) -> str:
    """FROM/WHERE of the reviews submitted in the window on the scope's pull requests,
    with their reviewer's person ``ri``, without a person's reviews of their own pull
    requests (as the review analytics count them)."""
    return (
        " FROM reviews r"
        " JOIN pull_requests pr ON pr.tenant_id = r.tenant_id AND pr.id = r.pull_request_id"
        " JOIN person_identities ri ON ri.tenant_id = r.tenant_id"
        " AND ri.id = r.reviewer_identity_id"
        " LEFT JOIN person_identities pa ON pa.tenant_id = pr.tenant_id"
        " AND pa.id = pr.author_identity_id"
        f" WHERE r.tenant_id = CAST(:tenant AS uuid) AND{_window('r.submitted_at')}"
        " AND r.state <> 'pending' AND pr.repository_id = ANY(CAST(:repos AS uuid[]))"
        " AND ri.person_id IS DISTINCT FROM pa.person_id"
        f"{scope.person_clause('ri.person_id')}"
    )


@dataclass(frozen=True)
class PersonKey:
    """A keyset position in a list ordered by a count descending, then person id."""

    count: int
    person_id: str


async def contributors(session: AsyncSession, scope: Scope, limit: int,
                       after: PersonKey | None) -> tuple[list[dict[str, Any]], int]:
    """Every person active in the window (commits, pull requests opened or merged,
    reviews), ordered by commits descending then id; and the window's commit total."""
    pr_scope = scope.repository_clause("pr")
    # each source is first counted per person and day (in ``tz``): the union and the
    # distinct days are then over a few rows per person and day, not one per event
    sql = f"""
WITH commit_days AS (
    SELECT ai.person_id, {day_sql('c.authored_at')} AS day, count(*) AS commits,
           count(*) FILTER (WHERE NOT c.is_merge) AS non_merge,
           sum(c.additions) FILTER (WHERE NOT c.is_merge) AS additions,
           sum(c.deletions) FILTER (WHERE NOT c.is_merge) AS deletions
    {_commits(scope, merges=True)}
    GROUP BY 1, 2
),
opened AS (
    SELECT pi.person_id, {day_sql('pr.created_at_source')} AS day, count(*) AS n
    FROM pull_requests pr JOIN person_identities pi
      ON pi.tenant_id = pr.tenant_id AND pi.id = pr.author_identity_id
    WHERE{pr_scope} AND{_window('pr.created_at_source')}{scope.person_clause('pi.person_id')}
    GROUP BY 1, 2
),
merged AS (
    SELECT pi.person_id, count(*) AS n
    FROM pull_requests pr JOIN person_identities pi
      ON pi.tenant_id = pr.tenant_id AND pi.id = pr.author_identity_id
    WHERE{pr_scope} AND{_window('pr.merged_at')}{scope.person_clause('pi.person_id')}
    GROUP BY 1
),
reviewed AS (
    SELECT ri.person_id, {day_sql('r.submitted_at')} AS day, count(*) AS n
    {_reviews(scope)}
    GROUP BY 1, 2
),
people_rows AS (
    SELECT person_id, sum(commits) AS commits, sum(non_merge) AS non_merge_commits,
           coalesce(sum(additions), 0) AS additions, coalesce(sum(deletions), 0) AS deletions,
           sum(opened) AS prs_opened, sum(merged) AS prs_merged, sum(reviews) AS reviews,
           count(DISTINCT day) AS active_days
    FROM (
        SELECT person_id, day, commits, non_merge, additions, deletions, 0 AS opened,
               0 AS merged, 0 AS reviews
        FROM commit_days
        UNION ALL SELECT person_id, day, 0, 0, NULL, NULL, n, 0, 0 FROM opened
        UNION ALL SELECT person_id, NULL, 0, 0, NULL, NULL, 0, n, 0 FROM merged
        UNION ALL SELECT person_id, day, 0, 0, NULL, NULL, 0, 0, n FROM reviewed
    ) activity
    GROUP BY person_id
)
SELECT r.*, p.display_name, p.email,
       (SELECT coalesce(sum(commits), 0) FROM commit_days) AS total_commits
FROM people_rows r
LEFT JOIN people p ON p.tenant_id = CAST(:tenant AS uuid) AND p.id = r.person_id
WHERE (CAST(:after_count AS bigint) IS NULL OR r.commits < :after_count
       OR (r.commits = :after_count AND r.person_id > CAST(:after_id AS uuid)))
ORDER BY r.commits DESC, r.person_id
LIMIT :limit
"""
    params = {**scope.params(), "limit": limit,
              "after_count": after.count if after else None,
              "after_id": after.person_id if after else None}
    rows = (await session.execute(text(sql), params)).all()
    items = [{
        "person": person(row.person_id, row.display_name, row.email),
        "commits": int(row.commits), "non_merge_commits": int(row.non_merge_commits),
        "additions": int(row.additions), "deletions": int(row.deletions),
        "prs_opened": int(row.prs_opened), "prs_merged": int(row.prs_merged),
        "reviews": int(row.reviews), "active_days": int(row.active_days),
    } for row in rows]
    if rows:
        total = int(rows[0].total_commits)
    else:
        total = int(await session.scalar(
            text(f"SELECT count(*) {_commits(scope, merges=True)}"), scope.params()) or 0)
    return items, total


def person(person_id: Any, name: Any, email: Any) -> dict[str, Any]:
    """A person as the answers show one."""
    return {"id": str(person_id), "name": name, "email": email}


#: Seconds of a week: added to a commit's local time in seconds since the epoch so that it
#: is positive (the window starts at 1970-01-01 UTC at the earliest; an offset is at most
#: 14 hours), which makes integer division a floor and leaves the hour of the week as it is.
_WEEK_SECONDS = 7 * 24 * 3600


def local_hour_of_week_sql(moment: str, offset_minutes: str) -> str:
    """SQL: the hour of the week (0 = Monday 00:00-01:00) of timestamp ``moment`` at the UTC
    offset ``offset_minutes`` (NULL: UTC)."""
    return (f"((floor(date_part('epoch', {moment}))::bigint"
            f" + 60 * coalesce({offset_minutes}, 0) + {_WEEK_SECONDS}) / 3600 + 72) % 168")


async def commit_patterns(session: AsyncSession, scope: Scope) -> list[list[int]]:
    """Commits per weekday (Monday first) and hour, in each author's own UTC offset.

    A commit's local hour of the week is integer arithmetic on its seconds since the epoch
    (1970-01-01 was a Thursday: hour 72 of a week that starts on Monday), one bigint
    expression per commit instead of shifting a timestamp and extracting its weekday and
    hour (the read's cost again at the benchmark's scale 1.0)."""
    sql = f"""
SELECT {local_hour_of_week_sql('c.authored_at', 'c.author_tz_offset')} AS hour_of_week,
       count(*) AS commits
{_commits(scope, merges=True)}
GROUP BY 1
"""
    grid = [[0] * 24 for _ in range(7)]
    for row in await session.execute(text(sql), scope.params()):
        grid[int(row.hour_of_week) // 24][int(row.hour_of_week) % 24] = int(row.commits)
    return grid


@dataclass(frozen=True)
class PathKey:
    """A keyset position in a list ordered by a count descending, repository, path."""

    count: int
    repository_id: str
    path: str


def _path_after(after: PathKey | None, count: str) -> tuple[str, dict[str, Any]]:
    condition = (f" WHERE (CAST(:after_count AS bigint) IS NULL OR {count} < :after_count"
                 f" OR ({count} = :after_count AND (repository_id, path) >"
                 " (CAST(:after_repo AS uuid), CAST(:after_path AS text))))")
    return condition, {"after_count": after.count if after else None,
                       "after_repo": after.repository_id if after else None,
                       "after_path": after.path if after else None}


def _file_changes(scope: Scope, alias: str = "g") -> str:
    """FROM/WHERE of the scope's per-file facts ``alias`` in the window (one range of the
    facts' author-time index; without a repository filter, every row of the range is the
    tenant's repositories': no per-row test against the list)."""
    return f" FROM github_file_changes {alias} WHERE{_file_changes_in(scope, alias)}"


def _file_changes_in(scope: Scope, alias: str) -> str:
    """SQL: the conditions of :func:`_file_changes` on facts ``alias``."""
    repositories = ("" if scope.every_repository
                    else f" AND {alias}.repository_id = ANY(CAST(:repos AS uuid[]))")
    return (f" {alias}.tenant_id = CAST(:tenant AS uuid){repositories}"
            f" AND{_window(alias + '.authored_at')}{scope.person_clause(alias + '.person_id')}")


def commit_pairs_sql(first: str, second: str) -> str:
    """SQL FROM/WHERE: every pair of per-file facts ``a`` and ``b`` of one commit (a
    commit's rows share its author time), ``b``'s path id the larger, with the conditions
    ``first`` on ``a`` and ``second`` on ``b``: how the stored pairs are written, and how
    change coupling pairs the commits larger than those."""
    return f"""FROM github_file_changes a JOIN github_file_changes b
  ON b.tenant_id = a.tenant_id AND b.authored_at = a.authored_at
 AND b.commit_id = a.commit_id AND b.path_id > a.path_id
WHERE {first} AND {second}"""


#: SQL: the repository and path text of the ``github_paths`` id ``{}`` (one index lookup
#: per row: a LATERAL subquery the planner keeps as a nested loop).
NAMED = ("CROSS JOIN LATERAL (SELECT p.repository_id, p.path FROM github_paths p"
         " WHERE p.tenant_id = CAST(:tenant AS uuid) AND p.id = {} OFFSET 0) named")


def _top_by_count(groups: str, count: str, key: str) -> str:
    """SQL of the CTEs ``cut`` and ``candidates``: the rows of CTE ``groups`` (by the
    ``github_paths`` id column ``key``) that a page ordered by ``count`` descending,
    repository, path can hold, with their ``repository_id`` and ``path``: those with the
    page's starting count (``after_count``, where the path decides) and those with fewer,
    down to the ``limit``-th largest of these counts (ties kept). Only these paths are
    looked up; the caller orders them and applies the keyset."""
    eligible = f"(CAST(:after_count AS bigint) IS NULL OR {count} < :after_count)"
    return f"""
cut AS (
    SELECT {count} AS at FROM {groups} WHERE {eligible}
    ORDER BY {count} DESC OFFSET CAST(:limit AS bigint) - 1 LIMIT 1
),
candidates AS MATERIALIZED (
    SELECT s.*, named.repository_id, named.path
    FROM {groups} s {NAMED.format('s.' + key)}
    WHERE ({eligible} OR s.{count} = :after_count)
      AND s.{count} >= coalesce((SELECT at FROM cut), 0)
)"""


async def hotspots(session: AsyncSession, scope: Scope, limit: int,
                   after: PathKey | None) -> list[dict[str, Any]]:
    """Files by the non-merge commits that changed them in the window (descending), with
    their distinct authors and churn."""
    condition, extra = _path_after(after, "commits")
    # per path and person first: the distinct authors are then a count of groups (a path
    # id names its repository)
    sql = f"""
WITH per AS (
    SELECT g.path_id, g.person_id, count(*)::integer AS commits,
           sum(g.additions) AS additions, sum(g.deletions) AS deletions
    {_file_changes(scope)}
    GROUP BY g.path_id, g.person_id
),
spots AS MATERIALIZED (
    SELECT path_id, sum(commits) AS commits, count(*) AS authors,
           coalesce(sum(additions), 0) AS additions, coalesce(sum(deletions), 0) AS deletions
    FROM per GROUP BY path_id
),
{_top_by_count('spots', 'commits', 'path_id')}
SELECT * FROM candidates{condition}
ORDER BY commits DESC, repository_id, path
LIMIT :limit
"""
    await set_work_mem(session, FILE_FACTS_WORK_MEM)
    rows = await session.execute(text(sql), {**scope.params(), **extra, "limit": limit})
    names = await repository_names(session, scope)
    return [{"repository": {"id": str(row.repository_id), "name": names.get(
                str(row.repository_id))},
             "path": row.path, "commits": int(row.commits), "authors": int(row.authors),
             "additions": int(row.additions), "deletions": int(row.deletions)}
            for row in rows]


async def repository_names(session: AsyncSession, scope: Scope) -> dict[str, str]:
    """The names of the scope's repositories."""
    rows = await session.execute(
        text("SELECT id, name FROM repositories WHERE id = ANY(CAST(:repos AS uuid[]))"),
        {"repos": list(scope.repository_ids)})
    return {str(row.id): str(row.name) for row in rows}


async def absence_factor(session: AsyncSession, scope: Scope, by: str) -> dict[str, Any]:
    """The fewest people whose non-merge commits (or lines) make at least half of the
    window's: the CHAOSS contributor absence factor."""
    weight = "count(*)" if by == "commits" else \
        "coalesce(sum(coalesce(c.additions, 0) + coalesce(c.deletions, 0)), 0)"
    sql = f"""
WITH per AS (
    SELECT ai.person_id, count(*) AS commits, {weight} AS weight
    {_commits(scope, merges=False)}
    GROUP BY ai.person_id
),
ranked AS (
    SELECT person_id, commits, weight,
           sum(weight) OVER (ORDER BY weight DESC, person_id ROWS UNBOUNDED PRECEDING)
             AS running,
           sum(weight) OVER () AS total, sum(commits) OVER () AS total_commits
    FROM per
)
SELECT r.*, p.display_name, p.email FROM ranked r
LEFT JOIN people p ON p.tenant_id = CAST(:tenant AS uuid) AND p.id = r.person_id
WHERE r.running - r.weight < r.total / 2.0 OR r.total = 0
ORDER BY r.weight DESC, r.person_id
"""
    rows = (await session.execute(text(sql), scope.params())).all()
    chosen = [row for row in rows if row.total > 0]
    total_commits = int(rows[0].total_commits) if rows else 0
    total_weight = int(rows[0].total) if rows else 0
    return {
        "value": len(chosen),
        "people": [{"person": person(row.person_id, row.display_name, row.email),
                    "commits": int(row.commits), "weight": int(row.weight)} for row in chosen],
        "commits": total_commits,
        "total_weight": total_weight,
    }


@dataclass(frozen=True)
class CouplingRules:
    """code-maat's thresholds (its defaults unless asked otherwise)."""

    min_revs: int = COUPLING_MIN_REVS
    min_shared: int = COUPLING_MIN_SHARED
    min_degree: float = COUPLING_MIN_DEGREE
    max_changeset: int = COUPLING_MAX_CHANGESET


@dataclass(frozen=True)
class CouplingKey:
    """A keyset position: degree descending, shared descending, repository, path, pair."""

    degree: float
    shared: int
    repository_id: str
    path: str
    coupled_path: str


async def change_coupling(session: AsyncSession, scope: Scope, rules: CouplingRules,
                          limit: int, after: CouplingKey | None) -> list[dict[str, Any]]:
    """Pairs of files of one repository changed by the same non-merge commits."""
    # the degree is a float8 (2 * shared / the sum of both files' commits: one rounding, as
    # the float a cursor carries it in, so that a page's position compares equal to the
    # ties it stopped in); the pairs are counted by path id (the smaller first); only the
    # pairs a page can hold
    # (those down to the limit-th largest degree and shared count, ties kept) have their
    # texts looked up, and each is then written in code-point order (COLLATE "C": as git
    # and the C.UTF-8 default sort paths), with its two files' commits
    strict = ("(CAST(:after_degree AS float8) IS NULL OR degree < :after_degree"
              " OR (degree = :after_degree AND shared < :after_shared))")
    larger = ""
    if rules.max_changeset > PAIRED_MAX_CHANGESET:
        unpaired = f"BETWEEN {PAIRED_MAX_CHANGESET + 1} AND :max_changeset"
        larger = f"""
        UNION ALL
        SELECT a.path_id, b.path_id {commit_pairs_sql(
            f"{_file_changes_in(scope, 'a')} AND a.changeset {unpaired}",
            f"{_file_changes_in(scope, 'b')} AND b.changeset {unpaired}")}"""
    sql = f"""
WITH revs AS MATERIALIZED (
    SELECT g.path_id, count(*) AS revs
    {_file_changes(scope)} AND g.changeset <= :max_changeset
    GROUP BY g.path_id
    HAVING count(*) >= greatest(CAST(:min_revs AS bigint), CAST(:min_shared AS bigint))
),
pairs AS (
    SELECT first_id, second_id, count(*) AS shared FROM (
        SELECT x.first_path_id AS first_id, x.second_path_id AS second_id
        FROM github_file_pairs x
        WHERE{_file_changes_in(scope, 'x')} AND x.changeset <= :max_changeset{larger}
    ) paired
    GROUP BY first_id, second_id
    HAVING count(*) >= :min_shared
),
degrees AS MATERIALIZED (
    SELECT p.first_id, p.second_id, p.shared, r1.revs AS first_revs, r2.revs AS second_revs,
           CAST(2 * p.shared AS float8) / (r1.revs + r2.revs) AS degree
    FROM pairs p JOIN revs r1 ON r1.path_id = p.first_id JOIN revs r2 ON r2.path_id = p.second_id
    WHERE CAST(2 * p.shared AS float8) / (r1.revs + r2.revs) >= :min_degree
),
cut AS (
    SELECT degree, shared FROM degrees WHERE {strict}
    ORDER BY degree DESC, shared DESC OFFSET CAST(:limit AS bigint) - 1 LIMIT 1
),
labelled AS MATERIALIZED (
    SELECT d.*, named.repository_id, named.path COLLATE "C" AS first_path,
           (SELECT p.path FROM github_paths p WHERE p.tenant_id = CAST(:tenant AS uuid)
              AND p.id = d.second_id) COLLATE "C" AS second_path
    FROM degrees d {NAMED.format('d.first_id')}
    WHERE ({strict} OR (degree = :after_degree AND shared = :after_shared))
      AND (NOT EXISTS (SELECT 1 FROM cut)
           OR (degree, shared) >= (SELECT degree, shared FROM cut))
),
oriented AS (
    SELECT repository_id, shared, degree,
           least(first_path, second_path) AS path,
           greatest(first_path, second_path) AS coupled_path,
           CASE WHEN first_path < second_path THEN first_revs ELSE second_revs END AS revs,
           CASE WHEN first_path < second_path THEN second_revs ELSE first_revs END
             AS coupled_revs
    FROM labelled
)
SELECT * FROM oriented
WHERE (CAST(:after_degree AS float8) IS NULL OR degree < :after_degree
       OR (degree = :after_degree AND (shared < :after_shared
           OR (shared = :after_shared AND (repository_id, path, coupled_path)
               > (CAST(:after_repo AS uuid), CAST(:after_path AS text),
                  CAST(:after_coupled AS text))))))
ORDER BY degree DESC, shared DESC, repository_id, path, coupled_path
LIMIT :limit
"""
    params = {**scope.params(), "max_changeset": rules.max_changeset,
              "min_revs": rules.min_revs, "min_shared": rules.min_shared,
              "min_degree": rules.min_degree, "limit": limit,
              "after_degree": after.degree if after else None,
              "after_shared": after.shared if after else None,
              "after_repo": after.repository_id if after else None,
              "after_path": after.path if after else None,
              "after_coupled": after.coupled_path if after else None}
    # the pairs of commits of at most PAIRED_MAX_CHANGESET files are one index range of
    # github_file_pairs, counted in parallel workers (the table's pair statistics tell the
    # planner that a window's 1.9 million pair rows make 20,000 pairs at the benchmark's
    # scale 1.0) and hashed, not sorted (sorting them took 0.6 s more). A larger limit pairs
    # the larger commits' files by a self-join of their fact rows by commit (a commit's
    # files share its author time): only a hash join is linear (a nested loop over a
    # commit's rows is quadratic, a merge join sorts both sides). Paths below the thresholds
    # meet no pair in ``degrees``. In memory, not spilled (this transaction only).
    await session.execute(text("SET LOCAL enable_nestloop = off"))
    await session.execute(text("SET LOCAL enable_mergejoin = off"))
    await session.execute(text("SET LOCAL enable_sort = off"))
    await set_work_mem(session, FILE_FACTS_WORK_MEM)
    rows = await session.execute(text(sql), params)
    names = await repository_names(session, scope)
    return [{"repository": {"id": str(row.repository_id),
                            "name": names.get(str(row.repository_id))},
             "path": row.path, "coupled_path": row.coupled_path, "degree": float(row.degree),
             "shared_commits": int(row.shared), "commits": int(row.revs),
             "coupled_commits": int(row.coupled_revs)} for row in rows]


async def churn(session: AsyncSession, scope: Scope) -> dict[datetime, dict[str, int]]:
    """Non-merge commits, added and deleted lines and changed files per bucket."""
    sql = f"""
SELECT {bucket_sql(scope, 'c.authored_at')} AS bucket, count(*) AS commits,
       coalesce(sum(c.additions), 0) AS additions, coalesce(sum(c.deletions), 0) AS deletions,
       coalesce(sum(c.files_changed), 0) AS files_changed
{_commits(scope, merges=False)}
GROUP BY 1
"""
    return {bucket_key(row.bucket): {"commits": int(row.commits),
                                     "additions": int(row.additions),
                                     "deletions": int(row.deletions),
                                     "files_changed": int(row.files_changed)}
            for row in await session.execute(text(sql), scope.params())}


async def silos(session: AsyncSession, scope: Scope, kind: str, min_commits: int, limit: int,
                after: PathKey | None) -> list[dict[str, Any]]:
    """Files (or directories) whose non-merge commits in the window all come from one
    person, with at least ``min_commits`` commits."""
    key = "path_id" if kind == "file" else "directory_id"
    condition, extra = _path_after(after, "commits")
    # a commit counts once per directory (several of its files may be in one): each commit
    # is one group of the first step, and a path with one person is one group of the
    # second; a file appears once per commit, so files skip the first step (a path id
    # names its repository)
    commits = (f"SELECT g.{key}, g.person_id, count(*)::integer AS commits"
               f" {_file_changes(scope)} GROUP BY 1, 2")
    if kind != "file":
        commits = (f"SELECT {key}, person_id, count(*)::integer AS commits FROM ("
                   f"SELECT DISTINCT g.{key}, g.person_id, g.commit_id"
                   f" {_file_changes(scope)}) distinct_commits GROUP BY 1, 2")
    sql = f"""
WITH per AS ({commits}),
owned AS MATERIALIZED (
    SELECT {key}, sum(commits) AS commits, min(person_id::text) AS person_id
    FROM per GROUP BY {key}
    HAVING count(*) = 1 AND sum(commits) >= :min_commits
),
{_top_by_count('owned', 'commits', key)}
SELECT * FROM candidates{condition}
ORDER BY commits DESC, repository_id, path
LIMIT :limit
"""
    await set_work_mem(session, FILE_FACTS_WORK_MEM)
    rows = (await session.execute(text(sql), {**scope.params(), **extra, "limit": limit,
                                              "min_commits": min_commits})).all()
    names = await repository_names(session, scope)
    people = await people_named(session, [row.person_id for row in rows]) \
        if scope.people_visible else {}
    return [{"repository": {"id": str(row.repository_id),
                            "name": names.get(str(row.repository_id))},
             "path": row.path, "kind": kind, "commits": int(row.commits),
             "person": people.get(str(row.person_id))} for row in rows]


async def people_named(session: AsyncSession, ids: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """People by id, as the answers show them."""
    if not ids:
        return {}
    rows = await session.execute(
        text("SELECT id, display_name, email FROM people WHERE id = ANY(CAST(:ids AS uuid[]))"),
        {"ids": sorted({str(value) for value in ids})})
    return {str(row.id): person(row.id, row.display_name, row.email) for row in rows}


async def main_developers(session: AsyncSession, scope: Scope, limit: int,
                          after: tuple[str, str] | None) -> list[dict[str, Any]]:
    """Per file changed in the window, the person who added the most lines to it (ties:
    the smallest person id), ordered by repository and path."""
    # per file and person, then per file; the texts of the window's files decide the page
    # (a top-N of their order), and only the page's files look for their main developer
    sql = f"""
WITH added AS MATERIALIZED (
    SELECT g.path_id, g.person_id, coalesce(sum(g.additions), 0) AS added
    {_file_changes(scope)}
    GROUP BY g.path_id, g.person_id
),
per_file AS (
    SELECT path_id, sum(added) AS total_added, count(*) AS authors, max(added) AS most
    FROM added GROUP BY path_id
),
page AS MATERIALIZED (
    SELECT f.*, p.repository_id, p.path FROM per_file f
    JOIN github_paths p ON p.tenant_id = CAST(:tenant AS uuid) AND p.id = f.path_id
    WHERE CAST(:after_repo AS uuid) IS NULL
       OR (p.repository_id, p.path) > (CAST(:after_repo AS uuid), CAST(:after_path AS text))
    ORDER BY p.repository_id, p.path
    LIMIT :limit
)
SELECT DISTINCT ON (page.repository_id, page.path) page.repository_id, page.path,
       a.person_id, a.added, page.total_added, page.authors
FROM page JOIN added a ON a.path_id = page.path_id AND a.added = page.most
ORDER BY page.repository_id, page.path, a.person_id
"""
    await set_work_mem(session, FILE_FACTS_WORK_MEM)
    rows = (await session.execute(text(sql), {
        **scope.params(), "limit": limit, "after_repo": after[0] if after else None,
        "after_path": after[1] if after else None})).all()
    names = await repository_names(session, scope)
    people = await people_named(session, [row.person_id for row in rows])
    return [{"repository": {"id": str(row.repository_id),
                            "name": names.get(str(row.repository_id))},
             "path": row.path, "main_developer": people.get(str(row.person_id)),
             "added": int(row.added), "total_added": int(row.total_added),
             "ownership": float(row.added) / float(row.total_added) if row.total_added else None,
             "authors": int(row.authors)} for row in rows]


async def contributor_changes(session: AsyncSession, scope: Scope, limit: int
                              ) -> dict[str, Any]:
    """People whose first commit (in the scope's repositories) falls in the window, and
    people who committed in the window of the same length before it but not in it."""
    length = scope.end - scope.start
    sql = f"""
WITH current AS (
    SELECT DISTINCT ai.person_id {_commits(scope, merges=True)}
),
earlier AS (
    SELECT DISTINCT ai.person_id
    FROM commits c JOIN person_identities ai
      ON ai.tenant_id = c.tenant_id AND ai.id = c.author_identity_id
    WHERE{scope.repository_clause('c')} AND c.authored_at >= :previous AND c.authored_at < :start
),
fresh AS (
    SELECT cur.person_id FROM current cur
    WHERE NOT EXISTS (
        SELECT 1 FROM person_identities i JOIN commits c
          ON c.tenant_id = i.tenant_id AND c.author_identity_id = i.id
        WHERE i.tenant_id = CAST(:tenant AS uuid) AND i.person_id = cur.person_id
          AND c.authored_at < :start AND c.repository_id = ANY(CAST(:repos AS uuid[])))
),
departed AS (
    SELECT e.person_id FROM earlier e
    WHERE NOT EXISTS (SELECT 1 FROM current cur WHERE cur.person_id = e.person_id)
      {scope.person_clause('e.person_id')}
)
SELECT 'new' AS kind, person_id FROM fresh
UNION ALL SELECT 'departed', person_id FROM departed
"""
    rows = (await session.execute(text(sql), {**scope.params(),
                                              "previous": scope.start - length})).all()
    new = sorted(str(row.person_id) for row in rows if row.kind == "new")
    departed = sorted(str(row.person_id) for row in rows if row.kind == "departed")
    shown: dict[str, dict[str, Any]] = {}
    if scope.people_visible:
        shown = await people_named(session, new[:limit] + departed[:limit])
    return {
        "new": {"count": len(new), "people": [
            shown.get(p, person(p, None, None)) for p in new[:limit]]
            if scope.people_visible else None},
        "departed": {"count": len(departed), "people": [
            shown.get(p, person(p, None, None)) for p in departed[:limit]]
            if scope.people_visible else None},
        "previous_window": {"start": scope.start - length, "end": scope.start},
    }


async def activity(session: AsyncSession, scope: Scope, limit: int, after: str | None
                   ) -> list[dict[str, Any]]:
    """Per person (ordered by id) and bucket: commits, pull requests opened and merged,
    reviews, active days (days in ``tz`` with any of them)."""
    pr_scope = scope.repository_clause("pr")
    # each source is first counted per person, bucket and day (in ``tz``)
    sql = f"""
WITH acts AS (
    SELECT ai.person_id, {bucket_sql(scope, 'c.authored_at')} AS bucket,
           {day_sql('c.authored_at')} AS day, count(*) AS commits, 0 AS opened,
           0 AS merged, 0 AS reviews
    {_commits(scope, merges=True)}
    GROUP BY 1, 2, 3
    UNION ALL
    SELECT pi.person_id, {bucket_sql(scope, 'pr.created_at_source')},
           {day_sql('pr.created_at_source')}, 0, count(*), 0, 0
    FROM pull_requests pr JOIN person_identities pi
      ON pi.tenant_id = pr.tenant_id AND pi.id = pr.author_identity_id
    WHERE{pr_scope} AND{_window('pr.created_at_source')}{scope.person_clause('pi.person_id')}
    GROUP BY 1, 2, 3
    UNION ALL
    SELECT pi.person_id, {bucket_sql(scope, 'pr.merged_at')}, NULL, 0, 0, count(*), 0
    FROM pull_requests pr JOIN person_identities pi
      ON pi.tenant_id = pr.tenant_id AND pi.id = pr.author_identity_id
    WHERE{pr_scope} AND{_window('pr.merged_at')}{scope.person_clause('pi.person_id')}
    GROUP BY 1, 2
    UNION ALL
    SELECT ri.person_id, {bucket_sql(scope, 'r.submitted_at')},
           {day_sql('r.submitted_at')}, 0, 0, 0, count(*)
    {_reviews(scope)}
    GROUP BY 1, 2, 3
),
page AS (
    SELECT DISTINCT person_id FROM acts
    WHERE CAST(:after AS uuid) IS NULL OR person_id > CAST(:after AS uuid)
    ORDER BY person_id LIMIT :limit
)
SELECT a.person_id, a.bucket, sum(a.commits) AS commits, sum(a.opened) AS prs_opened,
       sum(a.merged) AS prs_merged, sum(a.reviews) AS reviews,
       count(DISTINCT a.day) AS active_days
FROM acts a JOIN page USING (person_id)
GROUP BY 1, 2
"""
    rows = (await session.execute(text(sql), {**scope.params(), "limit": limit,
                                              "after": after})).all()
    people = await people_named(session, [row.person_id for row in rows])
    per: dict[str, dict[datetime, Any]] = {}
    for row in rows:
        per.setdefault(str(row.person_id), {})[bucket_key(row.bucket)] = row
    items = []
    for person_id in sorted(per):
        series = []
        for start, end in scope.bucket_bounds:
            found = per[person_id].get(bucket_key(start))
            lower, upper = clip(scope, start, end)
            series.append({"start": lower, "end": upper, **{
                name: int(getattr(found, name)) if found is not None else 0
                for name in ("commits", "prs_opened", "prs_merged", "reviews", "active_days")}})
        items.append({"person": people.get(person_id, person(person_id, None, None)),
                      "series": series})
    return items
