"""The ``generic`` connector: deployments, incidents and work items from any system, pushed
as signed webhooks or imported in bulk (JSON or CSV) by a job.

Rows follow Pulse's own schemas (:class:`DeploymentIn`, :class:`IncidentIn`,
:class:`WorkItemIn`; a CD system's deployments, PagerDuty-style incidents). They are
strict: unknown fields and wrong types are refused with the row and the field named
(``config.data.3.finished_at``), so a typo never drops data silently. Stored rows get the
integration's ``source`` (``"pagerduty"``, ``"argocd"``...) and the row's ``id`` as their
natural key, so repeated deliveries and re-imports update instead of duplicating.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pulse_etl.connector import SyncRun
from pulse_etl.connectors.common import (
    Fragment,
    Row,
    account_rows,
    check_patterns,
    matches_any,
    merge,
)
from pulse_etl.model import stable_id
from pulse_etl.settings import EtlSettings

Entity = Literal["deployments", "incidents", "work_items"]
MAX_ROWS = 10_000
CURSOR_STREAM = "rows"
REPOSITORY_REF = r"^[a-z][a-z0-9_-]{0,39}:.+$"
RESULTS: dict[str, str | None] = {
    "success": "success", "succeeded": "success", "failure": "failure", "failed": "failure",
    "error": "failure", "cancelled": "cancelled", "canceled": "cancelled", "pending": None,
    "queued": None, "running": None, "in_progress": None,
}
DeploymentStatus = Literal["success", "succeeded", "failure", "failed", "error", "cancelled",
                           "canceled", "pending", "queued", "running", "in_progress"]

_STRICT = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _time_text(value: Any) -> Any:
    """Times are ISO 8601 strings: a number (epoch? milliseconds?) is refused as ambiguous."""
    if not isinstance(value, str | datetime):
        raise ValueError("must be an ISO 8601 time string")
    return value


def _utc(value: datetime) -> datetime:
    """A time without an offset is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


Timestamp = Annotated[datetime, BeforeValidator(_time_text), AfterValidator(_utc)]


class DeploymentIn(BaseModel):
    """A deployment from a CD system (one run of a deploy job to one environment)."""

    model_config = _STRICT

    id: str = Field(min_length=1, max_length=500, description="The CD system's run id.")
    service: str = Field(min_length=1, max_length=300)
    environment: str = Field(min_length=1, max_length=200)
    status: DeploymentStatus
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    sha: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{7,64}$")
    ref: str | None = Field(default=None, max_length=255)
    name: str | None = Field(default=None, max_length=300, description="Job/pipeline name.")
    repository: str | None = Field(default=None, max_length=600, pattern=REPOSITORY_REF,
                                   description="<source>:<external id>, e.g. github:o/r.")
    updated_at: Timestamp | None = None

    @model_validator(mode="after")
    def _times(self) -> DeploymentIn:
        if RESULTS[self.status] is not None and self.finished_at is None:
            raise ValueError(f"a {self.status} deployment needs finished_at")
        if self.started_at and self.finished_at and self.finished_at < self.started_at:
            raise ValueError("finished_at is before started_at")
        return self


class IncidentIn(BaseModel):
    """A PagerDuty-style incident: triggered, acknowledged, resolved."""

    model_config = _STRICT

    id: str = Field(min_length=1, max_length=500)
    title: str | None = Field(default=None, max_length=2000)
    service: str | None = Field(default=None, max_length=300)
    status: Literal["triggered", "acknowledged", "resolved"] = "triggered"
    urgency: str | None = Field(default=None, max_length=40)
    created_at: Timestamp
    resolved_at: Timestamp | None = None
    deployment: str | None = Field(default=None, max_length=200,
                                   description="Deployment id or commit SHA that caused it.")
    repository: str | None = Field(default=None, max_length=600, pattern=REPOSITORY_REF)
    url: str | None = Field(default=None, max_length=2000)
    updated_at: Timestamp | None = None

    @model_validator(mode="after")
    def _times(self) -> IncidentIn:
        if self.status == "resolved" and self.resolved_at is None:
            raise ValueError("a resolved incident needs resolved_at")
        if self.resolved_at and self.resolved_at < self.created_at:
            raise ValueError("resolved_at is before created_at")
        return self


class WorkItemIn(BaseModel):
    """A work item (story, bug, task...) of any tracker."""

    model_config = _STRICT

    id: str = Field(min_length=1, max_length=500)
    key: str | None = Field(default=None, max_length=100)
    title: str | None = Field(default=None, max_length=2000)
    type: str = Field(min_length=1, max_length=100)
    status: str = Field(min_length=1, max_length=100)
    status_category: Literal["todo", "in_progress", "done"] | None = None
    points: float | None = Field(default=None, ge=0, le=10_000)
    sprint: str | None = Field(default=None, max_length=300)
    project: str | None = Field(default=None, max_length=100)
    assignee_email: str | None = Field(default=None, max_length=320,
                                       pattern=r"^[^@\s]+@[^@\s]+$")
    labels: list[str] = Field(default_factory=list, max_length=100)
    created_at: Timestamp | None = None
    resolved_at: Timestamp | None = None
    updated_at: Timestamp | None = None

    @field_validator("labels", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        """CSV cells carry labels separated by semicolons."""
        if isinstance(value, str):
            return [label.strip() for label in value.split(";") if label.strip()]
        return value


_ADAPTERS: dict[str, TypeAdapter[list[Any]]] = {
    "deployments": TypeAdapter(list[DeploymentIn]), "incidents": TypeAdapter(list[IncidentIn]),
    "work_items": TypeAdapter(list[WorkItemIn]),
}


def parse_rows(entity: str, data: Any, data_format: str) -> list[BaseModel]:
    """Validate ``data`` (a list, one object, or JSON/CSV text) as rows of ``entity``.

    :raises pydantic.ValidationError: locations are ``(row index, field)``.
    :raises ValueError: for text that is not JSON or CSV, or too many rows.
    """
    if isinstance(data, str):
        data = _csv_records(data) if data_format == "csv" else _json_records(data)
    if isinstance(data, dict):
        data = [data]
    if isinstance(data, list) and len(data) > MAX_ROWS:
        raise ValueError(f"at most {MAX_ROWS} rows per import")
    return list(_ADAPTERS[entity].validate_python(data))


def _json_records(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise ValueError(f"not JSON: {error}") from None


def _csv_records(text: str) -> list[dict[str, Any]]:
    """CSV with a header row; empty cells are absent values, surplus cells an error."""
    reader = csv.DictReader(io.StringIO(text), restkey="(surplus cells)")
    if not reader.fieldnames:
        raise ValueError("CSV without a header row")
    return [{key: value for key, value in record.items() if value not in ("", None)}
            for record in reader]


def _validate_data(cls: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """The ``data`` field validator: rows of the ``entity`` validated before it."""
    if value is None:
        return None
    entity = info.data.get("entity")
    if entity is None:
        raise ValueError("data needs an entity")
    return parse_rows(entity, value, info.data.get("format", "json"))


class Delivery(BaseModel):
    """The body of a generic webhook delivery: ``{"entity", "data": [rows] | row}``."""

    model_config = ConfigDict(extra="forbid")

    entity: Entity
    data: Any = Field(description="A row object or a list of them.")

    _rows = field_validator("data")(_validate_data)

    @field_validator("data", mode="before")
    @classmethod
    def _objects(cls, value: Any) -> Any:
        if not isinstance(value, list | dict):
            raise ValueError("must be a row object or a list of them")
        return value


class GenericConfig(BaseModel):
    """Configuration of the generic connector: an integration (webhooks) or an import job."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(default="generic", pattern=r"^[a-z][a-z0-9_-]{0,39}$",
                        description="The `source` of stored rows (pagerduty, argocd...).")
    webhook_secret: str | None = Field(default=None, min_length=16, max_length=500)
    deployment_name_patterns: list[str] = Field(
        default_factory=list, max_length=50,
        description="Regular expressions of deployment names (jobs) that count; empty: all.",
    )
    entity: Entity | None = None
    format: Literal["json", "csv"] = "json"
    data: Any = Field(default=None, description="Rows: a JSON array, or JSON/CSV text.")

    _patterns = field_validator("deployment_name_patterns")(check_patterns)

    _rows = field_validator("data")(_validate_data)

    @model_validator(mode="after")
    def _entity_has_data(self) -> GenericConfig:
        if self.entity is not None and self.data is None:
            raise ValueError("an import needs data")
        return self


def rows_batch(entity: str, rows: list[Any], config: GenericConfig) -> Fragment:
    """The model rows of validated input rows."""
    mapper = {"deployments": _deployment, "incidents": _incident, "work_items": _work_item}
    return merge(*(mapper[entity](row, config) for row in rows))


def _repository_id(reference: str | None) -> str | None:
    if reference is None:
        return None
    source, external_id = reference.split(":", 1)
    return stable_id("repositories", source, external_id)


def _deployment(row: Any, config: GenericConfig) -> Fragment:
    item: DeploymentIn = row
    if not matches_any(config.deployment_name_patterns, item.name):
        return {}
    return {"deployments": [{
        "id": stable_id("deployments", config.source, item.id), "source": config.source,
        "external_id": item.id, "repository_id": _repository_id(item.repository),
        "service": item.service, "environment": item.environment,
        "result": RESULTS[item.status], "started_at": item.started_at,
        "finished_at": item.finished_at if RESULTS[item.status] else None,
        "sha": item.sha.lower() if item.sha else None, "ref": item.ref, "name": item.name,
        "source_updated_at": item.updated_at,
    }]}


def _incident(row: Any, config: GenericConfig) -> Fragment:
    item: IncidentIn = row
    return {"incidents": [{
        "id": stable_id("incidents", config.source, item.id), "source": config.source,
        "external_id": item.id, "title": item.title, "service": item.service,
        "repository_id": _repository_id(item.repository), "severity": item.urgency,
        "created_at_source": item.created_at, "resolved_at": item.resolved_at,
        "deployment_ref": item.deployment, "url": item.url,
        "source_updated_at": item.updated_at,
    }]}


def _work_item(row: Any, config: GenericConfig) -> Fragment:
    item: WorkItemIn = row
    source = config.source
    fragments: list[Fragment] = []
    assignee_id = project_id = sprint_id = None
    if item.assignee_email:
        email = item.assignee_email.lower()
        assignee_id, people = account_rows(source, email, email=email)
        fragments.append(people)
    if item.project:
        project_id = stable_id("projects", source, item.project)
        fragments.append({"projects": [{"id": project_id, "source": source,
                                        "external_id": item.project, "key": item.project,
                                        "name": item.project}]})
    if item.sprint:
        sprint_id = stable_id("sprints", source, item.sprint)
        fragments.append({"sprints": [{"id": sprint_id, "source": source,
                                       "external_id": item.sprint, "name": item.sprint,
                                       "project_id": project_id}]})
    work_item: Row = {
        "id": stable_id("work_items", source, item.id), "source": source,
        "external_id": item.id, "key": item.key, "title": item.title, "type": item.type,
        "status": item.status, "status_category": item.status_category,
        "points": item.points, "sprint_id": sprint_id, "project_id": project_id,
        "assignee_identity_id": assignee_id, "labels": item.labels,
        "created_at_source": item.created_at, "resolved_at": item.resolved_at,
        "source_updated_at": item.updated_at,
    }
    return merge(*fragments, {"work_items": [work_item]})


class GenericConnector:
    """Imports the rows of its config in batches (see the module docstring)."""

    name = "generic"
    description = "Deployments, incidents and work items from signed webhooks or JSON/CSV."
    config_model = GenericConfig
    secret_fields = frozenset({"webhook_secret"})

    def check(self, config: GenericConfig, settings: EtlSettings) -> None:
        """Nothing beyond the model's validation."""

    async def run(self, run: SyncRun) -> None:
        """Load the rows not loaded yet, ``batch_size`` rows per committed batch."""
        config: GenericConfig = run.config
        rows: list[BaseModel] = config.data or []
        if config.entity is None or not rows:
            return
        saved = await run.cursor(CURSOR_STREAM) or {}
        start = int(saved.get("done", 0))
        size = run.settings.batch_size
        for offset in range(start, len(rows), size):
            chunk = rows[offset:offset + size]
            done = offset + len(chunk)
            await run.commit(rows_batch(config.entity, chunk, config),
                             cursors={CURSOR_STREAM: {"done": done}},
                             progress=done / len(rows))
