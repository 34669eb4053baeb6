"""Rows of the analytics model for the AI-validation tests, written with plain SQL.

Each tenant gets a different, deterministic data set (``scale`` multiplies the counts), so
a query that leaked another tenant's rows would return different numbers.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

from sqlalchemy import text

from pulse_engine.app import PulseEngine

NOW = dt.datetime.now(dt.UTC)


def ago(days: float) -> dt.datetime:
    """A time ``days`` before the test run."""
    return NOW - dt.timedelta(days=days)


def _id() -> str:
    return str(uuid.uuid4())


async def _insert(session: Any, table: str, tenant_id: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        row = {"tenant_id": tenant_id, **row}
        columns = ", ".join(row)
        values = ", ".join(f":{key}" for key in row)
        await session.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({values})"), row)


def _src(**values: Any) -> dict[str, Any]:
    row_id = values.pop("id", None) or _id()
    return {"id": row_id, "source": "test", "external_id": row_id, **values}


async def seed(engine: PulseEngine, tenant_id: str, scale: int) -> dict[str, int]:
    """Write one tenant's rows; the row count of each table."""
    k = scale
    projects = [_src(key=f"P{i}", name=f"Project {i}") for i in range(2)]
    repositories = [_src(project_id=projects[i % 2]["id"], name=f"org/repo-{i}",
                         default_branch="main" if i else "master", service=f"svc-{i % 2}")
                    for i in range(3)]
    teams = [_src(project_id=projects[i]["id"], name=f"Team {i}") for i in range(2)]
    people = [_src(display_name=f"Person {i}", email=f"p{i}@example.com") for i in range(4)]
    identities = [_src(person_id=people[i]["id"], name=f"Person {i}", username=f"user{i}",
                       email=f"p{i}@example.com") for i in range(4)]
    memberships = [{"team_id": teams[i % 2]["id"], "person_id": people[i]["id"],
                    "role": "dev"} for i in range(4)]
    commits, parents = [], []
    for i in range(10 * k):
        sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]
        commits.append({
            "id": _id(), "repository_id": repositories[i % 3]["id"], "sha": sha,
            "author_identity_id": identities[i % 4]["id"], "author_name": f"Person {i % 4}",
            "author_email": f"p{i % 4}@example.com", "authored_at": ago(i * 4.3 + 0.4),
            "committed_at": ago(i * 4.3 + 0.3), "message": "Revert x" if i % 7 == 0 else
            ("fix bug" if i % 3 == 0 else "feature"), "additions": 10 + i * k,
            "deletions": i % 5, "files_changed": 1 + i % 4, "is_merge": i % 6 == 0,
            "pull_request_number": i if i % 2 else None, "source": "test",
        })
        parents.append({"repository_id": repositories[i % 3]["id"], "sha": sha, "position": 0,
                        "parent_sha": "p" * 40})
        if i % 6 == 0:
            parents.append({"repository_id": repositories[i % 3]["id"], "sha": sha,
                            "position": 1, "parent_sha": "q" * 40})
    pulls = []
    for i in range(6 * k):
        merged = ago(i * 5 + 1) if i % 3 != 2 else None
        pulls.append(_src(
            repository_id=repositories[i % 3]["id"], number=i + 1,
            title="fix bug in login" if i % 4 == 0 else f"feature {i}",
            state="merged" if merged else ("open" if i % 2 else "closed"),
            author_identity_id=identities[i % 4]["id"], created_at_source=ago(i * 5 + 3.5),
            merged_at=merged, base_ref="main" if i % 2 else "develop",
            additions=20 * (i + 1), deletions=i, changed_files=i % 3 + 1,
        ))
    reviews = [_src(pull_request_id=pulls[i % len(pulls)]["id"],
                    reviewer_identity_id=identities[(i + 1) % 4]["id"],
                    state="approved" if i % 2 else "commented",
                    submitted_at=ago(i * 5 + 2.1) if i % 5 else None)
               for i in range(5 * k)]
    comments = [_src(pull_request_id=pulls[i % len(pulls)]["id"], review_id=reviews[i]["id"],
                     author_identity_id=identities[i % 4]["id"], created_at_source=ago(i + 1.2),
                     path=f"src/file{i % 3}.py", body="nit")
                for i in range(4 * k)]
    deployments = []
    for i in range(8 * k):
        finished = ago(i * 3.1 + 0.6)
        deployments.append(_src(
            repository_id=repositories[i % 3]["id"], service=f"svc-{i % 2}",
            environment="production" if i % 3 else "staging",
            result="failure" if i % 4 == 0 else "success",
            started_at=finished - dt.timedelta(minutes=5 + i), finished_at=finished,
            sha=commits[i % len(commits)]["sha"], ref="main", name=f"deploy {i}",
        ))
    shipped = [{"deployment_id": deployments[i]["id"],
                "repository_id": commits[i % len(commits)]["repository_id"],
                "environment": deployments[i]["environment"],
                "sha": commits[i % len(commits)]["sha"]} for i in range(len(deployments))]
    incidents = [_src(title=f"outage {i}", service=f"svc-{i % 2}",
                      repository_id=repositories[i % 3]["id"],
                      severity="sev1" if i % 2 else "sev2", created_at_source=ago(i * 9 + 2.2),
                      resolved_at=ago(i * 9 + 1.1) if i % 3 else None,
                      deployment_id=deployments[i]["id"] if i % 2 else None)
                 for i in range(3 * k)]
    sprints = [_src(project_id=projects[0]["id"], name=f"Sprint {i}",
                    state="active" if i == 1 else "closed", started_at=ago(28 - i * 14),
                    ended_at=ago(14 - i * 14)) for i in range(2)]
    items = [_src(project_id=projects[i % 2]["id"], key=f"P-{i}", title=f"item {i}",
                  type="bug" if i % 3 == 0 else "story", status="Done" if i % 2 else "Open",
                  status_category="done" if i % 2 else "todo", points=float(i % 5),
                  sprint_id=sprints[i % 2]["id"], labels=["backend"] if i % 2 else ["ui"],
                  created_at_source=ago(i * 3 + 10), resolved_at=ago(i * 3 + 1) if i % 2 else None)
             for i in range(4 + 2 * k)]
    changes = [_src(work_item_id=items[i % len(items)]["id"], changed_at=ago(i * 2 + 0.5),
                    from_status="Open" if i % 2 else None, to_status="Done" if i % 2 else "Open")
               for i in range(3 * k + 2)]
    tables: list[tuple[str, list[dict[str, Any]]]] = [
        ("projects", projects), ("repositories", repositories), ("teams", teams),
        ("people", people), ("person_identities", identities),
        ("team_memberships", memberships), ("commits", commits), ("commit_parents", parents),
        ("pull_requests", pulls), ("reviews", reviews), ("review_comments", comments),
        ("deployments", deployments), ("deployment_commits", shipped),
        ("incidents", incidents), ("sprints", sprints), ("work_items", items),
        ("work_item_status_changes", changes),
    ]
    async with engine.db.tenant_session(tenant_id) as session:
        for table, rows in tables:
            await _insert(session, table, tenant_id, rows)
    return {table: len(rows) for table, rows in tables}


def normalise(value: Any) -> Any:
    """A database value in a comparable JSON form (written here, not taken from the plugin)."""
    if isinstance(value, decimal.Decimal):
        return round(float(value), 6)
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dt.timedelta):
        return round(value.total_seconds(), 6)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [normalise(item) for item in value]
    return value
