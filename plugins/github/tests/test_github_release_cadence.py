"""Release cadence against a brute-force computation on random deployments: the count of
each bucket from the raw rows, and each repository's median time between releases from
PostgreSQL's own ``lag`` and ``percentile_cont`` over the window (equal to the last bit),
across a DST change, with ties, failed and non-production deployments."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from github_rows import Rows
from pulse_etl import model
from sqlalchemy import text

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture

PREFIX = "/api/v1/analytics/github"

#: PostgreSQL's answer per repository, as the endpoint computed it before it moved the gaps
#: and their median out of SQL.
BRUTE_FORCE = """
WITH released AS (
    SELECT repository_id, finished_at,
           date_part('epoch', finished_at) - date_part('epoch', lag(finished_at)
             OVER (PARTITION BY repository_id ORDER BY finished_at)) AS gap
    FROM deployments
    WHERE result = 'success' AND environment = 'production'
      AND finished_at >= :start AND finished_at < :end
)
SELECT CAST(repository_id AS text) AS repository, count(*) AS releases,
       max(finished_at) AS last_release,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) AS median_gap
FROM released GROUP BY repository_id
"""


async def test_release_cadence_equals_a_brute_force_computation(
        engine: PulseEngine, gh_tenant: TenantFixture) -> None:
    rng = random.Random(7)
    rows = Rows(engine, gh_tenant.id)
    repositories = [await rows.repository(name) for name in ("api", "web", "lone", "idle")]
    base = datetime(2026, 2, 20, tzinfo=UTC)
    finished: list[tuple[str, datetime, str, str]] = []
    for repository, releases in zip(repositories[:2], (180, 60), strict=True):
        for _ in range(releases):
            moment = base + timedelta(seconds=rng.randint(0, 80 * 86400),
                                      microseconds=rng.randint(0, 999_999))
            finished.append((repository, moment, rng.choice(["production"] * 4 + ["staging"]),
                             rng.choice(["success"] * 5 + ["failure"])))
    tie = datetime(2026, 3, 20, 15, 0, 0, 123_456, tzinfo=UTC)
    finished += [(repositories[0], tie, "production", "success")] * 2  # a tie: a gap of 0
    finished.append((repositories[2], datetime(2026, 4, 1, 12, tzinfo=UTC), "production",
                     "success"))
    for repository, moment, environment, result in finished:
        await rows.add(model.deployments, repository_id=repository, service="svc",
                       environment=environment, result=result, started_at=moment,
                       finished_at=moment)

    start, end = datetime(2026, 3, 4, 7, 30, tzinfo=UTC), datetime(2026, 5, 2, tzinfo=UTC)
    response = await gh_tenant.analyst_client.get(
        f"{PREFIX}/repositories/release-cadence", query_string={
            "start": start.isoformat(), "end": end.isoformat(), "interval": "week",
            "tz": "America/New_York"})
    body: dict[str, Any] = await response.get_json()
    assert response.status_code == 200, body

    shipped = sorted(moment for _, moment, environment, result in finished
                     if environment == "production" and result == "success"
                     and start <= moment < end)
    series = body["series"]
    assert datetime.fromisoformat(series[0]["start"]) == start
    for point in series:
        lower, upper = (datetime.fromisoformat(point[key]) for key in ("start", "end"))
        assert point["releases"] == sum(1 for moment in shipped if lower <= moment < upper)
    assert sum(point["releases"] for point in series) == len(shipped)
    assert datetime.fromisoformat(series[-1]["end"]) == end

    async with engine.db.tenant_session(gh_tenant.id) as session:
        expected = {row.repository: row for row in await session.execute(
            text(BRUTE_FORCE), {"start": start, "end": end})}
    found = {entry["repository"]["id"]: entry for entry in body["repositories"]}
    assert set(found) == set(expected) == set(repositories[:3])
    for repository, row in expected.items():
        entry = found[repository]
        assert entry["releases"] == row.releases
        assert datetime.fromisoformat(entry["last_release_at"]) == row.last_release
        assert entry["median_seconds_between"] == row.median_gap  # to the last bit
    assert found[repositories[2]]["median_seconds_between"] is None
    assert [entry["releases"] for entry in body["repositories"]] == sorted(
        (entry["releases"] for entry in body["repositories"]), reverse=True)

    response = await gh_tenant.analyst_client.get(
        f"{PREFIX}/repositories/release-cadence", query_string={
            "start": start.isoformat(), "end": end.isoformat(), "interval": "all"})
    whole = await response.get_json()
    assert [point["releases"] for point in whole["series"]] == [len(shipped)]
    assert whole["repositories"] == body["repositories"]
