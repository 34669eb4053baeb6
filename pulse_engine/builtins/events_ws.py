"""Built-in plugin: ``/api/v1/ws``, a token-authenticated stream of the tenant's events.

OpenAPI 3.1 cannot describe a WebSocket, so ``/openapi.json`` leaves it out; this is its
contract:

* **Handshake**: ``GET /api/v1/ws`` with ``Upgrade: websocket``. Pass the token as
  ``Authorization: Bearer ...`` or, from browsers (which cannot set headers on a
  WebSocket), as the ``token`` query parameter. A refused handshake gets the same
  problem+json answer (401, 403, 503) as any other route.
* **Frames**: the server sends one JSON text frame per event of the caller's tenant,
  shaped like :class:`EventFrame`; frames the client sends are read and ignored.
* **End of session**: when the caller's session ends (logout, a revoked token or API key,
  a deactivated or deleted user, a deactivated tenant, or the token's expiry) the server
  closes the socket with code ``1008`` (policy violation) at once; reconnect with a fresh
  token.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from quart import Blueprint, websocket

from pulse_engine import hookimpl
from pulse_engine.events import Event
from pulse_engine.tenancy import current_principal, current_tenant_id

if TYPE_CHECKING:
    from pulse_engine.app import PulseEngine


#: WebSocket close code when the caller's session ends (RFC 6455: policy violation).
SESSION_ENDED_CODE = 1008


class EventFrame(BaseModel):
    """One event, as a WebSocket text frame."""

    id: str = Field(description="The event's unique id.")
    type: str = Field(description="What happened (``etl.job_finished``...).")
    tenant_id: str | None = Field(description="The tenant it happened to.")
    at: str = Field(description="When it was published (ISO 8601).")
    data: dict[str, Any] = Field(description="The event's details, shaped by its type.")


@hookimpl
def register_routes(engine: PulseEngine) -> Blueprint:
    """The WebSocket endpoint."""
    blueprint = Blueprint("events", __name__, url_prefix=engine.settings.api_v1_prefix)

    @blueprint.websocket("/ws")
    async def stream() -> None:
        """Send the caller's tenant's events until the client goes away."""
        tenant_id = current_tenant_id()
        principal = current_principal()
        await websocket.accept()
        async with engine.events.subscribe(tenant_id) as subscription:
            receiver = asyncio.create_task(_drain_client())
            sender = asyncio.create_task(_send_events(subscription))
            session_end = asyncio.create_task(engine.authenticator.wait_until_ended(principal))
            try:
                done, _ = await asyncio.wait(
                    {receiver, sender, session_end}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for task in (receiver, sender, session_end):
                    task.cancel()
            for task in done:
                task.result()  # a failed send, read or session watch is this handler's error
            if session_end in done:
                await websocket.close(SESSION_ENDED_CODE, "session ended")

    return blueprint


async def _send_events(subscription: AsyncIterator[Event]) -> None:
    """Send each event of the subscription as a text frame."""
    async for event in subscription:
        await websocket.send(EventFrame(**asdict(event)).model_dump_json())


async def _drain_client() -> None:
    """Read and discard client frames so pings and closes are processed."""
    while True:
        await websocket.receive()
