"""The connectors of one engine, collected through the ``register_connectors`` hook.

The hook (:mod:`pulse_etl.hookspecs`) is called once, the first time a connector is
needed. A name registered twice is taken from the implementation pluggy calls first
(``tryfirst`` ones first, then the latest registered plugin); a plugin whose
implementation raises is marked failed by the engine and contributes nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pulse_engine import invalid_field
from pulse_etl.connector import Connector

if TYPE_CHECKING:
    from pulse_engine import Engine

log = logging.getLogger(__name__)


class ConnectorRegistry:
    """Every connector registered on one engine, by name."""

    def __init__(self, engine: Engine) -> None:
        """Collect from ``engine``'s plugins on first use."""
        self.engine = engine
        self._connectors: dict[str, Connector] | None = None

    def all(self) -> dict[str, Connector]:
        """Every registered connector by name (the first registration of a name wins)."""
        if self._connectors is None:
            found: dict[str, Connector] = {}
            for plugin, result in self.engine.call_hook_sync(
                "register_connectors", engine=self.engine
            ):
                for connector in result if isinstance(result, list | tuple) else [result]:
                    if not isinstance(connector, Connector):
                        log.error("plugin %s registered a non-connector %r", plugin, connector)
                        continue
                    found.setdefault(connector.name, connector)
            self._connectors = found
        return self._connectors

    def get(self, name: Any) -> Connector:
        """The named connector, or a 422 naming the ``connector`` field."""
        connector = self.all().get(name) if isinstance(name, str) else None
        if connector is None:
            raise invalid_field(
                "connector", f"unknown connector {name!r}", type="unknown_connector",
                detail=f"Unknown connector; known: {', '.join(sorted(self.all()))}.",
            )
        return connector
