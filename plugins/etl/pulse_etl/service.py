"""The ETL plugin's parts for one engine, and the operations other code starts from.

:class:`EtlService` exists once per engine (on ``engine.stash``, see
:func:`pulse_etl.plugin.service_for`). It holds the settings, the secrets box and the
loader, and one object per responsibility:

* :attr:`~EtlService.connectors`: the connector registry (:mod:`pulse_etl.registry`);
* :attr:`~EtlService.integrations`: integration CRUD and secrets (:mod:`pulse_etl.integrations`);
* :attr:`~EtlService.jobs`: job CRUD and queue messages (:mod:`pulse_etl.jobs`);
* :attr:`~EtlService.worker`: the queue consumer running claimed jobs (:mod:`pulse_etl.worker`,
  :mod:`pulse_etl.leases`, :mod:`pulse_etl.job_run`);
* :attr:`~EtlService.loads`: loading batches and finishing loads (:mod:`pulse_etl.loads`).

The command line, benchmarks and other plugins' tests drive ETL through the few methods
here (:meth:`~EtlService.create_job`, :meth:`~EtlService.run_job`,
:meth:`~EtlService.get_job`, :meth:`~EtlService.cancel_job`, :func:`load_batch`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pulse_engine import OutboundPolicy
from pulse_etl.crypto import SecretBox
from pulse_etl.integrations import Integrations
from pulse_etl.job_run import ProgressCallback
from pulse_etl.jobs import Jobs
from pulse_etl.loader import Batch, Loader, Stats
from pulse_etl.loads import Loads
from pulse_etl.registry import ConnectorRegistry
from pulse_etl.settings import EtlSettings
from pulse_etl.worker import JobWorker

if TYPE_CHECKING:
    from pulse_engine import Engine


class EtlService:
    """The ETL plugin's state and parts for one engine (see the module docstring)."""

    def __init__(self, engine: Engine, settings: EtlSettings | None = None) -> None:
        """Bind to ``engine``; reads :class:`EtlSettings` from the environment by default."""
        self.engine = engine
        self.settings = settings or EtlSettings()
        self.loader = Loader(copy_threshold=self.settings.copy_threshold)
        self.connectors = ConnectorRegistry(engine)
        self.integrations = Integrations(self)
        self.jobs = Jobs(self)
        self.worker = JobWorker(self)
        self.loads = Loads(engine, self.loader)
        self._box: SecretBox | None = None

    @property
    def outbound(self) -> OutboundPolicy:
        """The operator's outbound policy (``PULSE_OUTBOUND_ALLOW``), read from the engine's
        settings."""
        return OutboundPolicy(self.engine.settings.outbound_allow)

    @property
    def box(self) -> SecretBox:
        """The secrets box (created on first use)."""
        if self._box is None:
            self._box = SecretBox.from_settings(self.engine.settings, self.settings)
        return self._box

    async def create_job(self, tenant_id: str, body: Mapping[str, Any], created_by: str | None,
                         *, enqueue: bool = True) -> dict[str, Any]:
        """Create a job (:meth:`pulse_etl.jobs.Jobs.create`); ``enqueue=False`` to run it
        here with :meth:`run_job`."""
        return await self.jobs.create(tenant_id, body, created_by, enqueue=enqueue)

    async def run_job(self, tenant_id: str, job_id: str, *,
                      on_progress: ProgressCallback | None = None) -> str:
        """Claim and run a job in this process (:meth:`pulse_etl.worker.JobWorker.run`)."""
        return await self.worker.run(tenant_id, job_id, on_progress=on_progress)

    async def get_job(self, tenant_id: str, job_id: Any) -> dict[str, Any]:
        """One job's document (:meth:`pulse_etl.jobs.Jobs.get`)."""
        return await self.jobs.get(tenant_id, job_id)

    async def cancel_job(self, tenant_id: str, job_id: Any) -> dict[str, Any]:
        """Cancel a job (:meth:`pulse_etl.jobs.Jobs.cancel`)."""
        return await self.jobs.cancel(tenant_id, job_id)


async def load_batch(service: EtlService, tenant_id: str, batch: Batch, connector: str
                     ) -> Stats:
    """Load one batch outside a job, then finish the load
    (:meth:`pulse_etl.loads.Loads.load_batch`)."""
    return await service.loads.load_batch(tenant_id, batch, connector)
