"""Fixtures of the DORA tests: one app per module (``pulse_module_app``, every installed
plugin), a tenant per test, and a row builder."""

from __future__ import annotations

import pytest
from dora_rows import Rows
from quart import Quart

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture, make_tenant


@pytest.fixture(scope="module")
def dora_app(pulse_module_app: Quart) -> Quart:
    """The module's app (pulse-etl and pulse-dora among its plugins)."""
    return pulse_module_app


@pytest.fixture
def engine(dora_app: Quart) -> PulseEngine:
    """The engine of the module's app."""
    pulse: PulseEngine = dora_app.extensions["pulse"]
    return pulse


@pytest.fixture
async def dora_tenant(dora_app: Quart) -> TenantFixture:
    """A fresh tenant of the module's app."""
    return await make_tenant(dora_app)


@pytest.fixture
def rows(engine: PulseEngine, dora_tenant: TenantFixture) -> Rows:
    """A row builder for the test's tenant."""
    return Rows(engine, dora_tenant.id)
