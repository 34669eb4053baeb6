"""The request pipeline: request ids, access logs, and the authentication gate.

The gate runs before every view: public views pass; routes outside ``/api`` and ``/app``
(health, docs, static assets) are public; every other route needs a valid token, the
role its view declares, and, for a plugin's route, that plugin enabled for the caller's
tenant (otherwise 404 naming the plugin, as if the route did not exist).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from quart import Quart, Response, g, request, websocket

from pulse_engine.auth import (
    PROTECTED_PREFIXES,
    bearer_token,
    check_role,
    check_scopes,
    unauthorized,
    view_is_public,
    view_role,
)
from pulse_engine.problems import Problem

if TYPE_CHECKING:
    from pulse_engine.app import PulseEngine

log = logging.getLogger("pulse.access")

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_id_from(header: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is well-formed, else a new one."""
    if header and REQUEST_ID_PATTERN.match(header):
        return header
    return uuid.uuid4().hex


@dataclass(frozen=True)
class RouteCall:
    """What the gate needs to know of one request or WebSocket handshake."""

    method: str
    endpoint: str | None
    path: str
    authorization: str | None
    view: object
    automatic_options: bool = False


async def gate(engine: PulseEngine, call: RouteCall) -> None:
    """Authenticate and authorise one request or WebSocket; raise a Problem to refuse it."""
    plugin = engine.route_owners.get(call.endpoint) if call.endpoint else None
    if plugin is not None and engine.plugins.is_failed(plugin):
        raise Problem(
            503,
            "plugin-unavailable",
            f"The '{plugin}' plugin failed and is out of service; see /health/{plugin}.",
            plugin=plugin,
        )
    protected = (*PROTECTED_PREFIXES, engine.settings.api_v1_prefix.rstrip("/") + "/")
    if call.endpoint is None or view_is_public(call.view) or not call.path.startswith(protected):
        return
    if call.automatic_options:
        return  # Quart's own OPTIONS answer (CORS preflight): no credentials, no view, no data
    credential = bearer_token(call.authorization)
    if credential is None:
        raise unauthorized("This route needs an access token (Authorization: Bearer ...).")
    principal = await engine.authenticator.authenticate(credential)
    g.principal = principal
    check_role(principal, view_role(call.view))
    check_scopes(principal, plugin, call.method)
    if plugin is None or principal.tenant_id is None:
        return
    if not await engine.capabilities.is_enabled(principal.tenant_id, plugin):
        raise Problem(
            404,
            "plugin-disabled",
            f"The '{plugin}' capability is not enabled for this tenant.",
            plugin=plugin,
        )


def install_request_pipeline(app: Quart, engine: PulseEngine) -> None:
    """Attach request ids, the access log and the authentication gate to the app."""

    @app.before_request
    async def _before_request() -> None:
        g.request_id = request_id_from(request.headers.get("X-Request-ID"))
        g.started = time.perf_counter()
        view = app.view_functions.get(request.endpoint) if request.endpoint else None
        rule = request.url_rule
        automatic_options = request.method == "OPTIONS" and bool(
            getattr(rule, "provide_automatic_options", False)
        )
        await gate(
            engine,
            RouteCall(
                method=request.method,
                endpoint=request.endpoint,
                path=request.path,
                authorization=request.headers.get("Authorization"),
                view=view,
                automatic_options=automatic_options,
            ),
        )

    @app.before_websocket
    async def _before_websocket() -> None:
        g.request_id = request_id_from(websocket.headers.get("X-Request-ID"))
        view = app.view_functions.get(websocket.endpoint) if websocket.endpoint else None
        authorization = websocket.headers.get("Authorization")
        token = websocket.args.get("token")
        if authorization is None and token:
            authorization = f"Bearer {token}"
        await gate(
            engine,
            RouteCall(
                method="GET",
                endpoint=websocket.endpoint,
                path=websocket.path,
                authorization=authorization,
                view=view,
            ),
        )

    @app.after_request
    async def _after_request(response: Response) -> Response:
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
