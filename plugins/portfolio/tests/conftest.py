"""Fixtures of the portfolio tests: one app per module (every installed plugin plus a
third-party metric plugin the portfolio has never heard of), a tenant per test, rows."""

from __future__ import annotations

import pytest
from portfolio_rows import Acme, Rows
from quart import Quart

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture, make_tenant


@pytest.fixture(scope="module")
def acme() -> Acme:
    """The third-party metric plugin."""
    return Acme()


@pytest.fixture(scope="module")
def pulse_module_plugins(acme: Acme) -> dict[str, object]:
    """The module's app registers ``acme`` besides the installed plugins."""
    return {"acme": acme}


@pytest.fixture(scope="module")
def portfolio_app(pulse_module_app: Quart) -> Quart:
    """The module's app: every installed plugin and ``acme``."""
    return pulse_module_app


@pytest.fixture
def engine(portfolio_app: Quart) -> PulseEngine:
    """The engine of the module's app."""
    pulse: PulseEngine = portfolio_app.extensions["pulse"]
    return pulse


@pytest.fixture
async def tenant(portfolio_app: Quart) -> TenantFixture:
    """A fresh tenant of the module's app."""
    return await make_tenant(portfolio_app)


@pytest.fixture
def rows(engine: PulseEngine, tenant: TenantFixture) -> Rows:
    """A row builder for the test's tenant."""
    return Rows(engine, tenant.id)
