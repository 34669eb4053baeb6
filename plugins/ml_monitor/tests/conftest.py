"""Fixtures of the pulse-ml-monitor tests: one app per module (``pulse_module_app``: every
installed plugin, the session's embedded PostgreSQL with pgvector), a fresh tenant per test."""

from __future__ import annotations

import pytest
from quart import Quart

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture, make_tenant


@pytest.fixture(scope="module")
def ml_app(pulse_module_app: Quart) -> Quart:
    """The module's app."""
    return pulse_module_app


@pytest.fixture
def engine(ml_app: Quart) -> PulseEngine:
    """The engine of the module's app."""
    pulse: PulseEngine = ml_app.extensions["pulse"]
    return pulse


@pytest.fixture
async def ml_tenant(ml_app: Quart) -> TenantFixture:
    """A fresh tenant of the module's app."""
    return await make_tenant(ml_app)


@pytest.fixture
async def other_tenant(ml_app: Quart) -> TenantFixture:
    """A second tenant: the attacker, or the neighbour whose rows must stay invisible."""
    return await make_tenant(ml_app)
