"""The one authorization decision every request, WebSocket and cache hit goes through.

:func:`authorize` decides, for one call: the plugin that owns the route and its status,
whether the route is protected, the credential, the principal, its role and scopes, and
the tenant's capability switch. It reads what it needs through an :class:`AccessLookups`:

- :class:`FullLookups` (the request gate in :mod:`pulse_engine.middleware`) may go to the
  database (API keys, capability switches);
- :class:`MemoryLookups` (the cache fast path in :mod:`pulse_engine.response_cache`)
  answers from this process's memory only and raises :class:`Undecided` for anything it
  does not hold, so the request falls through to the full pipeline.

Both run the same code in the same order, so the fast path can only serve what the full
pipeline would have served.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

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
from pulse_engine.tokens import Principal

if TYPE_CHECKING:
    from pulse_engine.app import PulseEngine


class Undecided(Exception):
    """The memory-only decision needs something this process does not hold."""


@dataclass(frozen=True)
class AccessRequest:
    """What the decision needs to know of one request, WebSocket handshake or cache hit."""

    method: str
    endpoint: str | None
    path: str
    authorization: str | None
    view: object
    view_args: Mapping[str, Any] = field(default_factory=dict)
    automatic_options: bool = False


class AccessLookups(Protocol):
    """Where :func:`authorize` gets principals and capability switches from."""

    async def principal(self, credential: str) -> Principal:
        """The principal of a bearer credential; a 401 :class:`Problem` when not valid."""
        ...

    async def enabled(self, tenant_id: str, plugin: str) -> bool:
        """Whether ``plugin`` is switched on for ``tenant_id``."""
        ...


class FullLookups:
    """Lookups that may read the database: the request gate's."""

    def __init__(self, engine: PulseEngine) -> None:
        self.engine = engine

    async def principal(self, credential: str) -> Principal:
        """Verify the credential (API keys in the database, JWTs by signature)."""
        return await self.engine.authenticator.authenticate(credential)

    async def enabled(self, tenant_id: str, plugin: str) -> bool:
        """The tenant's switch, loaded from the database when not cached."""
        return await self.engine.capabilities.is_enabled(tenant_id, plugin)


class MemoryLookups:
    """Lookups from this process's memory only: the cache fast path's."""

    def __init__(self, engine: PulseEngine) -> None:
        self.engine = engine

    async def principal(self, credential: str) -> Principal:
        """A JWT verified here, or an API key verified recently; else :class:`Undecided`."""
        principal = self.engine.authenticator.authenticate_cached(credential)
        if principal is None:
            raise Undecided("credential not verified in memory")
        return principal

    async def enabled(self, tenant_id: str, plugin: str) -> bool:
        """The tenant's cached switch, or :class:`Undecided` when it is not cached."""
        record = self.engine.plugins.records.get(plugin)
        if record is not None and record.builtin:
            return True
        state = self.engine.capabilities.cached_enabled(tenant_id, plugin)
        if state is None:
            raise Undecided("capability switches not cached")
        return state


def is_protected(engine: PulseEngine, path: str) -> bool:
    """Whether a path is under the prefixes that need a token (``/api/``, ``/app/``...)."""
    prefixes = (*PROTECTED_PREFIXES, engine.settings.api_v1_prefix.rstrip("/") + "/")
    return path.startswith(prefixes)


async def authorize(
    engine: PulseEngine, access: AccessRequest, lookups: AccessLookups
) -> Principal | None:
    """Decide one call: the principal it runs as (None for a public route), or a Problem.

    :raises Problem: 503 when the owning plugin failed, 401 without a valid credential,
        403 for a role or scope that does not reach the route, 404 when the owning plugin
        is disabled for the caller's tenant.
    :raises Undecided: only with :class:`MemoryLookups`, when memory does not suffice.
    """
    plugin = engine.owner_of(access.endpoint, access.view_args)
    if plugin is not None and engine.plugins.is_failed(plugin):
        raise Problem(
            503,
            "plugin-unavailable",
            f"The '{plugin}' plugin failed and is out of service; see /health/{plugin}.",
            plugin=plugin,
        )
    if (
        access.endpoint is None
        or view_is_public(access.view)
        or not is_protected(engine, access.path)
        or access.automatic_options  # Quart's own OPTIONS answer (CORS preflight): no data
    ):
        return None
    credential = bearer_token(access.authorization)
    if credential is None:
        raise unauthorized("This route needs an access token (Authorization: Bearer ...).")
    principal = await lookups.principal(credential)
    check_role(principal, view_role(access.view))
    check_scopes(principal, plugin, access.method)
    if (
        plugin is not None
        and principal.tenant_id is not None
        and not await lookups.enabled(principal.tenant_id, plugin)
    ):
        raise Problem(
            404,
            "plugin-disabled",
            f"The '{plugin}' capability is not enabled for this tenant.",
            plugin=plugin,
        )
    return principal
