"""The simulation behind the demo data: a year of pull requests, commits, deployments and
incidents of the demo organisation (:mod:`pulse_etl.demo.plan`)."""

from __future__ import annotations

import bisect
import hashlib
import heapq
import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pulse_etl.connectors.common import identity_rows, repository_row
from pulse_etl.demo.plan import (
    DEMO_SOURCE,
    EXTERNAL_SERVICES,
    FIRST_NAMES,
    INCIDENT_TITLES,
    LAST_NAMES,
    NOUNS,
    PROJECTS,
    REPOSITORIES,
    TEAMS,
    TIME_ZONES,
    VERBS,
    RepositoryPlan,
)
from pulse_etl.loader import Row
from pulse_etl.model import stable_id


@dataclass
class Person:
    index: int
    login: str
    name: str
    email: str
    team: str
    tz: int
    identity_id: str = ""


@dataclass
class PullRequest:
    repo: RepositoryPlan
    author: Person
    opened_at: datetime
    first_commit_at: datetime
    commit_times: list[datetime]
    reviews: list[tuple[Person, str, datetime]]
    merged_at: datetime | None
    closed_at: datetime | None
    squash: bool
    title: str
    head_ref: str
    incident: Incident | None = None
    number: int = 0
    commit_shas: list[str] = field(default_factory=list)
    merge_sha: str | None = None
    size: tuple[int, int, int] = (0, 0, 0)


@dataclass
class Incident:
    service: str
    repository_id: str | None
    created_at: datetime
    resolved_at: datetime | None
    severity: str
    title: str
    deployment_ref: str | None
    key: str = ""


@dataclass
class Commit:
    sha: str
    parents: list[str]
    author: Person
    committer: Person
    authored_at: datetime
    committed_at: datetime
    kind: str  # "work", "merge", "squash", "direct", "initial"
    pr: PullRequest | None
    size: tuple[int, int, int]


class Simulation:
    """A simulated year of activity; every random draw comes from one seeded generator.

    :meth:`organisation` writes the organisation's rows (projects, people, teams,
    repositories) into :attr:`rows`; :meth:`repository` and :meth:`background_incidents`
    simulate pull requests, commits, deployments and incidents, which
    :mod:`pulse_etl.demo.rows` turns into rows.
    """

    def __init__(self, seed: int, end: datetime, days: int) -> None:
        """Simulate ``days`` days ending at ``end`` from ``seed``."""
        self.seed = seed
        self.rng = random.Random(seed)
        self.end = end
        self.start = end - timedelta(days=days)
        self.days = days
        self.people: list[Person] = []
        self.rows: dict[str, list[Row]] = {}
        self.incidents: list[Incident] = []
        self.pull_requests: list[PullRequest] = []
        self.commits: dict[str, list[Commit]] = {}
        self.deployments: list[Row] = []
        self._sequence = 0

    # --- helpers ---------------------------------------------------------------------

    def hours(self, median: float, spread: float = 0.8, low: float = 0.05,
               high: float = 240.0) -> timedelta:
        """A log-normal duration in hours, clamped."""
        value = median * math.exp(self.rng.gauss(0.0, spread))
        return timedelta(hours=min(high, max(low, value)))

    def _poisson(self, mean: float) -> int:
        limit, count, product = math.exp(-mean), 0, self.rng.random()
        while product > limit:
            count += 1
            product *= self.rng.random()
        return count

    def _work_time(self, day: datetime, person: Person) -> datetime:
        """A moment of ``day`` within the person's working hours (9:00 to 18:00 local)."""
        local = timedelta(hours=self.rng.uniform(9.0, 18.0))
        return day + local - timedelta(minutes=person.tz)

    def _sha(self, repo: str) -> str:
        self._sequence += 1
        return hashlib.sha1(f"{self.seed}/{repo}/{self._sequence}".encode()).hexdigest()

    def team(self, team: str) -> list[Person]:
        return [p for p in self.people if p.team == team]

    # --- organisation ----------------------------------------------------------------

    def organisation(self) -> None:
        projects = self.rows.setdefault("projects", [])
        for key, name in PROJECTS:
            projects.append({"id": stable_id("projects", DEMO_SOURCE, key), "source": DEMO_SOURCE,
                             "external_id": key, "key": key, "name": name})
        for index, (first, last) in enumerate(zip(FIRST_NAMES, LAST_NAMES, strict=True)):
            login = f"{first}.{last}".lower()
            self.people.append(Person(
                index=index, login=login, name=f"{first} {last}",
                email=f"{login}@demo.pulse.local", team=TEAMS[index % len(TEAMS)][0],
                tz=TIME_ZONES[index % len(TIME_ZONES)],
            ))
        people, identities = self.rows.setdefault("people", []), []
        for person in self.people:
            identity_id, identity, person_row = identity_rows(
                DEMO_SOURCE, person.login, email=person.email, name=person.name,
                username=person.login,
            )
            person.identity_id = identity_id
            identities.append(identity)
            people.append(person_row)
        self.rows["person_identities"] = identities
        teams, memberships = [], []
        for key, name, project in TEAMS:
            team_id = stable_id("teams", DEMO_SOURCE, key)
            teams.append({"id": team_id, "source": DEMO_SOURCE, "external_id": key, "name": name,
                          "project_id": stable_id("projects", DEMO_SOURCE, project)})
            for position, person in enumerate(self.team(key)):
                memberships.append({
                    "team_id": team_id,
                    "person_id": identities[person.index]["person_id"],
                    "role": "lead" if position == 0 else "member",
                })
        self.rows["teams"] = teams
        self.rows["team_memberships"] = memberships
        self.rows["repositories"] = [
            {**repository_row(DEMO_SOURCE, plan.name, name=plan.name,
                              url=f"https://code.demo.pulse.local/{plan.name}",
                              default_branch="main"),
             "project_id": stable_id("projects", DEMO_SOURCE, plan.project)}
            for plan in REPOSITORIES
        ]

    # --- pull requests ---------------------------------------------------------------

    def _pull_request(self, plan: RepositoryPlan, author: Person, opened_at: datetime,
                      *, hotfix: Incident | None = None) -> PullRequest:
        rng = self.rng
        reviewers = [p for p in self.team(plan.team) if p is not author]
        if hotfix is not None:
            first_commit = opened_at - self.hours(0.4, 0.5, 0.05, 2.0)
            pickup = self.hours(0.25, 0.5, 0.03, 1.0)
            title = "Hotfix"
            head_ref = "hotfix/incident"
        else:
            first_commit = opened_at - self.hours(8.0, 1.0, 0.2, 120.0)
            pickup = self.hours(3.0, 1.0, 0.1, 72.0)
            title = f"{rng.choice(VERBS)} {rng.choice(NOUNS)}"
            head_ref = f"feature/{title.lower().replace(' ', '-')}"
        count = 1 if hotfix is not None else rng.choice((1, 1, 2, 2, 3, 3, 4, 5))
        span = (opened_at - first_commit).total_seconds()
        times = sorted(first_commit + timedelta(seconds=span * rng.random())
                       for _ in range(count - 1))
        times.insert(0, first_commit)
        reviews: list[tuple[Person, str, datetime]] = []
        moment = opened_at + pickup
        if rng.random() < 0.2 and hotfix is None:
            reviews.append((rng.choice(reviewers), "CHANGES_REQUESTED", moment))
            fix = moment + self.hours(2.0, 0.8, 0.1, 48.0)
            times.append(fix)
            moment = fix + self.hours(1.0, 0.8, 0.05, 24.0)
        if rng.random() < 0.3 and hotfix is None:
            reviews.append((rng.choice(reviewers), "COMMENTED", moment))
            moment += self.hours(0.5, 0.8, 0.05, 12.0)
        reviews.append((rng.choice(reviewers), "APPROVED", moment))
        merged_at: datetime | None = moment + self.hours(0.5, 1.0, 0.02, 24.0)
        closed_at = merged_at
        if hotfix is None and rng.random() < 0.06:
            merged_at = None
            closed_at = moment + self.hours(24.0, 1.0, 0.5, 240.0)
        pull_request = PullRequest(
            repo=plan, author=author, opened_at=opened_at, first_commit_at=first_commit,
            commit_times=times, reviews=reviews, merged_at=merged_at, closed_at=closed_at,
            squash=hotfix is not None or rng.random() < 0.3, title=title, head_ref=head_ref,
            incident=hotfix,
            size=(rng.randint(1, 400), rng.randint(0, 200), rng.randint(1, 12)),
        )
        self.pull_requests.append(pull_request)
        return pull_request

    # --- one repository's year -------------------------------------------------------

    def repository(self, plan: RepositoryPlan) -> None:
        rng = self.rng
        repository_id = stable_id("repositories", DEMO_SOURCE, plan.name)
        team = self.team(plan.team)
        events: list[tuple[datetime, int, str, Any]] = []

        def push(moment: datetime, kind: str, payload: Any) -> None:
            self._sequence += 1
            heapq.heappush(events, (moment, self._sequence, kind, payload))

        for offset in range(self.days):
            day = self.start + timedelta(days=offset)
            weekday = day.weekday()
            mean = plan.prs_per_week / 5 if weekday < 5 else plan.prs_per_week / 60
            for _ in range(self._poisson(mean)):
                author = rng.choice(team)
                pull_request = self._pull_request(plan, author, self._work_time(day, author))
                if pull_request.merged_at is not None:
                    push(pull_request.merged_at, "merge", pull_request)
            week = offset // 7
            if weekday in plan.deploy_weekdays and week % plan.every_weeks == 0:
                for hour in plan.deploy_hours:
                    jitter = timedelta(minutes=rng.uniform(-40, 40))
                    push(day + timedelta(hours=hour) + jitter, "deploy", None)
            if rng.random() < 1 / 45:
                push(self._work_time(day, rng.choice(team)), "direct", rng.choice(team))

        initial = self._sha(plan.name)
        founder = team[0]
        commits = [Commit(initial, [], founder, founder, self.start - timedelta(days=30),
                           self.start - timedelta(days=30), "initial", None, (120, 0, 8))]
        main_times = [commits[0].committed_at]
        main_shas = [initial]
        deployed: dict[str, str] = {}
        numbers = {"production": 0, "staging": 0}

        def deployment(environment: str, started: datetime, result: str, sha: str,
                       ref: str, name: str) -> Row:
            numbers[environment] += 1
            external = f"{plan.name}/{environment}/{numbers[environment]}"
            finished = started + self.hours(0.15, 0.4, 0.03, 1.0)
            row = {
                "id": stable_id("deployments", DEMO_SOURCE, external), "source": DEMO_SOURCE,
                "external_id": external, "source_updated_at": finished,
                "repository_id": repository_id, "service": plan.name,
                "environment": environment, "result": result, "started_at": started,
                "finished_at": finished, "sha": sha, "ref": ref, "name": name,
            }
            self.deployments.append(row)
            return row

        while events:
            moment, _sequence, kind, payload = heapq.heappop(events)
            if moment >= self.end:
                break
            tip = main_shas[-1]
            if kind == "merge":
                merged: PullRequest = payload
                base = main_shas[max(0, bisect.bisect_right(main_times,
                                                            merged.first_commit_at) - 1)]
                parent = base
                for authored in merged.commit_times:
                    sha = self._sha(plan.name)
                    commit_size = (rng.randint(1, 150), rng.randint(0, 80), rng.randint(1, 6))
                    commits.append(Commit(sha, [parent], merged.author,
                                           merged.author, authored, authored, "work",
                                           merged, commit_size))
                    merged.commit_shas.append(sha)
                    parent = sha
                merger = merged.reviews[-1][0]
                merge_sha = self._sha(plan.name)
                if merged.squash:
                    commits.append(Commit(merge_sha, [tip], merged.author, merger,
                                           merged.first_commit_at, moment, "squash",
                                           merged, merged.size))
                else:
                    commits.append(Commit(merge_sha, [tip, parent], merger, merger, moment,
                                           moment, "merge", merged, (0, 0, 0)))
                merged.merge_sha = merge_sha
                main_times.append(moment)
                main_shas.append(merge_sha)
            elif kind == "direct":
                person: Person = payload
                sha = self._sha(plan.name)
                commits.append(Commit(sha, [tip], person, person, moment, moment, "direct",
                                       None, (rng.randint(1, 20), rng.randint(0, 10), 1)))
                main_times.append(moment)
                main_shas.append(sha)
            elif kind == "deploy":
                ref, name = payload or ("main", f"deploy {plan.name}")
                if payload is None and deployed.get("production") == tip:
                    continue
                deployment("staging", moment - timedelta(minutes=rng.uniform(20, 90)),
                           "success", tip, ref, name)
                failed = rng.random() < plan.deploy_failure
                row = deployment("production", moment, "failure" if failed else "success",
                                 tip, ref, name)
                if failed:
                    push(moment + self.hours(1.0, 0.5, 0.2, 6.0), "deploy", payload)
                    continue
                deployed["production"] = tip
                if payload is None and rng.random() < plan.change_failure:
                    self._incident_after(plan, repository_id, row, push)
        self.commits[plan.name] = commits

    def _incident_after(self, plan: RepositoryPlan, repository_id: str, deployment: Row,
                        push: Any) -> None:
        """An incident caused by ``deployment``; half of them are fixed by a hotfix."""
        rng = self.rng
        created = deployment["finished_at"] + self.hours(3.0, 1.2, 0.1, 60.0)
        incident = Incident(
            service=plan.name, repository_id=repository_id, created_at=created,
            resolved_at=None, severity=rng.choice(("sev1", "sev2", "sev2", "sev3", "sev3")),
            title=rng.choice(INCIDENT_TITLES),
            deployment_ref=deployment["external_id"] if rng.random() < 0.3 else None,
        )
        self.incidents.append(incident)
        if rng.random() < 0.5:
            author = rng.choice(self.team(plan.team))
            opened = created + self.hours(0.5, 0.5, 0.1, 3.0)
            hotfix = self._pull_request(plan, author, opened, hotfix=incident)
            assert hotfix.merged_at is not None
            push(hotfix.merged_at, "merge", hotfix)
            deploy_at = hotfix.merged_at + self.hours(0.3, 0.5, 0.05, 2.0)
            push(deploy_at, "deploy", ("hotfix/incident", "hotfix"))
            incident.resolved_at = deploy_at + self.hours(0.4, 0.5, 0.05, 3.0)
        else:
            incident.resolved_at = created + self.hours(2.0, 1.2, 0.1, 96.0)

    def background_incidents(self) -> None:
        """Incidents no deployment caused: external services, and a few of our own."""
        rng = self.rng
        services = [plan.name for plan in REPOSITORIES]
        for offset in range(self.days):
            if offset % 30 == 15:  # an outage of a provider every month: never linked
                service = EXTERNAL_SERVICES[offset // 30 % len(EXTERNAL_SERVICES)]
            elif rng.random() < 0.04:
                service = rng.choice(services)
            else:
                continue
            created = self.start + timedelta(days=offset, hours=rng.uniform(0, 24))
            repository_id = (stable_id("repositories", DEMO_SOURCE, service)
                             if service not in EXTERNAL_SERVICES else None)
            self.incidents.append(Incident(
                service=service, repository_id=repository_id, created_at=created,
                resolved_at=created + self.hours(1.5, 1.0, 0.1, 72.0),
                severity=rng.choice(("sev2", "sev3", "sev3")), title=rng.choice(INCIDENT_TITLES),
                deployment_ref=None,
            ))
        self.incidents.append(Incident(  # still open at the end
            service=EXTERNAL_SERVICES[0], repository_id=None,
            created_at=self.end - timedelta(hours=2), resolved_at=None, severity="sev2",
            title=rng.choice(INCIDENT_TITLES), deployment_ref=None,
        ))
