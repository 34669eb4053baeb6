"""The pulse-ml-monitor plugin: its hook implementations."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quart import Blueprint
from sqlalchemy import MetaData

from pulse_engine import BackgroundTask, Consumer, StashKey, copy_tables, hookimpl
from pulse_ml_monitor import feedback as _feedback
from pulse_ml_monitor import tables
from pulse_ml_monitor.config import MlSettings
from pulse_ml_monitor.embedder import EmbedderSlot
from pulse_ml_monitor.embeddings import EMBED_QUEUE, SOURCE_TABLES, embed_consumer
from pulse_ml_monitor.health import health_checks
from pulse_ml_monitor.routes import build_blueprints
from pulse_ml_monitor.scan import scan_consumer, schedule_forever
from pulse_ml_monitor.vectors import vector_support

if TYPE_CHECKING:
    from pulse_engine import Engine

log = logging.getLogger(__name__)

SETTINGS = StashKey[MlSettings]()
EMBEDDER = StashKey[EmbedderSlot]()
SCHEDULER = StashKey[BackgroundTask]()
WARMER = StashKey[BackgroundTask]()


def settings_for(engine: Engine) -> MlSettings:
    """pulse-ml-monitor's settings for ``engine`` (read when first needed)."""
    return engine.stash.get_or_create(SETTINGS, MlSettings)


def embedder_for(engine: Engine) -> EmbedderSlot:
    """The engine's embedder slot (``PULSE_ML_EMBEDDER``; built on first use)."""
    return engine.stash.get_or_create(
        EMBEDDER, lambda: EmbedderSlot(settings_for(engine).embedder))


@hookimpl
def register_tables(metadata: MetaData) -> None:
    """Copy the plugin's tables onto the engine's metadata (``embeddings`` is SQL-only)."""
    copy_tables(tables.TABLES, metadata)


@hookimpl
def register_migrations() -> Path:
    """The plugin's Alembic branch (``ml_monitor``)."""
    return Path(__file__).parent / "migrations"


@hookimpl
def register_routes(engine: Engine) -> list[Blueprint]:
    """``{api_v1_prefix}/ml/*`` and ``/health/ml``."""
    return build_blueprints(engine, settings_for(engine), embedder_for(engine))


@hookimpl
def register_queue_consumers(engine: Engine) -> list[Consumer]:
    """The anomaly scan and the embedding consumers."""

    async def usable() -> bool:
        return (await vector_support(engine)).usable

    return [
        scan_consumer(engine, lambda: settings_for(engine)),
        embed_consumer(engine, embedder_for(engine), usable),
    ]


@hookimpl
def register_health_checks(engine: Engine) -> dict[str, Any]:
    """Vectors and the anomaly job (aggregate figures)."""
    return health_checks(engine, settings_for(engine), embedder_for(engine))


@hookimpl
async def startup(engine: Engine) -> None:
    """Read what pgvector offers, load the embedder in the background and start queueing
    the scans."""
    support = await vector_support(engine, refresh=True)
    if not support.usable:
        log.warning("pulse-ml-monitor: vector search unavailable: %s", support.reason)
    slot = embedder_for(engine)

    async def warm() -> None:
        try:
            await slot.get()
        except Exception:  # reported when a search needs it
            log.warning("pulse-ml-monitor: the embedder failed to load", exc_info=True)

    engine.stash[WARMER] = BackgroundTask("pulse-ml-embedder", warm())
    engine.stash[SCHEDULER] = BackgroundTask(
        "pulse-ml-scan-schedule", schedule_forever(engine, settings_for(engine)))


@hookimpl
async def shutdown(engine: Engine) -> None:
    """Stop queueing scans (and loading the embedder, if it still is)."""
    for key in (SCHEDULER, WARMER):
        task = engine.stash.pop(key)
        if task is not None:
            await task.stop()


@hookimpl
async def data_loaded(
    engine: Engine, tenant_id: str, stats: dict[str, dict[str, int]], since: datetime | None,
) -> None:
    """Queue an embedding pass when work items, pull requests or incidents changed."""
    changed = [
        entity for entity, counts in stats.items()
        if entity in SOURCE_TABLES and (counts.get("created") or counts.get("updated"))
    ]
    if not changed or not (await vector_support(engine)).usable:
        return
    names = {"work_items": "work_item", "pull_requests": "pull_request", "incidents": "incident"}
    await engine.queue.publish(EMBED_QUEUE, {"entities": [names[e] for e in changed]},
                               tenant_id=tenant_id)


@hookimpl
def ai_learning_record_feedback(
    engine: Engine, tenant_id: str, feedback: dict[str, Any]
) -> Awaitable[str] | None:
    """pulse-ai-validation's feedback, stored in ``ai_learning_memory``.

    Feedback this table cannot hold (a field of the wrong type or too long, an outcome
    outside the contract) is refused synchronously, with None: pulse-ai-validation's own
    implementation then answers, instead of this plugin failing on another's input.
    """
    try:
        record = _feedback.validated(feedback)
    except ValueError:
        log.warning("learning feedback not stored in ai_learning_memory", exc_info=True)
        return None
    recorded_by = feedback.get("recorded_by")
    if recorded_by is not None and not isinstance(recorded_by, str):
        return None
    return _feedback.store(engine, tenant_id, record, recorded_by)


@hookimpl
async def ai_learning_find_feedback(
    engine: Engine, tenant_id: str, error_kind: str | None, limit: int
) -> list[dict[str, Any]]:
    """pulse-ai-validation's feedback lookup, from ``ai_learning_memory``."""
    return await _feedback.find_feedback(engine, tenant_id, error_kind, limit)
