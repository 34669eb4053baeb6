"""The ETL routes, under ``PULSE_ETL_URL_PREFIX`` (``/app/etl``).

Roles: reads (connectors, jobs, integrations) need ``viewer``; starting, cancelling and
retrying jobs need ``analyst``; creating, changing and deleting integrations (which hold
credentials) need ``admin``. Webhook receivers are public and verify the sender's
signature instead (:mod:`pulse_etl.webhooks`).

Every route validates its query string and body with the models of
:mod:`pulse_etl.schemas` and declares its answers, problems included, in ``/openapi.json``.
"""

from __future__ import annotations

import uuid
from typing import Any

from quart import Blueprint
from quart_schema import (
    DataSource,
    document_headers,
    document_request,
    validate_querystring,
    validate_request,
    validate_response,
)

from pulse_engine import (
    current_principal,
    current_tenant_id,
    no_content,
    problem_responses,
    public,
    require_role,
)
from pulse_etl.connectors.generic import Delivery
from pulse_etl.schemas import (
    ConnectorList,
    GenericDeliveryHeaders,
    GithubDeliveryHeaders,
    GithubPayload,
    Integration,
    IntegrationCreate,
    IntegrationPage,
    IntegrationPageQuery,
    IntegrationUpdate,
    Job,
    JobCreate,
    JobPage,
    JobPageQuery,
    WebhookOutcome,
)
from pulse_etl.service import EtlService
from pulse_etl.webhooks import receive_generic, receive_github

Answer = tuple[dict[str, Any], int]


def build_blueprint(service: EtlService) -> Blueprint:
    """The ETL blueprint bound to ``service``, at its settings' URL prefix."""
    prefix = service.settings.url_prefix
    blueprint = Blueprint("etl", __name__, url_prefix=prefix)

    @blueprint.get("/connectors")
    @validate_response(ConnectorList)
    @problem_responses(503)
    async def list_connectors() -> dict[str, Any]:
        """Registered connectors with their configuration schema."""
        return {"items": [
            {"name": name, "description": connector.description,
             "config_schema": connector.config_model.model_json_schema(),
             "secret_fields": sorted(connector.secret_fields)}
            for name, connector in sorted(service.connectors.all().items())
        ]}

    @blueprint.post("/jobs")
    @require_role("analyst")
    @validate_request(JobCreate)
    @validate_response(Job, 202)
    @problem_responses(413, 503)
    async def create_job(data: JobCreate) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Queue a job: ``{"connector", "integration_id" | "config"}``; answers 202."""
        job = await service.jobs.create(
            current_tenant_id(), data.model_dump(mode="json", exclude_unset=True),
            current_principal().user_id,
        )
        return job, 202, {"Location": f"{prefix}/jobs/{job['id']}"}

    @blueprint.get("/jobs")
    @validate_querystring(JobPageQuery)
    @validate_response(JobPage)
    @problem_responses(503)
    async def list_jobs(query_args: JobPageQuery) -> dict[str, Any]:
        """The tenant's jobs, newest first (``limit``, ``cursor``)."""
        page = await service.jobs.page(current_tenant_id(), query_args.capped_limit,
                                       query_args.cursor)
        return page.as_dict()

    @blueprint.get("/jobs/<uuid:job_id>")
    @validate_response(Job)
    @problem_responses(503)
    async def get_job(job_id: uuid.UUID) -> dict[str, Any]:
        """One job: status, progress, stats per entity, error."""
        return await service.jobs.get(current_tenant_id(), str(job_id))

    @blueprint.post("/jobs/<uuid:job_id>/cancel")
    @require_role("analyst")
    @validate_response(Job, 202)
    @problem_responses(409, 503)
    async def cancel_job(job_id: uuid.UUID) -> Answer:
        """Cancel a queued job, or ask a running one to stop after its current batch."""
        return await service.jobs.cancel(current_tenant_id(), str(job_id)), 202

    @blueprint.post("/jobs/<uuid:job_id>/retry")
    @require_role("analyst")
    @validate_response(Job, 202)
    @problem_responses(409, 503)
    async def retry_job(job_id: uuid.UUID) -> Answer:
        """Queue a failed or cancelled job again (it resumes from its cursor)."""
        return await service.jobs.retry(current_tenant_id(), str(job_id)), 202

    @blueprint.get("/integrations")
    @validate_querystring(IntegrationPageQuery)
    @validate_response(IntegrationPage)
    @problem_responses(503)
    async def list_integrations(query_args: IntegrationPageQuery) -> dict[str, Any]:
        """The tenant's integrations, by name; secrets are never returned."""
        page = await service.integrations.page(current_tenant_id(), query_args.capped_limit,
                                               query_args.cursor)
        return page.as_dict()

    @blueprint.post("/integrations")
    @require_role("admin")
    @validate_request(IntegrationCreate)
    @validate_response(Integration, 201)
    @problem_responses(409, 413, 503)
    async def create_integration(data: IntegrationCreate) -> Answer:
        """Create an integration: ``{"connector", "name", "config"}`` (secrets write-only)."""
        document = await service.integrations.create(
            current_tenant_id(), data.model_dump(mode="json"), current_principal().user_id
        )
        return document, 201

    @blueprint.get("/integrations/<uuid:integration_id>")
    @validate_response(Integration)
    @problem_responses(503)
    async def get_integration(integration_id: uuid.UUID) -> dict[str, Any]:
        """One integration (secrets omitted)."""
        return await service.integrations.get(current_tenant_id(), str(integration_id))

    @blueprint.patch("/integrations/<uuid:integration_id>")
    @require_role("admin")
    @validate_request(IntegrationUpdate)
    @validate_response(Integration)
    @problem_responses(409, 413, 503)
    async def update_integration(integration_id: uuid.UUID, data: IntegrationUpdate
                                 ) -> dict[str, Any]:
        """Change ``name`` and/or ``config``; secret fields left out keep their value."""
        return await service.integrations.update(
            current_tenant_id(), str(integration_id),
            data.model_dump(mode="json", exclude_unset=True, exclude_none=True))

    @blueprint.delete("/integrations/<uuid:integration_id>")
    @require_role("admin")
    @no_content
    @problem_responses(503)
    async def delete_integration(integration_id: uuid.UUID) -> tuple[str, int]:
        """Delete an integration and its cursors; loaded data stays."""
        await service.integrations.delete(current_tenant_id(), str(integration_id))
        return "", 204

    @blueprint.post("/webhooks/github/<uuid:integration_id>")
    @public
    @document_headers(GithubDeliveryHeaders)
    @document_request(GithubPayload)
    @validate_response(WebhookOutcome, 202)
    @problem_responses(413, 503)
    async def github_webhook(integration_id: uuid.UUID) -> Answer:
        """GitHub's webhook receiver, verified with the integration's webhook secret."""
        return await receive_github(service, str(integration_id))

    @blueprint.post("/webhooks/generic/<uuid:integration_id>")
    @public
    @document_headers(GenericDeliveryHeaders)
    @document_request(Delivery, source=DataSource.JSON)
    @validate_response(WebhookOutcome, 202)
    @problem_responses(413, 503)
    async def generic_webhook(integration_id: uuid.UUID) -> Answer:
        """Generic deliveries (deployments, incidents, work items), HMAC-verified."""
        return await receive_generic(service, str(integration_id))

    return blueprint
