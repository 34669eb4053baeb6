"""The hooks pulse-etl adds for other plugins (added through ``add_hookspecs``).

Like the host's hooks, implement them with ``@pulse_engine.hookimpl``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pulse_engine import hookspec

if TYPE_CHECKING:
    from pulse_engine import Engine


@hookspec
def register_connectors(engine: Engine) -> Any:
    """Return ETL connectors: objects following :class:`pulse_etl.connector.Connector`.

    Called once per engine, synchronously, the first time pulse-etl needs its connectors
    (so return the objects, not an awaitable). A connector name registered twice is taken
    from the plugin called first (pluggy's order: ``tryfirst`` wins).

    :param engine: the running engine.
    :returns: a connector or a list of connectors.
    """
