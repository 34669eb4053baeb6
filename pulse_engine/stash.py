"""Typed per-engine state for plugins (pytest's ``Stash`` pattern).

A plugin that keeps state for the lifetime of an engine (a service object, a background
task) declares a module-level :class:`StashKey` and stores the value on ``engine.stash``;
the state then lives and dies with its engine, and two engines in one process (tests)
never see each other's::

    SERVICE = StashKey[EtlService]()

    def service_for(engine: Engine) -> EtlService:
        return engine.stash.setdefault(SERVICE, EtlService(engine))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")


class StashKey(Generic[T]):
    """A key of a :class:`Stash`; the type parameter is the type of the value stored."""

    __slots__ = ()


class Stash:
    """A mapping from :class:`StashKey` to values of the key's type."""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[StashKey[Any], object] = {}

    def __setitem__(self, key: StashKey[T], value: T) -> None:
        self._values[key] = value

    def __getitem__(self, key: StashKey[T]) -> T:
        return cast(T, self._values[key])

    def __delitem__(self, key: StashKey[T]) -> None:
        del self._values[key]

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def get(self, key: StashKey[T], default: T | None = None) -> T | None:
        """The value under ``key``, or ``default``."""
        return cast("T | None", self._values.get(key, default))

    def setdefault(self, key: StashKey[T], default: T) -> T:
        """The value under ``key``, storing ``default`` there first if there is none."""
        return cast(T, self._values.setdefault(key, default))

    def get_or_create(self, key: StashKey[T], factory: Callable[[], T]) -> T:
        """The value under ``key``, created by ``factory`` on first use."""
        if key not in self._values:
            self._values[key] = factory()
        return cast(T, self._values[key])

    def pop(self, key: StashKey[T], default: T | None = None) -> T | None:
        """Remove and return the value under ``key`` (``default`` when absent)."""
        return cast("T | None", self._values.pop(key, default))
