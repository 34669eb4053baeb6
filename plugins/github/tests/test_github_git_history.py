"""Contributors, commit patterns, hotspots, the absence factor and change coupling on real
git histories ingested by pulse-etl's git connector, against the same numbers computed
here from ``git log`` alone.

Two histories: this project's own (cloned), and a generated one with several authors and
time zones (one author writing their email in two cases: one person), merges, renames,
files that change together and a commit of more than 30 files. The window starts at the
author time of a commit in the middle of each history, so windowing by author time is
exercised too.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from github_rows import git
from pulse_etl.plugin import service_for

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture

PROJECT = Path(__file__).resolve().parents[3]
PREFIX = "/api/v1/analytics/github"
RENAME = re.compile(r"^(.*)\{(.*) => (.*)\}(.*)$")


@dataclass
class LoggedCommit:
    """One commit as ``git log`` prints it."""

    sha: str
    email: str
    authored: datetime
    merge: bool
    files: list[tuple[str, int, int]]


def _unbrace(path: str) -> str:
    """The new path of a ``--numstat`` rename (``a => b``, ``dir/{a => b}/f``)."""
    braces = RENAME.match(path)
    if braces:
        head, _old, new, tail = braces.groups()
        return re.sub("//", "/", f"{head}{new}{tail}")
    if " => " in path:
        return path.split(" => ", 1)[1]
    return path


def read_log(repo: Path, branch: str) -> list[LoggedCommit]:
    """Every commit of ``branch``: author email, author time (with its own offset),
    merge or not, and the files of non-merge commits (``-M --numstat`` text form)."""
    commits: list[LoggedCommit] = []
    out = git(repo, "-c", "core.quotePath=false", "log", "-M", "--numstat",
              "--format=%x01%H%x02%ae%x02%aI%x02%P", branch)
    for line in out.splitlines():
        if line.startswith("\x01"):
            sha, email, authored, parents = line[1:].split("\x02")
            commits.append(LoggedCommit(sha, email.lower(), datetime.fromisoformat(authored),
                                        len(parents.split()) > 1, []))
        elif line.strip():
            added, deleted, path = line.split("\t", 2)
            commits[-1].files.append((_unbrace(path), int(added) if added != "-" else 0,
                                      int(deleted) if deleted != "-" else 0))
    return commits


def window_of(commits: list[LoggedCommit]) -> tuple[datetime, datetime]:
    """From the author time of the middle commit (by time) to just after the last one."""
    times = sorted(commit.authored.astimezone(UTC) for commit in commits)
    return times[len(times) // 2], times[-1] + timedelta(seconds=1)


def in_window(commits: list[LoggedCommit], start: datetime, end: datetime
              ) -> list[LoggedCommit]:
    return [c for c in commits if start <= c.authored.astimezone(UTC) < end]


def expected_absence(weights: Counter[str]) -> int:
    """The fewest people whose weights make at least half of the total."""
    total = sum(weights.values())
    running, people = 0, 0
    for _email, weight in weights.most_common():
        if total and running >= total / 2:
            break
        running += weight
        people += 1
    return people if total else 0


def expected_coupling(commits: list[LoggedCommit], min_revs: int = 5, min_shared: int = 5,
                      max_changeset: int = 30) -> dict[tuple[str, str], tuple[int, float]]:
    """code-maat's coupling (its defaults unless given) of non-merge commits:
    ``{(a, b): (shared, degree)}``, degree at least 30%."""
    kept = [sorted({path for path, _, _ in c.files}) for c in commits
            if not c.merge and len({path for path, _, _ in c.files}) <= max_changeset]
    revs = Counter(path for paths in kept for path in paths)
    shared: Counter[tuple[str, str]] = Counter()
    for paths in kept:
        frequent = [path for path in paths if revs[path] >= min_revs]
        shared.update(combinations(frequent, 2))
    found = {}
    for (a, b), count in shared.items():
        degree = count / ((revs[a] + revs[b]) / 2)
        if count >= min_shared and degree >= 0.30:
            found[(a, b)] = (count, degree)
    return found


async def ingest(engine: PulseEngine, tenant_id: str, repo: Path, branch: str) -> None:
    service = service_for(engine)
    job = await service.create_job(tenant_id, {"connector": "git", "config": {
        "path": str(repo), "branch": branch}}, None, enqueue=False)
    status = await service.run_job(tenant_id, job["id"])
    assert status == "succeeded", await service.get_job(tenant_id, job["id"])
    # the file answers read the facts the load's queued refresh writes
    assert await engine.queue.wait_idle(30)


async def every_page(client: Any, path: str, params: dict[str, str],
                     page: int = 7) -> list[dict[str, Any]]:
    """Every item of a paginated list, following ``next_cursor`` (small pages)."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        query = {**params, "limit": str(page), **({"cursor": cursor} if cursor else {})}
        response = await client.get(f"{PREFIX}/{path}", query_string=query)
        body = await response.get_json()
        assert response.status_code == 200, body
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the pages never end")


def generate_history(repo: Path, seed: int = 11) -> None:
    """Authors in four offsets (Bob writes his email in two cases), coupled files, merged
    branches, a rename and a commit of 35 files."""
    rng = random.Random(seed)
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Merger")
    git(repo, "config", "user.email", "merger@example.test")
    authors = [("Ada", "ada@example.test", "+0200"), ("Bob", "bob@example.test", "-0500"),
               ("Bob", "BOB@Example.test", "-0500"), ("Cy", "cy@example.test", "+0530"),
               ("Di", "di@example.test", "+0000")]
    groups = [["src/api.py", "src/api_test.py"], ["src/db.py", "src/models.py", "README.md"],
              ["web/app.ts"], ["docs/guide.md", "docs/index.md"]]
    moment = 1_750_000_000

    def commit(message: str, paths: list[str], author: tuple[str, str, str]) -> None:
        nonlocal moment
        moment += rng.randint(900, 20_000)
        name, email, tz = author
        for path in paths:
            target = repo / path
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("a") as handle:
                handle.write("".join(f"{rng.random()}\n" for _ in range(rng.randint(1, 6))))
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", message, env={
            "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
            "GIT_AUTHOR_DATE": f"{moment} {tz}", "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email, "GIT_COMMITTER_DATE": f"{moment} {tz}"})

    for index in range(90):
        group = rng.choice(groups)
        paths = [path for path in group if rng.random() < 0.85] or group[:1]
        if index % 9 == 4:
            git(repo, "checkout", "-q", "-b", f"feature-{index}")
            commit(f"feature {index}", paths, rng.choice(authors))
            commit(f"feature {index} tests", ["src/api_test.py"], rng.choice(authors))
            git(repo, "checkout", "-q", "main")
            moment += 120
            git(repo, "merge", "-q", "--no-ff", "-m", f"Merge pull request #{index}",
                f"feature-{index}", env={"GIT_AUTHOR_DATE": f"{moment} +0100",
                                         "GIT_COMMITTER_DATE": f"{moment} +0100"})
        elif index == 50:
            commit("vendor", [f"vendor/lib{n}.py" for n in range(35)], authors[0])
        elif index == 60:
            git(repo, "mv", "web/app.ts", "web/main.ts")
            groups[2] = ["web/main.ts"]
            commit("rename the app", ["web/main.ts"], authors[3])
        else:
            commit(f"change {index}", paths, rng.choice(authors))


async def check_against_git(engine: PulseEngine, tenant: TenantFixture, repo: Path,
                            branch: str) -> None:
    """Every git-checkable answer equals its computation from ``git log``."""
    await ingest(engine, tenant.id, repo, branch)
    logged = read_log(repo, branch)
    start, end = window_of(logged)
    window = in_window(logged, start, end)
    non_merge = [c for c in window if not c.merge]
    params = {"start": start.isoformat(), "end": end.isoformat()}
    client = tenant.analyst_client

    # contributors: every commit (merges too) per person (emails in any case are one person)
    per_email = Counter(c.email for c in window)
    items = await every_page(client, "contributors", params)
    assert {item["person"]["email"]: item["commits"] for item in items} == dict(per_email)
    assert {item["person"]["email"]: item["non_merge_commits"] for item in items} == {
        email: sum(1 for c in non_merge if c.email == email) for email in per_email}
    assert {item["person"]["email"]: (item["additions"], item["deletions"]) for item in items
            } == {email: (sum(a for c in non_merge if c.email == email for _, a, _ in c.files),
                          sum(d for c in non_merge if c.email == email for _, _, d in c.files))
                  for email in per_email}
    commits = [item["commits"] for item in items]
    assert commits == sorted(commits, reverse=True)
    first = await (await client.get(f"{PREFIX}/contributors", query_string=params)).get_json()
    assert first["total_commits"] == len(window)

    # commit patterns: weekday (Monday first) and hour in each author's own offset
    grid = [[0] * 24 for _ in range(7)]
    for c in window:
        grid[c.authored.weekday()][c.authored.hour] += 1
    patterns = await (await client.get(f"{PREFIX}/commit-patterns",
                                       query_string=params)).get_json()
    assert patterns["heatmap"] == grid and patterns["total"] == len(window)

    # hotspots: non-merge commits per path after renames, distinct authors, churn
    touched: dict[str, list[LoggedCommit]] = defaultdict(list)
    for c in non_merge:
        for path in {path for path, _, _ in c.files}:
            touched[path].append(c)
    spots = await every_page(client, "hotspots", params)
    assert {item["path"]: (item["commits"], item["authors"], item["additions"],
                           item["deletions"]) for item in spots} == {
        path: (len(cs), len({c.email for c in cs}),
               sum(a for c in cs for p, a, _ in c.files if p == path),
               sum(d for c in cs for p, _, d in c.files if p == path))
        for path, cs in touched.items()}
    counts = [item["commits"] for item in spots]
    assert counts == sorted(counts, reverse=True)

    # the absence factor, by non-merge commits and by lines
    by_commits = Counter(c.email for c in non_merge)
    by_lines = Counter({email: sum(a + d for c in non_merge if c.email == email
                                   for _, a, d in c.files) for email in by_commits})
    for by, weights in (("commits", by_commits), ("lines", by_lines)):
        body = await (await client.get(f"{PREFIX}/contributor-absence-factor",
                                       query_string={**params, "by": by})).get_json()
        assert body["value"] == expected_absence(weights), (by, body)
        assert body["commits"] == len(non_merge)
        assert body["total_weight"] == sum(weights.values())
        named = [entry["person"]["email"] for entry in body["people"]]
        assert sum(weights[email] for email in named) * 2 >= sum(weights.values())
        assert sum(weights[email] for email in named[:-1]) * 2 < sum(weights.values())

    # change coupling with code-maat's defaults, and with thresholds that keep single
    # commits' pairs of up to 40 files (more than the stored pairs' 30) or of 2 files only
    for min_revs, min_shared, max_changeset in ((5, 5, 30), (1, 1, 40), (2, 2, 2)):
        pairs = await every_page(client, "change-coupling", {
            **params, "min_revs": str(min_revs), "min_shared_revs": str(min_shared),
            "max_changeset_size": str(max_changeset)}, page=7 if min_shared == 5 else 97)
        assert {(item["path"], item["coupled_path"]): (item["shared_commits"],
                                                        round(item["degree"], 9))
                for item in pairs} == {
            pair: (shared, round(degree, 9)) for pair, (shared, degree) in
            expected_coupling(window, min_revs, min_shared, max_changeset).items()}, (
            min_revs, min_shared, max_changeset)


@pytest.mark.skipif(not (PROJECT / ".git").exists(), reason="not a git checkout")
async def test_own_history_equals_git_log(engine: PulseEngine, gh_tenant: TenantFixture,
                                          github_git_root: Path) -> None:
    clone = github_git_root / f"pulse-{gh_tenant.id[:8]}"
    git(github_git_root, "clone", "-q", str(PROJECT), str(clone))
    branch = git(clone, "rev-parse", "--abbrev-ref", "HEAD").strip()
    await check_against_git(engine, gh_tenant, clone, branch)


async def test_generated_history_equals_git_log(engine: PulseEngine, gh_tenant: TenantFixture,
                                                github_git_root: Path) -> None:
    repo = github_git_root / f"generated-{gh_tenant.id[:8]}"
    generate_history(repo)
    logged = read_log(repo, "main")
    start, end = window_of(logged)
    # the generated history exercises what it should
    window = in_window(logged, start, end)
    assert any(c.merge for c in window) and len({c.email for c in window}) >= 4
    assert expected_coupling(window)
    # skipped by the coupling's defaults, paired per request with a larger limit
    assert any(30 < len(c.files) <= 40 for c in window)
    assert any(" => " in line for line in git(repo, "log", "-M", "--numstat", "--format=",
                                              f"--since={start.isoformat()}").splitlines())
    await check_against_git(engine, gh_tenant, repo, "main")
