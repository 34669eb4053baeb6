"""Fixtures of the portfolio tests: one app per module (every installed plugin plus a
third-party metric plugin the portfolio has never heard of), a tenant per test, rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from portfolio_rows import Acme, Rows
from quart import Quart

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture, make_settings, make_tenant, running_app


@pytest.fixture(scope="module")
def acme() -> Acme:
    """The third-party metric plugin."""
    return Acme()


@pytest.fixture(scope="module")
async def portfolio_app(
    pulse_database_url: str, tmp_path_factory: pytest.TempPathFactory, acme: Acme
) -> AsyncIterator[Quart]:
    """An app with every installed plugin and ``acme``."""
    data_dir: Path = tmp_path_factory.mktemp("portfolio")
    settings = make_settings(pulse_database_url, data_dir)
    async with running_app(settings, plugins={"acme": acme}) as app:
        yield app


@pytest.fixture
def engine(portfolio_app: Quart) -> PulseEngine:
    """The engine of the module's app."""
    pulse: PulseEngine = portfolio_app.extensions["pulse"]
    return pulse


@pytest.fixture
async def tenant(portfolio_app: Quart) -> TenantFixture:
    """A fresh tenant."""
    return await make_tenant(portfolio_app)


@pytest.fixture
def rows(engine: PulseEngine, tenant: TenantFixture) -> Rows:
    """A row builder for the test's tenant."""
    return Rows(engine, tenant.id)
