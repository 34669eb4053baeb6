"""Built-in plugin: ``/api/v1/ws``, a token-authenticated stream of the tenant's events.

Pass the token as ``Authorization: Bearer ...`` or, from browsers, ``?token=...``. Each
event is sent as one JSON text frame: ``{"id", "type", "tenant_id", "at", "data"}``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import TYPE_CHECKING

from quart import Blueprint, websocket

from pulse_engine import hookimpl
from pulse_engine.tenancy import current_tenant_id

if TYPE_CHECKING:
    from pulse_engine.app import PulseEngine


@hookimpl
def register_routes(engine: PulseEngine) -> Blueprint:
    """The WebSocket endpoint."""
    blueprint = Blueprint("events", __name__, url_prefix=engine.settings.api_v1_prefix)

    @blueprint.websocket("/ws")
    async def stream() -> None:
        """Send the caller's tenant's events until the client goes away."""
        tenant_id = current_tenant_id()
        await websocket.accept()
        async with engine.events.subscribe(tenant_id) as subscription:
            receiver = asyncio.create_task(_drain_client())
            try:
                async for event in subscription:
                    await websocket.send(json.dumps(asdict(event)))
            finally:
                receiver.cancel()

    return blueprint


async def _drain_client() -> None:
    """Read and discard client frames so pings and closes are processed."""
    while True:
        await websocket.receive()
