"""The lead-time breakdown from DORA's pull-request facts equals its definition as it was
computed before (per pull request, over pulse-etl's tables), on random histories, with
filters, explicit environments, and after incremental refreshes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dora_rows import Rows
from pulse_dora.params import FilterRequest, WindowRequest, open_scope
from pulse_dora.plugin import settings_for
from pulse_dora.queries import PHASES, _bucket_of, _buckets_sql, _params
from pulse_etl import model
from sqlalchemy import text
from test_metrics import ok

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture

START = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday
DAYS = 42

#: The breakdown as pulse-dora computed it before its facts existed: per merged pull
#: request, subqueries over commits, reviews, review comments and shipped changes.
OLD_BREAKDOWN = """
WITH {buckets},
prs AS (
    SELECT p.id, p.number, p.repository_id, p.created_at_source AS opened_at, p.merged_at,
           p.merge_commit_sha, coalesce(ai.person_id, p.author_identity_id) AS author
    FROM pull_requests p
    LEFT JOIN person_identities ai ON ai.tenant_id = p.tenant_id AND ai.id = p.author_identity_id
    LEFT JOIN repositories r ON r.tenant_id = p.tenant_id AND r.id = p.repository_id
    WHERE p.tenant_id = :tenant AND p.merged_at >= :start AND p.merged_at < :end {filters}
),
phases AS (
    SELECT prs.*, {bucket_of} AS bucket,
        (SELECT min(c.authored_at) FROM commits c WHERE c.tenant_id = :tenant
           AND c.repository_id = prs.repository_id AND c.pull_request_number = prs.number
           AND NOT c.is_merge) AS first_commit_at,
        (SELECT min(t) FROM (
            SELECT rv.submitted_at AS t FROM reviews rv
            LEFT JOIN person_identities ri
              ON ri.tenant_id = rv.tenant_id AND ri.id = rv.reviewer_identity_id
            WHERE rv.tenant_id = :tenant AND rv.pull_request_id = prs.id
              AND coalesce(ri.person_id, rv.reviewer_identity_id) IS DISTINCT FROM prs.author
            UNION ALL
            SELECT rc.created_at_source FROM review_comments rc
            LEFT JOIN person_identities ci
              ON ci.tenant_id = rc.tenant_id AND ci.id = rc.author_identity_id
            WHERE rc.tenant_id = :tenant AND rc.pull_request_id = prs.id
              AND coalesce(ci.person_id, rc.author_identity_id) IS DISTINCT FROM prs.author
        ) responses) AS first_response_at,
        (SELECT min(c.deployed_at) FROM dora_changes c WHERE c.tenant_id = :tenant
           AND c.repository_id = prs.repository_id AND c.sha = prs.merge_commit_sha
           AND c.environment = ANY(CAST(:environments AS text[]))) AS deployed_at
    FROM prs
),
durations AS (
    SELECT bucket,
        extract(epoch FROM opened_at - first_commit_at) AS coding,
        extract(epoch FROM first_response_at - opened_at) AS pickup,
        extract(epoch FROM merged_at - first_response_at) AS review,
        extract(epoch FROM deployed_at - merged_at) AS deploy
    FROM phases
),
v AS (
    SELECT bucket, count(*) AS pull_requests, {aggregates} FROM durations GROUP BY bucket
)
SELECT b.bucket_start, b.bucket_end, v.* FROM b LEFT JOIN v ON v.bucket = b.bucket
ORDER BY b.bucket
"""


async def old_breakdown(engine: PulseEngine, tenant_id: str, query: dict[str, Any],
                        interval: str) -> list[dict[str, Any]]:
    """The old definition's numbers per bucket: ``pull_requests`` and, per phase, the
    count, the (median, p75, p90) and the mean."""
    filters = FilterRequest(
        environment=tuple(query.get("environment", "").split(",")) if "environment" in query
        else (),
        repository=(query["repository"],) if "repository" in query else (),
        project=(query["project"],) if "project" in query else (),
    )
    window = WindowRequest(datetime.fromisoformat(query["start"]).date(),
                           datetime.fromisoformat(query["end"]).date(), "UTC")
    scope = (await open_scope(engine, settings_for(engine), tenant_id, window, filters,
                              interval=interval)).scope
    aggregates = ", ".join(
        f"count({phase}) FILTER (WHERE {phase} >= 0) AS {phase}_n, "
        f"percentile_cont(ARRAY[0.5, 0.75, 0.9]) WITHIN GROUP (ORDER BY {phase}) "
        f"FILTER (WHERE {phase} >= 0) AS {phase}_quantiles, "
        f"avg({phase}) FILTER (WHERE {phase} >= 0) AS {phase}_mean"
        for phase in PHASES
    )
    where = ""
    if scope.project_ids is not None:
        where += " AND r.project_id = ANY(CAST(:projects AS uuid[]))"
    if scope.repository_ids is not None:
        where += " AND p.repository_id = ANY(CAST(:repositories AS uuid[]))"
    sql = OLD_BREAKDOWN.format(buckets=_buckets_sql(scope),
                               bucket_of=_bucket_of(scope, "prs.merged_at"),
                               filters=where, aggregates=aggregates)
    async with engine.db.tenant_session(tenant_id) as session:
        rows = (await session.execute(text(sql), _params(scope))).mappings().all()
    return [
        {"pull_requests": int(row["pull_requests"] or 0),
         **{phase: (int(row[f"{phase}_n"] or 0), list(row[f"{phase}_quantiles"] or [None] * 3),
                    float(row[f"{phase}_mean"]) if row[f"{phase}_mean"] is not None else None)
            for phase in PHASES}}
        for row in rows
    ]


def numbers(point: dict[str, Any]) -> dict[str, Any]:
    """A breakdown point's numbers in :func:`old_breakdown`'s shape."""
    return {
        "pull_requests": point["pull_requests"],
        **{phase: (point[phase]["sample_size"],
                   [point[phase]["median"], point[phase]["p75"], point[phase]["p90"]],
                   point[phase]["mean"])
           for phase in PHASES},
    }


def approx(values: list[dict[str, Any]]) -> Any:
    """``values`` with every float compared to floating-point rounding."""
    def loose(value: Any) -> Any:
        if isinstance(value, float):
            return pytest.approx(value)
        if isinstance(value, list | tuple):
            return type(value)(loose(item) for item in value)
        if isinstance(value, dict):
            return {name: loose(item) for name, item in value.items()}
        return value

    return [loose(value) for value in values]


class History:
    """Random pull requests in two repositories, with commits, reviews, comments, people
    with two identities, and deployments shipping their merge commits."""

    def __init__(self, rows: Rows, seed: int) -> None:
        self.rows = rows
        self.rng = random.Random(seed)
        self.number = 0
        self.repositories: list[str] = []
        self.identities: list[tuple[str, str]] = []  # (identity, person)

    async def people(self) -> None:
        """Four people; the first two also have a second identity."""
        for index in range(4):
            person = await self.rows.add(model.people, display_name=f"person {index}")
            for alias in range(2 if index < 2 else 1):
                identity = await self.rows.add(model.person_identities, person_id=person,
                                               name=f"p{index}-{alias}")
                self.identities.append((identity, person))

    async def pull_requests(self, count: int, start: datetime, days: int) -> None:
        """``count`` pull requests opened over ``days`` from ``start``."""
        rng, rows = self.rng, self.rows
        for _ in range(count):
            repository = rng.choice(self.repositories)
            self.number += 1
            opened = start + timedelta(minutes=rng.randrange(days * 24 * 60))
            for _ in range(rng.randrange(0, 4)):
                authored = opened - timedelta(minutes=rng.randrange(-60, 3 * 24 * 60))
                await rows.commit(repository, authored.strftime("%Y-%m-%d %H:%M"),
                                  pull_request_number=self.number)
            merged = opened + timedelta(minutes=rng.randrange(10, 4 * 24 * 60))
            author = rng.choice(self.identities)[0]
            is_merged = rng.random() < 0.85
            merge_sha = None
            if is_merged:
                merge_sha = await rows.commit(repository, merged.strftime("%Y-%m-%d %H:%M"),
                                              is_merge=True)
                for environment in ("staging", "production"):
                    if rng.random() < 0.7:
                        shipped = merged + timedelta(minutes=rng.randrange(5, 3 * 24 * 60))
                        await rows.deployment(repository, "svc", shipped.strftime(
                            "%Y-%m-%d %H:%M"), environment=environment, shas=(merge_sha,))
            pull_request = await rows.add(
                model.pull_requests, repository_id=repository, number=self.number,
                state="merged" if is_merged else "open", author_identity_id=author,
                created_at_source=opened, merged_at=merged if is_merged else None,
                merge_commit_sha=merge_sha,
            )
            for _ in range(rng.randrange(0, 4)):
                await rows.add(model.reviews, pull_request_id=pull_request,
                               reviewer_identity_id=rng.choice(self.identities)[0],
                               state="commented", submitted_at=opened + timedelta(
                                   minutes=rng.randrange(-30, 5 * 24 * 60)))
            for _ in range(rng.randrange(0, 3)):
                await rows.add(model.review_comments, pull_request_id=pull_request,
                               author_identity_id=rng.choice(self.identities)[0],
                               created_at_source=opened + timedelta(
                                   minutes=rng.randrange(0, 5 * 24 * 60)))


QUERIES = [
    {},
    {"environment": "production"},
    {"repository": "alpha"},
    {"project": "beta"},
    {"environment": "production,staging"},
    {"environment": "staging"},
]


@pytest.mark.parametrize("seed", [5, 17])
async def test_the_breakdown_equals_its_old_definition(
    rows: Rows, dora_tenant: TenantFixture, engine: PulseEngine, seed: int
) -> None:
    history = History(rows, seed)
    await history.people()
    for name in ("alpha", "beta"):
        history.repositories.append(await rows.repository(name, await rows.project(name)))
    await history.pull_requests(60, START, DAYS - 4)
    await rows.refresh()
    window = {"start": START.date().isoformat(),
              "end": (START + timedelta(days=DAYS)).date().isoformat()}
    for interval in ("week", "all"):
        for query in QUERIES:
            body = await ok(dora_tenant, "lead-time/breakdown", interval=interval,
                            **window, **query)
            expected = await old_breakdown(engine, dora_tenant.id, {**window, **query},
                                           interval)
            assert [numbers(point) for point in body["points"]] == approx(expected), query
    whole = await ok(dora_tenant, "lead-time/breakdown", **window)
    assert all(whole["points"][0][phase]["sample_size"] for phase in PHASES), whole


async def test_an_incremental_refresh_keeps_the_breakdown_equal_to_a_full_one(
    rows: Rows, dora_tenant: TenantFixture, engine: PulseEngine
) -> None:
    history = History(rows, 23)
    await history.people()
    for name in ("alpha", "beta"):
        history.repositories.append(await rows.repository(name, await rows.project(name)))
    await history.pull_requests(30, START, 20)
    await rows.refresh()
    # a later load: new pull requests, and the earlier merge commits' first production
    # deployment (some never reached production before)
    since = START + timedelta(days=21)
    await history.pull_requests(20, since, 14)
    async with engine.db.tenant_session(dora_tenant.id) as session:
        waiting = (await session.execute(text(
            "SELECT p.repository_id::text, p.merge_commit_sha FROM pull_requests p "
            "WHERE p.merged_at < :since AND NOT EXISTS (SELECT 1 FROM dora_changes c "
            "WHERE c.sha = p.merge_commit_sha AND c.environment = 'production')"),
            {"since": since})).all()
    assert waiting
    for repository, sha in waiting:
        await rows.deployment(repository, "svc", "2024-03-26 12:00", shas=(sha,))
    await rows.refresh(since=datetime(2024, 3, 25, tzinfo=UTC))
    window = {"start": START.date().isoformat(),
              "end": (START + timedelta(days=DAYS)).date().isoformat()}
    incremental = await ok(dora_tenant, "lead-time/breakdown", interval="week", **window)
    await rows.refresh()
    full = await ok(dora_tenant, "lead-time/breakdown", interval="week", **window)
    assert incremental["points"] == full["points"]
    expected = await old_breakdown(engine, dora_tenant.id, window, "week")
    assert [numbers(point) for point in full["points"]] == approx(expected)
