"""``commit_files`` from the git connector: renames, binary files, odd paths, the files
equal to ``git log --numstat`` (parsed here from git's plain text output, not the
connector's ``-z`` form), and a tenant of an earlier version filled by re-running its job."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pulse_etl import model
from pulse_etl.service import EtlService
from sqlalchemy import select, text

from pulse_engine.testing import TenantFixture

from .conftest import build_repository, git, wait_job

PROJECT = Path(__file__).resolve().parents[3]
RENAME = re.compile(r"^(.*)\{(.*) => (.*)\}(.*)$")

FileRow = tuple[str, str, str | None, int | None, int | None, bool]


def numstat_from_git(repo: Path, ref: str) -> set[FileRow]:
    """Every (sha, path, previous path, additions, deletions, binary) of ``git log -M
    --numstat`` in its plain text form (``old => new`` and ``dir/{old => new}/file``)."""
    rows: set[FileRow] = set()
    sha = ""
    for line in git(repo, "-c", "core.quotePath=false", "log", "-M", "--numstat",
                    "--format=%x01%H", ref).splitlines():
        if line.startswith("\x01"):
            sha = line[1:]
            continue
        if not line.strip():
            continue
        added, deleted, path = line.split("\t", 2)
        previous = None
        braces = RENAME.match(path)
        if braces:
            head, old, new, tail = braces.groups()
            previous = re.sub("//", "/", f"{head}{old}{tail}")
            path = re.sub("//", "/", f"{head}{new}{tail}")
        elif " => " in path:
            previous, path = (unquote(part) for part in path.split(" => ", 1))
        path = unquote(path)
        binary = added == "-"
        rows.add((sha, path, previous, None if binary else int(added),
                  None if binary else int(deleted), binary))
    return rows


def unquote(path: str) -> str:
    """A path as git's C-style quoting writes it (``"sp ace \\"q\\".txt"``), unquoted."""
    if len(path) < 2 or not (path.startswith('"') and path.endswith('"')):
        return path
    raw = path[1:-1].encode().decode("unicode_escape").encode("latin-1")
    return raw.decode("utf-8")


async def stored_files(etl: EtlService, tenant_id: str) -> set[FileRow]:
    async with etl.engine.db.tenant_session(tenant_id) as session:
        found = (await session.execute(select(model.commit_files))).all()
        commit_ids = dict((await session.execute(
            select(model.commits.c.sha, model.commits.c.id))).all())
    assert all(row.commit_id == commit_ids[row.sha] for row in found)
    return {(row.sha, row.path, row.previous_path, row.additions, row.deletions,
             row.is_binary) for row in found}


async def ingest(tenant: TenantFixture, config: dict[str, str]) -> dict[str, object]:
    response = await tenant.analyst_client.post(
        "/app/etl/jobs", json={"connector": "git", "config": config})
    assert response.status_code == 202, await response.get_json()
    job = await wait_job(tenant.viewer_client, (await response.get_json())["id"])
    assert job["status"] == "succeeded", job
    return job


async def test_renames_binary_files_and_odd_paths(etl: EtlService, etl_tenant: TenantFixture,
                                                  git_root: Path) -> None:
    repo = git_root / "odd"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Ada")
    git(repo, "config", "user.email", "ada@example.test")
    (repo / "old.txt").write_text("".join(f"line {n}\n" for n in range(20)))
    (repo / 'sp ace "q".txt').write_text("x\n")
    (repo / "logo.png").write_bytes(b"\x89PNG\x00\x01\x02")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one")
    git(repo, "mv", "old.txt", "new é.txt")
    with (repo / "new é.txt").open("a") as handle:
        handle.write("one more\n")
    git(repo, "commit", "-q", "-am", "rename with an edit")
    (repo / "d1" / "sub").mkdir(parents=True)
    git(repo, "mv", "new é.txt", "d1/sub/n.txt")
    git(repo, "commit", "-q", "-m", "move into a folder")
    shas = git(repo, "rev-list", "--reverse", "main").split()

    await ingest(etl_tenant, {"path": str(repo), "branch": "main"})
    stored = await stored_files(etl, etl_tenant.id)
    assert stored == {
        (shas[0], "old.txt", None, 20, 0, False),
        (shas[0], 'sp ace "q".txt', None, 1, 0, False),
        (shas[0], "logo.png", None, None, None, True),
        (shas[1], "new é.txt", "old.txt", 1, 0, False),
        (shas[2], "d1/sub/n.txt", "new é.txt", 0, 0, False),
    }
    assert stored == numstat_from_git(repo, "main")


async def test_files_equal_git_log_and_a_rerun_fills_an_older_tenant(
        etl: EtlService, etl_tenant: TenantFixture, git_root: Path) -> None:
    repo = build_repository(git_root / "app", commits=60)
    config = {"path": str(repo), "branch": "main"}
    await ingest(etl_tenant, config)
    expected = numstat_from_git(repo, "main")
    assert await stored_files(etl, etl_tenant.id) == expected

    # a tenant of the previous version: commits stored, no files, a cursor without version
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        await session.execute(text("DELETE FROM commit_files"))
        await session.execute(text(
            "UPDATE sync_cursors SET cursor = cursor - 'version' WHERE stream = 'commits'"))
    job = await ingest(etl_tenant, config)
    stats = job["stats"]
    assert isinstance(stats, dict)
    assert stats["commits"] == {"created": 0, "updated": 0}
    assert stats["commit_files"]["created"] == len(expected)
    assert await stored_files(etl, etl_tenant.id) == expected
    again = await ingest(etl_tenant, config)
    assert again["stats"] == {} or all(
        counts == {"created": 0, "updated": 0}
        for counts in again["stats"].values())  # type: ignore[union-attr]


@pytest.mark.skipif(not (PROJECT / ".git").exists(), reason="not a git checkout")
async def test_own_history_files_equal_git_log(etl: EtlService, etl_tenant: TenantFixture,
                                               git_root: Path) -> None:
    clone = git_root / "pulse"
    git(git_root, "clone", "-q", str(PROJECT), str(clone))
    branch = git(clone, "rev-parse", "--abbrev-ref", "HEAD").strip()
    await ingest(etl_tenant, {"path": str(clone), "branch": branch})
    expected = numstat_from_git(clone, branch)
    assert len(expected) > 500
    assert await stored_files(etl, etl_tenant.id) == expected
