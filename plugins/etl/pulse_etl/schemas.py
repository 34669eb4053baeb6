"""The request and response models of the ETL routes (what ``/openapi.json`` declares)."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from pulse_engine import PageQuery, QueryText, decode_cursor
from pulse_etl.loader import Stats
from pulse_etl.values import is_uuid

#: The longest integration name.
MAX_NAME_LENGTH = 200
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class ConnectorInfo(BaseModel):
    """A registered connector."""

    name: str = Field(description="The name jobs and integrations use (``git``).")
    description: str = Field(description="What it reads.")
    config_schema: dict[str, Any] = Field(description="JSON schema of its configuration.")
    secret_fields: list[str] = Field(description="Configuration fields stored encrypted and "
                                                 "never returned.")


class ConnectorList(BaseModel):
    """Every registered connector, by name."""

    items: list[ConnectorInfo] = Field(description="The connectors, by name.")


class JobCreate(BaseModel):
    """A job to queue: a saved integration, or an ad-hoc configuration."""

    model_config = ConfigDict(extra="forbid")

    connector: str = Field(max_length=100, description="The connector to run (``git``).")
    integration_id: uuid.UUID | None = Field(
        None, description="Run this saved integration of the connector.")
    config: dict[str, Any] | None = Field(
        None, description="An ad-hoc configuration (the connector's schema); not with "
                          "``integration_id``.")


_QUERY_TEXT: TypeAdapter[str] = TypeAdapter(QueryText)


class JobPageQuery(PageQuery):
    """The query of the job list: its cursor must hold a job id."""

    @field_validator("cursor")
    @classmethod
    def _job_cursor(cls, cursor: str | None) -> str | None:
        value = decode_cursor(cursor, str)
        if value is not None and not is_uuid(value):
            raise ValueError("not a cursor of the job list; use a next_cursor value")
        return cursor


class IntegrationPageQuery(PageQuery):
    """The query of the integration list: its cursor must hold an integration name."""

    @field_validator("cursor")
    @classmethod
    def _name_cursor(cls, cursor: str | None) -> str | None:
        value = decode_cursor(cursor, str)
        if value is not None:
            _QUERY_TEXT.validate_python(value)
        return cursor


class Job(BaseModel):
    """An ETL job."""

    id: str = Field(description="The job's id (time-ordered UUID).")
    connector: str = Field(description="The connector it runs.")
    integration_id: str | None = Field(description="Its integration, when it runs one.")
    status: JobStatus = Field(description="Where it stands.")
    progress: float = Field(description="Progress from 0 to 1.")
    stats: Stats = Field(description="Rows created and updated per entity.")
    error: str | None = Field(description="Why it failed: a short reason, never a source's "
                                          "response body.")
    attempts: int = Field(description="How many times a worker claimed it.")
    cancel_requested: bool = Field(description="Whether it was asked to stop.")
    created_at: str | None = Field(description="When it was created (ISO 8601).")
    started_at: str | None = Field(description="When a worker first claimed it.")
    finished_at: str | None = Field(description="When it ended.")
    heartbeat_at: str | None = Field(description="Its worker's last heartbeat.")


class JobPage(BaseModel):
    """One page of jobs, newest first."""

    items: list[Job] = Field(description="The jobs of this page.")
    next_cursor: str | None = Field(description="The cursor of the next page, if any.")


def _not_blank(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("must not be blank")
    return value


class IntegrationCreate(BaseModel):
    """An integration to save."""

    model_config = ConfigDict(extra="forbid")

    connector: str = Field(max_length=100, description="The connector it configures.")
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH,
                      description="A name unique in the tenant.")
    config: dict[str, Any] = Field(default_factory=dict,
                                   description="The connector's configuration, secrets "
                                               "included (write-only).")

    _name = field_validator("name")(_not_blank)


class IntegrationUpdate(BaseModel):
    """A change of an integration: a field left out keeps its value."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=MAX_NAME_LENGTH,
                             description="A new name.")
    config: dict[str, Any] | None = Field(
        None, description="A new configuration; secret fields left out keep their value.")

    _name = field_validator("name")(_not_blank)


class Integration(BaseModel):
    """A saved integration (secrets are never returned)."""

    id: str = Field(description="The integration's id; also its webhook URL's last part.")
    connector: str = Field(description="The connector it configures.")
    name: str = Field(description="Its name.")
    config: dict[str, Any] = Field(description="Its public configuration.")
    has_secrets: bool = Field(description="Whether secrets are stored.")
    created_at: str | None = Field(description="When it was created (ISO 8601).")
    updated_at: str | None = Field(description="When it last changed.")


class IntegrationPage(BaseModel):
    """One page of integrations, by name."""

    items: list[Integration] = Field(description="The integrations of this page.")
    next_cursor: str | None = Field(description="The cursor of the next page, if any.")


class GithubDeliveryHeaders(BaseModel):
    """The headers GitHub sends with a delivery (``X-Hub-Signature-256`` is verified on the
    raw body before anything else)."""

    x_hub_signature_256: str = Field(description="``sha256=<hex HMAC-SHA256 of the body "
                                                 "under the webhook secret>``.")
    x_github_event: str = Field(max_length=100, description="The event (``push``...).")
    x_github_delivery: str = Field(max_length=100, description="The delivery's unique id.")


class GenericDeliveryHeaders(BaseModel):
    """The headers of a generic delivery."""

    x_pulse_signature_256: str = Field(description="``sha256=<hex HMAC-SHA256 of the body "
                                                   "under the webhook secret>``.")
    x_pulse_delivery: str | None = Field(None, max_length=100, description=(
        "The delivery's unique id (default: the body's SHA-256)."))


class GithubPayload(BaseModel):
    """A GitHub event payload (its shape depends on ``X-GitHub-Event``; JSON, or
    ``application/x-www-form-urlencoded`` with a ``payload`` field)."""

    model_config = ConfigDict(extra="allow")


class WebhookOutcome(BaseModel):
    """What a delivery did."""

    status: Literal["processed", "ignored", "duplicate"] = Field(
        description="``processed``: loaded; ``ignored``: an event not handled; "
                    "``duplicate``: a delivery id seen before (nothing done).")
    delivery: str = Field(description="The delivery id.")
    event: str | None = Field(None, description="GitHub's event name.")
    entity: str | None = Field(None, description="The generic delivery's entity.")
    stats: Stats | None = Field(None, description="Rows created and updated per entity.")
