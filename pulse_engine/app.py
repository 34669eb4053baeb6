"""The app factory and :class:`PulseEngine`, the object every plugin hook receives.

``create_app(settings)`` builds a Quart app with the engine attached as
``app.extensions["pulse"]``. The engine collects what plugins register (routes, tables,
migrations, cache policies, consumers, health checks, metrics) when the app starts
serving, since hook results may be awaitables, and then connects the database, cache,
queue and event bus, runs ``startup`` hooks and starts consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import quart_cors
from pydantic import BaseModel
from quart import Blueprint, Quart
from quart_schema import QuartSchema, tag_blueprint
from sqlalchemy import MetaData

from pulse_engine import __version__
from pulse_engine.auth import Authenticator
from pulse_engine.cache import Cache, CachePolicy, create_cache_backend
from pulse_engine.capabilities import Capabilities
from pulse_engine.db import Database
from pulse_engine.embedded import load_or_create_secret
from pulse_engine.events import EventBus, create_event_bus
from pulse_engine.health import HealthRegistry
from pulse_engine.logs import configure_logging
from pulse_engine.metrics import MetricRegistry
from pulse_engine.middleware import install_request_pipeline
from pulse_engine.migrations import upgrade
from pulse_engine.openapi import install_openapi_provider
from pulse_engine.plugins import PluginManager
from pulse_engine.problems import install_problem_handlers
from pulse_engine.queue import Consumer, QueueBackend, create_queue_backend
from pulse_engine.ratelimit import RateLimiter, create_rate_limiter
from pulse_engine.redis_breaker import RedisBreaker
from pulse_engine.request_body import install_strict_json
from pulse_engine.request_limits import body_limit_for
from pulse_engine.response_cache import ResponseCache
from pulse_engine.revocations import RevocationFeed
from pulse_engine.settings import Settings
from pulse_engine.stash import Stash
from pulse_engine.tables import define_core_tables
from pulse_engine.tokens import TokenService, token_config_from_settings
from pulse_engine.utils import as_list

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"


class PulseEngine:
    """The host: settings, plugin manager, and the shared machinery plugins use."""

    def __init__(self, settings: Settings, plugin_manager: PluginManager) -> None:
        self.settings = settings
        self.plugins = plugin_manager
        self.metadata = MetaData()
        self.core_tables = define_core_tables(self.metadata)
        self.db = Database(settings)
        #: one breaker for every Redis user of this engine
        self.redis_breaker = RedisBreaker()
        self.cache = Cache(
            create_cache_backend(
                settings.redis_url,
                max_entries=settings.cache_max_entries,
                breaker=self.redis_breaker,
            )
        )
        self.queue: QueueBackend = create_queue_backend(
            settings.amqp_url, quorum=settings.amqp_quorum_queues
        )
        self.events: EventBus = create_event_bus(settings.redis_url, settings.amqp_url)
        self.rate_limiter: RateLimiter = create_rate_limiter(
            settings.redis_url, breaker=self.redis_breaker
        )
        self.tokens = TokenService(self._token_config())
        self.authenticator = Authenticator(self)
        self.capabilities = Capabilities(self)
        #: revocations, API-key, tenant and plugin-switch changes, heard from PostgreSQL
        self.notices = RevocationFeed(self.authenticator, self.capabilities)
        self.metrics = MetricRegistry()
        self.health = HealthRegistry(self)
        self.response_cache = ResponseCache(self)
        self.route_owners: dict[str, str] = {}
        #: endpoints whose owning plugin depends on the path (``/api/v1/metrics/<name>``)
        self.delegated_owners: dict[str, Callable[[Mapping[str, Any]], str | None]] = {}
        self.consumers: list[Consumer] = []
        self.migration_folders: dict[str, Path] = {}
        self.tenant_config_schemas: dict[str, type[BaseModel]] = {}
        self.stash = Stash()
        self._setup_done = False
        self._started = False
        self._background: list[asyncio.Task[None]] = []

    def _token_config(self) -> Any:
        settings = self.settings
        secret = settings.jwt_secret_key
        if secret is None and settings.jwt_algorithm.upper().startswith("HS"):
            if not settings.embedded:
                raise RuntimeError("JWT_SECRET_KEY must be set when an external database is used.")
            secret = load_or_create_secret(settings.data_dir, "jwt_secret_key")
        return token_config_from_settings(
            algorithm=settings.jwt_algorithm,
            secret=secret,
            private_key_pem=settings.jwt_private_key,
            public_key_pem=settings.jwt_public_key,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            access_minutes=settings.jwt_access_token_expire_minutes,
            refresh_days=settings.jwt_refresh_token_expire_days,
        )

    def owner_of(self, endpoint: str | None, view_args: Mapping[str, Any]) -> str | None:
        """The plugin answering for a call of ``endpoint`` with these path arguments."""
        if endpoint is None:
            return None
        delegate = self.delegated_owners.get(endpoint)
        if delegate is not None:
            owner = delegate(view_args)
            if owner is not None:
                return owner
        return self.route_owners.get(endpoint)

    # --- registration ------------------------------------------------------------------

    async def setup(self, app: Quart) -> None:
        """Collect everything plugins register; runs once, before serving.

        A contribution that is malformed or clashes with another plugin's (a duplicate
        metric name, a blueprint name already taken...) fails its plugin, not the host.
        """
        if self._setup_done:
            return
        self._setup_done = True
        await self.plugins.call_each("register_tables", metadata=self.metadata)
        await self._collect("register_migrations", self._add_migrations)
        await self._collect(
            "register_routes", lambda name, bp: self._mount(app, name, bp), engine=self
        )
        # bodies are read up to the largest limit a view declares (@body_limit); each
        # request is held to its own view's limit once routed (middleware)
        app.config["MAX_CONTENT_LENGTH"] = max(
            [self.settings.max_request_bytes]
            + [body_limit_for(view, 0) for view in app.view_functions.values()]
        )
        await self._collect("register_metrics", self.metrics.add, engine=self)
        await self._collect("register_cache_policies", self._add_policy, engine=self)
        await self._collect("register_queue_consumers", self._add_consumer, engine=self)
        await self._collect("register_health_checks", self._add_health_checks, engine=self)
        await self._collect("register_tenant_config_schema", self._add_config_schema)
        self.response_cache.build(app)

    async def call_hook(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call a hook through pluggy (see :class:`pulse_engine.Engine`)."""
        return await self.plugins.call_each(hook_name, **kwargs)

    def call_hook_sync(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call a hook of synchronous implementations (see :class:`pulse_engine.Engine`)."""
        return self.plugins.call_each_sync(hook_name, **kwargs)

    async def _collect(self, hook: str, accept: Callable[[str, Any], None], **kwargs: Any) -> None:
        """Call a hook and hand each contributed item to ``accept``, failing bad plugins."""
        for name, result in await self.plugins.call_each(hook, **kwargs):
            items = [result] if isinstance(result, dict) else as_list(result)
            for item in items:
                try:
                    accept(name, item)
                except Exception as error:
                    self.plugins.record_failure(name, hook, error, fail_plugin=True)
                    break

    def _add_migrations(self, plugin: str, folder: Any) -> None:
        path = Path(folder)
        if not path.is_dir():
            raise ValueError(f"migration folder {path} does not exist")
        self.migration_folders[plugin] = path

    def _mount(self, app: Quart, plugin: str, blueprint: Any) -> None:
        if not isinstance(blueprint, Blueprint):
            raise TypeError(f"not a Blueprint: {blueprint!r}")
        tag_blueprint(blueprint, [plugin])
        before = {id(rule) for rule in app.url_map.iter_rules()}
        app.register_blueprint(blueprint)
        record = self.plugins.records[plugin]
        for rule in [r for r in app.url_map.iter_rules() if id(r) not in before]:
            self.route_owners[rule.endpoint] = plugin
            methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
            record.routes.append({"path": rule.rule, "methods": methods, "endpoint": rule.endpoint})

    def _add_policy(self, plugin: str, policy: Any) -> None:
        if not isinstance(policy, CachePolicy):
            raise TypeError(f"not a CachePolicy: {policy!r}")
        self.response_cache.add_policy(policy)

    def _add_consumer(self, plugin: str, consumer: Any) -> None:
        if not isinstance(consumer, Consumer):
            raise TypeError(f"not a Consumer: {consumer!r}")
        consumer.plugin = consumer.plugin or plugin
        self.consumers.append(consumer)

    def _add_health_checks(self, plugin: str, checks: Any) -> None:
        if not isinstance(checks, dict) or not all(callable(c) for c in checks.values()):
            raise TypeError("health checks must be a mapping of name to async callable")
        self.health.add(plugin, checks)

    def _add_config_schema(self, plugin: str, schema: Any) -> None:
        if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            raise TypeError(f"not a pydantic model class: {schema!r}")
        self.tenant_config_schemas[plugin] = schema

    # --- lifecycle ---------------------------------------------------------------------

    async def migrate(self) -> None:
        """Apply every plugin's migrations (all Alembic heads) and the tenancy rules."""
        await self.db.connect()
        assert self.db.owner_engine is not None
        await upgrade(
            self.db.owner_engine,
            self.migration_folders,
            self.metadata,
            self.settings.database_app_role,
            self.db.bulk_role,
        )

    async def start(self, *, run_consumers: bool | None = None) -> None:
        """Connect every backing service, run ``startup`` hooks and (optionally) consumers."""
        if self._started:
            return
        self._started = True
        await self.db.connect()
        if self.settings.migrate_at_start:
            await self.migrate()
        await self.notices.start(self.db.libpq_url(app=True))
        consumers_here = (
            self.settings.consumers_in_server if run_consumers is None else run_consumers
        )
        # the broker and the event bus may be down at start: serve anyway (publishing
        # answers 503, /health says unhealthy) and keep connecting in the background
        first_try: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._background.append(
            asyncio.create_task(
                self._connect_messaging(consumers_here, first_try), name="pulse-messaging"
            )
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.shield(first_try), self.settings.messaging_start_wait_seconds
            )
        await self.plugins.call_each("startup", engine=self)

    async def _connect_messaging(
        self, consumers_here: bool, first_try: asyncio.Future[None]
    ) -> None:
        """Connect the event bus and the queue, retrying with backoff until both answer."""
        delay = 1.0
        events_up = queue_up = False
        while not (events_up and queue_up):
            if not events_up:
                events_up = await self._try("event bus", self.events.start)
            if not queue_up:
                queue_up = await self._try("queue", self.queue.connect)
                if queue_up and consumers_here:
                    await self.start_consumers()
            if not first_try.done():
                first_try.set_result(None)
            if not (events_up and queue_up):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    @staticmethod
    async def _try(what: str, connect: Callable[[], Any]) -> bool:
        try:
            await connect()
        except Exception as error:  # the broker or Redis is down: keep serving, retry later
            log.error("%s unavailable, retrying in the background: %s", what, error)
            return False
        return True

    async def announce_data_loaded(
        self,
        tenant_id: str,
        stats: dict[str, dict[str, int]],
        since: datetime | None = None,
    ) -> None:
        """Tell every plugin (``data_loaded`` hook) that a tenant's data changed."""
        await self.plugins.call_each(
            "data_loaded",
            fail_plugins=False,
            engine=self,
            tenant_id=tenant_id,
            stats=stats,
            since=since,
        )

    async def start_consumers(self) -> None:
        """Start every registered consumer, skipping tenants that disabled its plugin."""
        for consumer in self.consumers:
            if consumer.plugin is not None and self.plugins.is_failed(consumer.plugin):
                log.warning("not consuming %s: plugin %s failed", consumer.queue, consumer.plugin)
                continue
            await self.queue.start_consumer(consumer, should_skip=self._skipper(consumer))

    def _skipper(self, consumer: Consumer) -> Any:
        plugin = consumer.plugin

        def should_skip(message: Any) -> bool:
            if plugin is None or message.tenant_id is None:
                return False
            return self.capabilities.cached_enabled(message.tenant_id, plugin) is False

        return should_skip

    async def stop(self) -> None:
        """Drain consumers, run ``shutdown`` hooks, close every connection."""
        if not self._started:
            return
        self._started = False
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.queue.stop()
        await self.plugins.call_each("shutdown", engine=self)
        await self.notices.stop()
        await self.events.stop()
        await self.cache.backend.close()
        await self.rate_limiter.aclose()
        await self.db.close()


def create_app(
    settings: Settings | None = None,
    *,
    plugins: dict[str, object] | None = None,
    load_entry_points: bool = True,
) -> Quart:
    """Build the Pulse Quart app.

    :param settings: settings to use (default: read from the environment).
    :param plugins: extra plugin objects to register by name (tests, embedding).
    :param load_entry_points: discover installed plugins (``PULSE_PLUGINS`` restricts them).
    """
    settings = settings or Settings()
    configure_logging(settings.log_level, json_format=settings.log_json)
    manager = PluginManager(trace=settings.trace_plugins)
    manager.load_default_plugins()
    if load_entry_points:
        manager.load_entry_point_plugins(settings.plugins)
    for name, plugin in (plugins or {}).items():
        manager.register_object(plugin, name)
    manager.add_plugin_hookspecs()

    app = Quart("pulse", static_folder=str(STATIC_DIR), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.config["QUART_SCHEMA_SWAGGER_JS_URL"] = "/static/swagger-ui/swagger-ui-bundle.js"
    app.config["QUART_SCHEMA_SWAGGER_CSS_URL"] = "/static/swagger-ui/swagger-ui.css"
    app.config["QUART_SCHEMA_REDOC_JS_URL"] = "/static/redoc/redoc.standalone.js"
    QuartSchema(
        app,
        info={"title": "Pulse API", "version": __version__},
        redoc_ui_path="/redoc",
        scalar_ui_path=None,
        security_schemes={"bearer": {"type": "http", "scheme": "bearer", "bearer_format": "JWT"}},
        security=[{"bearer": []}],
    )
    if settings.cors_origins:
        app = quart_cors.cors(
            app,
            allow_origin=settings.cors_origins,
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            expose_headers=["X-Cache", "X-Request-ID", "Retry-After"],
        )
    engine = PulseEngine(settings, manager)
    app.extensions["pulse"] = engine
    install_problem_handlers(app)
    install_strict_json(app)
    install_openapi_provider(app)
    install_request_pipeline(app, engine)
    app.asgi_app = engine.response_cache.fast_path(app.asgi_app)  # type: ignore

    @app.before_serving
    async def _start() -> None:
        await engine.setup(app)
        await engine.start()

    @app.after_serving
    async def _stop() -> None:
        await engine.stop()

    return app
