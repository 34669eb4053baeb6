"""Fixtures of the pulse-github tests: one app per module (git roots allowed under a
temporary folder), a tenant per test, git helpers."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from quart import Quart

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture, make_settings, make_tenant, running_app


@pytest.fixture(scope="module")
def github_git_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The folder the module's app allows as ``PULSE_ETL_GIT_ROOTS``."""
    root = tmp_path_factory.mktemp("github-repos")
    previous = os.environ.get("PULSE_ETL_GIT_ROOTS")
    os.environ["PULSE_ETL_GIT_ROOTS"] = str(root)
    yield root
    if previous is None:
        os.environ.pop("PULSE_ETL_GIT_ROOTS", None)
    else:
        os.environ["PULSE_ETL_GIT_ROOTS"] = previous


@pytest.fixture(scope="module")
async def github_app(pulse_database_url: str, tmp_path_factory: pytest.TempPathFactory,
                     github_git_root: Path) -> AsyncIterator[Quart]:
    """An app with every installed plugin (pulse-etl and pulse-github among them)."""
    settings = make_settings(pulse_database_url, tmp_path_factory.mktemp("github"))
    async with running_app(settings) as app:
        yield app


@pytest.fixture
def engine(github_app: Quart) -> PulseEngine:
    """The engine of the module's app."""
    pulse: PulseEngine = github_app.extensions["pulse"]
    return pulse


@pytest.fixture
async def gh_tenant(github_app: Quart) -> TenantFixture:
    """A fresh tenant."""
    return await make_tenant(github_app)
