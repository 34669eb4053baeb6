"""Every hook a Pulse plugin may implement, in one flat module.

Hooks are called with keyword arguments; an implementation may accept any subset of a
hook's arguments. A result may be a plain value, a callable returning one, or an
awaitable: the engine resolves all three with ``await_me_maybe``.

A hook implementation that raises is logged, the plugin is marked failed in ``/health``
and ``GET /api/v1/plugins``, and the engine carries on without that plugin's
contribution to the hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pluggy import HookimplMarker, HookspecMarker

if TYPE_CHECKING:
    from datetime import datetime

    import click
    from sqlalchemy import MetaData

    from pulse_engine.engine_api import Engine
    from pulse_engine.plugins import PluginManager

hookspec = HookspecMarker("pulse_engine")
hookimpl = HookimplMarker("pulse_engine")

# ``engine`` is offered to most hooks; like every hook argument, an implementation that
# does not need it simply leaves it out of its signature.


# --- plugin-owned hooks ------------------------------------------------------------------


@hookspec
def add_hookspecs(manager: PluginManager) -> None:
    """Add hookspecs of the plugin's own, for other plugins to implement.

    Called once, right after discovery and before any other hook (pytest's
    ``pytest_addhooks``). Call ``manager.add_hookspecs(module)`` with a module of
    functions marked with :data:`pulse_engine.hookspec`; call the new hook with
    :meth:`pulse_engine.Engine.call_hook`. pulse-etl adds ``register_connectors`` this way.

    :param manager: the engine's pluggy plugin manager; use only ``add_hookspecs`` on it.
    """


# --- registration: called once while the app is built ------------------------------------


@hookspec
def register_routes(engine: Engine) -> Any:
    """Return Quart ``Blueprint`` objects (a list, or one) to mount on the app.

    Each blueprint keeps its own ``url_prefix``. The engine records which plugin owns
    every route, so that a plugin disabled for a tenant answers 404 for that tenant, and
    documents the routes in ``/openapi.json`` under a tag named after the plugin.
    Declare the role a route needs with :func:`pulse_engine.require_role`, or make
    it public with :func:`pulse_engine.public`; every other route needs a valid token.

    :param engine: the running :class:`~pulse_engine.Engine`.
    :returns: a Blueprint or a list of Blueprints.
    """


@hookspec
def register_tables(metadata: MetaData) -> None:
    """Define the plugin's SQLAlchemy ``Table`` objects on ``metadata``.

    Tables with a ``tenant_id`` column get PostgreSQL row-level security, enabled and
    forced, after every migration; put ``tenant_id`` first in the primary key and in every
    index. The schema itself is created by the plugin's migrations
    (:func:`register_migrations`).

    :param metadata: the engine's shared :class:`sqlalchemy.MetaData`.
    :returns: nothing; the tables live on ``metadata``.
    """


@hookspec
def register_migrations() -> Any:
    """Return the folder (``str`` or ``pathlib.Path``) holding the plugin's Alembic revisions.

    The first revision has ``down_revision = None`` and ``branch_labels = ("<plugin>",)``:
    every plugin is its own Alembic branch, and ``pulse db upgrade`` applies all heads.

    :returns: a path, or ``None`` when the plugin has no tables.
    """


@hookspec
def register_cache_policies(engine: Engine) -> Any:
    """Return :class:`pulse_engine.CachePolicy` objects for the plugin's GET routes.

    A policy names an endpoint (``"blueprint.view"``), a TTL, the query parameters that make
    up the key, and the invalidation tags. Cached responses are tenant-scoped and say
    ``X-Cache: hit|miss``; ``engine.cache.invalidate_tags`` drops them.

    :returns: a list of policies.
    """


@hookspec
def register_queue_consumers(engine: Engine) -> Any:
    """Return :class:`pulse_engine.Consumer` objects: queue name, async handler,
    prefetch and retry limit.

    Handlers receive a :class:`pulse_engine.Message`; a message is acknowledged
    only after the handler returns, retried up to the consumer's limit when it raises,
    then moved to the dead-letter queue. Messages of a tenant for which the owning
    plugin is disabled are acknowledged and skipped.

    :returns: a list of consumers.
    """


@hookspec
def register_health_checks(engine: Engine) -> Any:
    """Return a mapping of check name to an async callable taking no arguments.

    Each callable returns a dict with at least ``"status"``: ``"healthy"``,
    ``"degraded"`` or ``"unhealthy"``, plus details a human can act on. Never put
    secrets in the details: health endpoints are public. A check that raises or takes
    longer than the health timeout is reported as unhealthy.

    :returns: ``{name: async callable}``.
    """


@hookspec
def register_metrics(engine: Engine) -> Any:
    """Return :class:`pulse_engine.MetricDefinition` objects.

    A definition gives the metric's name, unit, kind (count, ratio, distribution, rate,
    gauge), description, direction, the filters it supports and an async
    ``compute(engine, query)`` returning a :class:`pulse_engine.MetricComputation`. The
    host serves every metric at ``GET /api/v1/metrics/{name}`` and lists them in
    ``GET /api/v1/metrics``; other plugins (portfolio, anomaly detection) find them in
    ``engine.metrics``.

    :returns: a list of metric definitions.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``pulse`` command-line tool.

    :param cli: the root :class:`click.Group`; call ``cli.command()`` or ``cli.add_command``.
    """


@hookspec
def register_tenant_config_schema() -> Any:
    """Return a pydantic model class validating this plugin's per-tenant configuration.

    ``PUT /api/v1/admin/tenants/{id}/plugins/{name}`` validates ``config`` against it;
    without one, a plugin accepts only an empty config.

    :returns: a ``pydantic.BaseModel`` subclass, or ``None``.
    """


# --- events between plugins --------------------------------------------------------------


@hookspec
def data_loaded(
    engine: Engine,
    tenant_id: str,
    stats: dict[str, dict[str, int]],
    since: datetime | None,
) -> Any:
    """React to new or changed data of one tenant, after the load has been committed.

    A data plugin (``pulse-etl``) announces each committed load with
    :meth:`pulse_engine.Engine.announce_data_loaded`; metric plugins use this to
    refresh what they materialise, typically by publishing a message to their own queue so
    that the work happens in a worker. Runs in the process that loaded the data. An
    implementation that raises is logged and does not fail its plugin (the load already
    happened); make the reaction idempotent.

    :param engine: the running :class:`~pulse_engine.Engine`.
    :param tenant_id: the tenant whose data changed.
    :param stats: rows ``created`` and ``updated`` per entity (table name).
    :param since: the earliest event time (deployment finish, incident start, commit author
        time...) the load touched, including where a re-sent row used to be (a deployment
        moved later), so a reaction can recompute from there on; ``None`` when unknown
        (recompute everything).
    """


# --- lifecycle -------------------------------------------------------------------------


@hookspec
def startup(engine: Engine) -> Any:
    """Do work once when the server (or worker) starts, after the database is ready.

    Runs once per process, in ``before_serving``; may be async.

    :param engine: the running :class:`~pulse_engine.Engine`.
    """


@hookspec
def shutdown(engine: Engine) -> Any:
    """Release what :func:`startup` acquired; runs once per process when it stops.

    :param engine: the running :class:`~pulse_engine.Engine`.
    """
