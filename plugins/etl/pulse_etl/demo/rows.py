"""The demo rows: a finished :class:`~pulse_etl.demo.simulation.Simulation` as the unified
model's rows, and :func:`generate`, the whole data set from a seed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from pulse_etl.demo.plan import (
    DEFAULT_DAYS,
    DEFAULT_SEED,
    DEMO_SOURCE,
    FILES,
    ITEM_STATUSES,
    NOUNS,
    PROJECTS,
    REPOSITORIES,
    TEAMS,
    VERBS,
)
from pulse_etl.demo.simulation import PullRequest, Simulation
from pulse_etl.loader import Row
from pulse_etl.model import stable_id


def generate(seed: int = DEFAULT_SEED, *, end: datetime | None = None,
             days: int = DEFAULT_DAYS) -> dict[str, list[Row]]:
    """The demo rows of ``days`` days ending at ``end`` (default: today 00:00 UTC).

    The same ``seed``, ``end`` and ``days`` always give the same rows.
    """
    if end is None:
        end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    sim = Simulation(seed, end, days)
    sim.organisation()
    for plan in REPOSITORIES:
        sim.repository(plan)
    sim.background_incidents()
    finish(sim)
    return sim.rows


def finish(sim: Simulation) -> None:
    """Number pull requests and incidents by time, then build every remaining row."""
    sim.incidents.sort(key=lambda i: (i.created_at, i.service))
    for number, incident in enumerate(sim.incidents, start=1):
        incident.key = f"INC-{number}"
    by_repository: dict[str, list[PullRequest]] = {}
    for pull_request in sim.pull_requests:
        by_repository.setdefault(pull_request.repo.name, []).append(pull_request)
    for pull_requests in by_repository.values():
        pull_requests.sort(key=lambda p: (p.opened_at, p.author.index))
        for number, pull_request in enumerate(pull_requests, start=1):
            pull_request.number = number
            if pull_request.incident is not None:
                key = pull_request.incident.key
                pull_request.title = f"Hotfix: {pull_request.incident.title} ({key})"
                pull_request.head_ref = f"hotfix/{key.lower()}"
    _pull_request_rows(sim)
    _commit_rows(sim)
    _deployment_rows(sim)
    _incident_rows(sim)
    _work_rows(sim)


def _pull_request_rows(sim: Simulation) -> None:
    pull_requests, reviews, comments = [], [], []
    for pr in sim.pull_requests:
        if pr.opened_at >= sim.end:
            continue
        repository_id = stable_id("repositories", DEMO_SOURCE, pr.repo.name)
        external = f"{pr.repo.name}#{pr.number}"
        pr_id = stable_id("pull_requests", DEMO_SOURCE, external)
        merged = pr.merged_at if pr.merged_at is not None and pr.merged_at < sim.end else None
        closed = pr.closed_at if pr.closed_at is not None and pr.closed_at < sim.end else None
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
            if submitted >= sim.end:
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
    sim.rows["pull_requests"] = pull_requests
    sim.rows["reviews"] = reviews
    sim.rows["review_comments"] = comments


def file_changes(sha: str, size: tuple[int, int, int]) -> list[tuple[str, int, int]]:
    """The files of a demo commit of ``size`` (additions, deletions, files): ``files`` paths
    picked from :data:`FILES` (and ``src/module_<n>.py`` beyond them) from the SHA, the
    lines shared out so that they add up to the commit's own counts."""
    additions, deletions, count = size
    start = int(sha[:8], 16)
    paths = [FILES[(start + k) % len(FILES)] if k < len(FILES) else f"src/module_{k}.py"
             for k in range(count)]
    return [(path,
             additions // count + (additions % count if k == 0 else 0),
             deletions // count + (deletions % count if k == 0 else 0))
            for k, path in enumerate(paths)]


def _commit_rows(sim: Simulation) -> None:
    commits: list[Row] = []
    parents: list[Row] = []
    files: list[Row] = []
    for name, repository_commits in sim.commits.items():
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
            additions, deletions, count = commit.size
            commit_id = stable_id("commits", repository_id, commit.sha)
            commits.append({
                "id": commit_id,
                "repository_id": repository_id, "sha": commit.sha,
                "author_identity_id": commit.author.identity_id,
                "committer_identity_id": commit.committer.identity_id,
                "author_name": commit.author.name, "author_email": commit.author.email,
                "authored_at": commit.authored_at, "author_tz_offset": commit.author.tz,
                "committed_at": commit.committed_at,
                "committer_tz_offset": commit.committer.tz, "message": message,
                "additions": additions, "deletions": deletions, "files_changed": count,
                "is_merge": len(commit.parents) > 1,
                "pull_request_number": pr.number if pr is not None else None,
                "source": DEMO_SOURCE,
            })
            parents.extend(
                {"repository_id": repository_id, "sha": commit.sha, "position": position,
                 "parent_sha": parent}
                for position, parent in enumerate(commit.parents)
            )
            if count and len(commit.parents) <= 1:
                files.extend(
                    {"repository_id": repository_id, "sha": commit.sha, "commit_id": commit_id,
                     "path": path, "previous_path": None, "additions": plus,
                     "deletions": minus, "is_binary": False}
                    for path, plus, minus in file_changes(commit.sha, commit.size)
                )
    sim.rows["commits"] = commits
    sim.rows["commit_parents"] = parents
    sim.rows["commit_files"] = files


def _deployment_rows(sim: Simulation) -> None:
    """Deployments, and the commits each successful one shipped (METRICS.md): those
    reachable from its SHA and not from an earlier successful deployment of the same
    repository and environment (the rule :mod:`pulse_etl.derive` applies)."""
    deployments = sorted((row for row in sim.deployments if row["finished_at"] < sim.end),
                         key=lambda row: (row["finished_at"], row["id"]))
    graph = {commit.sha: commit.parents
             for commits in sim.commits.values() for commit in commits}
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
    sim.rows["deployments"] = deployments
    sim.rows["deployment_commits"] = rows


def _incident_rows(sim: Simulation) -> None:
    incidents = []
    for incident in sim.incidents:
        if incident.created_at >= sim.end:
            continue
        resolved = incident.resolved_at
        if resolved is not None and resolved >= sim.end:
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
    sim.rows["incidents"] = incidents



def _work_rows(sim: Simulation) -> None:
    rng = sim.rng
    sprints: list[Row] = []
    items: list[Row] = []
    changes: list[Row] = []
    first_monday = sim.start - timedelta(days=sim.start.weekday())
    for key, _name in PROJECTS:
        project_id = stable_id("projects", DEMO_SOURCE, key)
        members = [p for p in sim.people
                   if any(t[0] == p.team and t[2] == key for t in TEAMS)]
        spans = list(_sprint_spans(sim, first_monday))
        sprint_ids = []
        for number, (began, ended) in enumerate(spans, start=1):
            external = f"{key}-sprint-{number}"
            sprint_id = stable_id("sprints", DEMO_SOURCE, external)
            sprint_ids.append(sprint_id)
            state = ("closed" if ended <= sim.end
                     else "active" if began <= sim.end else "future")
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
                timeline = _timeline(sim, created, began, spans[sprint_index][1])
                timeline = [(status, moment) for status, moment in timeline
                            if moment < sim.end]
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
    sim.rows["sprints"] = sprints
    sim.rows["work_items"] = items
    sim.rows["work_item_status_changes"] = changes


def _sprint_spans(sim: Simulation, first_monday: datetime) -> Iterator[tuple[datetime, datetime]]:
    began = first_monday
    while began <= sim.end + timedelta(days=14):
        yield began, began + timedelta(days=14)
        began += timedelta(days=14)


def _timeline(sim: Simulation, created: datetime, began: datetime, ended: datetime
              ) -> list[tuple[str, datetime]]:
    """Status history: To Do at creation, then in progress, review and done (maybe)."""
    rng = sim.rng
    timeline = [("To Do", created)]
    moment = max(created, began) + timedelta(days=rng.uniform(0, 6))
    for status, _category in ITEM_STATUSES[1:]:
        if moment >= ended or (status == "Done" and rng.random() < 0.1):
            break
        timeline.append((status, moment))
        moment += timedelta(days=rng.uniform(0.2, 4))
    return timeline
