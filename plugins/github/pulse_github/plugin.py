"""The pulse-github plugin: hook implementations wiring the GitHub analytics into Pulse."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pulse_etl.model import DATA_CACHE_TAGS
from quart import Blueprint
from sqlalchemy import MetaData

from pulse_engine import (
    CachePolicy,
    Consumer,
    MetricDefinition,
    StashKey,
    copy_tables,
    hookimpl,
)
from pulse_github import tables
from pulse_github.config import GithubConfig, GithubSettings
from pulse_github.file_facts import GITHUB_FILE_FACTS
from pulse_github.health import health_checks
from pulse_github.metrics import definitions
from pulse_github.refresh import FACTS_CACHE_TAG, GITHUB_FACTS
from pulse_github.routes import ENDPOINTS, build_blueprint

if TYPE_CHECKING:
    from pulse_engine import Engine

SETTINGS = StashKey[GithubSettings]()

#: Every cached answer is dropped when ETL data or the tenant's facts change, and when its
#: configuration (bot patterns, privacy) may have changed (the facts' configuration
#: follower drops ``github.facts`` then).
CACHE_TAGS: tuple[str, ...] = (*DATA_CACHE_TAGS, FACTS_CACHE_TAG)


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


#: The plugin's refreshed facts: per pull request, per file.
FACTS = (GITHUB_FACTS, GITHUB_FILE_FACTS)


@hookimpl
def register_queue_consumers(engine: Engine) -> list[Consumer]:
    """The facts' refresh consumers (queues ``github.refresh``, ``github_files.refresh``)."""
    return [facts.consumer(engine) for facts in FACTS]


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


@hookimpl
async def startup(engine: Engine) -> None:
    """Follow configuration changes (bot patterns and production environments are in the
    per-pull-request facts); queue the refreshes left pending (a migration's among them)."""
    for facts in FACTS:
        await facts.start(engine)


@hookimpl
async def shutdown(engine: Engine) -> None:
    """Stop following configuration changes."""
    for facts in FACTS:
        await facts.stop(engine)


@hookimpl
async def data_loaded(engine: Engine, tenant_id: str, stats: dict[str, dict[str, int]],
                      since: datetime | None) -> None:
    """Record and queue a refresh of each of the tenant's facts whose inputs the load
    changed, from the earliest event it touched (in full when identities changed: their
    names decide what a bot is, their persons are in the per-file facts)."""
    for facts in FACTS:
        await facts.loaded(engine, tenant_id, stats, since)
