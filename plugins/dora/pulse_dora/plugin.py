"""The pulse-dora plugin: hook implementations wiring DORA into the Pulse engine."""

from __future__ import annotations

import logging
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
from pulse_dora.refresh import (
    DORA_CACHE_TAG,
    REFRESH_QUEUE,
    refresh_consumer,
    request_refresh,
    requeue_pending,
)
from pulse_dora.routes import build_blueprint
from pulse_engine import (
    CAPABILITY_CHANGED_EVENT,
    BackgroundTask,
    CachePolicy,
    Consumer,
    MetricDefinition,
    StashKey,
    copy_tables,
    hookimpl,
)

if TYPE_CHECKING:
    from pulse_engine import Engine

log = logging.getLogger(__name__)

#: the plugin's settings, read from the environment once per engine
SETTINGS = StashKey[DoraSettings]()


def settings_for(engine: Engine) -> DoraSettings:
    """pulse-dora's settings for ``engine`` (read when first needed, not at import)."""
    return engine.stash.get_or_create(SETTINGS, DoraSettings)

#: Every cached DORA answer is dropped when ETL data or DORA facts of its tenant change.
CACHE_TAGS: tuple[str, ...] = (*DATA_CACHE_TAGS, DORA_CACHE_TAG)

#: the task following configuration changes, per engine
CONFIG_LISTENER = StashKey[BackgroundTask]()


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
    """The refresh consumer (:data:`pulse_dora.refresh.REFRESH_QUEUE`)."""
    return [refresh_consumer(engine)]


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


async def _follow_configuration(engine: Engine) -> None:
    """Refresh a tenant's facts when its DORA configuration may have changed."""
    async with engine.events.subscribe(None) as subscription:
        async for event in subscription:
            if event.type != CAPABILITY_CHANGED_EVENT:
                continue
            tenant_id = event.data.get("tenant_id")
            if not isinstance(tenant_id, str):
                continue
            await engine.cache.invalidate_tags(tenant_id, [DORA_CACHE_TAG])
            # every process gets the event; the message id derived from the event makes
            # the consumer's idempotency check run the refresh once
            await engine.queue.publish(
                REFRESH_QUEUE, {"since": None}, tenant_id=tenant_id,
                message_id=f"dora-config-{event.id}",
            )


async def _requeue(engine: Engine) -> None:
    """Re-queue the refreshes recorded and not done (see :func:`requeue_pending`)."""
    try:
        count = await requeue_pending(engine)
    except Exception:  # the requests stay recorded: the next start queues them again
        log.warning("pending DORA refreshes could not be queued", exc_info=True)
        return
    if count:
        log.info("queued %d DORA refreshes left pending", count)


@hookimpl
async def startup(engine: Engine) -> None:
    """Follow configuration changes to keep each tenant's facts consistent with them, and
    queue the refreshes a stopped process left pending."""
    engine.stash[CONFIG_LISTENER] = BackgroundTask(
        "pulse-dora-config", _follow_configuration(engine)
    )
    await _requeue(engine)


@hookimpl
async def shutdown(engine: Engine) -> None:
    """Stop following configuration changes."""
    listener = engine.stash.pop(CONFIG_LISTENER)
    if listener is not None:
        await listener.stop()


#: Entities whose changes can move a DORA figure.
DORA_INPUTS = frozenset(
    {"deployments", "deployment_commits", "commits", "incidents", "pull_requests", "reviews",
     "review_comments"}
)


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
    if not any(
        entity in DORA_INPUTS and (counts.get("created") or counts.get("updated"))
        for entity, counts in stats.items()
    ):
        return
    await request_refresh(engine, tenant_id, since)
    # answers cached between the load's commit and the request say no refresh is pending
    await engine.cache.invalidate_tags(tenant_id, [DORA_CACHE_TAG])
