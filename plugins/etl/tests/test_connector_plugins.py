"""Connectors come from other plugins through pulse-etl's ``register_connectors`` hook:
a third-party connector runs like a built-in one, pluggy's order decides between two of the
same name, and a plugin whose hook raises fails alone. Settings are read per engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pulse_etl import model
from pulse_etl.connector import SyncRun
from pulse_etl.connectors.common import repository_row
from pulse_etl.plugin import service_for
from pulse_etl.settings import EtlSettings
from pydantic import BaseModel, ConfigDict
from quart import Quart
from sqlalchemy import select

from pulse_engine import Settings, hookimpl
from pulse_engine.testing import make_tenant, running_app

from .conftest import wait_job


class ProbeConfig(BaseModel):
    """The probe connector's configuration: the name of the repository it reports."""

    model_config = ConfigDict(extra="forbid")

    repository: str


class ProbeConnector:
    """A connector of a third-party plugin: it loads one repository row."""

    config_model = ProbeConfig
    secret_fields: frozenset[str] = frozenset()

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description

    def check(self, config: ProbeConfig, settings: EtlSettings) -> None:
        """Every probe configuration is allowed."""

    async def run(self, run: SyncRun) -> None:
        """Commit one repository row with a cursor."""
        name = run.config.repository
        await run.commit({"repositories": [repository_row("probe", name, name=name)]},
                         cursors={"repositories": {"done": name}}, progress=1.0)


class ProbePlugin:
    """Registers the ``probe`` connector."""

    @hookimpl
    def register_connectors(self) -> list[Any]:
        return [ProbeConnector("probe", "plain probe")]


class FirstProbePlugin:
    """Registers another ``probe`` connector, asking to be called first."""

    @hookimpl(tryfirst=True)
    def register_connectors(self) -> Any:
        return ProbeConnector("probe", "tryfirst probe")


class BrokenPlugin:
    """A connector plugin whose hook raises."""

    @hookimpl
    def register_connectors(self) -> list[Any]:
        raise RuntimeError("broken connector plugin")


@pytest.fixture
async def probe_app(pulse_settings: Settings, etl_env: None) -> AsyncIterator[Quart]:
    """An app with the probe plugins: ``first`` registered before ``plain`` (pluggy calls
    later registrations first, so without ``tryfirst`` the plain one would win)."""
    plugins = {"probe-first": FirstProbePlugin(), "probe-plain": ProbePlugin(),
               "broken-connectors": BrokenPlugin()}
    async with running_app(pulse_settings, plugins=plugins) as app:
        yield app


async def test_a_plugin_connector_runs_a_job(probe_app: Quart) -> None:
    tenant = await make_tenant(probe_app)
    response = await tenant.analyst_client.post("/app/etl/jobs", json={
        "connector": "probe", "config": {"repository": "from-a-plugin"}})
    assert response.status_code == 202, await response.get_json()
    job = await wait_job(tenant.analyst_client, (await response.get_json())["id"])
    assert job["status"] == "succeeded", job
    assert job["stats"]["repositories"] == {"created": 1, "updated": 0}
    engine = probe_app.extensions["pulse"]
    async with engine.db.tenant_session(tenant.id) as session:
        names = (await session.scalars(select(model.repositories.c.name))).all()
    assert names == ["from-a-plugin"]
    refused = await tenant.analyst_client.post("/app/etl/jobs", json={
        "connector": "probe", "config": {"repository": "x", "extra": 1}})
    assert refused.status_code == 422
    assert (await refused.get_json())["errors"][0]["field"] == "config.extra"


async def test_tryfirst_decides_between_two_connectors_of_one_name(probe_app: Quart) -> None:
    tenant = await make_tenant(probe_app)
    listing = await (await tenant.viewer_client.get("/app/etl/connectors")).get_json()
    described = {item["name"]: item["description"] for item in listing["items"]}
    assert described["probe"] == "tryfirst probe"
    assert service_for(probe_app.extensions["pulse"]).connectors.get("probe").description == (
        "tryfirst probe")


async def test_a_raising_connector_plugin_fails_alone(probe_app: Quart) -> None:
    tenant = await make_tenant(probe_app)
    listing = await (await tenant.viewer_client.get("/app/etl/connectors")).get_json()
    assert {"git", "github", "jira", "generic", "probe"} <= {i["name"] for i in listing["items"]}
    plugins = {p["name"]: p for p in (await (await tenant.viewer_client.get(
        "/api/v1/plugins")).get_json())["plugins"]}
    assert plugins["broken-connectors"]["status"] == "failed"
    assert "broken connector plugin" in " ".join(plugins["broken-connectors"]["errors"])
    assert plugins["etl"]["status"] == "loaded"
    assert plugins["probe-plain"]["status"] == "loaded"


async def test_settings_are_read_per_engine(pulse_settings: Settings, etl_env: None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_ETL_BATCH_SIZE", "17")
    async with running_app(pulse_settings) as first:
        monkeypatch.setenv("PULSE_ETL_BATCH_SIZE", "23")
        async with running_app(pulse_settings) as second:
            assert service_for(first.extensions["pulse"]).settings.batch_size == 17
            assert service_for(second.extensions["pulse"]).settings.batch_size == 23
            assert service_for(first.extensions["pulse"]) is not service_for(
                second.extensions["pulse"])
