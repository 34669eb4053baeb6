"""CLI commands for tenants and users: ``pulse tenants ...`` and ``pulse users ...``.

They run as the operator (full authority, audited with the ``system`` actor) and apply
the same rules as the admin API, from :mod:`pulse_engine.accounts`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from pulse_engine import accounts
from pulse_engine.app import PulseEngine
from pulse_engine.problems import Problem
from pulse_engine.runtime import running_engine
from pulse_engine.tokens import ROLE_RANK

T = TypeVar("T")


#: How long a command waits for the in-process work it queued before it exits anyway.
QUEUED_WORK_SECONDS = 600.0


def run_with_engine(work: Callable[[PulseEngine], Awaitable[T]]) -> T:
    """Run ``work`` on a started engine (settings from the environment); Problems exit 1.

    On the embedded default the queue lives in this process: its consumers run here, and
    the command waits until the work it queued (metric refreshes after a load...) is done.
    """

    async def main() -> T:
        async with running_engine(run_consumers=None) as engine:
            result = await work(engine)
            await engine.queue.wait_idle(QUEUED_WORK_SECONDS)
            return result

    try:
        return asyncio.run(main())
    except Problem as problem:
        errors = problem.extra.get("errors") or []
        fields = "".join(f"\n  {error['field']}: {error['message']}" for error in errors)
        raise click.ClickException(f"{problem.detail}{fields}") from None


def add_account_commands(cli: click.Group) -> None:
    """Add the ``tenants`` and ``users`` command groups to ``cli``."""
    cli.add_command(tenants)
    cli.add_command(users)


@click.group()
def tenants() -> None:
    """Manage tenants."""


@tenants.command("create")
@click.argument("name")
def tenants_create(name: str) -> None:
    """Create a tenant called NAME and print its id."""
    tenant = run_with_engine(
        lambda engine: accounts.create_tenant(engine, actor=None, name=name, client_address=None)
    )
    click.echo(tenant["id"])


@click.group()
def users() -> None:
    """Manage users."""


@users.command("create")
@click.option("--tenant", "tenant_id", help="The user's tenant id (omit for a superadmin).")
@click.option("--email", required=True, help="The login email (stored lower-cased).")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="The password (prompted when omitted, which keeps it out of shell history).",
)
@click.option(
    "--role",
    type=click.Choice(list(ROLE_RANK)),
    default="viewer",
    show_default=True,
    help="The user's role.",
)
def users_create(tenant_id: str | None, email: str, password: str, role: str) -> None:
    """Create a user and print its id."""
    _check_uuid(tenant_id, "--tenant")
    user = run_with_engine(
        lambda engine: accounts.create_user(
            engine,
            actor=None,
            tenant_id=tenant_id,
            email=email,
            password=password,
            role=role,
            client_address=None,
        )
    )
    click.echo(user["id"])


@users.command("update")
@click.argument("user_id")
@click.option("--role", type=click.Choice(list(ROLE_RANK)), help="The new role.")
@click.option("--active/--inactive", default=None, help="Reactivate or deactivate the user.")
def users_update(user_id: str, role: str | None, active: bool | None) -> None:
    """Change a user's role or deactivate them; prints the user as stored."""
    _check_uuid(user_id, "USER_ID")
    user: dict[str, Any] = run_with_engine(
        lambda engine: accounts.update_user(
            engine, actor=None, user_id=user_id, role=role, active=active, client_address=None
        )
    )
    click.echo(
        f"{user['id']} {user['email']} {user['role']} {'active' if user['active'] else 'inactive'}"
    )


def _check_uuid(value: str | None, name: str) -> None:
    if value is None:
        return
    try:
        uuid.UUID(value)
    except ValueError:
        raise click.BadParameter("not a UUID", param_hint=name) from None
