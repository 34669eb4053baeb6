"""``pulse tenants ...`` and ``pulse users ...``: the operator's commands, same rules as the API."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import click
import jwt
from click.testing import CliRunner
from quart import Quart

from pulse_engine.cli_accounts import add_account_commands
from pulse_engine.testing import TEST_JWT_SECRET, TEST_PASSWORD, ApiClient, create_user, token_for


def pulse_cli() -> click.Group:
    """A fresh root group with the account commands, as ``pulse_engine.cli`` adds them."""
    group = click.Group("pulse")
    add_account_commands(group)
    return group


async def invoke(env: dict[str, str | None], *args: str, stdin: str | None = None) -> Any:
    """Run the CLI in a thread (it runs its own event loop, like the real ``pulse``)."""
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, pulse_cli(), list(args), input=stdin, env=env)


def cli_env(database_url: str, data_dir: Path) -> dict[str, str | None]:
    """The environment an operator would set for an external database."""
    return {
        "DATABASE_URL": database_url,
        "JWT_SECRET_KEY": TEST_JWT_SECRET,
        "PULSE_DATA_DIR": str(data_dir),
        "PULSE_AUTO_MIGRATE": "true",
        "PULSE_LOG_LEVEL": "WARNING",
        "REDIS_URL": None,
        "AMQP_URL": None,
    }


async def login(app: Quart, email: str, password: str) -> Any:
    """POST /api/v1/auth/login."""
    return await app.test_client().post(
        "/api/v1/auth/login", json={"email": email, "password": password}
    )


async def test_create_tenant_and_users_then_log_in(
    pulse_app: Quart, pulse_database_url: str, tmp_path: Path
) -> None:
    env = cli_env(pulse_database_url, tmp_path)
    name = f"cli-{uuid.uuid4().hex[:8]}"
    created = await invoke(env, "tenants", "create", name)
    assert created.exit_code == 0, created.output
    tenant_id = created.output.strip()
    assert str(uuid.UUID(tenant_id)) == tenant_id

    email = f"Ops-{uuid.uuid4().hex[:6]}@Example.test"
    user = await invoke(
        env, "users", "create", "--tenant", tenant_id, "--email", email,
        "--password", TEST_PASSWORD, "--role", "admin",
    )
    assert user.exit_code == 0, user.output
    response = await login(pulse_app, email.lower(), TEST_PASSWORD)
    assert response.status_code == 200
    claims = jwt.decode((await response.get_json())["access_token"],
                        options={"verify_signature": False})
    assert claims["tid"] == tenant_id and claims["role"] == "admin"

    root_email = f"root-{uuid.uuid4().hex[:6]}@example.test"
    prompted = await invoke(
        env, "users", "create", "--email", root_email, "--role", "superadmin",
        stdin=f"{TEST_PASSWORD}\n{TEST_PASSWORD}\n",
    )
    assert prompted.exit_code == 0, prompted.output
    assert TEST_PASSWORD not in prompted.output
    root = await login(pulse_app, root_email, TEST_PASSWORD)
    claims = jwt.decode((await root.get_json())["access_token"],
                        options={"verify_signature": False})
    assert claims["role"] == "superadmin" and claims["tid"] is None

    duplicate_tenant = await invoke(env, "tenants", "create", name)
    assert duplicate_tenant.exit_code == 1 and "exists" in duplicate_tenant.output


async def test_cli_applies_the_account_rules(
    pulse_app: Quart, pulse_database_url: str, tmp_path: Path
) -> None:
    env = cli_env(pulse_database_url, tmp_path)
    engine = pulse_app.extensions["pulse"]
    tenant_id = (await invoke(env, "tenants", "create", f"rules-{uuid.uuid4().hex[:8]}")
                 ).output.strip()
    base = ["users", "create", "--password", TEST_PASSWORD]
    no_tenant = await invoke(env, *base, "--email", "lost@example.test", "--role", "viewer")
    assert no_tenant.exit_code == 1 and "needs a tenant" in no_tenant.output
    tenant_superadmin = await invoke(
        env, *base, "--email", "x@example.test", "--role", "superadmin", "--tenant", tenant_id
    )
    assert tenant_superadmin.exit_code == 1 and "no tenant" in tenant_superadmin.output
    unknown_tenant = await invoke(
        env, *base, "--email", "y@example.test", "--tenant", str(uuid.uuid4())
    )
    assert unknown_tenant.exit_code == 1 and "No such tenant" in unknown_tenant.output
    not_uuid = await invoke(env, *base, "--email", "z@example.test", "--tenant", "acme")
    assert not_uuid.exit_code == 2
    weak = await invoke(
        env, "users", "create", "--tenant", tenant_id, "--email", "w@example.test",
        "--password", "password",
    )
    assert weak.exit_code == 1 and "password" in weak.output
    bad_email = await invoke(env, *base, "--email", "not-an-email", "--tenant", tenant_id)
    assert bad_email.exit_code == 1 and "email" in bad_email.output

    email = f"member-{uuid.uuid4().hex[:6]}@example.test"
    user_id = (await invoke(env, *base, "--email", email, "--tenant", tenant_id)).output.strip()
    again = await invoke(env, *base, "--email", email.upper(), "--tenant", tenant_id)
    assert again.exit_code == 1 and "already exists" in again.output

    updated = await invoke(env, "users", "update", user_id, "--role", "analyst", "--inactive")
    assert updated.exit_code == 0, updated.output
    assert updated.output.split() == [user_id, email, "analyst", "inactive"]
    assert (await login(pulse_app, email, TEST_PASSWORD)).status_code == 401

    admin = await create_user(engine, tenant_id, "admin")
    log = await ApiClient(pulse_app, token_for(engine, admin)).get("/api/v1/admin/audit")
    entries = (await log.get_json())["items"]
    by_action = {entry["action"]: entry for entry in entries}
    assert by_action["user.role_changed"]["actor_id"] == "system"
    assert {"tenant.created", "user.created", "user.deactivated"} <= set(by_action)
