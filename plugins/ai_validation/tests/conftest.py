"""Fixtures of the AI-validation tests: one app per module (``pulse_module_app``, every
installed plugin), a tenant per test."""

from __future__ import annotations

from pathlib import Path

import pytest
from quart import Quart

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture, make_tenant

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def ai_app(pulse_module_app: Quart) -> Quart:
    """The module's app (pulse-etl and pulse-ai-validation among its plugins)."""
    return pulse_module_app


@pytest.fixture
def engine(ai_app: Quart) -> PulseEngine:
    """The engine of the module's app."""
    pulse: PulseEngine = ai_app.extensions["pulse"]
    return pulse


@pytest.fixture
async def ai_tenant(ai_app: Quart) -> TenantFixture:
    """A fresh tenant of the module's app."""
    return await make_tenant(ai_app)
