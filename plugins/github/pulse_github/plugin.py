"""The pulse-github plugin: hook implementations wiring the GitHub analytics into Pulse."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pulse_etl.model import DATA_CACHE_TAGS
from quart import Blueprint
from sqlalchemy import MetaData

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
from pulse_github import tables
from pulse_github.config import GithubConfig, GithubSettings
from pulse_github.health import health_checks
from pulse_github.metrics import definitions
from pulse_github.refresh import (
    FACTS_CACHE_TAG,
    queue_missing,
    refresh_consumer,
    request_refresh,
)
from pulse_github.routes import ENDPOINTS, build_blueprint

if TYPE_CHECKING:
    from pulse_engine import Engine

log = logging.getLogger(__name__)

SETTINGS = StashKey[GithubSettings]()
CONFIG_LISTENER = StashKey[BackgroundTask]()

#: Dropped when a tenant's GitHub configuration (bot patterns, privacy) may have changed.
CONFIG_CACHE_TAG = "github.config"
#: Every cached answer is dropped when ETL data, the tenant's configuration or its facts
#: change.
CACHE_TAGS: tuple[str, ...] = (*DATA_CACHE_TAGS, CONFIG_CACHE_TAG, FACTS_CACHE_TAG)


def settings_for(engine: Engine) -> GithubSettings:
    """pulse-github's settings for ``engine`` (read when first needed)."""
    return engine.stash.get_or_create(SETTINGS, GithubSettings)


@hookimpl
def register_tables(metadata: MetaData) -> None:
    """Copy the plugin's tables (:mod:`pulse_github.tables`) onto the engine's metadata."""
    copy_tables(tables.TABLES, metadata)


@hookimpl
def register_migrations() -> Path:
    """The plugin's Alembic branch (``github``)."""
    return Path(__file__).parent / "migrations"


@hookimpl
def register_queue_consumers(engine: Engine) -> list[Consumer]:
    """The facts' refresh consumer (:data:`pulse_github.refresh.REFRESH_QUEUE`)."""
    return [refresh_consumer(engine)]


@hookimpl
def register_routes(engine: Engine) -> Blueprint:
    """The ``{api_v1_prefix}/analytics/github`` blueprint."""
    return build_blueprint(engine, settings_for(engine))


@hookimpl
def register_cache_policies(engine: Engine) -> list[CachePolicy]:
    """Cache every answer per tenant, parameters and role (per-person fields depend on the
    role) until ETL data lands or the configuration changes."""
    ttl = settings_for(engine).cache_ttl_seconds
    return [CachePolicy(f"github.{endpoint}", ttl=ttl, tags=CACHE_TAGS, vary_role=True)
            for endpoint in ENDPOINTS]


@hookimpl
def register_health_checks(engine: Engine) -> dict[str, Any]:
    """Freshness per source and missing review data, as aggregate counts."""
    return health_checks(engine, settings_for(engine))


@hookimpl
def register_tenant_config_schema() -> type[GithubConfig]:
    """The per-tenant configuration (bot patterns, privacy, production environments)."""
    return GithubConfig


@hookimpl
def register_metrics(engine: Engine) -> list[MetricDefinition]:
    """The GitHub metrics (:mod:`pulse_github.metrics`)."""
    return definitions(settings_for(engine), CACHE_TAGS)


async def _follow_configuration(engine: Engine) -> None:
    """Drop a tenant's cached answers and recompute its facts (bot patterns and production
    environments are in them) when its configuration may have changed."""
    async with engine.events.subscribe(None) as subscription:
        async for event in subscription:
            tenant_id = event.data.get("tenant_id")
            if event.type == CAPABILITY_CHANGED_EVENT and isinstance(tenant_id, str):
                await engine.cache.invalidate_tags(tenant_id, [CONFIG_CACHE_TAG])
                # every process gets the event; the message id derived from it makes the
                # consumer's idempotency check run the refresh once
                await request_refresh(engine, tenant_id, None,
                                      message_id=f"github-config-{event.id}")


async def _queue_missing(engine: Engine) -> None:
    """Queue the first refresh of the tenants without facts (see :func:`queue_missing`)."""
    try:
        count = await queue_missing(engine)
    except Exception:  # nothing is lost: the next start finds the same tenants
        log.warning("first refreshes of pulse-github facts could not be queued",
                    exc_info=True)
        return
    if count:
        log.info("queued the first pulse-github facts refresh of %d tenants", count)


@hookimpl
async def startup(engine: Engine) -> None:
    """Follow configuration changes; queue the first refresh of tenants without facts."""
    engine.stash[CONFIG_LISTENER] = BackgroundTask(
        "pulse-github-config", _follow_configuration(engine))
    await _queue_missing(engine)


@hookimpl
async def shutdown(engine: Engine) -> None:
    """Stop following configuration changes."""
    listener = engine.stash.pop(CONFIG_LISTENER)
    if listener is not None:
        await listener.stop()


#: Entities whose changes can move a fact (commit parents: the commits a deployment
#: shipped; identities: a bot's login or name).
FACT_INPUTS = frozenset({"pull_requests", "reviews", "review_comments", "commits",
                         "commit_files", "commit_parents", "deployments", "deployment_commits",
                         "person_identities"})


@hookimpl
async def data_loaded(engine: Engine, tenant_id: str, stats: dict[str, dict[str, int]],
                      since: datetime | None) -> None:
    """Queue a refresh of the tenant's facts from the earliest event the load touched (in
    full when identities changed: their names decide what a bot is)."""
    if not any(entity in FACT_INPUTS and (counts.get("created") or counts.get("updated"))
               for entity, counts in stats.items()):
        return
    if stats.get("person_identities", {}).get("updated"):
        since = None
    await request_refresh(engine, tenant_id, since)
