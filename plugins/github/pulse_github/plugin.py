"""The pulse-github plugin: hook implementations wiring the GitHub analytics into Pulse."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pulse_etl.model import DATA_CACHE_TAGS
from quart import Blueprint

from pulse_engine import (
    CAPABILITY_CHANGED_EVENT,
    BackgroundTask,
    CachePolicy,
    MetricDefinition,
    StashKey,
    hookimpl,
)
from pulse_github.config import GithubConfig, GithubSettings
from pulse_github.health import health_checks
from pulse_github.metrics import definitions
from pulse_github.routes import ENDPOINTS, build_blueprint

if TYPE_CHECKING:
    from pulse_engine import Engine

SETTINGS = StashKey[GithubSettings]()
CONFIG_LISTENER = StashKey[BackgroundTask]()

#: Dropped when a tenant's GitHub configuration (bot patterns, privacy) may have changed.
CONFIG_CACHE_TAG = "github.config"
#: Every cached answer is dropped when ETL data or the tenant's configuration changes.
CACHE_TAGS: tuple[str, ...] = (*DATA_CACHE_TAGS, CONFIG_CACHE_TAG)


def settings_for(engine: Engine) -> GithubSettings:
    """pulse-github's settings for ``engine`` (read when first needed)."""
    return engine.stash.get_or_create(SETTINGS, GithubSettings)


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
    """Drop a tenant's cached answers when its configuration may have changed."""
    async with engine.events.subscribe(None) as subscription:
        async for event in subscription:
            tenant_id = event.data.get("tenant_id")
            if event.type == CAPABILITY_CHANGED_EVENT and isinstance(tenant_id, str):
                await engine.cache.invalidate_tags(tenant_id, [CONFIG_CACHE_TAG])


@hookimpl
async def startup(engine: Engine) -> None:
    """Follow configuration changes."""
    engine.stash[CONFIG_LISTENER] = BackgroundTask(
        "pulse-github-config", _follow_configuration(engine))


@hookimpl
async def shutdown(engine: Engine) -> None:
    """Stop following configuration changes."""
    listener = engine.stash.pop(CONFIG_LISTENER)
    if listener is not None:
        await listener.stop()
