"""A job interrupted by a killed process finishes by itself (issue 11 item 6), with real
processes on one database.

A git job is started through the HTTP API of a real ``pulse serve`` process and the process
that runs it is killed with SIGKILL mid-way (progress between 20% and 80%). New processes
are started; nobody retries the job. It must reach ``succeeded`` by itself, resume from its
cursor (the resumed run reads only the commits that were left) and store every commit of
the repository exactly once, with one run holding the job at a time.

* Embedded queue: the server runs the job in-process; its queue message dies with it, so
  only the lease sweep of the restarted server can queue the job again.
* RabbitMQ: a ``pulse serve`` (no consumers) and ``pulse worker`` processes; the broker
  delivers the killed worker's message again and the server's sweep queues the job a
  second time; two new workers get both at once: one runs the job, the other finds it held
  and is done.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from aiormq.exceptions import AMQPError
from pulse_etl import model
from pulse_etl.jobs import JOB_QUEUE
from sqlalchemy import func, select

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TEST_JWT_SECRET, free_port, make_settings, make_tenant, running_app

from .conftest import git

#: Commits of the generated repository, and rows per committed batch: enough batches that
#: the job is seen between 20% and 80% and killed there.
COMMITS = 1200
BATCH_SIZE = 10
LEASE_SECONDS = 2.0
HEARTBEAT_SECONDS = 0.2
SWEEP_SECONDS = 0.5
#: How long the job may take to finish by itself once its process is killed: a bound that
#: says "it resumed", not a speed target (on a quiet machine it takes a few seconds; two
#: busy cores have made it take over 30).
FINISH_DEADLINE = 120.0
#: Seconds a process may take to start.
START_DEADLINE = 60.0
#: The progress the git connector reports before its last batch (done / total * 0.95).
GIT_PROGRESS_SCALE = 0.95

#: Variables of the test's own environment a child must not inherit.
FOREIGN_VARIABLES = ("AMQP_URL", "REDIS_URL", "DATABASE_URL", "PULSE_PLUGINS",
                     "PULSE_RUN_CONSUMERS", "PULSE_AUTO_MIGRATE")


def import_repository(path: Path, commits: int) -> Path:
    """A repository of ``commits`` commits built at once with ``git fast-import``: work on
    ``main`` with a feature branch merged back (a merge commit) every fifth commit, the
    merged branches kept as refs, so that ``--all`` is what ``main`` reaches."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    stream: list[str] = []
    moment = 1_700_000_000
    marks = 0
    main_tip = 0

    def commit(ref: str, parents: list[int], message: str) -> int:
        nonlocal marks, moment
        marks += 1
        moment += 600
        content = f"change {marks}\n"
        stream.append(f"commit {ref}\nmark :{marks}\n"
                      f"author Dev{marks % 4} <dev{marks % 4}@example.test> {moment} +0000\n"
                      f"committer Dev{marks % 4} <dev{marks % 4}@example.test> {moment} +0000\n"
                      f"data {len(message)}\n{message}\n")
        if parents:
            stream.append(f"from :{parents[0]}\n")
        stream.extend(f"merge :{parent}\n" for parent in parents[1:])
        stream.append(f"M 644 inline file{marks % 7}.txt\ndata {len(content)}\n{content}\n")
        return marks

    while marks < commits:
        if main_tip and marks % 5 == 3 and marks + 2 <= commits:
            feature = commit(f"refs/heads/feature-{marks}", [main_tip], "feature work")
            main_tip = commit("refs/heads/main", [main_tip, feature],
                              f"Merge pull request #{marks} from dev/feature")
        else:
            main_tip = commit("refs/heads/main", [main_tip] if main_tip else [], "work")
    stream.append("done\n")
    subprocess.run(["git", "-C", str(path), "fast-import", "--quiet", "--done"],
                   input="".join(stream).encode(), check=True, capture_output=True,
                   env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(path)})
    return path




@dataclass
class Processes:
    """The Pulse processes of one test, sharing one environment; each logs to a file."""

    env: dict[str, str]
    logs: Path
    running: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def _spawn(self, name: str, *args: str) -> asyncio.subprocess.Process:
        log = (self.logs / f"{name}.log").open("wb")
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pulse_engine.cli", *args, env=self.env,
                stdout=log, stderr=log)
        finally:
            log.close()
        self.running.append(process)
        return process

    def log(self, name: str) -> str:
        """The output of process ``name`` so far."""
        return (self.logs / f"{name}.log").read_text(errors="replace")

    async def serve(self, name: str) -> str:
        """Start ``pulse serve`` and wait until it is ready; returns its base URL."""
        port = free_port()
        process = await self._spawn(name, "serve", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=2.0) as client:
            deadline = time.monotonic() + START_DEADLINE
            while True:
                assert process.returncode is None, self.log(name)
                try:
                    if (await client.get("/health/ready")).status_code == 200:
                        return base
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, self.log(name)
                await asyncio.sleep(0.1)

    async def worker(self, name: str) -> asyncio.subprocess.Process:
        """Start ``pulse worker`` and wait until its consumers run."""
        process = await self._spawn(name, "worker")
        deadline = time.monotonic() + START_DEADLINE
        while "consumer(s) running" not in self.log(name):
            assert process.returncode is None, self.log(name)
            assert time.monotonic() < deadline, self.log(name)
            await asyncio.sleep(0.1)
        return process

    async def stop(self) -> None:
        """Stop every process still running (SIGTERM, then SIGKILL after 30 s)."""
        for process in self.running:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in self.running:
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


@dataclass(frozen=True)
class JobState:
    """One sample of a job's row."""

    status: str
    attempts: int
    lease_owner: str | None
    progress: float
    created: int


@dataclass
class Scenario:
    """A tenant with a generated repository, the processes, and the test's own engine (no
    plugins: it runs no job and sweeps nothing) to read the database."""

    engine: PulseEngine
    tenant_id: str
    token: str
    repo: Path
    processes: Processes
    samples: list[JobState] = field(default_factory=list)

    async def job_state(self, job_id: str) -> JobState:
        """The job's row as it stands."""
        jobs = model.etl_jobs
        async with self.engine.db.tenant_session(self.tenant_id) as session:
            row = (await session.execute(select(jobs).where(jobs.c.id == job_id))).one()
        created = int((row.stats or {}).get("commits", {}).get("created", 0))
        return JobState(row.status, row.attempts, row.lease_owner, row.progress, created)

    async def stored_shas(self) -> list[str]:
        """The SHAs of the commits stored for the tenant, one per row."""
        async with self.engine.db.tenant_session(self.tenant_id) as session:
            return list((await session.execute(select(model.commits.c.sha))).scalars())

    async def stored_count(self) -> int:
        """How many commit rows the tenant has."""
        async with self.engine.db.tenant_session(self.tenant_id) as session:
            return int(await session.scalar(
                select(func.count()).select_from(model.commits)) or 0)

    async def start_job(self, base_url: str) -> str:
        """Start the git job of the repository through the API; returns its id."""
        async with self._client(base_url) as client:
            response = await client.post("/app/etl/jobs", json={
                "connector": "git", "config": {"path": str(self.repo), "branch": "main"}})
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    async def kill_mid_way(self, job_id: str, process: asyncio.subprocess.Process) -> JobState:
        """SIGKILL ``process`` once the job's progress is between 20% and 80%; returns the
        job's state once the process is gone."""
        deadline = time.monotonic() + START_DEADLINE
        while True:
            state = await self.job_state(job_id)
            if state.status == "running" and 0.2 <= state.progress <= 0.8:
                break
            assert state.progress < 0.8 and state.status in ("queued", "running"), state
            assert time.monotonic() < deadline, state
            await asyncio.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        await asyncio.sleep(0.3)  # the database drops the killed process's sessions
        return await self.job_state(job_id)

    async def sample_until_finished(self, job_id: str) -> None:
        """Sample the job's row into :attr:`samples` until it is finished
        (``FINISH_DEADLINE`` s at most)."""
        deadline = time.monotonic() + FINISH_DEADLINE
        while True:
            self.samples.append(await self.job_state(job_id))
            if self.samples[-1].status not in ("queued", "running"):
                return
            assert time.monotonic() < deadline, self.samples[-1]
            await asyncio.sleep(0.02)

    async def document(self, job_id: str, base_url: str) -> dict[str, Any]:
        """The job as the API shows it."""
        async with self._client(base_url) as client:
            response = await client.get(f"/app/etl/jobs/{job_id}")
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        return document

    async def messages_waiting(self, amqp_url: str, count: int) -> None:
        """Wait until ``count`` job messages wait on the broker (never more)."""
        deadline = time.monotonic() + FINISH_DEADLINE
        while (waiting := await ready_messages(amqp_url, JOB_QUEUE)) != count:
            assert waiting < count and time.monotonic() < deadline, waiting
            await asyncio.sleep(0.05)

    def _client(self, base_url: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=base_url, timeout=10.0,
                                 headers={"Authorization": f"Bearer {self.token}"})


@pytest.fixture
async def amqp_url() -> str:
    """The RabbitMQ of the tests (``PULSE_TEST_AMQP_URL``); the test is skipped without one."""
    url = os.environ.get("PULSE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    try:
        connection = await aio_pika.connect(url, timeout=5)
    except (AMQPError, OSError, TimeoutError) as error:
        pytest.skip(f"no RabbitMQ at {url}: {error}")
    await connection.close()
    return url


async def ready_messages(amqp_url: str, queue: str, *, purge: bool = False) -> int:
    """How many messages wait on ``queue`` (declared if missing); emptied first with
    ``purge``."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, durable=True)
        if purge:
            await declared.purge()
            declared = await channel.declare_queue(queue, durable=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await connection.close()


@pytest.fixture
async def scenario(pulse_database_url: str, tmp_path: Path) -> AsyncIterator[Scenario]:
    """A tenant, a repository of :data:`COMMITS` commits, and processes with short leases."""
    git_root = tmp_path / "repos"
    repo = import_repository(git_root / "big", COMMITS)
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {name: value for name, value in os.environ.items() if name not in FOREIGN_VARIABLES}
    env.update({
        "DATABASE_URL": pulse_database_url,
        "JWT_SECRET_KEY": TEST_JWT_SECRET,
        "PULSE_DATA_DIR": str(tmp_path / "data"),
        "PULSE_LOG_LEVEL": "INFO",
        "PULSE_ETL_GIT_ROOTS": str(git_root),
        "PULSE_ETL_BATCH_SIZE": str(BATCH_SIZE),
        "PULSE_ETL_LEASE_SECONDS": str(LEASE_SECONDS),
        "PULSE_ETL_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
        "PULSE_ETL_SWEEP_SECONDS": str(SWEEP_SECONDS),
    })
    # migrated once, as an operator would: processes on an external database do not
    # migrate when they start
    upgrade = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pulse_engine.cli", "db", "upgrade", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await upgrade.communicate()
    assert upgrade.returncode == 0, output.decode(errors="replace")
    processes = Processes(env, logs)
    settings = make_settings(pulse_database_url, tmp_path / "own", auto_migrate=False)
    try:
        async with running_app(settings, load_entry_points=False) as app:
            tenant = await make_tenant(app)
            assert tenant.analyst_client.token is not None
            yield Scenario(app.extensions["pulse"], tenant.id, tenant.analyst_client.token,
                           repo, processes)
    finally:
        await processes.stop()


def assert_resumed_once_and_exact(scenario: Scenario, killed: JobState,
                                  document: dict[str, Any]) -> None:
    """The job succeeded in one more run that read only what was left, stored every commit
    of the repository exactly once, and was held by one run at a time."""
    expected = int(git(scenario.repo, "rev-list", "--all", "--count"))
    assert document["status"] == "succeeded", document
    assert document["attempts"] == 2, document  # the killed run and one resumed run
    assert document["stats"]["commits"] == {"created": expected, "updated": 0}, document
    resumed = [sample for sample in scenario.samples if sample.attempts == 2]
    assert len({sample.lease_owner for sample in resumed if sample.status == "running"}) == 1
    # the resumed run's progress counts only the commits left at the kill: it read from
    # the cursor, not from the start
    reading = [sample for sample in resumed if sample.status == "running"
               and sample.created > killed.created and sample.progress < GIT_PROGRESS_SCALE]
    assert reading, scenario.samples
    for sample in reading:
        left = (sample.created - killed.created) / (expected - killed.created)
        assert sample.progress == pytest.approx(left * GIT_PROGRESS_SCALE, abs=1e-6), sample


async def assert_stored_exactly(scenario: Scenario) -> None:
    """The stored commits are the repository's: each once, none missing."""
    shas = await scenario.stored_shas()
    expected = set(git(scenario.repo, "log", "--all", "--format=%H").split())
    assert len(shas) == int(git(scenario.repo, "rev-list", "--all", "--count"))
    assert len(shas) == len(set(shas))
    assert set(shas) == expected


async def test_job_of_a_killed_server_finishes_by_itself_on_the_embedded_queue(
        scenario: Scenario) -> None:
    processes = scenario.processes
    first_url = await processes.serve("first")
    job_id = await scenario.start_job(first_url)
    killed = await scenario.kill_mid_way(job_id, processes.running[0])
    started = time.monotonic()
    assert killed.status == "running", killed  # the process died holding the job
    assert 0 < killed.created < COMMITS
    assert await scenario.stored_count() == killed.created  # data and stats together

    # nobody retries: the restarted server's sweep queues the job again
    sampling = asyncio.create_task(scenario.sample_until_finished(job_id))
    second_url = await processes.serve("second")
    await sampling
    elapsed = time.monotonic() - started
    assert_resumed_once_and_exact(scenario, killed, await scenario.document(job_id, second_url))
    await assert_stored_exactly(scenario)
    assert "lease lapsed, queued again" in processes.log("second")
    assert elapsed < FINISH_DEADLINE


async def test_job_of_a_killed_worker_finishes_once_through_rabbitmq(
        scenario: Scenario, amqp_url: str) -> None:
    processes = scenario.processes
    processes.env["AMQP_URL"] = amqp_url
    assert await ready_messages(amqp_url, JOB_QUEUE, purge=True) == 0
    server_url = await processes.serve("server")  # no consumers with a broker
    first = await processes.worker("first")
    job_id = await scenario.start_job(server_url)
    killed = await scenario.kill_mid_way(job_id, first)
    started = time.monotonic()
    assert killed.status == "running", killed
    assert 0 < killed.created < COMMITS
    assert await scenario.stored_count() == killed.created

    # the broker holds the killed worker's message again, and once the lease lapsed the
    # server's sweep queued the job a second time: two messages for one job
    sampling = asyncio.create_task(scenario.sample_until_finished(job_id))
    await scenario.messages_waiting(amqp_url, 2)
    # both are delivered at once, to two new workers (each also sweeping): one runs the
    # job, the other finds it held and is done
    await asyncio.gather(processes.worker("second"), processes.worker("third"))
    await sampling
    elapsed = time.monotonic() - started
    assert_resumed_once_and_exact(scenario, killed, await scenario.document(job_id, server_url))
    await assert_stored_exactly(scenario)
    assert "lease lapsed, queued again" in processes.log("server")
    assert elapsed < FINISH_DEADLINE
    await asyncio.sleep(2 * LEASE_SECONDS)  # room for a late duplicate to run it again
    state = await scenario.job_state(job_id)
    assert (state.status, state.attempts) == ("succeeded", 2), state
    await assert_stored_exactly(scenario)
