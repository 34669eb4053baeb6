"""Request authentication and authorisation: who is calling, and may they call this route.

Every route under ``/api/v1`` and ``/app`` needs a valid token unless its view is marked
:func:`public`. A view declares the role it needs with :func:`require_role` (default:
``viewer``, the lowest tenant role). The engine checks, in this order: the token (a JWT
access token or an API key), its revocation, the role, and whether the route's plugin is
enabled for the caller's tenant (404 naming the plugin when it is not).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select, update

from pulse_engine.problems import Problem
from pulse_engine.tokens import Principal, TokenError, role_satisfies

if TYPE_CHECKING:
    from pulse_engine.app import PulseEngine

F = TypeVar("F", bound=Callable[..., Any])

PUBLIC_ATTRIBUTE = "_pulse_public"
ROLE_ATTRIBUTE = "_pulse_role"
DEFAULT_ROLE = "viewer"
API_KEY_PREFIX = "pulse_"
PROTECTED_PREFIXES = ("/api/", "/app/")


def public(view: F) -> F:
    """Mark a view as needing no token (it must do its own verification, like webhooks)."""
    setattr(view, PUBLIC_ATTRIBUTE, True)
    return view


def require_role(role: str) -> Callable[[F], F]:
    """Declare the lowest role that may call a view (``viewer``, ``analyst``, ``admin``...)."""

    def decorate(view: F) -> F:
        setattr(view, ROLE_ATTRIBUTE, role)
        return view

    return decorate


def view_is_public(view: Any) -> bool:
    """True when a view was marked :func:`public`."""
    return bool(getattr(view, PUBLIC_ATTRIBUTE, False))


def view_role(view: Any) -> str:
    """The role a view requires."""
    return str(getattr(view, ROLE_ATTRIBUTE, DEFAULT_ROLE))


def bearer_token(authorization: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer ...`` header, or None."""
    if not authorization:
        return None
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


def unauthorized(detail: str) -> Problem:
    """A 401 problem with the ``WWW-Authenticate`` challenge."""
    return Problem(
        401, "unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="pulse"'}
    )


# --- API keys --------------------------------------------------------------------------


def new_api_key() -> tuple[str, str, str]:
    """Generate an API key; returns ``(full key shown once, lookup prefix, stored hash)``."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    full_key = f"{API_KEY_PREFIX}{prefix}_{secret}"
    return full_key, prefix, hash_api_key(full_key)


def hash_api_key(full_key: str) -> str:
    """SHA-256 of a key: API keys carry 256 bits of randomness, so no slow hash is needed."""
    return hashlib.sha256(full_key.encode()).hexdigest()


def session_revocation_key(family_id: str) -> str:
    """The revocation-list entry that revokes every access token of a login session."""
    return f"fam:{family_id}"


class Authenticator:
    """Turns a credential into a :class:`Principal`; caches verified API keys briefly.

    Revocations live in PostgreSQL and reach this process as notices
    (:mod:`pulse_engine.revocations`). While the notices are live, revocations are checked
    in memory; while they may be missed (the LISTEN connection is down, or not started),
    every check reads the database and nothing is taken from the API-key cache.
    """

    API_KEY_CACHE_SECONDS = 30.0

    def __init__(self, engine: PulseEngine) -> None:
        self.engine = engine
        self.revoked_jtis: dict[str, float] = {}
        self._api_keys: dict[str, tuple[Principal, float]] = {}
        self._change = asyncio.Event()

    @property
    def live(self) -> bool:
        """Whether this process hears every revocation as it is committed."""
        return self.engine.notices.live

    async def authenticate(self, credential: str) -> Principal:
        """Verify a bearer credential; raises a 401 :class:`Problem` when it is not valid."""
        if credential.startswith(API_KEY_PREFIX):
            return await self._authenticate_api_key(credential)
        try:
            principal = self.engine.tokens.verify_access(credential)
        except TokenError as error:
            raise unauthorized(f"The access token is not valid ({error.reason}).") from None
        revoked = (
            self.principal_revoked(principal)
            if self.live
            else await self._revoked_in_database(principal)
        )
        if revoked:
            raise unauthorized("The access token has been revoked.")
        return principal

    def authenticate_cached(self, credential: str) -> Principal | None:
        """The fast path: a verified, unrevoked principal from memory, or None to take the
        full path (always None while revocation notices may be missed)."""
        if not self.live:
            return None
        if credential.startswith(API_KEY_PREFIX):
            cached = self._api_keys.get(credential)
            if cached and cached[1] > time.monotonic():
                return cached[0]
            return None
        try:
            principal = self.engine.tokens.verify_access(credential)
        except TokenError:
            return None
        if self.principal_revoked(principal):
            return None
        return principal

    @staticmethod
    def revocation_keys(principal: Principal) -> list[str]:
        """The revocation-list keys that end ``principal``: its token, its login session,
        and its user (a deleted user's key)."""
        keys = [principal.jti, f"user:{principal.user_id}"]
        if principal.family_id is not None:
            keys.append(session_revocation_key(principal.family_id))
        return keys

    def principal_revoked(self, principal: Principal) -> bool:
        """Whether the access token, its login session or its user is revoked (memory)."""
        return any(self.is_revoked(key) for key in self.revocation_keys(principal))

    async def _revoked_in_database(self, principal: Principal) -> bool:
        table = self.engine.core_tables["revoked_access_tokens"]
        async with self.engine.db.system_session() as session:
            found = await session.scalar(
                select(table.c.jti)
                .where(
                    table.c.jti.in_(self.revocation_keys(principal)),
                    table.c.expires_at > datetime.now(UTC),
                )
                .limit(1)
            )
        return found is not None

    async def still_valid(self, principal: Principal) -> bool:
        """Whether a principal verified earlier may still act (long-lived connections).

        False once its token or key expired, its token, login session or user was revoked,
        or its API key was revoked or its tenant deactivated.
        """
        if principal.expires_at <= time.time():
            return False
        if principal.kind != "api_key":
            if self.live:
                return not self.principal_revoked(principal)
            return not await self._revoked_in_database(principal)
        if self.live and any(cached.jti == principal.jti for cached, _ in self._api_keys.values()):
            return True
        return await self._api_key_valid(principal.jti.removeprefix("api_key:"))

    async def _api_key_valid(self, prefix: str) -> bool:
        async with self.engine.db.system_session() as session:
            row = await self._api_key_row(session, prefix)
        return row is not None and api_key_usable(row, datetime.now(UTC))

    async def _api_key_row(self, session: Any, prefix: str) -> Any:
        """The key stored under ``prefix`` with its tenant's ``active`` flag, or None."""
        table = self.engine.core_tables["api_keys"]
        tenants = self.engine.core_tables["tenants"]
        return (
            await session.execute(
                select(table, tenants.c.active.label("tenant_active"))
                .join(tenants, tenants.c.id == table.c.tenant_id)
                .where(table.c.prefix == prefix)
            )
        ).first()

    async def wait_until_ended(self, principal: Principal, recheck_seconds: float = 5.0) -> None:
        """Return once ``principal`` may no longer act: woken by every revocation notice,
        at its expiry, and at least every ``recheck_seconds`` while notices may be missed."""
        while await self.still_valid(principal):
            until_expiry = max(0.0, principal.expires_at - time.time())
            await self.wait_for_change(min(recheck_seconds, until_expiry + 0.01))

    def is_revoked(self, jti: str) -> bool:
        """True when an access token's id (or a session's key) is on the revocation list."""
        expires = self.revoked_jtis.get(jti)
        return expires is not None and expires > time.time()

    def note_revoked(self, jti: str, expires_at: float) -> None:
        """Add a revoked access token to this process's list (kept until it would expire)."""
        now = time.time()
        self.revoked_jtis[jti] = expires_at
        for stale in [key for key, expiry in self.revoked_jtis.items() if expiry <= now]:
            del self.revoked_jtis[stale]
        self.changed()

    async def load_revocations(self) -> None:
        """Load every unexpired revocation (at start, and after notices may have been lost)."""
        table = self.engine.core_tables["revoked_access_tokens"]
        async with self.engine.db.system_session() as session:
            rows = (
                await session.execute(
                    select(table.c.jti, table.c.expires_at).where(
                        table.c.expires_at > datetime.now(UTC)
                    )
                )
            ).all()
        self.revoked_jtis = {jti: expires_at.timestamp() for jti, expires_at in rows}
        self.changed()

    def forget_api_key(self, prefix: str) -> None:
        """Drop a revoked key from this process's short cache."""
        for key in [key for key in self._api_keys if key.startswith(f"{API_KEY_PREFIX}{prefix}_")]:
            del self._api_keys[key]
        self.changed()

    def forget_tenant(self, tenant_id: str) -> None:
        """Drop the cached API keys of a tenant whose state changed (deactivated...)."""
        for key in [k for k, (p, _) in self._api_keys.items() if p.tenant_id == tenant_id]:
            del self._api_keys[key]
        self.changed()

    def forget_cached_credentials(self) -> None:
        """Drop every cached API key (after notices may have been missed)."""
        self._api_keys.clear()
        self.changed()

    def changed(self) -> None:
        """Wake everything waiting in :meth:`wait_for_change`."""
        self._change.set()
        self._change = asyncio.Event()

    async def wait_for_change(self, seconds: float) -> None:
        """Return when a revocation or credential change arrives, or after ``seconds``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._change.wait(), seconds)

    async def _authenticate_api_key(self, full_key: str) -> Principal:
        cached = self._api_keys.get(full_key)
        if cached and cached[1] > time.monotonic() and self.live:
            return cached[0]
        parts = full_key[len(API_KEY_PREFIX) :].split("_", 1)
        if len(parts) != 2 or len(full_key) > 200:
            raise unauthorized("The API key is not valid.")
        table = self.engine.core_tables["api_keys"]
        async with self.engine.db.system_session() as session:
            row = await self._api_key_row(session, parts[0])
            now = datetime.now(UTC)
            if not (
                row is not None
                and hmac.compare_digest(row.key_hash, hash_api_key(full_key))
                and api_key_usable(row, now)
            ):
                raise unauthorized("The API key is not valid.")
            await session.execute(
                update(table).where(table.c.id == row.id).values(last_used_at=now)
            )
        principal = Principal(
            user_id=f"api_key:{row.id}",
            tenant_id=str(row.tenant_id),
            role=row.role,
            jti=f"api_key:{row.prefix}",
            expires_at=(row.expires_at.timestamp() if row.expires_at else time.time() + 86400),
            scopes=frozenset(row.scopes or ()),
            kind="api_key",
        )
        self._api_keys[full_key] = (principal, time.monotonic() + self.API_KEY_CACHE_SECONDS)
        return principal


def api_key_usable(row: Any, now: datetime) -> bool:
    """Whether a stored key (with ``tenant_active``) may act: not revoked, not expired, and
    its tenant active."""
    return (
        row.revoked_at is None
        and bool(row.tenant_active)
        and (row.expires_at is None or row.expires_at > now)
    )


BUILTIN_SCOPE = "pulse"
READ_METHODS = frozenset({"GET", "HEAD"})


def check_scopes(principal: Principal, plugin: str | None, method: str) -> None:
    """Confine a scoped API key to the plugins its scopes name (403 otherwise).

    A scope is a plugin name (``etl``: any call to its routes) or ``<plugin>:read``
    (only GET). ``pulse`` / ``pulse:read`` cover the engine's own routes. An API key
    without scopes, like a user, is limited by its role alone.
    """
    if principal.kind != "api_key" or not principal.scopes:
        return
    name = plugin if plugin is not None and not plugin.startswith("pulse.") else BUILTIN_SCOPE
    if name in principal.scopes:
        return
    if method in READ_METHODS and f"{name}:read" in principal.scopes:
        return
    raise Problem(
        403,
        "insufficient-scope",
        f"This API key's scopes do not allow {method} on the '{name}' routes.",
        required_scope=name if method not in READ_METHODS else f"{name}:read",
    )


def check_role(principal: Principal, required: str) -> None:
    """Raise 403 unless the principal's role reaches the required one."""
    if not role_satisfies(principal.role, required):
        raise Problem(
            403,
            "forbidden",
            f"This operation needs the '{required}' role.",
            required_role=required,
        )
