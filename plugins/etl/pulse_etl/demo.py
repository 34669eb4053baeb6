"""A realistic, deterministic demo data set for the unified model (``pulse demo``).

:func:`generate` builds a year of engineering activity from a seed: three projects, four
teams, six repositories (one service each) and 28 people; pull requests with their
commits (merge commits and squash merges, a commit graph with parents), reviews and review
comments; staging and production deployments with the commits each shipped, on per-service
cadences (failures retried, hotfix deployments after incidents); incidents, most following
a production deployment (some naming it explicitly), some of services nothing deploys (so
never linked); two-week sprints per project with stories, bugs and tasks and their status histories.

The same seed and end time give the same rows (ids are :func:`~pulse_etl.model.stable_id`
of natural keys, times are offsets from ``end``). :func:`load_demo` writes them through
the loader in one transaction (its COPY paths), then links incidents as after any load,
so a re-run with the same seed changes nothing. Afterwards
the facts of metric plugins that follow loads through a refresh queue (``dora.refresh``)
are recomputed at once, in process.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import math
import random
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from pulse_engine import create_tenant, create_user, get_tenant
from pulse_etl import derive, model
from pulse_etl.connectors.common import identity_rows, repository_row
from pulse_etl.loader import Row, Stats
from pulse_etl.model import stable_id

if TYPE_CHECKING:
    from pulse_engine import Engine

#: The ``source`` of every demo row.
DEMO_SOURCE = "demo"
#: Name of the tenant ``pulse demo`` creates.
DEMO_TENANT_NAME = "Demo"
#: Login of the demo tenant's admin user.
DEMO_ADMIN_EMAIL = "admin@demo.pulse.local"
#: Seed used when none is given.
DEFAULT_SEED = 42
#: Days of history.
DEFAULT_DAYS = 365

PROJECTS: tuple[tuple[str, str], ...] = (
    ("PAY", "Payments"), ("SHOP", "Storefront"), ("PLAT", "Platform"),
)
TEAMS: tuple[tuple[str, str, str], ...] = (
    ("payments-core", "Payments Core", "PAY"),
    ("checkout", "Checkout", "SHOP"),
    ("catalog", "Catalog", "SHOP"),
    ("platform", "Platform", "PLAT"),
)
FIRST_NAMES = (
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret",
    "Dennis", "Radia", "Linus", "Katherine", "John", "Hedy", "Tim", "Shafi", "Niklaus",
    "Sophie", "Bjarne", "Anita", "Guido", "Karen", "Leslie", "Mary", "Yukihiro", "Joan", "Rob",
)
LAST_NAMES = (
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
    "Hamilton", "Ritchie", "Perlman", "Torvalds", "Johnson", "Backus", "Lamarr", "Berners",
    "Goldwasser", "Wirth", "Wilson", "Stroustrup", "Borg", "Rossum", "Jones", "Lamport",
    "Keller", "Matsumoto", "Clarke", "Pike",
)
#: UTC offsets (minutes) people work in.
TIME_ZONES = (0, 60, 120, -300, 330, 60, -480)
VERBS = ("Add", "Fix", "Refactor", "Speed up", "Remove", "Document", "Harden", "Simplify")
NOUNS = (
    "retry of payment capture", "invoice rounding", "cart totals", "search ranking",
    "login throttling", "webhook signature check", "price cache", "order export",
    "inventory sync", "feature flags", "audit logging", "connection pooling", "email templates",
    "rate limiter", "currency conversion", "session refresh", "image resizing", "health checks",
)
INCIDENT_TITLES = (
    "Elevated 5xx rate", "Checkout latency above SLO", "Payment captures failing",
    "Queue backlog growing", "Login errors for some users", "Stale prices shown",
    "Memory exhaustion on workers", "Webhook deliveries delayed",
)
FILES = ("src/api.py", "src/models.py", "src/service.py", "tests/test_api.py", "README.md",
         "src/db.py", "web/app.tsx", "deploy/values.yaml")
ITEM_STATUSES = (("To Do", "todo"), ("In Progress", "in_progress"),
                 ("In Review", "in_progress"), ("Done", "done"))


@dataclass(frozen=True)
class RepositoryPlan:
    """How busy a repository is and how its service ships.

    :param prs_per_week: mean pull requests opened per week.
    :param deploy_weekdays: weekdays (Monday = 0) with production deployment slots.
    :param deploy_hours: UTC hours of the slots on those days.
    :param every_weeks: deploy only every n-th week.
    :param change_failure: chance a production deployment causes an incident.
    :param deploy_failure: chance a deployment fails (and is retried).
    """

    name: str
    project: str
    team: str
    prs_per_week: float
    deploy_weekdays: tuple[int, ...]
    deploy_hours: tuple[float, ...]
    every_weeks: int
    change_failure: float
    deploy_failure: float


REPOSITORIES: tuple[RepositoryPlan, ...] = (
    RepositoryPlan("payments-api", "PAY", "payments-core", 14, (0, 1, 2, 3, 4), (10.5, 15.0), 1,
                   0.04, 0.03),
    RepositoryPlan("payments-worker", "PAY", "payments-core", 6, (0, 1, 2, 3, 4), (14.0,), 1,
                   0.05, 0.04),
    RepositoryPlan("storefront-web", "SHOP", "checkout", 12, (0, 2, 4), (11.0,), 1, 0.08, 0.05),
    RepositoryPlan("checkout-service", "SHOP", "checkout", 8, (1, 3), (13.0,), 1, 0.12, 0.06),
    RepositoryPlan("catalog-service", "SHOP", "catalog", 6, (2,), (12.0,), 1, 0.15, 0.08),
    RepositoryPlan("platform-infra", "PLAT", "platform", 4, (3,), (9.5,), 2, 0.2, 0.1),
)
#: Services nothing in the demo deploys: their incidents are never linked to a deployment.
EXTERNAL_SERVICES = ("cdn", "payments-gateway", "dns")


@dataclass
class _Person:
    index: int
    login: str
    name: str
    email: str
    team: str
    tz: int
    identity_id: str = ""


@dataclass
class _PullRequest:
    repo: RepositoryPlan
    author: _Person
    opened_at: datetime
    first_commit_at: datetime
    commit_times: list[datetime]
    reviews: list[tuple[_Person, str, datetime]]
    merged_at: datetime | None
    closed_at: datetime | None
    squash: bool
    title: str
    head_ref: str
    incident: _Incident | None = None
    number: int = 0
    commit_shas: list[str] = field(default_factory=list)
    merge_sha: str | None = None
    size: tuple[int, int, int] = (0, 0, 0)


@dataclass
class _Incident:
    service: str
    repository_id: str | None
    created_at: datetime
    resolved_at: datetime | None
    severity: str
    title: str
    deployment_ref: str | None
    key: str = ""


@dataclass
class _Commit:
    sha: str
    parents: list[str]
    author: _Person
    committer: _Person
    authored_at: datetime
    committed_at: datetime
    kind: str  # "work", "merge", "squash", "direct", "initial"
    pr: _PullRequest | None
    size: tuple[int, int, int]


class _Generator:
    """Builds the demo rows; every random draw comes from one seeded generator."""

    def __init__(self, seed: int, end: datetime, days: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.end = end
        self.start = end - timedelta(days=days)
        self.days = days
        self.people: list[_Person] = []
        self.rows: dict[str, list[Row]] = {}
        self.incidents: list[_Incident] = []
        self.pull_requests: list[_PullRequest] = []
        self.commits: dict[str, list[_Commit]] = {}
        self.deployments: list[Row] = []
        self._sequence = 0

    # --- helpers ---------------------------------------------------------------------

    def _hours(self, median: float, spread: float = 0.8, low: float = 0.05,
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

    def _work_time(self, day: datetime, person: _Person) -> datetime:
        """A moment of ``day`` within the person's working hours (9:00 to 18:00 local)."""
        local = timedelta(hours=self.rng.uniform(9.0, 18.0))
        return day + local - timedelta(minutes=person.tz)

    def _sha(self, repo: str) -> str:
        self._sequence += 1
        return hashlib.sha1(f"{self.seed}/{repo}/{self._sequence}".encode()).hexdigest()

    def _team(self, team: str) -> list[_Person]:
        return [p for p in self.people if p.team == team]

    # --- organisation ----------------------------------------------------------------

    def organisation(self) -> None:
        projects = self.rows.setdefault("projects", [])
        for key, name in PROJECTS:
            projects.append({"id": stable_id("projects", DEMO_SOURCE, key), "source": DEMO_SOURCE,
                             "external_id": key, "key": key, "name": name})
        for index, (first, last) in enumerate(zip(FIRST_NAMES, LAST_NAMES, strict=True)):
            login = f"{first}.{last}".lower()
            self.people.append(_Person(
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
            for position, person in enumerate(self._team(key)):
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

    def _pull_request(self, plan: RepositoryPlan, author: _Person, opened_at: datetime,
                      *, hotfix: _Incident | None = None) -> _PullRequest:
        rng = self.rng
        reviewers = [p for p in self._team(plan.team) if p is not author]
        if hotfix is not None:
            first_commit = opened_at - self._hours(0.4, 0.5, 0.05, 2.0)
            pickup = self._hours(0.25, 0.5, 0.03, 1.0)
            title = "Hotfix"
            head_ref = "hotfix/incident"
        else:
            first_commit = opened_at - self._hours(8.0, 1.0, 0.2, 120.0)
            pickup = self._hours(3.0, 1.0, 0.1, 72.0)
            title = f"{rng.choice(VERBS)} {rng.choice(NOUNS)}"
            head_ref = f"feature/{title.lower().replace(' ', '-')}"
        count = 1 if hotfix is not None else rng.choice((1, 1, 2, 2, 3, 3, 4, 5))
        span = (opened_at - first_commit).total_seconds()
        times = sorted(first_commit + timedelta(seconds=span * rng.random())
                       for _ in range(count - 1))
        times.insert(0, first_commit)
        reviews: list[tuple[_Person, str, datetime]] = []
        moment = opened_at + pickup
        if rng.random() < 0.2 and hotfix is None:
            reviews.append((rng.choice(reviewers), "CHANGES_REQUESTED", moment))
            fix = moment + self._hours(2.0, 0.8, 0.1, 48.0)
            times.append(fix)
            moment = fix + self._hours(1.0, 0.8, 0.05, 24.0)
        if rng.random() < 0.3 and hotfix is None:
            reviews.append((rng.choice(reviewers), "COMMENTED", moment))
            moment += self._hours(0.5, 0.8, 0.05, 12.0)
        reviews.append((rng.choice(reviewers), "APPROVED", moment))
        merged_at: datetime | None = moment + self._hours(0.5, 1.0, 0.02, 24.0)
        closed_at = merged_at
        if hotfix is None and rng.random() < 0.06:
            merged_at = None
            closed_at = moment + self._hours(24.0, 1.0, 0.5, 240.0)
        pull_request = _PullRequest(
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
        team = self._team(plan.team)
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
        commits = [_Commit(initial, [], founder, founder, self.start - timedelta(days=30),
                           self.start - timedelta(days=30), "initial", None, (120, 0, 8))]
        main_times = [commits[0].committed_at]
        main_shas = [initial]
        deployed: dict[str, str] = {}
        numbers = {"production": 0, "staging": 0}

        def deployment(environment: str, started: datetime, result: str, sha: str,
                       ref: str, name: str) -> Row:
            numbers[environment] += 1
            external = f"{plan.name}/{environment}/{numbers[environment]}"
            finished = started + self._hours(0.15, 0.4, 0.03, 1.0)
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
                merged: _PullRequest = payload
                base = main_shas[max(0, bisect.bisect_right(main_times,
                                                            merged.first_commit_at) - 1)]
                parent = base
                for authored in merged.commit_times:
                    sha = self._sha(plan.name)
                    commit_size = (rng.randint(1, 150), rng.randint(0, 80), rng.randint(1, 6))
                    commits.append(_Commit(sha, [parent], merged.author,
                                           merged.author, authored, authored, "work",
                                           merged, commit_size))
                    merged.commit_shas.append(sha)
                    parent = sha
                merger = merged.reviews[-1][0]
                merge_sha = self._sha(plan.name)
                if merged.squash:
                    commits.append(_Commit(merge_sha, [tip], merged.author, merger,
                                           merged.first_commit_at, moment, "squash",
                                           merged, merged.size))
                else:
                    commits.append(_Commit(merge_sha, [tip, parent], merger, merger, moment,
                                           moment, "merge", merged, (0, 0, 0)))
                merged.merge_sha = merge_sha
                main_times.append(moment)
                main_shas.append(merge_sha)
            elif kind == "direct":
                person: _Person = payload
                sha = self._sha(plan.name)
                commits.append(_Commit(sha, [tip], person, person, moment, moment, "direct",
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
                    push(moment + self._hours(1.0, 0.5, 0.2, 6.0), "deploy", payload)
                    continue
                deployed["production"] = tip
                if payload is None and rng.random() < plan.change_failure:
                    self._incident_after(plan, repository_id, row, push)
        self.commits[plan.name] = commits

    def _incident_after(self, plan: RepositoryPlan, repository_id: str, deployment: Row,
                        push: Any) -> None:
        """An incident caused by ``deployment``; half of them are fixed by a hotfix."""
        rng = self.rng
        created = deployment["finished_at"] + self._hours(3.0, 1.2, 0.1, 60.0)
        incident = _Incident(
            service=plan.name, repository_id=repository_id, created_at=created,
            resolved_at=None, severity=rng.choice(("sev1", "sev2", "sev2", "sev3", "sev3")),
            title=rng.choice(INCIDENT_TITLES),
            deployment_ref=deployment["external_id"] if rng.random() < 0.3 else None,
        )
        self.incidents.append(incident)
        if rng.random() < 0.5:
            author = rng.choice(self._team(plan.team))
            opened = created + self._hours(0.5, 0.5, 0.1, 3.0)
            hotfix = self._pull_request(plan, author, opened, hotfix=incident)
            assert hotfix.merged_at is not None
            push(hotfix.merged_at, "merge", hotfix)
            deploy_at = hotfix.merged_at + self._hours(0.3, 0.5, 0.05, 2.0)
            push(deploy_at, "deploy", ("hotfix/incident", "hotfix"))
            incident.resolved_at = deploy_at + self._hours(0.4, 0.5, 0.05, 3.0)
        else:
            incident.resolved_at = created + self._hours(2.0, 1.2, 0.1, 96.0)

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
            self.incidents.append(_Incident(
                service=service, repository_id=repository_id, created_at=created,
                resolved_at=created + self._hours(1.5, 1.0, 0.1, 72.0),
                severity=rng.choice(("sev2", "sev3", "sev3")), title=rng.choice(INCIDENT_TITLES),
                deployment_ref=None,
            ))
        self.incidents.append(_Incident(  # still open at the end
            service=EXTERNAL_SERVICES[0], repository_id=None,
            created_at=self.end - timedelta(hours=2), resolved_at=None, severity="sev2",
            title=rng.choice(INCIDENT_TITLES), deployment_ref=None,
        ))

    # --- rows ------------------------------------------------------------------------

    def finish(self) -> None:
        """Number pull requests and incidents by time, then build every remaining row."""
        self.incidents.sort(key=lambda i: (i.created_at, i.service))
        for number, incident in enumerate(self.incidents, start=1):
            incident.key = f"INC-{number}"
        by_repository: dict[str, list[_PullRequest]] = {}
        for pull_request in self.pull_requests:
            by_repository.setdefault(pull_request.repo.name, []).append(pull_request)
        for pull_requests in by_repository.values():
            pull_requests.sort(key=lambda p: (p.opened_at, p.author.index))
            for number, pull_request in enumerate(pull_requests, start=1):
                pull_request.number = number
                if pull_request.incident is not None:
                    key = pull_request.incident.key
                    pull_request.title = f"Hotfix: {pull_request.incident.title} ({key})"
                    pull_request.head_ref = f"hotfix/{key.lower()}"
        self._pull_request_rows()
        self._commit_rows()
        self._deployment_rows()
        self._incident_rows()
        self._work_rows()

    def _pull_request_rows(self) -> None:
        pull_requests, reviews, comments = [], [], []
        for pr in self.pull_requests:
            if pr.opened_at >= self.end:
                continue
            repository_id = stable_id("repositories", DEMO_SOURCE, pr.repo.name)
            external = f"{pr.repo.name}#{pr.number}"
            pr_id = stable_id("pull_requests", DEMO_SOURCE, external)
            merged = pr.merged_at if pr.merged_at is not None and pr.merged_at < self.end else None
            closed = pr.closed_at if pr.closed_at is not None and pr.closed_at < self.end else None
            state = "merged" if merged else ("closed" if closed else "open")
            if merged is None and pr.merged_at is not None:
                closed = None
            additions, deletions, files = pr.size
            pull_requests.append({
                "id": pr_id, "source": DEMO_SOURCE, "external_id": external,
                "source_updated_at": closed or pr.opened_at, "repository_id": repository_id,
                "number": pr.number, "title": pr.title, "state": state,
                "author_identity_id": pr.author.identity_id, "created_at_source": pr.opened_at,
                "merged_at": merged, "closed_at": closed, "head_ref": pr.head_ref,
                "base_ref": "main",
                "head_sha": pr.commit_shas[-1] if pr.commit_shas else None,
                "merge_commit_sha": pr.merge_sha if merged else None,
                "additions": additions, "deletions": deletions, "changed_files": files,
                "url": f"https://code.demo.pulse.local/{pr.repo.name}/pull/{pr.number}",
            })
            for position, (reviewer, review_state, submitted) in enumerate(pr.reviews, 1):
                if submitted >= self.end:
                    continue
                review_external = f"{external}/review/{position}"
                review_id = stable_id("reviews", DEMO_SOURCE, review_external)
                reviews.append({
                    "id": review_id, "source": DEMO_SOURCE, "external_id": review_external,
                    "pull_request_id": pr_id, "reviewer_identity_id": reviewer.identity_id,
                    "state": review_state, "submitted_at": submitted,
                })
                if review_state != "APPROVED":
                    comment_external = f"{external}/comment/{position}"
                    comments.append({
                        "id": stable_id("review_comments", DEMO_SOURCE, comment_external),
                        "source": DEMO_SOURCE, "external_id": comment_external,
                        "pull_request_id": pr_id, "review_id": review_id,
                        "author_identity_id": reviewer.identity_id,
                        "created_at_source": submitted,
                        "path": FILES[(pr.number + position) % len(FILES)],
                        "body": "Could this handle the empty case?" if review_state ==
                        "CHANGES_REQUESTED" else "Nit: naming.",
                    })
        self.rows["pull_requests"] = pull_requests
        self.rows["reviews"] = reviews
        self.rows["review_comments"] = comments

    def _commit_rows(self) -> None:
        commits: list[Row] = []
        parents: list[Row] = []
        for name, repository_commits in self.commits.items():
            repository_id = stable_id("repositories", DEMO_SOURCE, name)
            for commit in repository_commits:
                pr = commit.pr
                if commit.kind == "merge" and pr is not None:
                    message = (f"Merge pull request #{pr.number} from demo/{pr.head_ref}\n\n"
                               f"{pr.title}")
                elif commit.kind == "squash" and pr is not None:
                    message = f"{pr.title} (#{pr.number})"
                elif commit.kind == "work" and pr is not None:
                    message = pr.title if pr.commit_shas[0] == commit.sha else "Address review"
                    if pr.incident is not None:
                        message = f"Fix {pr.incident.key}: {pr.incident.title.lower()}"
                elif commit.kind == "direct":
                    message = "Bump dependencies"
                else:
                    message = "Initial commit"
                additions, deletions, files = commit.size
                commits.append({
                    "id": stable_id("commits", repository_id, commit.sha),
                    "repository_id": repository_id, "sha": commit.sha,
                    "author_identity_id": commit.author.identity_id,
                    "committer_identity_id": commit.committer.identity_id,
                    "author_name": commit.author.name, "author_email": commit.author.email,
                    "authored_at": commit.authored_at, "author_tz_offset": commit.author.tz,
                    "committed_at": commit.committed_at,
                    "committer_tz_offset": commit.committer.tz, "message": message,
                    "additions": additions, "deletions": deletions, "files_changed": files,
                    "is_merge": len(commit.parents) > 1,
                    "pull_request_number": pr.number if pr is not None else None,
                    "source": DEMO_SOURCE,
                })
                parents.extend(
                    {"repository_id": repository_id, "sha": commit.sha, "position": position,
                     "parent_sha": parent}
                    for position, parent in enumerate(commit.parents)
                )
        self.rows["commits"] = commits
        self.rows["commit_parents"] = parents

    def _deployment_rows(self) -> None:
        """Deployments, and the commits each successful one shipped (METRICS.md): those
        reachable from its SHA and not from an earlier successful deployment of the same
        repository and environment (the rule :mod:`pulse_etl.derive` applies)."""
        deployments = sorted((row for row in self.deployments if row["finished_at"] < self.end),
                             key=lambda row: (row["finished_at"], row["id"]))
        graph = {commit.sha: commit.parents
                 for commits in self.commits.values() for commit in commits}
        shipped: dict[tuple[str, str], set[str]] = {}
        rows: list[Row] = []
        for deployment in deployments:
            if deployment["result"] != "success":
                continue
            group = (deployment["repository_id"], deployment["environment"])
            seen = shipped.setdefault(group, set())
            pending = [deployment["sha"]]
            while pending:
                sha = pending.pop()
                if sha in seen:
                    continue
                seen.add(sha)
                rows.append({"deployment_id": deployment["id"],
                             "repository_id": deployment["repository_id"],
                             "environment": deployment["environment"], "sha": sha})
                pending.extend(graph[sha])
        self.rows["deployments"] = deployments
        self.rows["deployment_commits"] = rows

    def _incident_rows(self) -> None:
        incidents = []
        for incident in self.incidents:
            if incident.created_at >= self.end:
                continue
            resolved = incident.resolved_at
            if resolved is not None and resolved >= self.end:
                resolved = None
            incidents.append({
                "id": stable_id("incidents", DEMO_SOURCE, incident.key), "source": DEMO_SOURCE,
                "external_id": incident.key, "source_updated_at": resolved or incident.created_at,
                "title": incident.title, "service": incident.service,
                "repository_id": incident.repository_id, "severity": incident.severity,
                "created_at_source": incident.created_at, "resolved_at": resolved,
                "deployment_ref": incident.deployment_ref,
                "url": f"https://status.demo.pulse.local/incidents/{incident.key}",
            })
        self.rows["incidents"] = incidents

    # --- sprints and work items ------------------------------------------------------

    def _work_rows(self) -> None:
        rng = self.rng
        sprints: list[Row] = []
        items: list[Row] = []
        changes: list[Row] = []
        first_monday = self.start - timedelta(days=self.start.weekday())
        for key, _name in PROJECTS:
            project_id = stable_id("projects", DEMO_SOURCE, key)
            members = [p for p in self.people
                       if any(t[0] == p.team and t[2] == key for t in TEAMS)]
            spans = list(self._sprint_spans(first_monday))
            sprint_ids = []
            for number, (began, ended) in enumerate(spans, start=1):
                external = f"{key}-sprint-{number}"
                sprint_id = stable_id("sprints", DEMO_SOURCE, external)
                sprint_ids.append(sprint_id)
                state = ("closed" if ended <= self.end
                         else "active" if began <= self.end else "future")
                sprints.append({
                    "id": sprint_id, "source": DEMO_SOURCE, "external_id": external,
                    "project_id": project_id, "name": f"{key} Sprint {number}", "state": state,
                    "started_at": began, "ended_at": ended,
                    "completed_at": ended if state == "closed" else None,
                    "goal": f"Ship {rng.choice(NOUNS)}",
                })
            serial = 0
            for index, (began, _ended) in enumerate(spans):
                for _ in range(rng.randint(10, 18)):
                    serial += 1
                    kind = rng.choices(("Story", "Bug", "Task"), (0.55, 0.25, 0.2))[0]
                    item_key = f"{key}-{serial}"
                    created = began - timedelta(days=rng.uniform(0, 20))
                    carried = rng.random() < 0.15 and index + 1 < len(spans)
                    sprint_index = index + 1 if carried else index
                    timeline = self._timeline(created, began, spans[sprint_index][1])
                    timeline = [(status, moment) for status, moment in timeline
                                if moment < self.end]
                    if not timeline:
                        continue
                    status = timeline[-1][0]
                    category = dict(ITEM_STATUSES)[status]
                    item_id = stable_id("work_items", DEMO_SOURCE, item_key)
                    items.append({
                        "id": item_id, "source": DEMO_SOURCE, "external_id": item_key,
                        "source_updated_at": timeline[-1][1], "project_id": project_id,
                        "key": item_key, "title": f"{rng.choice(VERBS)} {rng.choice(NOUNS)}",
                        "type": kind, "status": status, "status_category": category,
                        "points": (float(rng.choice((1, 2, 3, 5, 8)))
                                   if kind != "Bug" else None),
                        "sprint_id": sprint_ids[sprint_index],
                        "assignee_identity_id": rng.choice(members).identity_id,
                        "labels": [rng.choice(("backend", "frontend", "tech-debt", "ux"))],
                        "created_at_source": created,
                        "resolved_at": timeline[-1][1] if status == "Done" else None,
                    })
                    for position, ((before, _at), (after, moment)) in enumerate(
                        zip(timeline, timeline[1:], strict=False), start=1
                    ):
                        external = f"{item_key}/{position}"
                        changes.append({
                            "id": stable_id("work_item_status_changes", DEMO_SOURCE, external),
                            "source": DEMO_SOURCE, "external_id": external,
                            "work_item_id": item_id, "changed_at": moment,
                            "from_status": before, "to_status": after,
                        })
        self.rows["sprints"] = sprints
        self.rows["work_items"] = items
        self.rows["work_item_status_changes"] = changes

    def _sprint_spans(self, first_monday: datetime) -> Iterator[tuple[datetime, datetime]]:
        began = first_monday
        while began <= self.end + timedelta(days=14):
            yield began, began + timedelta(days=14)
            began += timedelta(days=14)

    def _timeline(self, created: datetime, began: datetime, ended: datetime
                  ) -> list[tuple[str, datetime]]:
        """Status history: To Do at creation, then in progress, review and done (maybe)."""
        rng = self.rng
        timeline = [("To Do", created)]
        moment = max(created, began) + timedelta(days=rng.uniform(0, 6))
        for status, _category in ITEM_STATUSES[1:]:
            if moment >= ended or (status == "Done" and rng.random() < 0.1):
                break
            timeline.append((status, moment))
            moment += timedelta(days=rng.uniform(0.2, 4))
        return timeline


def generate(seed: int = DEFAULT_SEED, *, end: datetime | None = None,
             days: int = DEFAULT_DAYS) -> dict[str, list[Row]]:
    """The demo rows of ``days`` days ending at ``end`` (default: today 00:00 UTC).

    The same ``seed``, ``end`` and ``days`` always give the same rows.
    """
    if end is None:
        end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    generator = _Generator(seed, end, days)
    generator.organisation()
    for plan in REPOSITORIES:
        generator.repository(plan)
    generator.background_incidents()
    generator.finish()
    return generator.rows


@dataclass
class DemoResult:
    """What :func:`run_demo` did."""

    tenant_id: str
    created_tenant: bool
    loaded: bool
    stats: Stats = field(default_factory=dict)
    seconds: float = 0.0
    admin_email: str | None = None
    admin_password: str | None = None


async def find_demo_tenant(engine: Engine) -> str | None:
    """The id of the tenant named :data:`DEMO_TENANT_NAME`, if there is one."""
    table = engine.core_tables["tenants"]
    async with engine.db.system_session() as session:
        found = await session.scalar(select(table.c.id).where(table.c.name == DEMO_TENANT_NAME))
    return str(found) if found is not None else None


async def has_demo_data(engine: Engine, tenant_id: str) -> bool:
    """Whether the tenant holds demo rows (its demo projects)."""
    async with engine.db.tenant_session(tenant_id) as session:
        count = await session.scalar(
            select(func.count()).select_from(model.projects)
            .where(model.projects.c.source == DEMO_SOURCE)
        )
    return bool(count)


async def load_demo(engine: Engine, tenant_id: str, *, seed: int = DEFAULT_SEED,
                    end: datetime | None = None, days: int = DEFAULT_DAYS) -> Stats:
    """Generate and load the demo rows into ``tenant_id`` in one transaction.

    The rows go through the loader with their shipped commits (computed while generating,
    by the rule of :func:`pulse_etl.derive.materialise_deployment_commits`), then incidents
    are linked as after any load. Then it is finished like any load
    (:meth:`pulse_etl.service.EtlService.after_load`): statistics of the bulk-loaded tables
    refreshed, the tenant's ETL cache tags dropped, ``etl.data.loaded`` published, and the
    ``data_loaded`` hook lets metric plugins queue their refreshes.
    """
    from pulse_etl.plugin import service_for
    from pulse_etl.service import Loaded, earliest_event

    service = service_for(engine)
    rows = generate(seed, end=end, days=days)
    async with engine.db.tenant_session(tenant_id) as session:
        stats = await service.loader.load(session, tenant_id, rows)
        await derive.link_incidents(session, tenant_id)
    await service.after_load(tenant_id, None, DEMO_SOURCE, Loaded(stats, earliest_event(rows)))
    return stats


async def run_demo(engine: Engine, *, tenant_id: str | None = None,
                   if_missing: bool = False, seed: int = DEFAULT_SEED) -> DemoResult:
    """Load the demo into ``tenant_id``, or into the Demo tenant (created with an admin).

    With ``if_missing``, nothing is loaded when the target tenant already holds demo data
    (``loaded`` is False). A created admin gets a generated password, returned once.
    """
    created = False
    email = password = None
    if tenant_id is None:
        tenant_id = await find_demo_tenant(engine)
        if tenant_id is None:
            tenant = await create_tenant(engine, actor=None, name=DEMO_TENANT_NAME,
                                                  client_address=None)
            tenant_id = str(tenant["id"])
            created = True
            password = secrets.token_urlsafe(15)
            await create_user(engine, actor=None, tenant_id=tenant_id,
                                       email=DEMO_ADMIN_EMAIL, password=password,
                                       role="admin", client_address=None)
            email = DEMO_ADMIN_EMAIL
    else:
        await get_tenant(engine, actor=None, tenant_id=tenant_id)
    if if_missing and not created and await has_demo_data(engine, tenant_id):
        return DemoResult(tenant_id=tenant_id, created_tenant=False, loaded=False)
    started = time.perf_counter()
    stats = await load_demo(engine, tenant_id, seed=seed)
    return DemoResult(tenant_id=tenant_id, created_tenant=created, loaded=True, stats=stats,
                      seconds=time.perf_counter() - started, admin_email=email,
                      admin_password=password)
