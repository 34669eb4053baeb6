"""The connector interface: what a connector is, and what it gets while it runs.

A connector is any object with the attributes of :class:`Connector`; plugins (pulse-etl
itself included) return them from the ``register_connectors`` hook, and pulse-etl finds
them in ``engine.connectors``. A connector reads a source and hands the rows it found to
:meth:`SyncRun.commit` in batches, each with the cursor(s) to resume from; the batch and
its cursors are committed in one transaction, so a job interrupted anywhere resumes from
the last committed batch and never leaves half a batch behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel

from pulse_etl.loader import Batch, Stats

if TYPE_CHECKING:
    from pulse_engine import Engine, OutboundPolicy
    from pulse_etl.settings import EtlSettings

#: Hosts a configuration makes a connector connect to: ``{field: (host, port)}``.
OutboundHosts = Mapping[str, tuple[str, int]]


class ConfigError(Exception):
    """A connector configuration the operator or caller must fix (answered with 422).

    :param field: the offending field, dotted (``"path"``, ``"deploy_tags"``).
    :param message: what is wrong with it.
    """

    def __init__(self, field: str, message: str) -> None:
        """Record the field and the message."""
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class SourceError(Exception):
    """The source failed in a way retrying the job later may fix; the job fails with it."""


class JobCancelled(Exception):
    """The job was cancelled while it ran."""


class LeaseLost(Exception):
    """Another worker took the job over (this one stalled past its lease)."""


class SyncRun(Protocol):
    """What a running connector can use."""

    tenant_id: str
    job_id: str
    config: Any
    secrets: Mapping[str, Any]
    engine: Engine
    settings: EtlSettings
    #: The operator's outbound policy: give it to every HTTP client
    #: (:class:`pulse_engine.GuardedTransport`) and check other remotes with it.
    outbound: OutboundPolicy

    async def cursor(self, stream: str) -> dict[str, Any] | None:
        """The saved cursor of ``stream`` for this integration (or ad-hoc config), if any."""

    async def commit(
        self,
        batch: Batch,
        *,
        cursors: Mapping[str, dict[str, Any]] | None = None,
        progress: float | None = None,
    ) -> Stats:
        """Load ``batch`` and save ``cursors`` atomically; returns created/updated counts.

        :raises JobCancelled: after the commit, when the job was asked to stop.
        :raises LeaseLost: (nothing committed) when another worker owns the job now.
        """

    async def report(self, progress: float) -> None:
        """Report progress (0..1) without data."""


@runtime_checkable
class Connector(Protocol):
    """An ETL connector.

    :ivar name: unique connector name (``"git"``), used in job requests.
    :ivar description: one line for ``GET /app/etl/connectors``.
    :ivar config_model: pydantic model of the configuration (secrets included).
    :ivar secret_fields: fields of ``config_model`` stored encrypted and never returned.

    A connector that connects to hosts a configuration names also has
    ``outbound(config) -> {field: (host, port)}`` (:data:`OutboundHosts`): each host is
    checked against the operator's outbound policy when a configuration is saved and
    before each run (422, or a failed job, naming the field).
    """

    name: str
    description: str
    config_model: type[BaseModel]
    secret_fields: frozenset[str]

    def check(self, config: Any, settings: EtlSettings) -> None:
        """Check a validated configuration against operator policy; raise ConfigError."""

    async def run(self, run: SyncRun) -> None:
        """Read the source and commit its rows in batches through ``run``."""
