"""Fixtures of the pulse-etl tests: an app with the plugin, git repositories to read."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pulse_etl.plugin import service_for
from pulse_etl.service import EtlService
from quart import Quart

from pulse_engine.app import PulseEngine
from pulse_engine.settings import Settings
from pulse_engine.testing import TenantFixture, make_tenant, running_app


@pytest.fixture
def git_root(tmp_path: Path) -> Path:
    """The folder the tests allow as ``PULSE_ETL_GIT_ROOTS``."""
    root = tmp_path / "repos"
    root.mkdir()
    return root


@pytest.fixture
def etl_env(git_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Environment of the ETL plugin for one test."""
    monkeypatch.setenv("PULSE_ETL_GIT_ROOTS", str(git_root))
    monkeypatch.setenv("PULSE_ETL_HEARTBEAT_SECONDS", "0.2")
    # 15 heartbeats: a loaded CI machine stalled one for over 1.5 s (lease lost mid-job)
    monkeypatch.setenv("PULSE_ETL_LEASE_SECONDS", "3.0")
    monkeypatch.setenv("PULSE_ETL_SWEEP_SECONDS", "0.3")
    yield


#: What the tests' apps may connect to: the local replay servers (``PULSE_OUTBOUND_ALLOW``).
REPLAY_ALLOW = ["127.0.0.1"]


@pytest.fixture
async def etl_app(pulse_settings: Settings, etl_env: None) -> AsyncIterator[Quart]:
    """A started app with every installed plugin and the ETL test environment, allowed to
    reach the local replay servers."""
    allowed = pulse_settings.model_copy(update={"outbound_allow": REPLAY_ALLOW})
    async with running_app(allowed) as app:
        yield app


@pytest.fixture
def etl_engine(etl_app: Quart) -> PulseEngine:
    """The engine of ``etl_app``."""
    engine: PulseEngine = etl_app.extensions["pulse"]
    return engine


@pytest.fixture
def etl(etl_engine: PulseEngine) -> EtlService:
    """The ETL service of ``etl_app``."""
    return service_for(etl_engine)


@pytest.fixture
async def etl_tenant(etl_app: Quart) -> TenantFixture:
    """A fresh tenant of ``etl_app``."""
    return await make_tenant(etl_app)


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run git in ``repo``; return its stdout."""
    result = subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(repo), **(env or {})},
    )
    return result.stdout


def build_repository(path: Path, commits: int = 60, seed: int = 7) -> Path:
    """A repository with linear work, feature branches merged with merge commits,
    squash-merge subjects, several authors and time zones, and tags of both kinds:
    annotated ``v*`` release tags and lightweight ``deploy-*`` tags."""
    import random

    rng = random.Random(seed)
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test")
    git(path, "config", "user.email", "test@example.test")
    authors = [
        ("Ada", "ada@example.test", "+0200"),
        ("Bob", "BOB@example.test", "-0500"),
        ("Cy", "cy@example.test", "+0530"),
    ]
    moment = 1_700_000_000
    pr = 1

    def commit(message: str, author: tuple[str, str, str], filename: str | None = None) -> None:
        nonlocal moment
        moment += rng.randint(600, 7200)
        name, email, tz = author
        env = {
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_AUTHOR_DATE": f"{moment} {tz}",
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
            "GIT_COMMITTER_DATE": f"{moment} {tz}",
        }
        target = path / (filename or f"file{rng.randint(0, 9)}.txt")
        with target.open("a") as handle:
            handle.write("\n".join(f"line {rng.random()}" for _ in range(rng.randint(1, 5))))
            handle.write("\n")
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", message, env=env)

    made = 0
    while made < commits:
        kind = rng.random()
        if kind < 0.25:
            git(path, "checkout", "-q", "-b", f"feature-{pr}")
            for _ in range(rng.randint(1, 3)):
                commit(f"work on feature {pr}", rng.choice(authors), f"feature-{pr}.txt")
                made += 1
            git(path, "checkout", "-q", "main")
            commit("unrelated main work", rng.choice(authors))
            made += 1
            moment += 60
            env = {"GIT_COMMITTER_DATE": f"{moment} +0000", "GIT_AUTHOR_DATE": f"{moment} +0000"}
            git(
                path,
                "merge",
                "-q",
                "--no-ff",
                "-m",
                f"Merge pull request #{pr} from octo/feature-{pr}",
                f"feature-{pr}",
                env=env,
            )
            made += 1
            pr += 1
        elif kind < 0.35:
            commit(f"Squashed change ({'#'}{pr})", rng.choice(authors))
            pr += 1
            made += 1
        else:
            commit(f"commit {made}", rng.choice(authors))
            made += 1
        if rng.random() < 0.15:
            tag_env = {"GIT_COMMITTER_DATE": f"{moment + 30} +0100"}
            if rng.random() < 0.5:
                git(path, "tag", "-a", f"v1.{made}", "-m", "release", env=tag_env)
            else:
                git(path, "tag", f"deploy-{made}")
    git(
        path,
        "tag",
        "-a",
        "v9.9",
        "-m",
        "final release",
        env={"GIT_COMMITTER_DATE": f"{moment + 60} +0100"},
    )
    git(path, "tag", "unrelated-tag", "HEAD~1")
    return path


async def wait_job(client: Any, job_id: str) -> dict[str, Any]:
    """Poll a job through the API until it reaches a final status (60 s at most)."""
    deadline = asyncio.get_running_loop().time() + 60.0
    while True:
        body: dict[str, Any] = await (await client.get(f"/app/etl/jobs/{job_id}")).get_json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.05)
