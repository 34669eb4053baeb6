"""Fixtures of the AI-validation tests: one app per module, a tenant per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quart import Quart

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture, make_settings, make_tenant, running_app

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
async def ai_app(
    pulse_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Quart]:
    """An app with every installed plugin (pulse-etl and pulse-ai-validation among them)."""
    data_dir: Path = tmp_path_factory.mktemp("ai_validation")
    settings = make_settings(pulse_database_url, data_dir)
    async with running_app(settings) as app:
        yield app


@pytest.fixture
def engine(ai_app: Quart) -> PulseEngine:
    """The engine of the module's app."""
    pulse: PulseEngine = ai_app.extensions["pulse"]
    return pulse


@pytest.fixture
async def ai_tenant(ai_app: Quart) -> TenantFixture:
    """A fresh tenant."""
    return await make_tenant(ai_app)
