"""The Pulse app measured by ``host_cached_route.py``: a metric-style route behind a cache policy.

Built from the environment like ``pulse_engine.asgi``, with one extra plugin object that
stands for a metric plugin: its route needs a token, is gated per tenant and is cached.
"""

from __future__ import annotations

from quart import Blueprint, request

from pulse_engine import hookimpl
from pulse_engine.app import create_app
from pulse_engine.cache import CachePolicy
from pulse_engine.tenancy import current_tenant_id


class MetricRoutePlugin:
    """A metric-style GET route with a cache policy keyed by its window parameters."""

    @hookimpl
    def register_routes(self) -> Blueprint:
        """The route."""
        blueprint = Blueprint("benchmetric", __name__, url_prefix="/api/v1/bench")

        @blueprint.get("/metric")
        async def metric() -> dict[str, object]:
            """Stands for a computed metric (the cache makes its cost irrelevant to hits)."""
            return {
                "metric": "deployment_frequency",
                "tenant": current_tenant_id(),
                "start": request.args.get("start"),
                "value": 42,
                "unit": "count",
                "sample_size": 42,
            }

        return blueprint

    @hookimpl
    def register_cache_policies(self) -> list[CachePolicy]:
        """Cache the route for a minute per tenant and window."""
        return [CachePolicy("benchmetric.metric", ttl=60, key_params=("start", "end"))]


app = create_app(plugins={"benchmetric": MetricRoutePlugin()}, load_entry_points=False)
