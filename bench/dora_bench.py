"""Benchmark: every DORA endpoint's latency on a large tenant, against the scan floor.

Generates, with set-based SQL (``generate_series``) in an embedded PostgreSQL, a tenant of
``scale`` x (1M deployments, 5M commits and shipped-commit rows, 1M merged pull requests
with 1.3M reviews and 0.5M review comments, 100k incidents, 50 teams over three years)
and a tenant a tenth of its size, then for each:

* the full refresh of the DORA facts, and the incremental refresh after a load;
* uncached ``summary`` and weekly ``lead_time_for_changes`` series latency (90-day
  windows, each a cache miss), and the floor: one index-only scan of the same rows;
* uncached latency of every other endpoint (:data:`ENDPOINTS`): each metric's series,
  the lead-time breakdown (90-day and one-year windows), the drill-downs and the GitLab
  shape;
* cached ``summary`` latency (p50 / p99);
* peak Python memory (tracemalloc) while answering a summary.

    .venv/bin/python bench/dora_bench.py [--scale 1.0] [--repeat 5]

Targets: uncached summary < 1 s and within 3x of the floor; the lead-time breakdown over a
year < 1 s; cached p99 < 10 ms; peak memory flat from the small tenant to the large one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pulse_dora.refresh import DORA_FACTS
from sqlalchemy import text

from pulse_engine.app import PulseEngine
from pulse_engine.testing import (
    ApiClient,
    create_tenant,
    create_user,
    make_settings,
    running_app,
    token_for,
)

SPAN_START = datetime(2022, 1, 1, tzinfo=UTC)
SPAN_DAYS = 1096
REPOSITORIES = 100
TEAMS = 50

GENERATE = [
    # one project per team, two repositories (services) per project
    """INSERT INTO projects (tenant_id, id, source, external_id, name, key)
       SELECT CAST(:tenant AS uuid), md5(CAST(:seed AS text) || 'p' || g)::uuid,
              'bench', 'p' || g, 'project-' || g,
              'P' || g FROM generate_series(0, :teams - 1) g""",
    """INSERT INTO teams (tenant_id, id, source, external_id, name, project_id)
       SELECT CAST(:tenant AS uuid), md5(CAST(:seed AS text) || 't' || g)::uuid,
              'bench', 't' || g, 'team-' || g,
              md5(CAST(:seed AS text) || 'p' || g)::uuid FROM generate_series(0, :teams - 1) g""",
    """INSERT INTO repositories (tenant_id, id, source, external_id, name, service, project_id)
       SELECT CAST(:tenant AS uuid), md5(CAST(:seed AS text) || 'r' || g)::uuid,
              'bench', 'r' || g, 'service-' || g,
              'service-' || g, md5(CAST(:seed AS text) || 'p' || (g % :teams))::uuid
       FROM generate_series(0, :repositories - 1) g""",
    # deployments spread evenly over the span; 70% production, 5% failures
    """INSERT INTO deployments (tenant_id, id, source, external_id, repository_id, service,
           environment, result, started_at, finished_at, sha, ref, name)
       SELECT CAST(:tenant AS uuid), md5(CAST(:seed AS text) || 'd' || g)::uuid, 'bench', 'd' || g,
              md5(CAST(:seed AS text) || 'r' || (g % :repositories))::uuid,
              'service-' || (g % :repositories),
              CASE WHEN g % 10 < 7 THEN 'production' ELSE 'staging' END,
              CASE WHEN g % 20 = 19 THEN 'failure' ELSE 'success' END,
              t - interval '5 minutes', t, md5('c' || (g * 5 + 4)),
              CASE WHEN g % 50 = 0 THEN 'hotfix/x' ELSE 'main' END, 'deploy'
       FROM generate_series(0, :deployments - 1) g,
            LATERAL (SELECT CAST(:span_start AS timestamptz)
                     + (g::float8 / :deployments) * CAST(:span AS interval) AS t) at""",
    # five commits per deployment, authored up to a week before it: four of its pull
    # request (numbered as the deployment) and its merge commit
    """INSERT INTO commits (tenant_id, id, source, repository_id, sha, authored_at,
           committed_at, message, is_merge, pull_request_number)
       SELECT CAST(:tenant AS uuid), md5(CAST(:seed AS text) || 'c' || g)::uuid, 'bench',
              md5(CAST(:seed AS text) || 'r' || ((g / 5) % :repositories))::uuid, md5('c' || g),
              t - (g % 97) * interval '103 minutes', t, 'change ' || g, g % 5 = 4,
              CASE WHEN g % 5 < 4 THEN g / 5 END
       FROM generate_series(0, :deployments * 5 - 1) g,
            LATERAL (SELECT CAST(:span_start AS timestamptz)
                     + ((g / 5)::float8 / :deployments) * CAST(:span AS interval) AS t) at""",
    """INSERT INTO deployment_commits (tenant_id, deployment_id, repository_id, environment, sha)
       SELECT CAST(:tenant AS uuid), md5(CAST(:seed AS text) || 'd' || (g / 5))::uuid,
              md5(CAST(:seed AS text) || 'r' || ((g / 5) % :repositories))::uuid,
              CASE WHEN (g / 5) % 10 < 7 THEN 'production' ELSE 'staging' END, md5('c' || g)
       FROM generate_series(0, :deployments * 5 - 1) g WHERE (g / 5) % 20 <> 19""",
    """INSERT INTO incidents (tenant_id, id, source, external_id, service, created_at_source,
           resolved_at, title)
       SELECT CAST(:tenant AS uuid), md5(CAST(:seed AS text) || 'i' || g)::uuid,
              'bench', 'INC-' || g,
              'service-' || (g % :repositories), t, t + (g % 41) * interval '37 minutes',
              'incident'
       FROM generate_series(0, :incidents - 1) g,
            LATERAL (SELECT CAST(:span_start AS timestamptz)
                     + (g::float8 / :incidents) * CAST(:span AS interval)
                     + interval '17 minutes' AS t) at""",
    # fifty identities of forty people (ten people have two)
    """INSERT INTO person_identities (tenant_id, id, source, external_id, person_id, name)
       SELECT CAST(:tenant AS uuid), md5(CAST(:seed AS text) || 'a' || g)::uuid, 'bench',
              'a' || g, md5(CAST(:seed AS text) || 'person' || (g % 40))::uuid, 'dev-' || g
       FROM generate_series(0, 49) g""",
    # a pull request per deployment, opened a day or more before it and merged (as its
    # merge commit) half an hour to an hour before it
    """INSERT INTO pull_requests (tenant_id, id, source, external_id, repository_id, number,
           title, state, author_identity_id, created_at_source, merged_at, merge_commit_sha)
       SELECT CAST(:tenant AS uuid), md5(CAST(:seed AS text) || 'pr' || g)::uuid, 'bench',
              'pr' || g, md5(CAST(:seed AS text) || 'r' || (g % :repositories))::uuid, g,
              'change ' || g, 'merged', md5(CAST(:seed AS text) || 'a' || (g % 50))::uuid,
              t - interval '1 day' - (g % 53) * interval '37 minutes',
              t - interval '30 minutes' - (g % 7) * interval '5 minutes', md5('c' || (g * 5 + 4))
       FROM generate_series(0, :deployments - 1) g,
            LATERAL (SELECT CAST(:span_start AS timestamptz)
                     + (g::float8 / :deployments) * CAST(:span AS interval) AS t) at""",
    # a review by someone else on each, the author's own comment on every third
    """INSERT INTO reviews (tenant_id, id, source, external_id, pull_request_id,
           reviewer_identity_id, state, submitted_at)
       SELECT CAST(:tenant AS uuid), md5(CAST(:seed AS text) || 'rv' || g || k)::uuid, 'bench',
              'rv' || g || '-' || k, md5(CAST(:seed AS text) || 'pr' || g)::uuid,
              md5(CAST(:seed AS text) || 'a' || ((g + k) % 50))::uuid,
              CASE WHEN k = 1 THEN 'approved' ELSE 'commented' END,
              t - interval '1 day' + (g % 11 + k) * interval '1 hour'
       FROM generate_series(0, :deployments - 1) g, generate_series(0, 1) k,
            LATERAL (SELECT CAST(:span_start AS timestamptz)
                     + (g::float8 / :deployments) * CAST(:span AS interval) AS t) at
       WHERE k = 1 OR g % 3 = 0""",
    """INSERT INTO review_comments (tenant_id, id, source, external_id, pull_request_id,
           author_identity_id, created_at_source, body)
       SELECT CAST(:tenant AS uuid), md5(CAST(:seed AS text) || 'rc' || g)::uuid, 'bench',
              'rc' || g, md5(CAST(:seed AS text) || 'pr' || g)::uuid,
              md5(CAST(:seed AS text) || 'a' || ((g + 2) % 50))::uuid,
              t - interval '1 day' + (g % 5) * interval '1 hour', 'nit'
       FROM generate_series(0, :deployments - 1, 2) g,
            LATERAL (SELECT CAST(:span_start AS timestamptz)
                     + (g::float8 / :deployments) * CAST(:span AS interval) AS t) at""",
]

#: The other endpoints measured uncached: ``(result name, path, query, window days)``.
ENDPOINTS: list[tuple[str, str, dict[str, str], int]] = [
    ("series_deployment_frequency_day", "deployment_frequency", {"interval": "day"}, 90),
    ("series_change_failure_rate_week", "change_failure_rate", {"interval": "week"}, 90),
    ("series_recovery_time_week", "failed_deployment_recovery_time", {"interval": "week"},
     90),
    ("series_restore_time_week", "time_to_restore_service", {"interval": "week"}, 90),
    ("series_rework_rate_month", "deployment_rework_rate", {"interval": "month"}, 90),
    ("breakdown_week", "lead-time/breakdown", {"interval": "week"}, 90),
    ("breakdown_year_week", "lead-time/breakdown", {"interval": "week"}, 365),
    ("breakdown_year_month", "lead-time/breakdown", {"interval": "month"}, 365),
    ("breakdown_year_production_given", "lead-time/breakdown",
     {"interval": "month", "environment": "production"}, 365),
    ("breakdown_year_staging", "lead-time/breakdown",
     {"interval": "month", "environment": "staging"}, 365),
    ("drilldown_deployments", "deployment_frequency/drilldown", {}, 90),
    ("drilldown_failures", "change_failure_rate/drilldown", {}, 90),
    ("drilldown_changes", "lead_time_for_changes/drilldown", {}, 90),
    ("drilldown_incidents", "time_to_restore_service/drilldown", {}, 90),
    ("gitlab_deployment_frequency_daily", "gitlab",
     {"metric": "deployment_frequency", "interval": "daily"}, 90),
    ("gitlab_lead_time_monthly", "gitlab",
     {"metric": "lead_time_for_changes", "interval": "monthly"}, 365),
]

FLOOR = """
SELECT (SELECT count(*) + coalesce(sum(extract(epoch FROM finished_at)), 0)
          FROM dora_deployments WHERE tenant_id = :tenant AND environment = 'production'
          AND finished_at >= :previous AND finished_at < :end),
       (SELECT count(*) + coalesce(sum(lead_seconds), 0)
          FROM dora_changes WHERE tenant_id = :tenant AND environment = 'production'
          AND deployed_at >= :previous AND deployed_at < :end),
       (SELECT count(*) + coalesce(sum(restore_seconds), 0)
          FROM dora_incidents WHERE tenant_id = :tenant
          AND resolved_at >= :previous AND resolved_at < :end)
"""


def sizes(scale: float) -> dict[str, int]:
    """Row counts of a tenant at ``scale``."""
    return {
        "deployments": max(100, int(1_000_000 * scale)),
        "incidents": max(10, int(100_000 * scale)),
        "teams": TEAMS,
        "repositories": REPOSITORIES,
    }


async def generate(engine: PulseEngine, tenant_id: str, scale: float) -> float:
    """Fill a tenant's unified-model tables; returns the seconds it took."""
    began = time.perf_counter()
    params = {
        "tenant": tenant_id, "seed": tenant_id, "span_start": SPAN_START,
        "span": timedelta(days=SPAN_DAYS),
        **sizes(scale),
    }
    for statement in GENERATE:
        async with engine.db.system_session() as session:
            await session.execute(text(statement), params)
    await analyze(engine)
    return time.perf_counter() - began


async def analyze(engine: PulseEngine) -> None:
    """Vacuum and refresh the planner's statistics, as autovacuum does after a bulk load
    (its insert threshold): the pages are then all-visible, and index-only scans skip the
    table."""
    assert engine.db.owner_engine is not None
    async with engine.db.owner_engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("VACUUM (ANALYZE)"))


async def load_more(engine: PulseEngine, tenant_id: str, scale: float) -> datetime:
    """A later ETL load: a day of new deployments (with commits and pull requests) after
    the span."""
    base = sizes(scale)["deployments"]
    extra = max(10, base // SPAN_DAYS)
    since = SPAN_START + timedelta(days=SPAN_DAYS)
    params = {
        "tenant": tenant_id, "seed": tenant_id, "span_start": since, "span": timedelta(days=1),
        "deployments": extra, "repositories": REPOSITORIES, "offset": base,
    }
    statements = [
        GENERATE[3].replace("generate_series(0, :deployments - 1) g",
                            "generate_series(:offset, :offset + :deployments - 1) g")
        .replace("(g::float8 / :deployments)", "((g - :offset)::float8 / :deployments)"),
        GENERATE[4].replace("generate_series(0, :deployments * 5 - 1) g",
                            "generate_series(:offset * 5, (:offset + :deployments) * 5 - 1) g")
        .replace("((g / 5)::float8 / :deployments)",
                 "((g / 5 - :offset)::float8 / :deployments)"),
        GENERATE[5].replace("generate_series(0, :deployments * 5 - 1) g",
                            "generate_series(:offset * 5, (:offset + :deployments) * 5 - 1) g"),
        GENERATE[8].replace("generate_series(0, :deployments - 1) g",
                            "generate_series(:offset, :offset + :deployments - 1) g")
        .replace("(g::float8 / :deployments)", "((g - :offset)::float8 / :deployments)"),
    ]
    for statement in statements:
        typed = statement.replace(":offset", "CAST(:offset AS integer)").replace(
            ":deployments", "CAST(:deployments AS integer)")
        async with engine.db.system_session() as session:
            await session.execute(text(typed), params)
    return since


def windows(count: int, days: int = 90) -> list[tuple[str, str]]:
    """Distinct windows of ``days`` in the second half of the span (each one a cache miss)."""
    first = SPAN_START + timedelta(days=600)
    return [
        ((first + timedelta(days=7 * i)).date().isoformat(),
         (first + timedelta(days=7 * i + days)).date().isoformat())
        for i in range(count)
    ]


async def endpoint_latency(client: ApiClient, path: str, query: dict[str, str], days: int,
                           repeat: int) -> float:
    """Median uncached latency of one endpoint over ``repeat`` distinct windows."""
    base = "/api/v1/metrics/dora"
    names = ("start_date", "end_date") if path == "gitlab" else ("start", "end")
    times = []
    for start, end in windows(repeat, days):
        elapsed, response = await timed_get(
            client, f"{base}/{path}", **{names[0]: start, names[1]: end}, **query)
        assert response.headers.get("X-Cache", "miss") == "miss", path
        times.append(elapsed)
    return statistics.median(times)


async def timed_get(client: ApiClient, path: str, **query: str) -> tuple[float, Any]:
    """One GET; returns (seconds, response)."""
    began = time.perf_counter()
    response = await client.get(path, query_string=query)
    elapsed = time.perf_counter() - began
    assert response.status_code == 200, await response.get_data()
    return elapsed, response


async def measure(engine: PulseEngine, client: ApiClient, tenant_id: str, repeat: int,
                  scale: float) -> dict[str, float]:
    """Every measurement of one tenant."""
    results: dict[str, float] = {}
    base = "/api/v1/metrics/dora"
    summary_times, series_times, floor_times = [], [], []
    for start, end in windows(repeat):
        elapsed, response = await timed_get(client, f"{base}/summary", start=start, end=end)
        assert response.headers["X-Cache"] == "miss"
        summary_times.append(elapsed)
        elapsed, response = await timed_get(
            client, f"{base}/lead_time_for_changes", start=start, end=end, interval="week"
        )
        series_times.append(elapsed)
        begin = datetime.fromisoformat(start).replace(tzinfo=UTC)
        finish = datetime.fromisoformat(end).replace(tzinfo=UTC)
        params = {"tenant": tenant_id, "previous": begin - (finish - begin), "end": finish}
        began = time.perf_counter()
        async with engine.db.tenant_session(tenant_id) as session:
            await session.execute(text(FLOOR), params)
        floor_times.append(time.perf_counter() - began)
    results["summary_uncached_median_s"] = statistics.median(summary_times)
    results["series_uncached_median_s"] = statistics.median(series_times)
    results["floor_scan_median_s"] = statistics.median(floor_times)
    results["summary_vs_floor"] = results["summary_uncached_median_s"] / results[
        "floor_scan_median_s"]
    for name, path, query, days in ENDPOINTS:
        results[f"{name}_uncached_median_s"] = await endpoint_latency(
            client, path, query, days, repeat)

    start, end = windows(1)[0]
    cached = []
    for _ in range(300):
        elapsed, response = await timed_get(client, f"{base}/summary", start=start, end=end)
        cached.append(elapsed)
    cached.sort()
    results["summary_cached_p50_ms"] = cached[len(cached) // 2] * 1000
    results["summary_cached_p99_ms"] = cached[int(len(cached) * 0.99) - 1] * 1000

    tracemalloc.start()
    tracemalloc.reset_peak()
    await timed_get(client, f"{base}/summary", start="2023-01-01", end="2023-12-31")
    results["summary_peak_python_memory_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()

    since = await load_more(engine, tenant_id, scale)
    began = time.perf_counter()
    stats = await DORA_FACTS.refresh(engine, tenant_id, since)
    results["refresh_after_load_s"] = time.perf_counter() - began
    results["refresh_after_load_deployments"] = stats["dora_deployments"]
    return results


async def run(scale: float, repeat: int) -> None:
    """Generate both tenants, measure, print."""
    with tempfile.TemporaryDirectory(prefix="dora-bench-") as folder:
        os.environ.setdefault("XDG_RUNTIME_DIR", folder)
        import pgserver

        server = pgserver.get_server(Path(folder) / "pgdata", cleanup_mode="stop")
        try:
            settings = make_settings(server.get_uri(), Path(folder) / "data",
                                     database_pool_size=4)
            async with running_app(settings) as app:
                engine: PulseEngine = app.extensions["pulse"]
                report: dict[str, dict[str, float]] = {}
                for label, size in (("small (1/10)", scale / 10), ("large", scale)):
                    tenant_id = await create_tenant(engine, f"bench-{label}")
                    user = await create_user(engine, tenant_id, "viewer")
                    client = ApiClient(app, token_for(engine, user))
                    numbers = {"generate_s": await generate(engine, tenant_id, size)}
                    began = time.perf_counter()
                    await DORA_FACTS.refresh(engine, tenant_id)
                    numbers["refresh_full_s"] = time.perf_counter() - began
                    await analyze(engine)
                    numbers.update(await measure(engine, client, tenant_id, repeat, size))
                    report[label] = numbers
                    print(f"\n{label}: {sizes(size)['deployments']:,} deployments, "
                          f"{sizes(size)['deployments'] * 5:,} commits, "
                          f"{sizes(size)['deployments']:,} pull requests, "
                          f"{sizes(size)['incidents']:,} incidents", flush=True)
                    for name, value in numbers.items():
                        print(f"  {name:50} {value:12.4f}", flush=True)
                small, large = report["small (1/10)"], report["large"]
                print("\nratios (large / small, for 10x the data):")
                for name in ("summary_uncached_median_s", "series_uncached_median_s",
                             "floor_scan_median_s", "summary_peak_python_memory_mb",
                             *(f"{endpoint[0]}_uncached_median_s" for endpoint in ENDPOINTS)):
                    print(f"  {name:50} {large[name] / small[name]:12.2f}")
                print("\ntargets (large):")
                print(f"  summary uncached < 1 s:        "
                      f"{large['summary_uncached_median_s']:.3f} s")
                print(f"  summary within 3x of floor:    {large['summary_vs_floor']:.2f}x")
                print(f"  cached p99 < 10 ms:            {large['summary_cached_p99_ms']:.2f} ms")
                print(f"  breakdown over a year < 1 s:   "
                      f"{large['breakdown_year_week_uncached_median_s']:.3f} s (weekly), "
                      f"{large['breakdown_year_month_uncached_median_s']:.3f} s (monthly)")
        finally:
            server.cleanup()


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="1.0 = 1M deployments, 5M commits, 100k incidents")
    parser.add_argument("--repeat", type=int, default=5, help="uncached windows measured")
    arguments = parser.parse_args()
    asyncio.run(run(arguments.scale, arguments.repeat))


if __name__ == "__main__":
    main()
