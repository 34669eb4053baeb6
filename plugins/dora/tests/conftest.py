"""Fixtures of the DORA tests: one app per module, a tenant per test, and a row builder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dora_rows import Rows
from quart import Quart

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture, make_settings, make_tenant, running_app


@pytest.fixture(scope="module")
async def dora_app(
    pulse_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Quart]:
    """An app with every installed plugin (pulse-etl and pulse-dora among them)."""
    data_dir: Path = tmp_path_factory.mktemp("dora")
    settings = make_settings(pulse_database_url, data_dir)
    async with running_app(settings) as app:
        yield app


@pytest.fixture
def engine(dora_app: Quart) -> PulseEngine:
    """The engine of the module's app."""
    pulse: PulseEngine = dora_app.extensions["pulse"]
    return pulse


@pytest.fixture
async def dora_tenant(dora_app: Quart) -> TenantFixture:
    """A fresh tenant."""
    return await make_tenant(dora_app)


@pytest.fixture
def rows(engine: PulseEngine, dora_tenant: TenantFixture) -> Rows:
    """A row builder for the test's tenant."""
    return Rows(engine, dora_tenant.id)
