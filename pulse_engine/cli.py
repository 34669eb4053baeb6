"""The ``pulse`` command-line tool: serve, worker, db, plugins, and plugins' own commands."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from pulse_engine import __version__
from pulse_engine.app import PulseEngine
from pulse_engine.cli_accounts import add_account_commands
from pulse_engine.plugins import PluginManager
from pulse_engine.runtime import run_worker, running_engine
from pulse_engine.settings import Settings

console = Console(stderr=True)


@click.group()
@click.version_option(__version__, prog_name="pulse")
def cli() -> None:
    """Pulse: plugin-based engineering analytics."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=3001, show_default=True, type=int, help="Port to bind.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes.",
)
@click.option(
    "--graceful-timeout",
    default=30.0,
    show_default=True,
    type=float,
    help="Seconds to let in-flight requests finish on shutdown.",
)
@click.option(
    "--demo",
    is_flag=True,
    help="First load the demo data set (a plugin's `pulse demo --if-missing`).",
)
@click.pass_context
def serve(
    ctx: click.Context, host: str, port: int, workers: int, graceful_timeout: float, demo: bool
) -> None:
    """Serve the API on Hypercorn (uvloop where available)."""
    from hypercorn.config import Config
    from hypercorn.run import run

    settings = Settings()
    if settings.embedded:
        # migrate and start the embedded database once, before workers fork
        asyncio.run(_prepare_embedded(settings))
    if demo:
        _load_demo(ctx)
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.application_path = "pulse_engine.asgi:app"
    config.workers = 0 if workers == 1 else workers
    config.graceful_timeout = graceful_timeout
    config.accesslog = None
    config.worker_class = "uvloop" if _has_uvloop() else "asyncio"
    console.print(f"Pulse {__version__} on http://{host}:{port} ({workers} process(es))")
    raise SystemExit(run(config))


def _load_demo(ctx: click.Context) -> None:
    """Invoke the ``demo`` command a plugin registered, with ``--if-missing``; or say why not."""
    root = ctx.find_root().command
    command = root.get_command(ctx, "demo") if isinstance(root, click.Group) else None
    if command is None:
        console.print(
            "--demo: no installed plugin provides a `demo` command (pulse-etl does); "
            "serving without demo data"
        )
        return
    ctx.invoke(command, if_missing=True)


async def _prepare_embedded(settings: Settings) -> None:
    async with running_engine(settings, migrate=True):
        pass


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


@cli.command()
def worker() -> None:
    """Run the queue consumers of every plugin until SIGTERM/SIGINT, then drain and stop."""

    def ready(engine: PulseEngine) -> None:
        console.print(f"worker {os.getpid()}: {len(engine.consumers)} consumer(s) running")

    asyncio.run(run_worker(on_ready=ready))


@cli.group()
def db() -> None:
    """Database commands."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every plugin's migrations (all Alembic heads) and the tenancy rules."""

    async def main() -> None:
        with console.status("applying migrations..."):
            async with running_engine(migrate=True) as engine:
                folders = len(engine.migration_folders)
        console.print(f"database is at head ({folders} migration branches)")

    asyncio.run(main())


@db.command("url")
@click.option("--app-role", is_flag=True, help="The URL of the row-level-security role.")
def db_url(app_role: bool) -> None:
    """Print the libpq URI of the database in use (starting the embedded one if needed)."""

    async def main() -> str:
        from pulse_engine.db import Database

        database = Database(Settings())
        await database.connect()
        try:
            return database.libpq_url(app=app_role)
        finally:
            await database.close()

    click.echo(asyncio.run(main()))


@cli.group()
def plugins() -> None:
    """Plugin commands."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins_list(as_json: bool) -> None:
    """List discovered plugins with their distribution, version and status."""
    manager = _plugin_manager(Settings())
    records = [record.as_dict() for record in manager.records.values()]
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    table = Table("name", "distribution", "version", "status", "hooks")
    for record in records:
        table.add_row(
            record["name"],
            record["distribution"] or "(built in)",
            record["version"] or __version__,
            record["status"] + ("" if not record["errors"] else f": {record['errors'][0]}"),
            ", ".join(record["hooks"]),
        )
    Console().print(table)


def _plugin_manager(settings: Settings) -> PluginManager:
    manager = PluginManager(trace=settings.trace_plugins)
    manager.load_default_plugins()
    manager.load_entry_point_plugins(settings.plugins)
    manager.add_plugin_hookspecs()
    return manager


add_account_commands(cli)


def build_cli() -> click.Group:
    """The ``pulse`` group with the commands every plugin adds through ``register_commands``."""
    manager = _plugin_manager(Settings())
    manager.call_each_sync("register_commands", cli=cli)
    return cli


def main(argv: Any = None) -> None:
    """Console-script entry point."""
    build_cli().main(args=argv, prog_name="pulse")


if __name__ == "__main__":
    main()
