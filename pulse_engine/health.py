"""Health checks: every plugin's named checks, run concurrently with a timeout, aggregated."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pulse_engine.app import PulseEngine

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[dict[str, Any]]]
STATUS_ORDER = {"healthy": 0, "degraded": 1, "unhealthy": 2}


def worst(statuses: list[str]) -> str:
    """The worst of some statuses (``healthy`` when there are none)."""
    return max(statuses, key=lambda status: STATUS_ORDER.get(status, 2), default="healthy")


class HealthRegistry:
    """Checks by plugin; runs them and builds the documents ``/health`` answers with."""

    def __init__(self, engine: PulseEngine) -> None:
        self.engine = engine
        self.checks: dict[str, dict[str, Check]] = {}

    def add(self, plugin: str, checks: dict[str, Check]) -> None:
        """Register a plugin's checks."""
        self.checks.setdefault(plugin, {}).update(checks)

    async def run_check(self, plugin: str, name: str, check: Check) -> dict[str, Any]:
        """Run one check; a raise, a timeout or a malformed answer is ``unhealthy``."""
        try:
            result = await asyncio.wait_for(check(), self.engine.settings.health_timeout_seconds)
        except TimeoutError:
            return {"status": "unhealthy", "error": "the check timed out"}
        except Exception as error:
            log.warning("health check %s.%s raised", plugin, name, exc_info=error)
            return {"status": "unhealthy", "error": type(error).__name__}
        if not isinstance(result, dict) or result.get("status") not in STATUS_ORDER:
            return {"status": "unhealthy", "error": "the check gave no valid status"}
        return result

    async def plugin_health(self, plugin: str) -> dict[str, Any]:
        """One plugin's status, version and checks."""
        record = self.engine.plugins.records[plugin]
        checks = self.checks.get(plugin, {}) if not record.failed else {}
        names = list(checks)
        results = await asyncio.gather(
            *(self.run_check(plugin, name, checks[name]) for name in names)
        )
        details = dict(zip(names, results, strict=True))
        statuses = [result["status"] for result in results]
        if record.failed:
            statuses.append("unhealthy")
        document: dict[str, Any] = {
            "status": worst(statuses),
            "plugin_status": record.status,
            "version": record.version,
            "checks": details,
        }
        if record.errors:
            document["errors"] = record.errors
        return document

    async def overall(self) -> dict[str, Any]:
        """Every plugin's health and the worst status among them."""
        names = sorted(self.engine.plugins.records)
        documents = await asyncio.gather(*(self.plugin_health(name) for name in names))
        plugins = dict(zip(names, documents, strict=True))
        records = self.engine.plugins.records
        core = [doc["status"] for name, doc in plugins.items() if records[name].builtin]
        others = [doc["status"] for name, doc in plugins.items() if not records[name].builtin]
        # a broken third-party plugin degrades the host; only the host's own checks fail it
        status = worst(core + [("degraded" if s == "unhealthy" else s) for s in others])
        return {"status": status, "plugins": plugins}
