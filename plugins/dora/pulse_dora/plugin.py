"""The pulse-dora plugin: hook implementations wiring DORA into the Pulse engine."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pulse_etl.model import DATA_CACHE_TAGS
from quart import Blueprint
from sqlalchemy import MetaData

from pulse_dora import tables
from pulse_dora.config import DoraConfig, DoraSettings
from pulse_dora.health import health_checks
from pulse_dora.metrics import definitions
from pulse_dora.refresh import DORA_CACHE_TAG, DORA_FACTS
from pulse_dora.routes import build_blueprint
from pulse_engine import (
    CachePolicy,
    Consumer,
    MetricDefinition,
    StashKey,
    copy_tables,
    hookimpl,
)

if TYPE_CHECKING:
    from pulse_engine import Engine

#: the plugin's settings, read from the environment once per engine
SETTINGS = StashKey[DoraSettings]()


def settings_for(engine: Engine) -> DoraSettings:
    """pulse-dora's settings for ``engine`` (read when first needed, not at import)."""
    return engine.stash.get_or_create(SETTINGS, DoraSettings)

#: Every cached DORA answer is dropped when ETL data or DORA facts of its tenant change.
CACHE_TAGS: tuple[str, ...] = (*DATA_CACHE_TAGS, DORA_CACHE_TAG)

@hookimpl
def register_tables(metadata: MetaData) -> None:
    """Copy DORA's tables onto the engine's metadata."""
    copy_tables(tables.TABLES, metadata)


@hookimpl
def register_migrations() -> Path:
    """DORA's Alembic branch."""
    return Path(__file__).parent / "migrations"


@hookimpl
def register_routes(engine: Engine) -> Blueprint:
    """The ``{api_v1_prefix}/metrics/dora`` blueprint."""
    return build_blueprint(engine, settings_for(engine))


@hookimpl
def register_cache_policies(engine: Engine) -> list[CachePolicy]:
    """Cache summaries and series per tenant and parameters until new data lands."""
    ttl = settings_for(engine).cache_ttl_seconds
    return [
        CachePolicy(endpoint, ttl=ttl, tags=CACHE_TAGS)
        for endpoint in ("dora.summary", "dora.series", "dora.gitlab", "dora.lead_time_breakdown")
    ]


@hookimpl
def register_queue_consumers(engine: Engine) -> list[Consumer]:
    """The facts' refresh consumer (queue ``dora.refresh``)."""
    return [DORA_FACTS.consumer(engine)]


@hookimpl
def register_health_checks(engine: Engine) -> dict[str, Any]:
    """Aggregate, tenant-anonymous data and configuration checks."""
    return health_checks(engine, settings_for(engine))


@hookimpl
def register_tenant_config_schema() -> type[DoraConfig]:
    """The per-tenant DORA configuration."""
    return DoraConfig


@hookimpl
def register_metrics(engine: Engine) -> list[MetricDefinition]:
    """The six DORA metrics (:mod:`pulse_dora.metrics`), for ``GET /api/v1/metrics`` and
    other plugins."""
    return definitions(settings_for(engine), CACHE_TAGS)


@hookimpl
async def startup(engine: Engine) -> None:
    """Follow configuration changes to keep each tenant's facts consistent with them, and
    queue the refreshes a stopped process left pending."""
    await DORA_FACTS.start(engine)


@hookimpl
async def shutdown(engine: Engine) -> None:
    """Stop following configuration changes."""
    await DORA_FACTS.stop(engine)


@hookimpl
async def data_loaded(
    engine: Engine,
    tenant_id: str,
    stats: dict[str, dict[str, int]],
    since: datetime | None,
) -> None:
    """Record and queue a refresh of the tenant's facts from the earliest event the load
    touched, then drop the tenant's cached DORA answers: from here on they say
    ``refresh_pending`` until the refresh has run."""
    await DORA_FACTS.loaded(engine, tenant_id, stats, since)
