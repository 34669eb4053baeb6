"""Hooks are called through pluggy: its ordering, wrappers and ``firstresult`` hold, while
an implementation that raises still fails only its own plugin."""

from __future__ import annotations

import logging
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pulse_engine import hookimpl, hookspec
from pulse_engine.plugins import PluginManager


class Specs:
    """Hookspecs of a test-owned family."""

    @hookspec
    def collect(self, value: int) -> Any:
        """Return something."""

    @hookspec(firstresult=True)
    def choose(self, value: int) -> Any:
        """Return the first answer."""


def manager_with(**plugins: object) -> PluginManager:
    manager = PluginManager()
    manager.add_hookspecs(Specs)
    for name, plugin in plugins.items():
        manager.register_object(plugin, name)
    return manager


class Plain:
    @hookimpl
    def collect(self, value: int) -> str:
        return f"plain {value}"


class First:
    @hookimpl(tryfirst=True)
    def collect(self) -> str:
        return "first"


class Last:
    @hookimpl(trylast=True)
    async def collect(self, value: int) -> str:
        return f"last {value}"


class Raising:
    @hookimpl
    def collect(self) -> str:
        raise RuntimeError("broken collect")


class RaisingWhenAwaited:
    @hookimpl
    async def collect(self) -> str:
        raise RuntimeError("broken later")


async def test_tryfirst_and_trylast_order_the_calls() -> None:
    # registration order would be last, plain, first; pluggy's order wins
    manager = manager_with(last=Last(), plain=Plain(), first=First())
    results = await manager.call_each("collect", value=3)
    assert results == [("first", "first"), ("plain", "plain 3"), ("last", "last 3")]


async def test_a_raising_implementation_fails_only_its_plugin() -> None:
    manager = manager_with(plain=Plain(), raising=Raising(), later=RaisingWhenAwaited())
    results = await manager.call_each("collect", value=1)
    assert results == [("plain", "plain 1")]
    assert manager.records["raising"].errors == ["collect: RuntimeError: broken collect"]
    assert manager.records["later"].errors == ["collect: RuntimeError: broken later"]
    assert not manager.is_failed("plain")
    # a failed plugin is no longer called
    assert await manager.call_each("collect", value=2) == [("plain", "plain 2")]


async def test_serving_hooks_log_failures_without_failing_the_plugin() -> None:
    manager = manager_with(plain=Plain(), raising=Raising())
    results = await manager.call_each("collect", fail_plugins=False, value=1)
    assert results == [("plain", "plain 1")]
    assert not manager.is_failed("raising")


async def test_a_wrapper_sees_and_may_change_the_results() -> None:
    class Wrapper:
        @hookimpl(wrapper=True)
        def collect(self, value: int) -> Generator[None, list[Any], list[Any]]:
            results = yield
            return [*results, f"wrapped {value}"]

    manager = manager_with(plain=Plain(), wrapper=Wrapper())
    results = await manager.call_each("collect", value=5)
    assert results == [("plain", "plain 5"), ("<wrapper>", "wrapped 5")]


async def test_a_raising_wrapper_fails_its_plugin_and_leaves_the_results() -> None:
    class BrokenWrapper:
        @hookimpl(wrapper=True)
        def collect(self) -> Generator[None, list[Any], list[Any]]:
            yield
            raise RuntimeError("broken wrapper")

    class BrokenBefore:
        @hookimpl(wrapper=True)
        def collect(self) -> Generator[None, list[Any], list[Any]]:
            raise RuntimeError("broken before yield")
            yield  # pragma: no cover

    manager = manager_with(plain=Plain(), wrapper=BrokenWrapper(), before=BrokenBefore())
    results = await manager.call_each("collect", value=5)
    assert results == [("plain", "plain 5")]
    assert manager.is_failed("wrapper") and manager.is_failed("before")
    assert not manager.is_failed("plain")


async def test_firstresult_stops_at_the_first_value() -> None:
    class Nothing:
        @hookimpl(tryfirst=True)
        def choose(self) -> None:
            return None

    class Answer:
        @hookimpl
        def choose(self, value: int) -> int:
            return value * 2

    class Never:
        @hookimpl(trylast=True)
        def choose(self) -> int:
            raise AssertionError("not called after a first result")

    manager = manager_with(never=Never(), answer=Answer(), nothing=Nothing())
    assert await manager.call_each("choose", value=21) == [("answer", 42)]
    assert not manager.is_failed("never")


def test_async_implementations_of_a_sync_hook_fail_their_plugin() -> None:
    manager = manager_with(plain=Plain(), last=Last())
    assert manager.call_each_sync("collect", value=1) == [("plain", "plain 1")]
    assert manager.is_failed("last")


def test_tracing_logs_every_hook_call(caplog: pytest.LogCaptureFixture) -> None:
    manager = PluginManager(trace=True)
    manager.add_hookspecs(Specs)
    manager.register_object(Plain(), "plain")
    with caplog.at_level(logging.INFO, logger="pulse.plugins.trace"):
        manager.call_each_sync("collect", value=7)
    traced = [r.getMessage() for r in caplog.records if r.name == "pulse.plugins.trace"]
    assert any("collect" in line for line in traced), traced


def test_pulse_trace_plugins_setting_turns_tracing_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pulse_engine.settings import Settings

    monkeypatch.setenv("PULSE_TRACE_PLUGINS", "1")
    assert Settings(_env_file=None, PULSE_DATA_DIR=str(tmp_path)).trace_plugins is True


async def test_a_background_task_stops_with_its_owner() -> None:
    import asyncio

    from pulse_engine import BackgroundTask

    ticks: list[int] = []

    async def tick() -> None:
        while True:
            ticks.append(1)
            await asyncio.sleep(0.01)

    task = BackgroundTask("ticker", tick())
    await asyncio.sleep(0.05)
    assert task.running and ticks
    await task.stop()
    assert not task.running
    seen = len(ticks)
    await asyncio.sleep(0.05)
    assert len(ticks) == seen  # nothing runs after stop
    await task.stop()  # idempotent
