"""The request pipeline: request ids, access logs, and the authentication gate.

The gate runs before every view and WebSocket and applies the one authorization decision
(:func:`pulse_engine.authorization.authorize`): public views pass; routes outside
``/api`` and ``/app`` (health, docs, static assets) are public; every other route needs a
valid token, the role its view declares, and, for a plugin's route, that plugin enabled
for the caller's tenant (otherwise 404 naming the plugin, as if the route did not exist).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import TYPE_CHECKING

from quart import Quart, Response, g, request, websocket
from werkzeug.exceptions import HTTPException

from pulse_engine.authorization import AccessRequest, FullLookups, authorize
from pulse_engine.request_body import apply_body_limit
from pulse_engine.request_limits import REQUEST_LIMITS, body_limit_for, limits_for

if TYPE_CHECKING:
    from pulse_engine.app import PulseEngine

log = logging.getLogger("pulse.access")

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_id_from(header: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is well-formed, else a new one."""
    if header and REQUEST_ID_PATTERN.match(header):
        return header
    return uuid.uuid4().hex


#: How long an answer given before its request body arrived (a 401, a 405) waits for the
#: rest of the body, so that the connection can serve the client's next request.
BODY_DRAIN_SECONDS = 2.0


async def settle_request_body(response: Response) -> None:
    """Read what is left of the request body, or say the connection will close.

    HTTP/1.1 can carry the next request on a connection only after this one's body has
    been read. A view or the gate may answer without reading it; the body is then drained
    here (up to the size limit, for at most :data:`BODY_DRAIN_SECONDS`), and when that
    fails the answer says ``Connection: close`` instead of the server dropping the
    connection silently under the client's next request.
    """
    try:
        await asyncio.wait_for(request.get_data(cache=False), BODY_DRAIN_SECONDS)
    except (TimeoutError, HTTPException):  # too slow, or larger than the limit (413)
        response.headers["Connection"] = "close"


def install_request_pipeline(app: Quart, engine: PulseEngine) -> None:
    """Attach request ids, the access log and the authentication gate to the app."""
    lookups = FullLookups(engine)

    @app.before_request
    async def _before_request() -> None:
        g.request_id = request_id_from(request.headers.get("X-Request-ID"))
        g.started = time.perf_counter()
        view = app.view_functions.get(request.endpoint) if request.endpoint else None
        apply_body_limit(request, body_limit_for(view, engine.settings.max_request_bytes))
        REQUEST_LIMITS.set(
            limits_for(
                view, engine.settings.statement_timeout_seconds, engine.settings.temp_file_limit_mb
            )
        )
        rule = request.url_rule
        automatic_options = request.method == "OPTIONS" and bool(
            getattr(rule, "provide_automatic_options", False)
        )
        g.principal = await authorize(
            engine,
            AccessRequest(
                method=request.method,
                endpoint=request.endpoint,
                path=request.path,
                authorization=request.headers.get("Authorization"),
                view=view,
                view_args=request.view_args or {},
                automatic_options=automatic_options,
            ),
            lookups,
        )

    @app.before_websocket
    async def _before_websocket() -> None:
        g.request_id = request_id_from(websocket.headers.get("X-Request-ID"))
        view = app.view_functions.get(websocket.endpoint) if websocket.endpoint else None
        authorization = websocket.headers.get("Authorization")
        token = websocket.args.get("token")
        if authorization is None and token:
            authorization = f"Bearer {token}"
        g.principal = await authorize(
            engine,
            AccessRequest(
                method="GET",
                endpoint=websocket.endpoint,
                path=websocket.path,
                authorization=authorization,
                view=view,
                view_args=websocket.view_args or {},
            ),
            lookups,
        )

    @app.after_request
    async def _after_request(response: Response) -> Response:
        await settle_request_body(response)
        request_id = getattr(g, "request_id", None) or uuid.uuid4().hex
        response.headers["X-Request-ID"] = request_id
        started = getattr(g, "started", None)
        principal = getattr(g, "principal", None)
        log.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "request_id": request_id,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2)
                if started
                else None,
                "tenant_id": principal.tenant_id if principal else None,
            },
        )
        return response
