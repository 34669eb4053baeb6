"""Fixtures of the pulse-ml-monitor tests: one app per module (every installed plugin, the
session's embedded PostgreSQL with pgvector), a fresh tenant per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quart import Quart

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture, make_settings, make_tenant, running_app


@pytest.fixture(scope="module")
async def ml_app(
    pulse_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Quart]:
    """An app with every installed plugin."""
    data_dir: Path = tmp_path_factory.mktemp("ml")
    settings = make_settings(pulse_database_url, data_dir)
    async with running_app(settings) as app:
        yield app


@pytest.fixture
def engine(ml_app: Quart) -> PulseEngine:
    """The engine of the module's app."""
    pulse: PulseEngine = ml_app.extensions["pulse"]
    return pulse


@pytest.fixture
async def ml_tenant(ml_app: Quart) -> TenantFixture:
    """A fresh tenant."""
    return await make_tenant(ml_app)


@pytest.fixture
async def other_tenant(ml_app: Quart) -> TenantFixture:
    """A second tenant: the attacker, or the neighbour whose rows must stay invisible."""
    return await make_tenant(ml_app)
