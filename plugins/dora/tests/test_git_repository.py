"""DORA over a real git repository ingested by pulse-etl's ``git`` connector (tags = deployments).

The expected numbers come from ``git`` itself: for each deploy tag in date order, the
commits it ships are ``git rev-list --no-merges TAG --not EARLIER_TAGS``; a change's lead
time is the tag's date minus the commit's author date.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from dora_rows import Rows
from test_metrics import ok

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI")

START = datetime.fromisoformat("2024-01-01T09:00:00+00:00")


def git(repo: Path, *args: str, when: datetime | None = None) -> str:
    """Run git in ``repo`` (author, committer and tagger dated ``when``); return stdout."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.test",
        "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.test",
        "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
    }
    if when is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = when.isoformat()
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    ).stdout


def build_repository(repo: Path) -> None:
    """Three months of commits, a merged feature branch, and annotated deploy tags."""
    git(repo, "init", "-q", "-b", "main")
    moment = START
    for index in range(36):
        moment += timedelta(hours=50 + (index * 7) % 31)
        (repo / "file.txt").write_text(f"{index}\n")
        git(repo, "add", "file.txt")
        git(repo, "commit", "-q", "-m", f"change {index}", when=moment)
        if index == 20:
            git(repo, "checkout", "-q", "-b", "feature")
            (repo / "feature.txt").write_text("feature\n")
            git(repo, "add", "feature.txt")
            git(repo, "commit", "-q", "-m", "feature work", when=moment + timedelta(hours=1))
            git(repo, "checkout", "-q", "main")
            git(repo, "merge", "-q", "--no-ff", "-m", "Merge pull request #3 from feature",
                "feature", when=moment + timedelta(hours=2))
            moment += timedelta(hours=2)
        if index % 4 == 3:
            git(repo, "tag", "-a", f"v{index}", "-m", "release",
                when=moment + timedelta(hours=5 + index % 3))


def expected_from_git(repo: Path) -> tuple[dict[str, int], float]:
    """Deployments per month and the median lead time, computed from git output alone."""
    tags = []
    for line in git(repo, "for-each-ref", "refs/tags",
                    "--format=%(refname:short) %(taggerdate:iso-strict)").splitlines():
        name, date = line.split()
        tags.append((datetime.fromisoformat(date), name))
    tags.sort()
    per_month: dict[str, int] = {}
    leads: list[float] = []
    for position, (deployed, name) in enumerate(tags):
        per_month[deployed.strftime("%Y-%m")] = per_month.get(deployed.strftime("%Y-%m"), 0) + 1
        earlier = [f"^{tag}" for _, tag in tags[:position]]
        shipped = git(repo, "rev-list", "--no-merges", "--format=%aI", name, *earlier)
        for line in shipped.splitlines():
            if line.startswith("commit "):
                continue
            lead = (deployed - datetime.fromisoformat(line)).total_seconds()
            if lead > 0:
                leads.append(lead)
    return per_month, statistics.median(leads)


async def test_git_repository_matches_git_log(
    tmp_path: Path, rows: Rows, dora_tenant: TenantFixture, engine: PulseEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pulse_etl.plugin import service_for
    from pulse_etl.settings import EtlSettings

    repo = tmp_path / "service"
    repo.mkdir()
    build_repository(repo)
    per_month, median = expected_from_git(repo)

    service = service_for(engine)
    monkeypatch.setattr(service, "settings", EtlSettings(git_roots=str(tmp_path)))
    job = await service.create_job(
        dora_tenant.id,
        {"connector": "git", "config": {"path": str(repo), "deploy_tags": r"^v\d+$"}},
        None, enqueue=False,
    )
    assert await service.run_job(dora_tenant.id, job["id"]) == "succeeded"
    await rows.refresh()

    monthly = await ok(dora_tenant, "deployment_frequency", interval="month",
                       start="2024-01-01", end="2024-05-01")
    counted = {point["start"][:7]: point["sample_size"] for point in monthly["points"]}
    assert {month: count for month, count in counted.items() if count} == per_month
    lead = await ok(dora_tenant, "lead_time_for_changes", interval="all",
                    start="2024-01-01", end="2024-05-01")
    assert lead["points"][0]["median"] == pytest.approx(median)
