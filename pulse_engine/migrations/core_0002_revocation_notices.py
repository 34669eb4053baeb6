"""Revocations announced by PostgreSQL itself (NOTIFY), so no bus outage can lose one.

Every change that ends a credential is written to the database and, in the same
transaction, announced on the ``pulse_auth`` channel; every process LISTENs
(:mod:`pulse_engine.revocations`) and reloads the whole list when it reconnects.

- a row in ``revoked_access_tokens`` (a token, a login session's family, a deleted user);
- a deleted user: their key ``user:<id>`` is put on the list (tokens name their user);
- an API key revoked, expired by hand or deleted, and a tenant (de)activated: processes
  drop what they cached of that key or tenant;
- a tenant's plugin switches changed: processes drop their copy of that tenant's switches.

Revision ID: core_0002
Revises: core_0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "core_0002"
down_revision: str | Sequence[str] | None = "core_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: How long a deleted user's key stays on the list: longer than any access token lives.
DELETED_USER_DAYS = 30


def notice_function(name: str, row: str, fields: str) -> str:
    """A trigger function that NOTIFYs ``pulse_auth`` with ``fields`` of the ``row``
    (``NEW`` or ``OLD``) as a JSON object."""
    return f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pulse_auth', json_build_object({fields.format(row=row)})::text);
    RETURN NULL;
END $$
"""


FUNCTIONS = (
    notice_function(
        "pulse_notify_revoked", "NEW",
        "'kind', 'revoked', 'jti', {row}.jti, 'expires_at', extract(epoch FROM {row}.expires_at)",
    ),
    notice_function("pulse_notify_api_key", "OLD", "'kind', 'api_key', 'prefix', {row}.prefix"),
    notice_function("pulse_notify_tenant", "OLD", "'kind', 'tenant', 'tenant_id', {row}.id"),
    notice_function(
        "pulse_notify_capabilities", "OLD",
        "'kind', 'capabilities', 'tenant_id', coalesce(NEW.tenant_id, {row}.tenant_id)",
    ),
    f"""
CREATE OR REPLACE FUNCTION pulse_revoke_deleted_user() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    INSERT INTO revoked_access_tokens (jti, expires_at)
    VALUES ('user:' || OLD.id, now() + interval '{DELETED_USER_DAYS} days')
    ON CONFLICT (jti) DO UPDATE SET expires_at = EXCLUDED.expires_at;
    RETURN NULL;
END $$
""",
)

TRIGGERS = (
    """
CREATE TRIGGER pulse_revoked_notice AFTER INSERT OR UPDATE ON revoked_access_tokens
    FOR EACH ROW EXECUTE FUNCTION pulse_notify_revoked()
""",
    """
CREATE TRIGGER pulse_user_deleted AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION pulse_revoke_deleted_user()
""",
    """
CREATE TRIGGER pulse_api_key_changed AFTER UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION pulse_notify_api_key()
""",
    """
CREATE TRIGGER pulse_tenant_changed AFTER UPDATE OF active OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION pulse_notify_tenant()
""",
    """
CREATE TRIGGER pulse_capabilities_changed AFTER INSERT OR UPDATE OR DELETE ON tenant_plugins
    FOR EACH ROW EXECUTE FUNCTION pulse_notify_capabilities()
""",
)


def upgrade() -> None:
    """Create the notice functions and triggers (one statement at a time: asyncpg)."""
    for statement in (*FUNCTIONS, *TRIGGERS):
        op.execute(statement)


def downgrade() -> None:
    """Drop them."""
    for trigger, table in (
        ("pulse_revoked_notice", "revoked_access_tokens"),
        ("pulse_user_deleted", "users"),
        ("pulse_api_key_changed", "api_keys"),
        ("pulse_tenant_changed", "tenants"),
        ("pulse_capabilities_changed", "tenant_plugins"),
    ):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
    for function in (
        "pulse_notify_revoked", "pulse_revoke_deleted_user", "pulse_notify_api_key",
        "pulse_notify_tenant", "pulse_notify_capabilities",
    ):
        op.execute(f"DROP FUNCTION IF EXISTS {function}()")
