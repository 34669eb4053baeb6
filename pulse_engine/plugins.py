"""The plugin manager: discovery, isolation of failures, and plugin metadata.

Plugins are found through the entry-point group ``pulse_engine``; ``PULSE_PLUGINS``
(comma-separated entry-point names) restricts which of them load. The engine's own
features are plugins too (:data:`DEFAULT_PLUGINS`), registered the same way and always
loaded. A plugin that fails to import, or whose hook raises, is recorded as failed and
skipped: the host and the other plugins keep working.
"""

from __future__ import annotations

import importlib
import logging
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any

import pluggy

from pulse_engine import hookspecs
from pulse_engine.utils import await_me_maybe

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "pulse_engine"

DEFAULT_PLUGINS: tuple[str, ...] = (
    "pulse_engine.builtins.core_tables",
    "pulse_engine.builtins.health_routes",
    "pulse_engine.builtins.plugins_api",
    "pulse_engine.builtins.events_ws",
    "pulse_engine.builtins.engine_health",
    "pulse_engine.builtins.auth_routes",
    "pulse_engine.builtins.admin_routes",
)


@dataclass
class PluginRecord:
    """What the engine knows of one plugin: origin, version, status, routes."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    status: str = "loaded"
    errors: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)
    routes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True when the plugin failed to import or one of its hooks raised."""
        return self.status == "failed"

    def fail(self, where: str, error: BaseException) -> None:
        """Record a failure (without secrets: the exception type and message only)."""
        self.status = "failed"
        message = f"{where}: {type(error).__name__}: {error}"
        self.errors.append(message[:500])

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description for ``GET /api/v1/plugins`` and ``pulse plugins list``."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "status": self.status,
            "errors": list(self.errors),
            "hooks": sorted(self.hooks),
            "routes": list(self.routes),
        }


class PluginManager(pluggy.PluginManager):
    """pluggy's manager with Pulse's hookspecs, discovery and per-plugin failure isolation."""

    def __init__(self) -> None:
        super().__init__(ENTRY_POINT_GROUP)
        self.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}

    # --- discovery -------------------------------------------------------------------

    def load_default_plugins(self) -> None:
        """Register the engine's built-in features, which are plugins like any other."""
        for module_name in DEFAULT_PLUGINS:
            module = importlib.import_module(module_name)
            name = "pulse." + module_name.rsplit(".", 1)[-1]
            self._register(module, PluginRecord(name=name, module=module_name, builtin=True))

    def load_entry_point_plugins(self, allowed: Iterable[str] | None = None) -> None:
        """Import and register every plugin of the entry-point group (or the allowed ones)."""
        allowed_names = set(allowed) if allowed is not None else None
        for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
            if allowed_names is not None and entry_point.name not in allowed_names:
                continue
            self.load_entry_point(entry_point)

    def load_entry_point(self, entry_point: EntryPoint) -> PluginRecord:
        """Import one entry point; an import failure is recorded, never raised."""
        dist = entry_point.dist
        record = PluginRecord(
            name=entry_point.name,
            module=entry_point.value,
            distribution=dist.metadata["Name"] if dist else None,
            version=dist.version if dist else None,
        )
        try:
            module = entry_point.load()
        except Exception as error:  # a broken plugin must not take the host down
            log.error(
                "plugin %s failed to import: %s",
                entry_point.name,
                "".join(traceback.format_exception_only(type(error), error)).strip(),
            )
            record.fail("import", error)
            self.records[record.name] = record
            return record
        self._register(module, record)
        return record

    def register_object(self, plugin: object, name: str, *, builtin: bool = False) -> PluginRecord:
        """Register a plugin object (a module or class instance) directly, as tests do."""
        module_name = getattr(plugin, "__name__", type(plugin).__name__)
        return self._register(plugin, PluginRecord(name=name, module=module_name, builtin=builtin))

    def _register(self, plugin: object, record: PluginRecord) -> PluginRecord:
        try:
            self.register(plugin, name=record.name)
        except Exception as error:  # invalid hook signatures and the like
            log.error("plugin %s could not be registered: %s", record.name, error)
            record.fail("register", error)
            self.records[record.name] = record
            return record
        record.hooks = [
            hook.name for hook in self.get_hookcallers(plugin) or [] if hook.name != "register"
        ]
        self.records[record.name] = record
        return record

    # --- calling hooks with per-plugin isolation ------------------------------------

    async def call_each(
        self, hook_name: str, *, fail_plugins: bool = True, **kwargs: Any
    ) -> list[tuple[str, Any]]:
        """Call every implementation of a hook, resolving awaitables, isolating failures.

        :param fail_plugins: mark a plugin whose implementation raises as failed (the
            default, for registration and lifecycle hooks); False only logs the error, for
            hooks called while serving, where one bad call must not take a plugin down.

        :returns: ``(plugin name, result)`` pairs for implementations that succeeded and
            returned something other than None, in registration order (built-ins first,
            then entry points by name, then objects registered directly).
        """
        results: list[tuple[str, Any]] = []
        for impl, call_kwargs in self._impls(hook_name, kwargs):
            try:
                value = await await_me_maybe(impl.function(**call_kwargs))
            except Exception as error:
                if fail_plugins:
                    self._hook_failed(impl.plugin_name, hook_name, error)
                else:
                    log.error(
                        "plugin %s failed in hook %s", impl.plugin_name, hook_name, exc_info=error
                    )
                continue
            if value is not None:
                results.append((impl.plugin_name, value))
        return results

    def call_each_sync(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Like :meth:`call_each` for hooks that must complete synchronously (CLI)."""
        results: list[tuple[str, Any]] = []
        for impl, call_kwargs in self._impls(hook_name, kwargs):
            try:
                value = impl.function(**call_kwargs)
            except Exception as error:
                self._hook_failed(impl.plugin_name, hook_name, error)
                continue
            if value is not None:
                results.append((impl.plugin_name, value))
        return results

    def _impls(self, hook_name: str, kwargs: dict[str, Any]) -> list[tuple[Any, dict[str, Any]]]:
        caller = getattr(self.hook, hook_name)
        selected = []
        for impl in caller.get_hookimpls():  # registration order: built-ins first
            if self.is_failed(impl.plugin_name):
                continue
            selected.append((impl, {name: kwargs[name] for name in impl.argnames}))
        return selected

    def _hook_failed(self, plugin_name: str, hook_name: str, error: BaseException) -> None:
        log.error("plugin %s failed in hook %s", plugin_name, hook_name, exc_info=error)
        record = self.records.get(plugin_name)
        if record is not None:
            record.fail(hook_name, error)

    def is_failed(self, plugin_name: str) -> bool:
        """True when the named plugin is recorded as failed."""
        record = self.records.get(plugin_name)
        return record is not None and record.failed

    def plugin_of(self, module: ModuleType | object) -> str | None:
        """The registered name of a plugin object, if any."""
        return self.get_name(module)
