"""The OpenAPI document covers every plugin route; /docs and /redoc work with no network."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fixtures.openapi_document import openapi_path, resolve
from hypercorn.asyncio import serve
from hypercorn.config import Config
from pydantic import BaseModel
from quart import Blueprint, Quart
from quart_schema import validate_request, validate_response

from pulse_engine import hookimpl
from pulse_engine.app import create_app
from pulse_engine.settings import Settings
from pulse_engine.testing import free_port, make_settings, running_app

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
ASSET_TYPES = {".js": "javascript", ".css": "text/css"}


class Note(BaseModel):
    """A request body."""

    text: str


class NoteCreated(BaseModel):
    """A response body."""

    id: int
    text: str


class SchemaProbe:
    """A plugin with one documented route."""

    @hookimpl
    def register_routes(self) -> Blueprint:
        blueprint = Blueprint("schema_probe", __name__, url_prefix="/api/v1/schema-probe")

        @blueprint.post("/notes")
        @validate_request(Note)
        @validate_response(NoteCreated, 201)
        async def create_note(data: Note) -> tuple[NoteCreated, int]:
            """Create a note."""
            return NoteCreated(id=1, text=data.text), 201

        return blueprint


@pytest.fixture
async def app(pulse_settings: Settings) -> AsyncIterator[Quart]:
    """Every installed plugin plus the schema probe."""
    async with running_app(pulse_settings, plugins={"schema_probe": SchemaProbe()}) as started:
        yield started


async def test_every_plugin_route_is_documented_and_tagged(app: Quart) -> None:
    spec = await (await app.test_client().get("/openapi.json")).get_json()
    websocket_endpoints = {rule.endpoint for rule in app.url_map.iter_rules() if rule.websocket}
    documented = 0
    for name, record in app.extensions["pulse"].plugins.records.items():
        for route in record.routes:
            if route["endpoint"] in websocket_endpoints:
                continue
            operations = spec["paths"][openapi_path(route["path"])]
            for method in route["methods"]:
                assert operations[method.lower()]["tags"] == [name], (name, route)
                documented += 1
    assert documented > 0


async def test_declared_schemas_are_in_the_document(app: Quart) -> None:
    spec = await (await app.test_client().get("/openapi.json")).get_json()
    operation = spec["paths"]["/api/v1/schema-probe/notes"]["post"]
    request_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    response_schema = operation["responses"]["201"]["content"]["application/json"]["schema"]
    assert resolve(spec, request_schema)["properties"].keys() == {"text"}
    assert resolve(spec, response_schema)["properties"].keys() == {"id", "text"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_doc_pages_use_only_local_assets(app: Quart, page: str) -> None:
    client = app.test_client()
    response = await client.get(page)
    assert response.status_code == 200
    html = await response.get_data(as_text=True)
    assert not re.search(r"https?://", html), html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(asset.startswith("/static/") for asset in assets), assets
    for asset in assets:
        served = await client.get(asset)
        assert served.status_code == 200, asset
        assert ASSET_TYPES[Path(asset).suffix] in served.content_type, (asset, served.content_type)
        assert len(await served.get_data()) > 1000




@pytest.fixture
def served_app(pulse_database_url: str, tmp_path: Path) -> Iterator[str]:
    """The app served by Hypercorn in a thread of its own; yields its base URL."""
    app = create_app(make_settings(pulse_database_url, tmp_path))
    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failures: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        except BaseException as error:  # reported by the test that waits for the server
            failures.append(error)
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="hypercorn-docs", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_live(base, thread, failures)
        yield base
    finally:
        if not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
    assert not thread.is_alive(), "the server did not stop within 30 s"


def wait_until_live(base: str, thread: threading.Thread, failures: list[BaseException]) -> None:
    """Poll ``/health/live`` for up to 60 s."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if failures or not thread.is_alive():
            raise RuntimeError(f"the server stopped: {failures!r}")
        try:
            with urllib.request.urlopen(f"{base}/health/live", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("the server did not answer /health/live within 60 s")


def render(url: str, profile: Path) -> str:
    """The DOM of ``url`` after headless Chromium ran its scripts (no network but loopback)."""
    result = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize(
    ("page", "rendered_marker"),
    [("/docs", 'class="swagger-ui'), ("/redoc", "redoc-wrap")],
)
def test_doc_pages_render_in_a_browser(
    served_app: str, tmp_path: Path, page: str, rendered_marker: str
) -> None:
    dom = render(f"{served_app}{page}", tmp_path / "chromium")
    assert rendered_marker in dom, dom[:2000]
    assert "/api/v1/plugins" in dom, dom[:2000]
