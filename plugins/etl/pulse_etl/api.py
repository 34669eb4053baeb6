"""The ETL routes under ``/app/etl``.

Roles: reads (connectors, jobs, integrations) need ``viewer``; starting, cancelling and
retrying jobs need ``analyst``; creating, changing and deleting integrations (which hold
credentials) need ``admin``. Webhook receivers are public and verify the sender's
signature instead.
"""

from __future__ import annotations

import json
from typing import Any

from quart import Blueprint, Response, request
from quart_schema import validate_querystring

from pulse_engine import (
    PageQuery,
    Problem,
    current_principal,
    current_tenant_id,
    public,
    require_role,
)
from pulse_etl.service import EtlService
from pulse_etl.webhooks import receive_generic, receive_github


async def _json_body() -> dict[str, Any]:
    """The request's JSON object, or a 400/422 problem."""
    raw = await request.get_data()
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise Problem(400, "malformed-json", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise Problem(422, "validation-error", "The request body must be a JSON object.",
                      errors=[{"field": "", "message": "must be an object", "type": "dict_type"}])
    return body


def _json(document: Any, status: int = 200) -> Response:
    return Response(json.dumps(document), status=status, content_type="application/json")


def build_blueprint(service: EtlService) -> Blueprint:
    """The ``/app/etl`` blueprint bound to ``service``."""
    blueprint = Blueprint("etl", __name__, url_prefix="/app/etl")

    @blueprint.get("/connectors")
    async def list_connectors() -> Response:
        """Registered connectors with their configuration schema."""
        return _json({"items": [
            {"name": name, "description": connector.description,
             "config_schema": connector.config_model.model_json_schema(),
             "secret_fields": sorted(connector.secret_fields)}
            for name, connector in sorted(service.connectors.all().items())
        ]})

    @blueprint.post("/jobs")
    @require_role("analyst")
    async def create_job() -> Response:
        """Queue a job: ``{"connector", "integration_id" | "config"}``; answers 202."""
        body = await _json_body()
        job = await service.jobs.create(
            current_tenant_id(), body, current_principal().user_id
        )
        response = _json(job, 202)
        response.headers["Location"] = f"/app/etl/jobs/{job['id']}"
        return response

    @blueprint.get("/jobs")
    @validate_querystring(PageQuery)
    async def list_jobs(query_args: PageQuery) -> Response:
        """The tenant's jobs, newest first (``limit``, ``cursor``)."""
        page = await service.jobs.page(current_tenant_id(), query_args.capped_limit,
                                       query_args.cursor)
        return _json(page.as_dict())

    @blueprint.get("/jobs/<job_id>")
    async def get_job(job_id: str) -> Response:
        """One job: status, progress, stats per entity, error."""
        return _json(await service.jobs.get(current_tenant_id(), job_id))

    @blueprint.post("/jobs/<job_id>/cancel")
    @require_role("analyst")
    async def cancel_job(job_id: str) -> Response:
        """Cancel a queued job, or ask a running one to stop after its current batch."""
        return _json(await service.jobs.cancel(current_tenant_id(), job_id), 202)

    @blueprint.post("/jobs/<job_id>/retry")
    @require_role("analyst")
    async def retry_job(job_id: str) -> Response:
        """Queue a failed or cancelled job again (it resumes from its cursor)."""
        return _json(await service.jobs.retry(current_tenant_id(), job_id), 202)

    @blueprint.get("/integrations")
    @validate_querystring(PageQuery)
    async def list_integrations(query_args: PageQuery) -> Response:
        """The tenant's integrations, by name; secrets are never returned."""
        page = await service.integrations.page(current_tenant_id(), query_args.capped_limit,
                                               query_args.cursor)
        return _json(page.as_dict())

    @blueprint.post("/integrations")
    @require_role("admin")
    async def create_integration() -> Response:
        """Create an integration: ``{"connector", "name", "config"}`` (secrets write-only)."""
        body = await _json_body()
        document = await service.integrations.create(
            current_tenant_id(), body, current_principal().user_id
        )
        return _json(document, 201)

    @blueprint.get("/integrations/<integration_id>")
    async def get_integration(integration_id: str) -> Response:
        """One integration (secrets omitted)."""
        return _json(await service.integrations.get(current_tenant_id(), integration_id))

    @blueprint.patch("/integrations/<integration_id>")
    @require_role("admin")
    async def update_integration(integration_id: str) -> Response:
        """Change ``name`` and/or ``config``; secret fields left out keep their value."""
        body = await _json_body()
        return _json(await service.integrations.update(current_tenant_id(), integration_id,
                                                       body))

    @blueprint.delete("/integrations/<integration_id>")
    @require_role("admin")
    async def delete_integration(integration_id: str) -> Response:
        """Delete an integration and its cursors; loaded data stays."""
        await service.integrations.delete(current_tenant_id(), integration_id)
        return Response(status=204)

    @blueprint.post("/webhooks/github/<integration_id>")
    @public
    async def github_webhook(integration_id: str) -> Response:
        """GitHub's webhook receiver, verified with the integration's webhook secret."""
        document, status = await receive_github(service, integration_id)
        return _json(document, status)

    @blueprint.post("/webhooks/generic/<integration_id>")
    @public
    async def generic_webhook(integration_id: str) -> Response:
        """Generic deliveries (deployments, incidents, work items), HMAC-verified."""
        document, status = await receive_generic(service, integration_id)
        return _json(document, status)

    return blueprint
