"""One test per hook of ``pulse_engine/hookspecs.py``, each with a probe plugin of its own.

Every test registers a small plugin object for itself only (``load_entry_points=False``)
and checks the hook's observable effect. The last tests keep this file and
``docs/hooks.md`` in step with the hookspecs, as Datasette's own test suite does.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from fixtures.plugin_harness import fresh_database, write_distribution
from pydantic import BaseModel
from quart import Blueprint, Quart
from sqlalchemy import Column, Integer, MetaData, Table, text
from sqlalchemy.dialects.postgresql import UUID

from pulse_engine import hookimpl, hookspec, hookspecs
from pulse_engine.app import PulseEngine, create_app
from pulse_engine.cache import CachePolicy
from pulse_engine.metrics import (
    Freshness,
    MetricComputation,
    MetricDefinition,
    MetricQuery,
    MetricValue,
)
from pulse_engine.queue import Consumer, Message
from pulse_engine.settings import Settings
from pulse_engine.testing import make_settings, make_tenant, running_app

ROOT = Path(__file__).resolve().parent.parent
HOOK_PROBE = Path(__file__).parent / "fixtures" / "hook_probe"
HOOK_NAMES = sorted(
    name
    for name, value in vars(hookspecs).items()
    if inspect.isfunction(value) and hasattr(value, "pulse_engine_spec")
)


@pytest.fixture(scope="module")
async def hooks_database_url(pulse_database_url: str) -> AsyncIterator[str]:
    """A database holding only the engine's own migrations, for apps without entry points."""
    async with fresh_database(pulse_database_url) as url:
        yield url


@pytest.fixture
def settings(hooks_database_url: str, tmp_path: Path) -> Settings:
    """Settings of one probe app."""
    return make_settings(hooks_database_url, tmp_path)


def probe_app(settings: Settings, probe: object) -> Any:
    """The app with only the built-in plugins and ``probe`` (registered as ``probe``)."""
    return running_app(settings, plugins={"probe": probe}, load_entry_points=False)


def engine_of(app: Quart) -> PulseEngine:
    """The engine of an app."""
    engine: PulseEngine = app.extensions["pulse"]
    return engine


async def test_hook_register_routes(settings: Settings) -> None:
    class Probe:
        @hookimpl
        async def register_routes(self, engine: PulseEngine) -> list[Blueprint]:
            blueprint = Blueprint("probe_routes", __name__, url_prefix="/api/v1/probe")

            @blueprint.get("/ping")
            async def ping() -> dict[str, str]:
                return {"pong": "yes"}

            return [blueprint]

    async with probe_app(settings, Probe()) as app:
        tenant = await make_tenant(app)
        response = await tenant.viewer_client.get("/api/v1/probe/ping")
        assert response.status_code == 200
        assert await response.get_json() == {"pong": "yes"}
        engine = engine_of(app)
        assert engine.route_owners["probe_routes.ping"] == "probe"
        routes = engine.plugins.records["probe"].routes
        assert {
            "path": "/api/v1/probe/ping",
            "methods": ["GET"],
            "endpoint": "probe_routes.ping",
        } in routes


class _OwnHookspecs:
    """A plugin-owned hookspec, as a plugin would declare it in a module of its own."""

    @hookspec
    def register_greetings(self, engine: Any) -> Any:
        """Return greetings."""


async def test_hook_add_hookspecs(settings: Settings) -> None:
    class Owner:
        @hookimpl
        def add_hookspecs(self, manager: Any) -> None:
            manager.add_hookspecs(_OwnHookspecs)

    class Contributor:
        @hookimpl(tryfirst=True)
        def register_greetings(self) -> list[str]:
            return ["hello"]

    class Later:
        @hookimpl
        async def register_greetings(self, engine: Any) -> list[str]:
            return ["hi"]

    app = create_app(
        settings,
        plugins={"owner": Owner(), "contributor": Contributor(), "later": Later()},
        load_entry_points=False,
    )
    async with app.test_app():
        engine = engine_of(app)
        results = await engine.call_hook("register_greetings", engine=engine)
        assert results == [("contributor", ["hello"]), ("later", ["hi"])]
        # the hook is verified like the host's: an unknown hook name is an error
        engine.plugins.check_pending()


async def test_hook_register_tables(settings: Settings) -> None:
    class Probe:
        @hookimpl
        def register_tables(self, metadata: MetaData) -> None:
            Table(
                "hook_probe_defined",
                metadata,
                Column("tenant_id", UUID(as_uuid=False), primary_key=True),
                Column("value", Integer, nullable=False),
            )

    async with probe_app(settings, Probe()) as app:
        table = engine_of(app).metadata.tables["hook_probe_defined"]
        assert [column.name for column in table.primary_key] == ["tenant_id"]
        # no migration of the probe creates it: the database check says so
        database = await app.test_client().get("/health/database")
        body = await database.get_json()
        assert database.status_code == 503, body
        assert body["status"] == "unhealthy"
        assert body["tables"]["missing"] == ["hook_probe_defined"], body


async def test_hook_register_migrations(pulse_database_url: str, tmp_path: Path) -> None:
    class Probe:
        @hookimpl
        def register_migrations(self) -> Path:
            return HOOK_PROBE / "migrations"

    # a fresh database, so the probe's table is created by this very upgrade
    async with (
        fresh_database(pulse_database_url) as url,
        probe_app(make_settings(url, tmp_path), Probe()) as app,
    ):
        engine = engine_of(app)
        assert engine.migration_folders["probe"] == HOOK_PROBE / "migrations"
        assert engine.db.owner_engine is not None
        async with engine.db.owner_engine.connect() as connection:
            versions = set(
                (
                    await connection.execute(
                        text("SELECT version_num FROM pulse_migrations_probe")
                    )
                )
                .scalars()
                .all()
            )
            security = (
                await connection.execute(
                    text(
                        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
                        "WHERE relname = 'hook_probe_items'"
                    )
                )
            ).one()
        assert "probe_0001" in versions
        assert tuple(security) == (True, True)
        database = await app.test_client().get("/health/database")
        body = await database.get_json()
        assert body["migrations"]["at_head"] is True, body


async def test_hook_register_cache_policies(settings: Settings) -> None:
    calls: list[int] = []

    class Probe:
        @hookimpl
        def register_routes(self) -> Blueprint:
            blueprint = Blueprint("probe_cached", __name__, url_prefix="/api/v1/probe")

            @blueprint.get("/counted")
            async def counted() -> dict[str, int]:
                calls.append(1)
                return {"calls": len(calls)}

            return blueprint

        @hookimpl
        def register_cache_policies(self) -> list[CachePolicy]:
            return [CachePolicy(endpoint="probe_cached.counted", ttl=60, tags=("probe",))]

    async with probe_app(settings, Probe()) as app:
        tenant = await make_tenant(app)
        first = await tenant.viewer_client.get("/api/v1/probe/counted")
        second = await tenant.viewer_client.get("/api/v1/probe/counted")
        assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit")
        assert await second.get_json() == {"calls": 1}
        assert len(calls) == 1


async def test_hook_register_queue_consumers(settings: Settings) -> None:
    handled: asyncio.Queue[Message] = asyncio.Queue()

    async def handle(message: Message) -> None:
        await handled.put(message)

    class Probe:
        @hookimpl
        def register_queue_consumers(self) -> list[Consumer]:
            return [Consumer(queue="probe.jobs", handler=handle, max_retries=1)]

    async with probe_app(settings, Probe()) as app:
        engine = engine_of(app)
        assert [consumer.plugin for consumer in engine.consumers] == ["probe"]
        tenant_id = str(uuid.uuid4())
        await engine.queue.publish("probe.jobs", {"n": 1}, tenant_id=tenant_id)
        message = await asyncio.wait_for(handled.get(), timeout=10)
        assert (message.body, message.tenant_id, message.queue) == (
            {"n": 1},
            tenant_id,
            "probe.jobs",
        )


async def test_hook_register_health_checks(settings: Settings) -> None:
    class Probe:
        @hookimpl
        async def register_health_checks(self) -> dict[str, Any]:
            async def disk() -> dict[str, Any]:
                return {"status": "degraded", "free_ratio": 0.05}

            return {"disk": disk}

    async with probe_app(settings, Probe()) as app:
        client = app.test_client()
        one = await client.get("/health/probe")
        body = await one.get_json()
        assert one.status_code == 200
        assert body["status"] == "degraded"
        assert body["checks"]["disk"] == {"status": "degraded", "free_ratio": 0.05}
        overall = await (await client.get("/health")).get_json()
        assert overall["status"] == "degraded"


async def test_hook_register_metrics(settings: Settings) -> None:
    async def compute(engine: Any, query: MetricQuery) -> MetricComputation:
        value = MetricValue(start=query.start, end=query.end, value=42, sample_size=42)
        return MetricComputation(value, [value], Freshness(data_until=None, refresh_pending=False))

    definition = MetricDefinition(
        name="probe.answers",
        unit="count",
        kind="count",
        description="Answers given.",
        higher_is_better=True,
        compute=compute,
    )

    class Probe:
        @hookimpl
        async def register_metrics(self) -> list[MetricDefinition]:
            return [definition]

    async with probe_app(settings, Probe()) as app:
        metrics = engine_of(app).metrics
        assert metrics.get("probe.answers") is definition
        assert metrics.owner("probe.answers") == "probe"


def test_hook_register_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pulse_engine.cli import build_cli

    # the CLI discovers plugins through entry points, so the probe is "installed" for it
    write_distribution(
        tmp_path, "pulse-hook-probe-cli", "1.0.0", {"hook_probe_cli": "pulse_hook_probe_cli"}
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(HOOK_PROBE))
    monkeypatch.delenv("PULSE_PLUGINS", raising=False)
    group = build_cli()
    assert isinstance(group, click.Group)
    assert "probe-hello" in group.commands
    result = CliRunner().invoke(group, ["probe-hello"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "hello from the probe plugin"


async def test_hook_register_tenant_config_schema(settings: Settings) -> None:
    class ProbeConfig(BaseModel):
        threshold: int = 3

    class Probe:
        @hookimpl
        def register_tenant_config_schema(self) -> type[BaseModel]:
            return ProbeConfig

    async with probe_app(settings, Probe()) as app:
        assert engine_of(app).tenant_config_schemas["probe"] is ProbeConfig


async def test_hook_startup(settings: Settings) -> None:
    seen: list[tuple[PulseEngine, bool]] = []

    class Probe:
        @hookimpl
        async def startup(self, engine: PulseEngine) -> None:
            seen.append((engine, engine.db.app_engine is not None))

    async with probe_app(settings, Probe()) as app:
        assert seen == [(engine_of(app), True)]


async def test_hook_shutdown(settings: Settings) -> None:
    seen: list[PulseEngine] = []

    class Probe:
        @hookimpl
        def shutdown(self, engine: PulseEngine) -> None:
            seen.append(engine)

    async with probe_app(settings, Probe()) as app:
        assert seen == []
    assert seen == [engine_of(app)]


async def test_hook_data_loaded(settings: Settings) -> None:
    seen: list[tuple[str, dict[str, dict[str, int]], datetime | None]] = []

    class Listener:
        @hookimpl
        async def data_loaded(
            self, tenant_id: str, stats: dict[str, dict[str, int]], since: datetime | None
        ) -> None:
            seen.append((tenant_id, stats, since))

    class Broken:
        @hookimpl
        def data_loaded(self) -> None:
            raise RuntimeError("cannot react")

    async with probe_app(settings, Listener()) as app:
        engine = engine_of(app)
        engine.plugins.register_object(Broken(), "broken")
        stats = {"deployments": {"created": 2, "updated": 0}}
        since = datetime(2026, 1, 2, tzinfo=UTC)
        await engine.announce_data_loaded("tenant-1", stats, since)
        assert seen == [("tenant-1", stats, since)]
        # a raising reaction is logged; it does not take its plugin out of service
        assert engine.plugins.records["broken"].status == "loaded"


async def test_failing_hook_marks_only_its_plugin_failed(settings: Settings) -> None:
    class Probe:
        @hookimpl
        def register_metrics(self) -> None:
            raise RuntimeError("probe metrics are broken")

    async with probe_app(settings, Probe()) as app:
        record = engine_of(app).plugins.records["probe"]
        assert record.status == "failed"
        assert record.errors == ["register_metrics: RuntimeError: probe metrics are broken"]
        live = await app.test_client().get("/health/live")
        assert live.status_code == 200


def test_every_hook_has_a_test() -> None:
    tested = {name for name in globals() if name.startswith("test_hook_")}
    missing = [name for name in HOOK_NAMES if f"test_hook_{name}" not in tested]
    assert not missing, f"hooks without a test_hook_<name> test: {missing}"


def hook_signature(name: str) -> str:
    """A hook's documented heading: its name and argument names, ``startup(engine)``."""
    parameters = inspect.signature(getattr(hookspecs, name)).parameters
    return f"{name}({', '.join(parameters)})"


def test_every_hook_is_documented() -> None:
    headings = re.findall(r"^## (.+)$", (ROOT / "docs" / "hooks.md").read_text(), re.MULTILINE)
    missing = [hook_signature(name) for name in HOOK_NAMES if hook_signature(name) not in headings]
    assert not missing, f"docs/hooks.md lacks a '## <signature>' section for: {missing}"
