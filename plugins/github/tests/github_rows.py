"""Helpers of the pulse-github tests: git, and a builder of unified-model rows."""

from __future__ import annotations

import os
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pulse_etl import model
from sqlalchemy import insert

from pulse_engine.app import PulseEngine


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run git in ``repo``; return its stdout."""
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(repo), "LC_ALL": "C",
             **(env or {})},
    ).stdout


def at(moment: str) -> datetime:
    """A UTC time from ``YYYY-MM-DD HH:MM``."""
    return datetime.fromisoformat(moment).replace(tzinfo=UTC)


class Rows:
    """Writes one tenant's unified-model rows straight into pulse-etl's tables."""

    def __init__(self, engine: PulseEngine, tenant_id: str) -> None:
        """Rows of ``tenant_id``."""
        self.engine = engine
        self.tenant_id = tenant_id
        self.count = 0

    async def add(self, table: Any, **values: Any) -> str:
        """Insert one row (``id``, ``source``, ``external_id`` filled in); returns its id."""
        self.count += 1
        if "id" in table.c and "id" not in values:
            values["id"] = str(uuid.uuid4())
        if "source" in table.c and "source" not in values:
            values["source"] = "test"
        if "external_id" in table.c and "external_id" not in values:
            values["external_id"] = f"x{self.count}-{values.get('id')}"
        async with self.engine.db.tenant_session(self.tenant_id) as session:
            await session.execute(insert(table).values(tenant_id=self.tenant_id, **values))
        return str(values.get("id", ""))

    async def person(self, name: str, login: str, email: str | None = None
                     ) -> tuple[str, str]:
        """A person with one identity; ``(person_id, identity_id)``."""
        person_id = await self.add(model.people, display_name=name, email=email)
        identity_id = await self.add(model.person_identities, person_id=person_id, name=name,
                                     username=login, email=email)
        return person_id, identity_id

    async def identity(self, person_id: str, login: str) -> str:
        """Another identity of a person (merged identities)."""
        return await self.add(model.person_identities, person_id=person_id, username=login)

    async def repository(self, name: str, project_id: str | None = None) -> str:
        """A repository."""
        return await self.add(model.repositories, name=name, service=name,
                              project_id=project_id)

    async def commit(self, repository_id: str, author: str, authored: str, *,
                     tz: int = 0, merge: bool = False, pr: int | None = None,
                     files: tuple[tuple[str, int, int], ...] = ()) -> str:
        """A commit by identity ``author`` at ``authored`` (UTC) with ``files``; its SHA."""
        sha = f"{uuid.uuid4().hex}{self.count:08x}"
        commit_id = await self.add(
            model.commits, repository_id=repository_id, sha=sha, author_identity_id=author,
            authored_at=at(authored), author_tz_offset=tz, committed_at=at(authored),
            is_merge=merge, pull_request_number=pr, message="change",
            additions=sum(a for _, a, _ in files), deletions=sum(d for _, _, d in files),
            files_changed=len(files))
        for path, added, deleted in files:
            await self.add(model.commit_files, repository_id=repository_id, sha=sha,
                           commit_id=commit_id, path=path, additions=added, deletions=deleted)
        return sha

    async def pull_request(self, repository_id: str, number: int, author: str, opened: str,
                           *, merged: str | None = None, closed: str | None = None,
                           additions: int | None = None, deletions: int | None = None,
                           files: int | None = None, merge_sha: str | None = None,
                           head_ref: str | None = None) -> str:
        """A pull request opened by identity ``author``."""
        state = "merged" if merged else "closed" if closed else "open"
        return await self.add(
            model.pull_requests, repository_id=repository_id, number=number, state=state,
            author_identity_id=author, created_at_source=at(opened),
            merged_at=at(merged) if merged else None,
            closed_at=at(closed) if closed else (at(merged) if merged else None),
            additions=additions, deletions=deletions, changed_files=files,
            merge_commit_sha=merge_sha, head_ref=head_ref or f"branch-{number}")

    async def review(self, pull_request_id: str, reviewer: str, submitted: str,
                     state: str = "approved") -> str:
        """A review."""
        return await self.add(model.reviews, pull_request_id=pull_request_id,
                              reviewer_identity_id=reviewer, state=state,
                              submitted_at=at(submitted))

    async def comment(self, pull_request_id: str, author: str, created: str) -> str:
        """A review comment."""
        return await self.add(model.review_comments, pull_request_id=pull_request_id,
                              author_identity_id=author, created_at_source=at(created),
                              path="a.py", body="nit")

    async def deployment(self, repository_id: str, finished: str, shas: tuple[str, ...],
                         environment: str = "production", result: str = "success") -> str:
        """A deployment that shipped ``shas``."""
        deployment_id = await self.add(
            model.deployments, repository_id=repository_id, service="svc",
            environment=environment, result=result, started_at=at(finished),
            finished_at=at(finished), sha=shas[-1] if shas else None)
        for sha in shas:
            await self.add(model.deployment_commits, deployment_id=deployment_id,
                           repository_id=repository_id, environment=environment, sha=sha)
        return deployment_id


def percentile(values: list[float], fraction: float) -> float:
    """``percentile_cont``: linear interpolation between the closest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
