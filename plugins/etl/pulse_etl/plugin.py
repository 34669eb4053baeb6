"""The pulse-etl plugin: its hook implementations.

One :class:`~pulse_etl.service.EtlService` exists per engine, on ``engine.stash``; every
hook that gets the engine reaches it through :func:`service_for`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from quart import Blueprint
from sqlalchemy import MetaData

from pulse_engine import BackgroundTask, Consumer, StashKey, copy_tables, hookimpl
from pulse_etl import hookspecs, model
from pulse_etl.api import build_blueprint
from pulse_etl.connectors.generic import GenericConnector
from pulse_etl.connectors.git import GitConnector
from pulse_etl.connectors.github import GithubConnector
from pulse_etl.connectors.jira import JiraConnector
from pulse_etl.service import EtlService
from pulse_etl.sweeper import sweep_forever

if TYPE_CHECKING:
    from pulse_engine import Engine

MIGRATIONS = Path(__file__).parent / "migrations"

SERVICE = StashKey[EtlService]()
SWEEPER = StashKey[BackgroundTask]()


def service_for(engine: Engine) -> EtlService:
    """The ETL service of ``engine`` (created on first use)."""
    return engine.stash.get_or_create(SERVICE, lambda: EtlService(engine))


@hookimpl
def add_hookspecs(manager: Any) -> None:
    """Add ``register_connectors`` (:mod:`pulse_etl.hookspecs`) for connector plugins."""
    manager.add_hookspecs(hookspecs)


@hookimpl
def register_tables(metadata: MetaData) -> None:
    """Copy the unified model's tables onto the engine's metadata."""
    copy_tables(model.metadata.sorted_tables, metadata)


@hookimpl
def register_migrations() -> Path:
    """The ``etl`` Alembic branch."""
    return MIGRATIONS


@hookimpl
def register_routes(engine: Engine) -> Blueprint:
    """The ``/app/etl`` routes."""
    return build_blueprint(service_for(engine))


@hookimpl
def register_queue_consumers(engine: Engine) -> list[Consumer]:
    """The ``etl.jobs`` worker."""
    return [service_for(engine).worker.consumer()]


@hookimpl
def startup(engine: Engine) -> None:
    """Start queueing again the jobs whose lease lapsed (:mod:`pulse_etl.sweeper`)."""
    settings = service_for(engine).settings
    engine.stash[SWEEPER] = BackgroundTask(
        "etl-lease-sweeper", sweep_forever(engine, settings.lease_seconds, settings.sweep_seconds)
    )


@hookimpl
async def shutdown(engine: Engine) -> None:
    """Stop the lease sweeper."""
    sweeper = engine.stash.pop(SWEEPER)
    if sweeper is not None:
        await sweeper.stop()


@hookimpl
def register_connectors() -> list[Any]:
    """pulse-etl's own connectors."""
    return [GitConnector(), GithubConnector(), JiraConnector(), GenericConnector()]


@hookimpl
def register_commands(cli: Any) -> None:
    """``pulse etl run`` and ``pulse demo``."""
    from pulse_etl.cli import add_commands

    add_commands(cli)
