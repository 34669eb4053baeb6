"""Third-party plugins are discovered like installed distributions and isolated from each other.

``examples/hello_plugin`` is made discoverable exactly as ``pip install`` would make it: a
``.dist-info`` folder with its ``entry_points.txt`` on ``sys.path``, next to the package
source. Nothing in the host changes. Broken plugins are "installed" the same way.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.plugin_harness import fresh_database, write_distribution
from sqlalchemy import text

from pulse_engine.app import PulseEngine
from pulse_engine.settings import Settings
from pulse_engine.testing import make_settings, make_tenant, running_app

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "hello_plugin"
HELLO_VERSION = tomllib.loads((HELLO / "pyproject.toml").read_text())["project"]["version"]
BROKEN_PLUGINS = Path(__file__).parent / "fixtures" / "broken_plugins"
GREETINGS = "/api/v1/hello/greetings"


def installed_hello() -> importlib.metadata.Distribution | None:
    """The really installed ``pulse-hello`` distribution (``pip install``), if any."""
    try:
        return importlib.metadata.distribution("pulse-hello")
    except importlib.metadata.PackageNotFoundError:
        return None


@pytest.fixture
async def database_url(pulse_database_url: str) -> AsyncIterator[str]:
    """A database of this test's own: the plugins it loads bring their own migrations."""
    async with fresh_database(pulse_database_url) as url:
        yield url


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site folder on ``sys.path`` where the test "installs" distributions."""
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    monkeypatch.syspath_prepend(str(site_dir))
    return site_dir


@pytest.fixture
def hello_installed(site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``pulse-hello`` discoverable through its entry point, from the example's source."""
    write_distribution(site, "pulse-hello", HELLO_VERSION, {"hello": "pulse_hello.plugin"})
    monkeypatch.syspath_prepend(str(HELLO / "src"))
    return site


@pytest.fixture
def broken_installed(site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two broken plugins: one fails to import, one fails in ``register_routes``."""
    write_distribution(
        site, "pulse-broken-import", "2.0.0", {"broken_import": "pulse_broken_on_import"}
    )
    write_distribution(
        site, "pulse-broken-routes", "3.0.0", {"broken_routes": "pulse_broken_routes"}
    )
    monkeypatch.syspath_prepend(str(BROKEN_PLUGINS))
    return site


def settings_for(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings of an app on the test's own database."""
    return make_settings(database_url, tmp_path / "data", **overrides)


async def plugins_by_name(client: Any) -> dict[str, dict[str, Any]]:
    """``GET /api/v1/plugins`` as a mapping of plugin name to its description."""
    response = await client.get("/api/v1/plugins")
    assert response.status_code == 200
    return {plugin["name"]: plugin for plugin in (await response.get_json())["plugins"]}


async def test_example_plugin_is_discovered_like_an_installed_one(
    hello_installed: Path, database_url: str, tmp_path: Path
) -> None:
    async with running_app(settings_for(database_url, tmp_path)) as app:
        client = app.test_client()
        overall = await (await client.get("/health")).get_json()
        # other installed plugins may be in any state; the host's own and hello's are healthy
        host = {
            name: doc["status"]
            for name, doc in overall["plugins"].items()
            if name.startswith("pulse.")
        }
        assert set(host.values()) == {"healthy"}, overall
        assert overall["plugins"]["hello"]["status"] == "healthy", overall
        assert overall["plugins"]["hello"]["version"] == HELLO_VERSION
        one = await client.get("/health/hello")
        body = await one.get_json()
        assert one.status_code == 200, body
        assert body["checks"]["greetings_table"]["status"] == "healthy"

        tenant = await make_tenant(app)
        hello = (await plugins_by_name(tenant.viewer_client))["hello"]
        assert hello["distribution"] == "pulse-hello"
        assert hello["version"] == HELLO_VERSION
        assert (hello["status"], hello["enabled"], hello["builtin"]) == ("loaded", True, False)
        assert {"path": GREETINGS, "methods": ["GET"], "endpoint": "hello.list_greetings"} in (
            hello["routes"]
        )

        spec = await (await client.get("/openapi.json")).get_json()
        operations = spec["paths"][GREETINGS]
        assert operations["get"]["tags"] == ["hello"]
        assert operations["post"]["tags"] == ["hello"]
        assert "requestBody" in operations["post"]

        created = await tenant.analyst_client.post(GREETINGS, json={"message": "hello, world"})
        assert created.status_code == 201, await created.get_json()
        first = await tenant.viewer_client.get(GREETINGS)
        second = await tenant.viewer_client.get(GREETINGS)
        assert [g["message"] for g in (await first.get_json())["items"]] == ["hello, world"]
        assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit")
        other = await make_tenant(app)
        assert (await (await other.viewer_client.get(GREETINGS)).get_json())["items"] == []

        await assert_forced_row_level_security(app.extensions["pulse"], "hello_greetings")


async def assert_forced_row_level_security(engine: PulseEngine, table: str) -> None:
    """The table exists with row-level security enabled and forced."""
    assert engine.db.owner_engine is not None
    async with engine.db.owner_engine.connect() as connection:
        row = (
            await connection.execute(
                text(
                    "SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
                    "WHERE relname = :table AND relkind = 'r'"
                ),
                {"table": table},
            )
        ).one()
    assert tuple(row) == (True, True)


async def test_broken_plugins_are_reported_and_the_host_keeps_serving(
    hello_installed: Path, broken_installed: Path, database_url: str, tmp_path: Path
) -> None:
    async with running_app(settings_for(database_url, tmp_path)) as app:
        client = app.test_client()
        health = await client.get("/health")
        overall = await health.get_json()
        assert health.status_code == 200
        assert overall["status"] == "degraded", overall
        broken_import = overall["plugins"]["broken_import"]
        assert (broken_import["status"], broken_import["plugin_status"]) == (
            "unhealthy",
            "failed",
        )
        assert broken_import["version"] == "2.0.0"
        assert broken_import["errors"] == [
            "import: RuntimeError: pulse_broken_on_import cannot be imported"
        ]
        assert overall["plugins"]["broken_routes"]["errors"] == [
            "register_routes: ValueError: register_routes of pulse_broken_routes failed"
        ]
        assert overall["plugins"]["hello"]["status"] == "healthy"
        assert (await client.get("/health/broken_import")).status_code == 503

        tenant = await make_tenant(app)
        plugins = await plugins_by_name(tenant.viewer_client)
        assert plugins["broken_import"]["status"] == "failed"
        assert plugins["broken_routes"]["status"] == "failed"
        assert plugins["broken_routes"]["routes"] == []
        assert plugins["hello"]["status"] == "loaded"
        created = await tenant.analyst_client.post(GREETINGS, json={"message": "still here"})
        assert created.status_code == 201


async def test_pulse_plugins_restricts_which_plugins_load(
    hello_installed: Path, broken_installed: Path, database_url: str, tmp_path: Path
) -> None:
    async with running_app(settings_for(database_url, tmp_path, plugins=["hello"])) as app:
        records = app.extensions["pulse"].plugins.records
        third_party = sorted(name for name, record in records.items() if not record.builtin)
        assert third_party == ["hello"]
        health = await (await app.test_client().get("/health")).get_json()
        assert health["status"] == "healthy", health


def test_pulse_plugins_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_PLUGINS", " hello, dora ,,")
    assert Settings(_env_file=None).plugins == ["hello", "dora"]  # type: ignore[call-arg]
    monkeypatch.delenv("PULSE_PLUGINS")
    assert Settings(_env_file=None).plugins is None  # type: ignore[call-arg]


@pytest.mark.skipif(
    installed_hello() is None,
    reason="pulse-hello is not pip-installed (CI runs `pip install ./examples/hello_plugin`)",
)
async def test_pip_installed_example_is_discovered(database_url: str, tmp_path: Path) -> None:
    distribution = installed_hello()
    assert distribution is not None
    entry_points = {
        ep.name: ep.value for ep in distribution.entry_points if ep.group == "pulse_engine"
    }
    assert entry_points == {"hello": "pulse_hello.plugin"}
    async with running_app(settings_for(database_url, tmp_path, plugins=["hello"])) as app:
        record = app.extensions["pulse"].plugins.records["hello"]
        assert (record.status, record.distribution, record.version) == (
            "loaded",
            "pulse-hello",
            distribution.version,
        )
        tenant = await make_tenant(app)
        created = await tenant.analyst_client.post(GREETINGS, json={"message": "installed"})
        assert created.status_code == 201
        listing = await tenant.viewer_client.get(GREETINGS)
        assert [g["message"] for g in (await listing.get_json())["items"]] == ["installed"]
