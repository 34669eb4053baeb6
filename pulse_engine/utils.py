"""Small helpers shared by the engine and plugins."""

from __future__ import annotations

import inspect
from typing import Any


async def await_me_maybe(value: Any) -> Any:
    """Resolve a hook result that may be a value, a callable returning one, or an awaitable."""
    if callable(value) and not isinstance(value, type):
        value = value()
    if inspect.isawaitable(value):
        value = await value
    return value


def as_list(value: Any) -> list[Any]:
    """Normalise a hook result (None, one item, or an iterable of items) to a list."""
    if value is None:
        return []
    if isinstance(value, list | tuple | set | frozenset):
        return list(value)
    return [value]
