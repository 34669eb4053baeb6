"""The plugin manager: discovery, isolation of failures, and plugin metadata.

Plugins are found through the entry-point group ``pulse_engine``; ``PULSE_PLUGINS``
(comma-separated entry-point names) restricts which of them load. The engine's own
features are plugins too (:data:`DEFAULT_PLUGINS`), registered the same way and always
loaded. A plugin that fails to import, or whose hook raises, is recorded as failed and
skipped: the host and the other plugins keep working.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import traceback
from collections.abc import Awaitable, Generator, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any, Literal, cast

import pluggy
from pluggy import HookImpl

from pulse_engine import hookspecs
from pulse_engine.utils import await_me_maybe

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "pulse_engine"

DEFAULT_PLUGINS: tuple[str, ...] = (
    "pulse_engine.builtins.core_tables",
    "pulse_engine.builtins.health_routes",
    "pulse_engine.builtins.landing_page",
    "pulse_engine.builtins.plugins_api",
    "pulse_engine.builtins.metrics_api",
    "pulse_engine.builtins.events_ws",
    "pulse_engine.builtins.engine_health",
    "pulse_engine.builtins.auth_routes",
    "pulse_engine.builtins.admin_routes",
)


#: What became of a plugin on this server.
PluginStatus = Literal["loaded", "failed"]


@dataclass
class PluginRecord:
    """What the engine knows of one plugin: origin, version, status, routes."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    status: PluginStatus = "loaded"
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

    def __init__(self, *, trace: bool = False) -> None:
        super().__init__(ENTRY_POINT_GROUP)
        self.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        if trace:
            trace_log = logging.getLogger("pulse.plugins.trace")
            self.trace.root.setwriter(lambda message: trace_log.info(message.rstrip()))
            self.enable_tracing()

    def add_plugin_hookspecs(self) -> None:
        """Let every registered plugin add hookspecs of its own (``add_hookspecs`` hook).

        Runs once after discovery, before any other hook is called, so that the hooks a
        plugin owns (pulse-etl's ``register_connectors``...) are checked like the host's.
        """
        self.call_each_sync("add_hookspecs", manager=self)

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

    # --- calling hooks through pluggy, with per-plugin isolation ---------------------

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register ``plugin`` and guard each of its hook implementations (see module doc)."""
        registered = super().register(plugin, name)
        plugin_name = self.get_name(plugin)
        if plugin_name is not None:
            for caller in self.get_hookcallers(plugin) or []:
                for impl in caller.get_hookimpls():
                    if impl.plugin is plugin:
                        guard_implementation(self, impl, caller.name)
        return registered

    async def call_each(
        self, hook_name: str, *, fail_plugins: bool = True, **kwargs: Any
    ) -> list[tuple[str, Any]]:
        """Call a hook through pluggy, await what it returns, and isolate failures.

        Implementations run in pluggy's order (``tryfirst``/``trylast``, wrappers, last
        registered first); ``firstresult`` hooks stop at the first value. Every argument
        the hookspec declares but ``kwargs`` lacks is passed as ``None``.

        :param fail_plugins: mark a plugin whose implementation raises as failed (the
            default, for registration and lifecycle hooks); False only logs the error, for
            hooks called while serving, where one bad call must not take a plugin down.
        :returns: ``(plugin name, result)`` pairs for implementations that succeeded and
            returned something other than None, in the order pluggy called them.
        """
        pairs = self._call(hook_name, fail_plugins, kwargs)
        results = []
        for plugin_name, value in pairs:
            resolved = await await_me_maybe(value)
            if resolved is not None:
                results.append((plugin_name, resolved))
        return results

    def call_each_sync(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Like :meth:`call_each` for hooks that must complete synchronously (CLI)."""
        results = []
        for plugin_name, value in self._call(hook_name, True, kwargs):
            if inspect.isawaitable(value):
                if isinstance(value, _GuardedAwaitable):
                    value.close()
                self.record_failure(
                    plugin_name, hook_name, TypeError(f"{hook_name} must not be async"),
                    fail_plugin=True,
                )
                continue
            results.append((plugin_name, value))
        return results

    def _call(
        self, hook_name: str, fail_plugins: bool, kwargs: dict[str, Any]
    ) -> list[tuple[str, Any]]:
        caller = getattr(self.hook, hook_name)
        declared = caller.spec.argnames if caller.spec is not None else ()
        arguments = {name: kwargs.get(name) for name in declared} | kwargs
        attribution: list[tuple[str, Any]] = []
        token = _CALL.set(_HookCall(hook_name, fail_plugins, attribution))
        try:
            outcome = caller(**arguments)
        finally:
            _CALL.reset(token)
        if caller.spec is not None and caller.spec.opts.get("firstresult"):
            outcome = [] if outcome is None else [outcome]
        return [(_owner(attribution, value), value) for value in outcome]

    def record_failure(
        self, plugin_name: str, hook_name: str, error: BaseException, *, fail_plugin: bool
    ) -> None:
        """Log a hook failure and, unless it is a serving hook's, mark the plugin failed."""
        log.error("plugin %s failed in hook %s", plugin_name, hook_name, exc_info=error)
        record = self.records.get(plugin_name)
        if fail_plugin and record is not None:
            record.fail(hook_name, error)

    def is_failed(self, plugin_name: str) -> bool:
        """True when the named plugin is recorded as failed."""
        record = self.records.get(plugin_name)
        return record is not None and record.failed

    def plugin_of(self, module: ModuleType | object) -> str | None:
        """The registered name of a plugin object, if any."""
        return self.get_name(module)


@dataclass
class _HookCall:
    """The hook call in progress: how failures count and which plugin returned what."""

    hook_name: str
    fail_plugins: bool
    attribution: list[tuple[str, Any]]


_CALL: ContextVar[_HookCall | None] = ContextVar("pulse_hook_call", default=None)


def _owner(attribution: list[tuple[str, Any]], value: Any) -> str:
    """The plugin whose implementation returned ``value`` (by identity)."""
    for plugin_name, returned in attribution:
        if returned is value:
            return plugin_name
    return "<wrapper>"  # a value a wrapper put into the result list


def guard_implementation(manager: PluginManager, impl: HookImpl, hook_name: str) -> None:
    """Wrap one hook implementation so that a failure fails only its own plugin.

    The guard skips the implementation once its plugin has failed, catches what it raises
    (and what its awaitable raises when awaited), records the failure, and returns None
    in place of a result, so pluggy goes on to the next implementation. New-style
    wrappers (``wrapper=True``) are guarded around their code before and after ``yield``.
    """
    function = impl.function
    plugin_name = impl.plugin_name
    if getattr(function, "__pulse_guarded__", False):
        return

    def failed(error: BaseException) -> None:
        call = _CALL.get(None)
        manager.record_failure(
            plugin_name, hook_name, error, fail_plugin=call is None or call.fail_plugins
        )

    if impl.wrapper or impl.hookwrapper:

        def guarded_wrapper(*args: Any) -> Generator[Any, Any, Any]:
            if manager.is_failed(plugin_name):
                return (yield)
            generator = cast(Generator[Any, Any, Any], function(*args))
            try:
                next(generator)
            except Exception as error:
                failed(error)
                return (yield)
            outcome = yield
            try:
                generator.send(outcome)
            except StopIteration as stop:
                return stop.value if impl.wrapper else None
            except Exception as error:
                failed(error)
                return outcome
            failed(RuntimeError("wrapper yielded twice"))
            return outcome

        guarded: Any = guarded_wrapper
    else:

        def guarded_call(*args: Any) -> Any:
            if manager.is_failed(plugin_name):
                return None
            try:
                value = function(*args)
            except Exception as error:
                failed(error)
                return None
            call = _CALL.get(None)
            if inspect.isawaitable(value):
                fail_plugin = call is None or call.fail_plugins
                value = _GuardedAwaitable(manager, plugin_name, hook_name, value, fail_plugin)
            if call is not None and value is not None:
                call.attribution.append((plugin_name, value))
            return value

        guarded = guarded_call
    functools.update_wrapper(guarded, function)
    guarded.__pulse_guarded__ = True
    # pluggy types the attribute Final; the guard replaces it once, at registration
    impl.function = guarded  # type: ignore[misc]


class _GuardedAwaitable:
    """An implementation's awaitable result, guarded: awaiting it never raises (a failure
    fails the plugin, or is logged for serving hooks), and closing it closes the original."""

    def __init__(
        self,
        manager: PluginManager,
        plugin_name: str,
        hook_name: str,
        awaitable: Awaitable[Any],
        fail_plugin: bool,
    ) -> None:
        self.manager = manager
        self.plugin_name = plugin_name
        self.hook_name = hook_name
        self.awaitable = awaitable
        self.fail_plugin = fail_plugin

    def __await__(self) -> Generator[Any, None, Any]:
        return self._resolve().__await__()

    async def _resolve(self) -> Any:
        try:
            return await self.awaitable
        except Exception as error:
            self.manager.record_failure(
                self.plugin_name, self.hook_name, error, fail_plugin=self.fail_plugin
            )
            return None

    def close(self) -> None:
        """Discard it unawaited (a synchronous hook got an awaitable)."""
        if inspect.iscoroutine(self.awaitable):
            self.awaitable.close()
