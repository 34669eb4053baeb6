"""pulse-etl's commands: ``pulse etl run`` and ``pulse demo``.

``pulse etl run`` creates a job exactly as ``POST /app/etl/jobs`` does and runs it in this
process through the same job runner as the queue workers (lease, heartbeat, batches
committed with their cursors); the progress bar follows the job's progress events.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from pulse_engine import Engine, run_with_engine
from pulse_etl.demo.command import run_demo
from pulse_etl.demo.plan import DEFAULT_SEED
from pulse_etl.loader import Stats
from pulse_etl.service import EtlService

T = TypeVar("T")

console = Console(stderr=True)

#: The ``created_by`` of jobs started from the command line.
CLI_ACTOR = "cli"


def add_commands(cli: click.Group) -> None:
    """Add ``etl`` and ``demo`` to the ``pulse`` group."""
    cli.add_command(etl)
    cli.add_command(demo)


def _uuid(value: str | None, hint: str) -> str | None:
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise click.BadParameter("not a UUID", param_hint=hint) from None


def stats_table(stats: Stats, title: str) -> Table:
    """Created/updated rows per entity as a table."""
    table = Table("entity", "created", "updated", title=title)
    for entity, counts in sorted(stats.items()):
        table.add_row(entity, str(counts.get("created", 0)), str(counts.get("updated", 0)))
    return table


@click.group()
def etl() -> None:
    """ETL jobs."""


@etl.command("run")
@click.argument("connector")
@click.option("--tenant", "tenant_id", required=True, help="The tenant to load into (id).")
@click.option("--integration", "integration_id", help="Run the saved integration with this id.")
@click.option("--config", "config_json", help="An ad-hoc connector configuration (JSON object).")
def etl_run(connector: str, tenant_id: str, integration_id: str | None,
            config_json: str | None) -> None:
    """Run a CONNECTOR job in the foreground, with progress; exit 1 unless it succeeds.

    Give exactly one of --integration and --config. The job is recorded like any other
    (GET /app/etl/jobs lists it); Ctrl-C asks it to stop after its current batch.
    """
    tenant = _uuid(tenant_id, "--tenant")
    assert tenant is not None
    if (integration_id is None) == (config_json is None):
        raise click.UsageError("give exactly one of --integration and --config")
    body: dict[str, Any] = {"connector": connector}
    if integration_id is not None:
        body["integration_id"] = _uuid(integration_id, "--integration")
    else:
        assert config_json is not None
        try:
            body["config"] = json.loads(config_json)
        except ValueError as error:
            raise click.BadParameter(f"not JSON: {error}", param_hint="--config") from None

    async def work(engine: Engine) -> dict[str, Any]:
        from pulse_etl.plugin import service_for

        return await _run_job(service_for(engine), tenant, body)

    job = run_with_engine(work)
    console.print(stats_table(job["stats"] or {}, f"job {job['id']}: {job['status']}"))
    if job["status"] != "succeeded":
        console.print(f"[red]job {job['status']}[/red]" +
                      (f": {job['error']}" if job.get("error") else ""))
        raise SystemExit(1)


async def _run_job(service: EtlService, tenant_id: str, body: dict[str, Any]
                   ) -> dict[str, Any]:
    """Create the job, run it here with a progress bar, and return its final document."""
    job = await service.create_job(tenant_id, body, CLI_ACTOR, enqueue=False)
    job_id = job["id"]
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[rows]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"{body['connector']} {job_id[:8]}", total=1.0, rows="")

        def on_progress(document: dict[str, Any]) -> None:
            stats = document.get("stats") or {}
            written = sum(c.get("created", 0) + c.get("updated", 0) for c in stats.values())
            progress.update(task, completed=float(document.get("progress") or 0.0),
                            rows=f"{written} rows written · {document.get('status')}")

        await _interruptible(
            lambda: service.run_job(tenant_id, job_id, on_progress=on_progress),
            lambda: service.cancel_job(tenant_id, job_id),
        )
    return await service.get_job(tenant_id, job_id)


async def _interruptible(work: Callable[[], Awaitable[T]],
                         cancel: Callable[[], Awaitable[Any]]) -> T:
    """Run ``work``; the first Ctrl-C calls ``cancel`` (a graceful stop), the second aborts."""
    loop = asyncio.get_running_loop()
    runner = asyncio.ensure_future(work())
    pending: list[asyncio.Future[Any]] = []

    def interrupted() -> None:
        if pending:
            runner.cancel()
            return
        console.print("stopping after the current batch (Ctrl-C again to abort)")
        pending.append(asyncio.ensure_future(cancel()))

    if threading.current_thread() is not threading.main_thread():
        return await runner  # signal handlers belong to the main thread
    loop.add_signal_handler(signal.SIGINT, interrupted)
    try:
        return await runner
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        for future in pending:
            await asyncio.gather(future, return_exceptions=True)


@click.command()
@click.option("--tenant", "tenant_id",
              help="Load into this existing tenant (default: the 'Demo' tenant, created "
                   "with an admin user when missing).")
@click.option("--if-missing", is_flag=True,
              help="Do nothing when the tenant already holds demo data.")
@click.option("--seed", default=DEFAULT_SEED, show_default=True, type=int,
              help="Random seed: the same seed gives the same data.")
def demo(tenant_id: str | None, if_missing: bool, seed: int) -> None:
    """Load a year of realistic demo data (teams, repositories, commits, pull requests,
    reviews, deployments, incidents, sprints, work items)."""
    tenant = _uuid(tenant_id, "--tenant")

    async def work(engine: Engine) -> Any:
        with console.status("loading demo data..."):
            return await run_demo(engine, tenant_id=tenant, if_missing=if_missing, seed=seed)

    result = run_with_engine(work)
    if not result.loaded:
        console.print(f"demo data already present in tenant {result.tenant_id}")
    else:
        rows = sum(c["created"] + c["updated"] for c in result.stats.values())
        console.print(stats_table(result.stats, f"demo data (seed {seed})"))
        console.print(f"{rows} rows written in {result.seconds:.1f} s")
    console.print(f"tenant: {result.tenant_id}")
    if result.admin_password is not None:
        console.print(f"login:  {result.admin_email}\npassword (shown once): "
                      f"{result.admin_password}")
    click.echo(result.tenant_id)
