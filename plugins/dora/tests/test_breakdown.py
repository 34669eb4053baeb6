"""The lead-time breakdown from DORA's pull-request facts equals its definition, computed
here in Python from the rows each random history wrote (per merged pull request: first
commit, first response by another person, merge, first deployment of the merge commit),
with filters, explicit environments, and after incremental refreshes."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dora_rows import PRODUCTION, Rows, percentile
from pulse_dora.queries import PHASES
from pulse_etl import model
from test_metrics import ok

from pulse_engine.testing import TenantFixture

START = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday
DAYS = 42


@dataclass
class PullRequest:
    """What a history wrote about one pull request."""

    repository: str
    author: str  # the person
    opened: datetime
    merged: datetime | None
    merge_sha: str | None
    commits: list[datetime] = field(default_factory=list)  # authored, not merges
    responses: list[tuple[datetime, str]] = field(default_factory=list)  # (time, person)


def seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    """``later - earlier`` in seconds; None when either is unknown."""
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds()


def summary(durations: list[float | None]) -> tuple[int, list[float | None], float | None]:
    """(count, [median, p75, p90], mean) of the known, non-negative durations."""
    kept = [value for value in durations if value is not None and value >= 0]
    if not kept:
        return 0, [None, None, None], None
    return (len(kept), [percentile(kept, fraction) for fraction in (0.5, 0.75, 0.9)],
            sum(kept) / len(kept))


def numbers(point: dict[str, Any]) -> dict[str, Any]:
    """A breakdown point's numbers in :meth:`History.expected`'s shape."""
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
        self.names: dict[str, str] = {}  # repository -> its name (and its project's)
        self.identities: list[tuple[str, str]] = []  # (identity, person)
        self.pulls: list[PullRequest] = []
        self.shipped: list[tuple[str, str, str, datetime]] = []  # repo, sha, env, finished

    async def repository(self, name: str) -> None:
        """A repository in a project of the same name."""
        repository = await self.rows.repository(name, await self.rows.project(name))
        self.repositories.append(repository)
        self.names[repository] = name

    async def ship(self, repository: str, sha: str, finished: datetime,
                   environment: str = "production") -> None:
        """A successful deployment of ``sha`` finished at ``finished``."""
        await self.rows.deployment(repository, "svc", finished.strftime("%Y-%m-%d %H:%M"),
                                   environment=environment, shas=(sha,))
        self.shipped.append((repository, sha, environment, finished))

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
            commits = []
            for _ in range(rng.randrange(0, 4)):
                authored = opened - timedelta(minutes=rng.randrange(-60, 3 * 24 * 60))
                await rows.commit(repository, authored.strftime("%Y-%m-%d %H:%M"),
                                  pull_request_number=self.number)
                commits.append(authored)
            merged = opened + timedelta(minutes=rng.randrange(10, 4 * 24 * 60))
            author, author_person = rng.choice(self.identities)
            is_merged = rng.random() < 0.85
            merge_sha = None
            if is_merged:
                merge_sha = await rows.commit(repository, merged.strftime("%Y-%m-%d %H:%M"),
                                              is_merge=True)
                for environment in ("staging", "production"):
                    if rng.random() < 0.7:
                        shipped = merged + timedelta(minutes=rng.randrange(5, 3 * 24 * 60))
                        await self.ship(repository, merge_sha, shipped, environment)
            pull_request = await rows.add(
                model.pull_requests, repository_id=repository, number=self.number,
                state="merged" if is_merged else "open", author_identity_id=author,
                created_at_source=opened, merged_at=merged if is_merged else None,
                merge_commit_sha=merge_sha,
            )
            written = PullRequest(repository, author_person, opened,
                                  merged if is_merged else None, merge_sha, commits)
            self.pulls.append(written)
            for _ in range(rng.randrange(0, 4)):
                reviewer, person = rng.choice(self.identities)
                submitted = opened + timedelta(minutes=rng.randrange(-30, 5 * 24 * 60))
                await rows.add(model.reviews, pull_request_id=pull_request,
                               reviewer_identity_id=reviewer, state="commented",
                               submitted_at=submitted)
                written.responses.append((submitted, person))
            for _ in range(rng.randrange(0, 3)):
                commenter, person = rng.choice(self.identities)
                commented = opened + timedelta(minutes=rng.randrange(0, 5 * 24 * 60))
                await rows.add(model.review_comments, pull_request_id=pull_request,
                               author_identity_id=commenter, created_at_source=commented)
                written.responses.append((commented, person))

    def expected(self, query: dict[str, str], interval: str) -> list[dict[str, Any]]:
        """The breakdown of the window ``START``..``START + DAYS`` per its definition:
        per bucket, the merged pull requests and, per phase, the count, the (median, p75,
        p90) and the mean of the non-negative durations."""
        environments = set(query["environment"].split(",")) if "environment" in query \
            else set(PRODUCTION)
        wanted = query.get("repository") or query.get("project")
        length = timedelta(days=7) if interval == "week" else timedelta(days=DAYS)
        points = []
        bucket = START
        while bucket < START + timedelta(days=DAYS):
            phases: dict[str, list[float | None]] = {phase: [] for phase in PHASES}
            merged = [pull for pull in self.pulls if pull.merged is not None
                      and bucket <= pull.merged < bucket + length
                      and wanted in (None, self.names[pull.repository])]
            for pull in merged:
                first_commit = min(pull.commits, default=None)
                first_response = min((at for at, person in pull.responses
                                      if person != pull.author), default=None)
                deployed = min((finished for repository, sha, environment, finished
                                in self.shipped if repository == pull.repository
                                and sha == pull.merge_sha and environment in environments),
                               default=None)
                phases["coding"].append(seconds(pull.opened, first_commit))
                phases["pickup"].append(seconds(first_response, pull.opened))
                phases["review"].append(seconds(pull.merged, first_response))
                phases["deploy"].append(seconds(deployed, pull.merged))
            points.append({"pull_requests": len(merged),
                           **{phase: summary(values) for phase, values in phases.items()}})
            bucket += length
        return points


QUERIES = [
    {},
    {"environment": "production"},
    {"repository": "alpha"},
    {"project": "beta"},
    {"environment": "production,staging"},
    {"environment": "staging"},
]


@pytest.mark.parametrize("seed", [5, 17])
async def test_the_breakdown_equals_its_definition_computed_from_the_rows(
    rows: Rows, dora_tenant: TenantFixture, seed: int
) -> None:
    history = History(rows, seed)
    await history.people()
    for name in ("alpha", "beta"):
        await history.repository(name)
    await history.pull_requests(60, START, DAYS - 4)
    await rows.refresh()
    window = {"start": START.date().isoformat(),
              "end": (START + timedelta(days=DAYS)).date().isoformat()}
    for interval in ("week", "all"):
        for query in QUERIES:
            body = await ok(dora_tenant, "lead-time/breakdown", interval=interval,
                            **window, **query)
            expected = history.expected(query, interval)
            assert [numbers(point) for point in body["points"]] == approx(expected), query
    whole = await ok(dora_tenant, "lead-time/breakdown", **window)
    assert all(whole["points"][0][phase]["sample_size"] for phase in PHASES), whole


async def test_an_incremental_refresh_keeps_the_breakdown_equal_to_a_full_one(
    rows: Rows, dora_tenant: TenantFixture
) -> None:
    history = History(rows, 23)
    await history.people()
    for name in ("alpha", "beta"):
        await history.repository(name)
    await history.pull_requests(30, START, 20)
    await rows.refresh()
    # a later load: new pull requests, and the earlier merge commits' first production
    # deployment (some never reached production before)
    since = START + timedelta(days=21)
    await history.pull_requests(20, since, 14)
    in_production = {(repository, sha) for repository, sha, environment, _ in history.shipped
                     if environment == "production"}
    waiting = [(pull.repository, pull.merge_sha) for pull in history.pulls
               if pull.merged is not None and pull.merged < since and pull.merge_sha
               and (pull.repository, pull.merge_sha) not in in_production]
    assert waiting
    for repository, sha in waiting:
        await history.ship(repository, sha, datetime(2024, 3, 26, 12, tzinfo=UTC))
    await rows.refresh(since=datetime(2024, 3, 25, tzinfo=UTC))
    window = {"start": START.date().isoformat(),
              "end": (START + timedelta(days=DAYS)).date().isoformat()}
    incremental = await ok(dora_tenant, "lead-time/breakdown", interval="week", **window)
    await rows.refresh()
    full = await ok(dora_tenant, "lead-time/breakdown", interval="week", **window)
    assert incremental["points"] == full["points"]
    assert [numbers(point) for point in full["points"]] == approx(history.expected({}, "week"))
