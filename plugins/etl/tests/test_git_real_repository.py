"""The git connector on a real repository: this project's own history, cloned locally."""

from __future__ import annotations

from pathlib import Path

import pytest
from pulse_etl import model
from pulse_etl.service import EtlService
from sqlalchemy import func, select

from pulse_engine.testing import TenantFixture

from .conftest import git, wait_job

PROJECT = Path(__file__).resolve().parents[3]


@pytest.mark.skipif(not (PROJECT / ".git").exists(), reason="not a git checkout")
async def test_own_history_is_ingested_exactly(
    etl: EtlService, etl_tenant: TenantFixture, git_root: Path
) -> None:
    clone = git_root / "pulse"
    git(git_root, "clone", "-q", str(PROJECT), str(clone))
    branch = git(clone, "rev-parse", "--abbrev-ref", "HEAD").strip()
    expected = int(git(clone, "rev-list", "--count", branch))
    config = {"path": str(clone), "branch": branch}
    for run in ("first", "again"):
        response = await etl_tenant.analyst_client.post(
            "/app/etl/jobs", json={"connector": "git", "config": config}
        )
        job = await wait_job(etl_tenant.viewer_client, (await response.get_json())["id"])
        assert job["status"] == "succeeded", job
        created = job["stats"].get("commits", {"created": 0})["created"]
        assert created == (expected if run == "first" else 0)
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        stored = await session.scalar(select(func.count()).select_from(model.commits))
    assert stored == expected
