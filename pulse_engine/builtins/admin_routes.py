"""Built-in plugin: the admin API under ``/api/v1/admin``.

Tenants (superadmin), users and roles, API keys, per-tenant plugin switches and the audit
log. Every route needs at least the ``admin`` role; the rules of who may act on which
tenant live in :mod:`pulse_engine.accounts`, shared with the CLI. A tenant admin asking
for another tenant's records gets 404, as if they did not exist.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from quart import Blueprint, request
from quart_schema import validate_querystring, validate_request, validate_response

from pulse_engine import accounts, audit, hookimpl, tenant_plugins
from pulse_engine.auth import require_role
from pulse_engine.builtins.admin_schemas import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPage,
    AuditPage,
    PluginState,
    PluginStateList,
    PluginSwitch,
    RoleList,
    Tenant,
    TenantCreate,
    TenantPage,
    TenantQuery,
    TenantUpdate,
    User,
    UserCreate,
    UserPage,
    UserUpdate,
)
from pulse_engine.pagination import PageQuery
from pulse_engine.problems import problem_responses
from pulse_engine.tenancy import current_principal
from pulse_engine.tokens import ROLE_RANK

if TYPE_CHECKING:
    from pulse_engine.app import PulseEngine


def _client_address() -> str | None:
    return request.remote_addr


def _optional(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None


@hookimpl
def register_routes(engine: PulseEngine) -> list[Blueprint]:
    """The admin blueprints: accounts, capabilities and audit."""
    prefix = f"{engine.settings.api_v1_prefix}/admin"
    return [_accounts_blueprint(engine, prefix), _tenants_blueprint(engine, prefix)]


def _accounts_blueprint(engine: PulseEngine, prefix: str) -> Blueprint:
    blueprint = Blueprint("admin_accounts", __name__, url_prefix=prefix)

    @blueprint.get("/roles")
    @require_role("admin")
    @validate_response(RoleList)
    @problem_responses()
    async def list_roles() -> dict[str, Any]:
        """Every role, its rank, and whether the caller may assign it."""
        caller = current_principal()
        assignable = (
            set(ROLE_RANK) if accounts.is_superadmin(caller) else set(accounts.TENANT_ROLES)
        )
        return {
            "roles": [
                {"name": name, "rank": rank, "assignable": name in assignable}
                for name, rank in ROLE_RANK.items()
            ]
        }

    @blueprint.get("/users")
    @require_role("admin")
    @validate_querystring(TenantQuery)
    @validate_response(UserPage)
    @problem_responses(503)
    async def list_users(query_args: TenantQuery) -> dict[str, Any]:
        """Users of the caller's tenant (a superadmin: of ``tenant_id``, or all)."""
        page = await accounts.list_users(
            engine,
            actor=current_principal(),
            tenant_id=_optional(query_args.tenant_id),
            limit=query_args.capped_limit,
            cursor=query_args.cursor,
        )
        return page.as_dict()

    @blueprint.post("/users")
    @require_role("admin")
    @validate_request(UserCreate)
    @validate_response(User, 201)
    @problem_responses(409, 413, 503)
    async def create_user(data: UserCreate) -> tuple[dict[str, Any], int]:
        """Create a user in the caller's tenant (a superadmin: in ``tenant_id``, or none)."""
        user = await accounts.create_user(
            engine,
            actor=current_principal(),
            tenant_id=_optional(data.tenant_id),
            email=data.email,
            password=data.password,
            role=data.role,
            client_address=_client_address(),
        )
        return user, 201

    @blueprint.get("/users/<uuid:user_id>")
    @require_role("admin")
    @validate_response(User)
    @problem_responses(503)
    async def get_user(user_id: uuid.UUID) -> dict[str, Any]:
        """One user."""
        return await accounts.get_user(engine, actor=current_principal(), user_id=str(user_id))

    @blueprint.patch("/users/<uuid:user_id>")
    @require_role("admin")
    @validate_request(UserUpdate)
    @validate_response(User)
    @problem_responses(409, 413, 503)
    async def update_user(user_id: uuid.UUID, data: UserUpdate) -> dict[str, Any]:
        """Change a user's role and/or deactivate (or reactivate) them."""
        return await accounts.update_user(
            engine,
            actor=current_principal(),
            user_id=str(user_id),
            role=data.role,
            active=data.active,
            client_address=_client_address(),
        )

    @blueprint.get("/api-keys")
    @require_role("admin")
    @validate_querystring(TenantQuery)
    @validate_response(ApiKeyPage)
    @problem_responses(503)
    async def list_api_keys(query_args: TenantQuery) -> dict[str, Any]:
        """API keys of the caller's tenant (never the keys themselves)."""
        page = await accounts.list_api_keys(
            engine,
            actor=current_principal(),
            tenant_id=_optional(query_args.tenant_id),
            limit=query_args.capped_limit,
            cursor=query_args.cursor,
        )
        return page.as_dict()

    @blueprint.post("/api-keys")
    @require_role("admin")
    @validate_request(ApiKeyCreate)
    @validate_response(ApiKeyCreated, 201)
    @problem_responses(413, 503)
    async def create_api_key(data: ApiKeyCreate) -> tuple[dict[str, Any], int]:
        """Create an API key; the answer holds the full key, which is never shown again."""
        record, key = await accounts.create_api_key(
            engine,
            actor=current_principal(),
            tenant_id=_optional(data.tenant_id),
            name=data.name,
            role=data.role,
            scopes=data.scopes,
            expires_at=data.expires_at,
            client_address=_client_address(),
        )
        return {"api_key": record, "key": key}, 201

    @blueprint.delete("/api-keys/<uuid:key_id>")
    @require_role("admin")
    @validate_response(ApiKey)
    @problem_responses(503)
    async def revoke_api_key(key_id: uuid.UUID) -> dict[str, Any]:
        """Revoke an API key at once, on every server process."""
        return await accounts.revoke_api_key(
            engine,
            actor=current_principal(),
            key_id=str(key_id),
            client_address=_client_address(),
        )

    return blueprint


def _tenants_blueprint(engine: PulseEngine, prefix: str) -> Blueprint:
    blueprint = Blueprint("admin_tenants", __name__, url_prefix=prefix)

    @blueprint.get("/tenants")
    @require_role("superadmin")
    @validate_querystring(PageQuery)
    @validate_response(TenantPage)
    @problem_responses(503)
    async def list_tenants(query_args: PageQuery) -> dict[str, Any]:
        """Every tenant, by name."""
        page = await accounts.list_tenants(
            engine, limit=query_args.capped_limit, cursor=query_args.cursor
        )
        return page.as_dict()

    @blueprint.post("/tenants")
    @require_role("superadmin")
    @validate_request(TenantCreate)
    @validate_response(Tenant, 201)
    @problem_responses(409, 413, 503)
    async def create_tenant(data: TenantCreate) -> tuple[dict[str, Any], int]:
        """Create a tenant."""
        tenant = await accounts.create_tenant(
            engine, actor=current_principal(), name=data.name, client_address=_client_address()
        )
        return tenant, 201

    @blueprint.get("/tenants/<uuid:tenant_id>")
    @require_role("admin")
    @validate_response(Tenant)
    @problem_responses(503)
    async def get_tenant(tenant_id: uuid.UUID) -> dict[str, Any]:
        """One tenant: the caller's own (a superadmin: any)."""
        return await accounts.get_tenant(
            engine, actor=current_principal(), tenant_id=str(tenant_id)
        )

    @blueprint.patch("/tenants/<uuid:tenant_id>")
    @require_role("superadmin")
    @validate_request(TenantUpdate)
    @validate_response(Tenant)
    @problem_responses(413, 503)
    async def update_tenant(tenant_id: uuid.UUID, data: TenantUpdate) -> dict[str, Any]:
        """Activate or deactivate a tenant (its users can no longer log in or refresh)."""
        return await accounts.set_tenant_active(
            engine,
            actor=current_principal(),
            tenant_id=str(tenant_id),
            active=data.active,
            client_address=_client_address(),
        )

    @blueprint.get("/tenants/<uuid:tenant_id>/plugins")
    @require_role("admin")
    @validate_response(PluginStateList)
    @problem_responses(503)
    async def list_plugins(tenant_id: uuid.UUID) -> dict[str, Any]:
        """Every switchable plugin with its state for the tenant."""
        states = await tenant_plugins.plugin_states(
            engine, actor=current_principal(), tenant_id=str(tenant_id)
        )
        return {"items": states}

    @blueprint.put("/tenants/<uuid:tenant_id>/plugins/<name>")
    @require_role("admin")
    @validate_request(PluginSwitch)
    @validate_response(PluginState)
    @problem_responses(409, 413, 503)
    async def switch_plugin(tenant_id: uuid.UUID, name: str, data: PluginSwitch) -> dict[str, Any]:
        """Enable or disable a plugin for the tenant and set its configuration."""
        return await tenant_plugins.set_plugin(
            engine,
            actor=current_principal(),
            tenant_id=str(tenant_id),
            plugin=name,
            enabled=data.enabled,
            config=data.config,
            client_address=_client_address(),
        )

    @blueprint.get("/audit")
    @require_role("admin")
    @validate_querystring(TenantQuery)
    @validate_response(AuditPage)
    @problem_responses(503)
    async def read_audit(query_args: TenantQuery) -> dict[str, Any]:
        """The audit log, newest first: the caller's tenant (a superadmin: any, or all)."""
        tenant_id = accounts.scoped_tenant(current_principal(), _optional(query_args.tenant_id))
        page = await audit.entries(
            engine, tenant_id=tenant_id, limit=query_args.capped_limit, cursor=query_args.cursor
        )
        return page.as_dict()

    return blueprint
