"""Built-in plugin: ``/api/v1/auth``: login, refresh, logout and ``me``.

Login and refresh are public (they take credentials in the body); logout and ``me`` need
the access token. The rules (uniform failures, rate limits, refresh rotation with reuse
detection, revocation on every process) live in :mod:`pulse_engine.sessions`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from quart import Blueprint, request
from quart_schema import RequestSchemaValidationError, validate_request, validate_response

from pulse_engine import hookimpl, sessions
from pulse_engine.auth import public
from pulse_engine.openapi import no_content, optional_json_body
from pulse_engine.problems import problem_responses
from pulse_engine.request_body import parse_json_body
from pulse_engine.tenancy import current_principal
from pulse_engine.tokens import MAX_TOKEN_BYTES

if TYPE_CHECKING:
    from pulse_engine.app import PulseEngine


class LoginRequest(BaseModel):
    """An email and password."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=320, description="The account's email (case-insensitive).")
    password: str = Field(max_length=1024, description="The account's password.")


class RefreshRequest(BaseModel):
    """A refresh token to rotate."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(
        max_length=MAX_TOKEN_BYTES, description="The refresh token of the latest pair."
    )


class LogoutRequest(BaseModel):
    """Optionally, the session's refresh token, whose whole family is then revoked."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: str | None = Field(
        None,
        max_length=MAX_TOKEN_BYTES,
        description="The session's refresh token (optional: the session ends either way).",
    )


class TokenResponse(BaseModel):
    """A new token pair."""

    access_token: str = Field(description="Send as ``Authorization: Bearer <access_token>``.")
    refresh_token: str = Field(description="Exchange at ``/auth/refresh`` for a new pair, once.")
    token_type: Literal["bearer"] = Field(description="Always ``bearer``.")
    expires_in: int = Field(description="The access token's lifetime in seconds.")


class MeResponse(BaseModel):
    """The caller: a user (with ``email``) or an API key (with ``name``)."""

    kind: Literal["user", "api_key"] = Field(description="What the credential belongs to.")
    id: str = Field(description="The user's or the API key's id.")
    tenant_id: str | None = Field(description="The tenant (None for a superadmin).")
    role: str = Field(description="The role the credential acts with.")
    scopes: list[str] = Field(description="An API key's scopes (empty: limited by role only).")
    email: str | None = Field(description="A user's email.")
    name: str | None = Field(description="An API key's name.")


def _client_address() -> str:
    return request.remote_addr or "unknown"


async def _logout_body() -> LogoutRequest:
    """Logout's optional JSON body: empty means none; otherwise parsed and validated."""
    raw = await request.get_data(cache=True, as_text=False, parse_form_data=False)
    if not raw.strip():
        return LogoutRequest(refresh_token=None)
    try:
        return LogoutRequest.model_validate(parse_json_body(raw))
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
    @problem_responses(413, 429, 503)
    async def login(data: LoginRequest) -> dict[str, Any]:
        """Exchange an email and password for an access and a refresh token.

        Every failure is the same 401; too many attempts per account or address are 429.
        """
        pair = await sessions.login(
            engine, email=data.email, password=data.password, client_address=_client_address()
        )
        return pair.as_dict()

    @blueprint.post("/refresh")
    @public
    @validate_request(RefreshRequest)
    @validate_response(TokenResponse)
    @problem_responses(413, 503)
    async def refresh(data: RefreshRequest) -> dict[str, Any]:
        """Exchange a refresh token for a new pair; the presented token stops working."""
        pair = await sessions.refresh(
            engine, refresh_token=data.refresh_token, client_address=_client_address()
        )
        return pair.as_dict()

    @blueprint.post("/logout")
    @optional_json_body(LogoutRequest)
    @no_content
    @problem_responses(413, 503)
    async def logout() -> tuple[str, int]:
        """Revoke the access token (and, given its refresh token, the whole session).

        The body is optional: an empty body ends the session the token was issued in.
        """
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
    @problem_responses(503)
    async def me() -> dict[str, Any]:
        """Who the token belongs to."""
        return await sessions.whoami(engine, current_principal())

    return blueprint
