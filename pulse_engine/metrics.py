"""The metric registry: every metric any plugin registers, for catalogs and cross-plugin use."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Compute = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class MetricDefinition:
    """A metric: what it measures and how to compute it for one tenant.

    :param name: unique name, ``family.metric`` style (``dora.lead_time_for_changes``).
    :param unit: ``count``, ``seconds``, ``ratio``, ``per_day``...
    :param description: what the number means, for people.
    :param higher_is_better: the direction of improvement.
    :param compute: ``async compute(session, window, interval, filters)``, run inside the
        tenant-bound session.
    """

    name: str
    unit: str
    description: str
    higher_is_better: bool
    compute: Compute
    tags: tuple[str, ...] = field(default_factory=tuple)


class MetricRegistry:
    """Metric definitions by name, each remembering the plugin that registered it."""

    def __init__(self) -> None:
        self._metrics: dict[str, tuple[str, MetricDefinition]] = {}

    def add(self, plugin: str, definition: MetricDefinition) -> None:
        """Register a definition; a second plugin using the same name is refused."""
        existing = self._metrics.get(definition.name)
        if existing is not None and existing[0] != plugin:
            raise ValueError(f"metric {definition.name} is already registered by {existing[0]}")
        self._metrics[definition.name] = (plugin, definition)

    def get(self, name: str) -> MetricDefinition | None:
        """A definition by name."""
        entry = self._metrics.get(name)
        return entry[1] if entry else None

    def owner(self, name: str) -> str | None:
        """The plugin that registered a metric."""
        entry = self._metrics.get(name)
        return entry[0] if entry else None

    def catalog(self, enabled: Callable[[str], bool] | None = None) -> list[dict[str, Any]]:
        """Descriptions of the metrics whose plugin passes ``enabled`` (all by default)."""
        return [
            {
                "name": definition.name,
                "plugin": plugin,
                "unit": definition.unit,
                "description": definition.description,
                "higher_is_better": definition.higher_is_better,
            }
            for name, (plugin, definition) in sorted(self._metrics.items())
            if enabled is None or enabled(plugin)
        ]
