"""The pulse-portfolio plugin: its hook implementations."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from quart import Blueprint
from sqlalchemy import MetaData

from pulse_engine import Consumer, MetricDefinition, StashKey, copy_tables, hookimpl
from pulse_portfolio import tables
from pulse_portfolio.config import PortfolioConfig, PortfolioSettings
from pulse_portfolio.facts import PORTFOLIO_FACTS
from pulse_portfolio.metrics import definitions
from pulse_portfolio.routes import build_blueprint

if TYPE_CHECKING:
    from pulse_engine import Engine

SETTINGS = StashKey[PortfolioSettings]()


def settings_for(engine: Engine) -> PortfolioSettings:
    """pulse-portfolio's settings for ``engine`` (read when first needed)."""
    return engine.stash.get_or_create(SETTINGS, PortfolioSettings)


@hookimpl
def register_tables(metadata: MetaData) -> None:
    """Copy the objectives and work-item facts tables onto the engine's metadata."""
    copy_tables(tables.TABLES, metadata)


@hookimpl
def register_migrations() -> Path:
    """The portfolio Alembic branch."""
    return Path(__file__).parent / "migrations"


@hookimpl
def register_routes(engine: Engine) -> Blueprint:
    """The ``{api_v1_prefix}/portfolio`` blueprint."""
    return build_blueprint(engine, settings_for(engine))


@hookimpl
def register_tenant_config_schema() -> type[PortfolioConfig]:
    """The per-tenant portfolio configuration."""
    return PortfolioConfig


@hookimpl
def register_metrics(engine: Engine) -> list[MetricDefinition]:
    """``portfolio.throughput`` and ``portfolio.cycle_time`` over the stored work items."""
    return definitions()


@hookimpl
def register_queue_consumers(engine: Engine) -> list[Consumer]:
    """The facts' refresh consumer (queue ``portfolio.refresh``)."""
    return [PORTFOLIO_FACTS.consumer(engine)]


@hookimpl
async def startup(engine: Engine) -> None:
    """Follow configuration changes (new to-do statuses move every start) and queue the
    refreshes a stopped process left pending, or the first one of a tenant."""
    await PORTFOLIO_FACTS.start(engine)


@hookimpl
async def shutdown(engine: Engine) -> None:
    """Stop following configuration changes."""
    await PORTFOLIO_FACTS.stop(engine)


@hookimpl
async def data_loaded(engine: Engine, tenant_id: str, stats: dict[str, dict[str, int]],
                      since: datetime | None) -> None:
    """Queue a refresh of the facts after a load that changed work items or their history."""
    await PORTFOLIO_FACTS.loaded(engine, tenant_id, stats, since)
