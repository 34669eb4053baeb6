"""Built-in plugin: ``/api/v1/auth``: login, refresh, logout and ``me``.

Login and refresh are public (they take credentials in the body); logout and ``me`` need
the access token. The rules (uniform failures, rate limits, refresh rotation with reuse
detection, revocation on every process) live in :mod:`pulse_engine.sessions`.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from quart import Blueprint, request
from quart_schema import (
    RequestSchemaValidationError,
    document_request,
    validate_request,
    validate_response,
)

from pulse_engine import hookimpl, sessions
from pulse_engine.app import PulseEngine
from pulse_engine.auth import public
from pulse_engine.problems import Problem
from pulse_engine.tenancy import current_principal
from pulse_engine.tokens import MAX_TOKEN_BYTES


class LoginRequest(BaseModel):
    """An email and password."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class RefreshRequest(BaseModel):
    """A refresh token to rotate."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(max_length=MAX_TOKEN_BYTES)


class LogoutRequest(BaseModel):
    """Optionally, the session's refresh token, whose whole family is then revoked."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: str | None = Field(None, max_length=MAX_TOKEN_BYTES)


class TokenResponse(BaseModel):
    """A new token pair; ``expires_in`` is the access token's lifetime in seconds."""

    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class MeResponse(BaseModel):
    """The caller: a user (with ``email``) or an API key (with ``name``)."""

    kind: str
    id: str
    tenant_id: str | None
    role: str
    scopes: list[str]
    email: str | None
    name: str | None


def _client_address() -> str:
    return request.remote_addr or "unknown"


async def _logout_body() -> LogoutRequest:
    """Parse logout's optional JSON body: empty means none, malformed JSON means 400."""
    raw = await request.get_data()
    if not raw.strip():
        return LogoutRequest(refresh_token=None)
    try:
        data = json.loads(raw)
    except ValueError:  # not JSON, or not UTF-8
        raise Problem(400, "malformed-json", "The request body is not valid JSON.") from None
    try:
        return LogoutRequest.model_validate(data)
    except ValidationError as error:
        raise RequestSchemaValidationError(error) from None


@hookimpl
def register_routes(engine: PulseEngine) -> Blueprint:
    """The authentication routes."""
    blueprint = Blueprint("auth", __name__, url_prefix=f"{engine.settings.api_v1_prefix}/auth")

    @blueprint.post("/login")
    @public
    @validate_request(LoginRequest)
    @validate_response(TokenResponse)
    async def login(data: LoginRequest) -> dict[str, Any]:
        """Exchange an email and password for an access and a refresh token."""
        pair = await sessions.login(
            engine, email=data.email, password=data.password, client_address=_client_address()
        )
        return pair.as_dict()

    @blueprint.post("/refresh")
    @public
    @validate_request(RefreshRequest)
    @validate_response(TokenResponse)
    async def refresh(data: RefreshRequest) -> dict[str, Any]:
        """Exchange a refresh token for a new pair; the presented token stops working."""
        pair = await sessions.refresh(
            engine, refresh_token=data.refresh_token, client_address=_client_address()
        )
        return pair.as_dict()

    @blueprint.post("/logout")
    @document_request(LogoutRequest)
    async def logout() -> tuple[str, int]:
        """Revoke the access token (and, given its refresh token, the whole session)."""
        body = await _logout_body()
        await sessions.logout(
            engine,
            principal=current_principal(),
            refresh_token=body.refresh_token,
            client_address=_client_address(),
        )
        return "", 204

    @blueprint.get("/me")
    @validate_response(MeResponse)
    async def me() -> dict[str, Any]:
        """Who the token belongs to."""
        return await sessions.whoami(engine, current_principal())

    return blueprint
