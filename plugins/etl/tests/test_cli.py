"""``pulse etl run``, ``pulse demo`` and ``pulse serve --demo`` through click's test runner."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pulse_etl import model
from pulse_etl.demo.tenant import DEMO_ADMIN_EMAIL, DEMO_TENANT_NAME
from pulse_etl.service import EtlService
from quart import Quart
from sqlalchemy import func, select

from pulse_engine.cli import build_cli
from pulse_engine.testing import TEST_JWT_SECRET, TenantFixture

from .conftest import build_repository, git


@pytest.fixture
def cli_env(pulse_database_url: str, tmp_path: Path, git_root: Path) -> dict[str, str | None]:
    """The environment of an operator running ``pulse`` against the test database."""
    return {
        "DATABASE_URL": pulse_database_url,
        "JWT_SECRET_KEY": TEST_JWT_SECRET,
        "PULSE_DATA_DIR": str(tmp_path / "cli-data"),
        "PULSE_AUTO_MIGRATE": "true",
        "PULSE_LOG_LEVEL": "WARNING",
        "PULSE_ETL_GIT_ROOTS": str(git_root),
        "REDIS_URL": None,
        "AMQP_URL": None,
    }


async def invoke(env: dict[str, str | None], *args: str) -> Any:
    """Run ``pulse`` in a thread (it runs its own event loop, like the real command)."""
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, build_cli(), list(args), env=env)


async def _count(etl: EtlService, tenant_id: str, table: Any) -> int:
    async with etl.engine.db.tenant_session(tenant_id) as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def test_etl_run_loads_through_a_recorded_job(
    cli_env: dict[str, str | None], etl: EtlService, etl_tenant: TenantFixture, git_root: Path
) -> None:
    repo = build_repository(git_root / "cli", commits=30)
    config = json.dumps({"path": str(repo), "branch": "main"})
    result = await invoke(cli_env, "etl", "run", "git", "--tenant", etl_tenant.id,
                          "--config", config)
    assert result.exit_code == 0, result.output
    expected = int(git(repo, "rev-list", "--count", "main"))
    assert await _count(etl, etl_tenant.id, model.commits) == expected
    jobs = (await etl.jobs.page(etl_tenant.id, 10, None)).items
    assert [(job["status"], job["progress"]) for job in jobs] == [("succeeded", 1.0)]
    assert jobs[0]["stats"]["commits"] == {"created": expected, "updated": 0}
    assert "commits" in result.output and str(expected) in result.output


async def test_etl_run_exit_codes(
    cli_env: dict[str, str | None], etl: EtlService, etl_tenant: TenantFixture, git_root: Path
) -> None:
    refused = await invoke(cli_env, "etl", "run", "git", "--tenant", etl_tenant.id,
                           "--config", json.dumps({"path": "/etc"}))
    assert refused.exit_code == 1 and "config.path" in refused.output
    empty = git_root / "not-a-repository"
    empty.mkdir()
    failed = await invoke(cli_env, "etl", "run", "git", "--tenant", etl_tenant.id,
                          "--config", json.dumps({"path": str(empty)}))
    assert failed.exit_code == 1 and "failed" in failed.output
    jobs = (await etl.jobs.page(etl_tenant.id, 10, None)).items
    assert [job["status"] for job in jobs] == ["failed"]
    both = await invoke(cli_env, "etl", "run", "git", "--tenant", etl_tenant.id,
                        "--config", "{}", "--integration", str(uuid.uuid4()))
    assert both.exit_code == 2
    unknown = await invoke(cli_env, "etl", "run", "nope", "--tenant", etl_tenant.id,
                           "--config", "{}")
    assert unknown.exit_code == 1 and "Unknown connector" in unknown.output


async def test_serve_demo_loads_the_demo_once(
    cli_env: dict[str, str | None], etl_app: Quart, etl: EtlService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served: list[Any] = []
    monkeypatch.setattr("hypercorn.run.run", lambda config: served.append(config) or 0)
    first = await invoke(cli_env, "serve", "--demo")
    assert first.exit_code == 0, first.output
    assert DEMO_ADMIN_EMAIL in first.output and "password" in first.output
    second = await invoke(cli_env, "serve", "--demo")
    assert second.exit_code == 0, second.output
    assert "already present" in second.output and "password" not in second.output
    direct = await invoke(cli_env, "demo", "--if-missing")
    assert direct.exit_code == 0, direct.output
    assert len(served) == 2
    tenants = etl.engine.core_tables["tenants"]
    async with etl.engine.db.system_session() as session:
        ids = (await session.execute(
            select(tenants.c.id).where(tenants.c.name == DEMO_TENANT_NAME))).scalars().all()
    assert len(ids) == 1
    tenant_id = str(ids[0])
    assert tenant_id in first.output and tenant_id in second.output
    assert direct.stdout.strip() == tenant_id
    assert await _count(etl, tenant_id, model.deployments) > 500
    password = first.output.split("password (shown once): ", 1)[1].split()[0]
    login = await etl_app.test_client().post(
        "/api/v1/auth/login", json={"email": DEMO_ADMIN_EMAIL, "password": password})
    assert login.status_code == 200
