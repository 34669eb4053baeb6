"""Webhook receivers (GitHub's and the generic connector's): verify, deduplicate, map, load.

``POST {prefix}/webhooks/github/{integration_id}`` (prefix ``PULSE_ETL_URL_PREFIX``) is
public: the request is trusted only when ``X-Hub-Signature-256`` is the HMAC-SHA256 of the
raw body under the integration's ``webhook_secret`` (compared in constant time). Only then
is the body parsed (the engine's strict JSON parser) and checked against the event's
model (:mod:`pulse_etl.connectors.github_events`). Deliveries are deduplicated by
``X-GitHub-Delivery`` in the transaction that loads them. Answers: 202 with
``{"status": "processed" | "ignored" | "duplicate"}``; 401 for a bad signature; 400 for a
body that is not a JSON object; 422 for a payload of the wrong shape (or holding a NUL
character or a lone surrogate); 404 for an unknown integration; 413 above
``PULSE_ETL_WEBHOOK_MAX_BYTES``. Nothing is stored unless the answer is 202.

``POST {prefix}/webhooks/generic/{integration_id}`` works alike with
``X-Pulse-Signature-256: sha256=<hex HMAC>`` and a body ``{"entity", "data"}`` (see
:mod:`pulse_etl.connectors.generic`); an invalid row is a 422 naming the row and field
(``data.2.created_at``). ``X-Pulse-Delivery`` (optional; default: the body's SHA-256)
deduplicates deliveries.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from pydantic import ValidationError
from quart import request
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from pulse_engine import Problem, field_errors, parse_json_body, validation_problem
from pulse_etl import model
from pulse_etl.connectors import generic
from pulse_etl.connectors import github_mapping as gm
from pulse_etl.connectors.github import GithubConfig
from pulse_etl.connectors.github_events import EVENT_MODELS
from pulse_etl.service import EtlService

HANDLED_EVENTS = frozenset({
    "push", "pull_request", "pull_request_review", "pull_request_review_comment",
    "deployment", "deployment_status", "release", "issues",
})


def signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is ``sha256=<hex HMAC of body under secret>``."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[len("sha256="):].strip())


def github_batch(event: str, payload: Mapping[str, Any], options: gm.GithubOptions
                 ) -> gm.Fragment | None:
    """The rows of one GitHub event, or None for events that are not handled."""
    if event not in HANDLED_EVENTS or not isinstance(payload.get("repository"), Mapping):
        return None
    repository_id, batch = gm.repository(payload["repository"])
    service = str(payload["repository"].get("full_name") or payload["repository"].get("name"))
    if event == "push":
        if not str(payload.get("ref", "")).startswith("refs/heads/"):
            return batch
        return gm.merge(batch, gm.push_commits(payload, repository_id))
    if event == "pull_request":
        return gm.merge(batch, gm.pull_request(payload["pull_request"], repository_id))
    if event == "pull_request_review":
        pr = payload["pull_request"]
        return gm.merge(batch, gm.pull_request(pr, repository_id),
                        gm.review(payload["review"], pr))
    if event == "pull_request_review_comment":
        pr = payload["pull_request"]
        pull_request = gm.merge(batch, gm.pull_request(pr, repository_id))
        if payload.get("action") == "deleted":  # the row stays; the model keeps no deletions
            return pull_request
        return gm.merge(pull_request, gm.review_comment(payload["comment"], pr))
    if event in ("deployment", "deployment_status") and not gm.is_deployment(
            payload["deployment"], options):
        return batch
    if event == "deployment":
        return gm.merge(batch, gm.deployment(payload["deployment"], repository_id, service))
    if event == "deployment_status":
        return gm.merge(batch, gm.deployment(payload["deployment"], repository_id, service,
                                             payload["deployment_status"]))
    if event == "release":
        if payload.get("action") not in ("published", "released", "edited", "created"):
            return batch
        return gm.merge(batch, gm.release(payload["release"], repository_id, service, options))
    return gm.merge(batch, gm.issue(payload["issue"], repository_id, service, options))


def _payload(body: bytes, content_type: str) -> dict[str, Any]:
    """The JSON object a delivery carries (a form's ``payload`` field, or the body).

    Parsed by the engine's strict JSON parser: not UTF-8, not JSON or nested too deeply is
    a 400; a string holding a NUL character or a lone surrogate is a 422 naming it.
    """
    raw = body
    if content_type.startswith("application/x-www-form-urlencoded"):
        try:
            fields = parse_qs(body.decode("utf-8"), strict_parsing=True)
            raw = fields["payload"][0].encode("utf-8")
        except (ValueError, KeyError, UnicodeDecodeError):
            raise Problem(400, "malformed-body",
                          "The webhook form has no JSON payload field.") from None
    payload = parse_json_body(raw)
    if not isinstance(payload, dict):
        raise Problem(400, "malformed-body", "The webhook payload must be a JSON object.")
    return payload


def _event_shape(event: str, payload: dict[str, Any]) -> None:
    """Check a handled event's payload against its model (422 naming the fields)."""
    event_model = EVENT_MODELS.get(event)
    if event_model is None:
        return
    try:
        event_model.model_validate(payload)
    except ValidationError as error:
        raise validation_problem(
            field_errors(error), f"The {event} payload does not have the shape of the event."
        ) from None


async def _route(service: EtlService, integration_id: str, connector: str) -> str:
    """The tenant of a ``connector`` integration's webhook URL (404 when there is none)."""
    engine = service.engine.db.app_engine
    if engine is None:
        raise RuntimeError("database is not connected")
    table = model.webhook_routes
    async with engine.connect() as connection:
        row = (await connection.execute(
            select(table.c.owner_tenant_id, table.c.connector)
            .where(table.c.integration_id == integration_id))).first()
    if row is None or row.connector != connector:
        raise Problem(404, "not-found", "No such webhook.")
    return str(row.owner_tenant_id)


async def _verified(service: EtlService, integration_id: str, connector: str,
                    signature_header: str) -> tuple[str, Any, dict[str, Any], bytes]:
    """Size-check, route and verify a delivery: ``(tenant, integration, secrets, body)``."""
    limit = service.settings.webhook_max_bytes
    if (request.content_length or 0) > limit:
        raise Problem(413, "payload-too-large", f"Webhook bodies are limited to {limit} bytes.")
    raw = await request.get_data(cache=False, as_text=False)
    body = raw.encode() if isinstance(raw, str) else raw
    if len(body) > limit:
        raise Problem(413, "payload-too-large", f"Webhook bodies are limited to {limit} bytes.")
    tenant_id = await _route(service, integration_id, connector)
    async with service.engine.db.tenant_session(tenant_id) as session:
        integration, secret_values = await service.integrations.with_secrets(
            session, integration_id)
    secret = secret_values.get("webhook_secret")
    if not secret or not signature_valid(secret, body, request.headers.get(signature_header)):
        raise Problem(401, "invalid-signature", "The webhook signature is not valid.")
    return tenant_id, integration, secret_values, body


async def _record_and_load(service: EtlService, tenant_id: str, integration_id: str,
                           connector: str, delivery: str, event: str,
                           batch: gm.Fragment | None) -> dict[str, Any] | None:
    """Record the delivery and load its batch in one transaction; None for a duplicate."""
    table = model.webhook_deliveries
    stats: dict[str, Any] = {}
    async with service.engine.db.tenant_session(tenant_id) as session:
        fresh = await session.scalar(
            pg_insert(table).values(
                tenant_id=tenant_id, integration_id=integration_id, delivery_id=delivery,
                event=event[:100], outcome="ignored" if batch is None else "processed",
            ).on_conflict_do_nothing().returning(table.c.delivery_id)
        )
        if fresh is None:
            return None
        if batch:
            loaded = await service.loads.load(session, tenant_id, batch)
            stats = loaded.stats
    if stats and batch:
        await service.loads.after_load(tenant_id, None, connector, loaded)
    return stats


async def receive_github(service: EtlService, integration_id: str
                         ) -> tuple[dict[str, Any], int]:
    """Handle one GitHub delivery; returns the response document and status."""
    tenant_id, integration, secret_values, body = await _verified(
        service, integration_id, "github", "X-Hub-Signature-256")
    event = request.headers.get("X-GitHub-Event", "")
    delivery = request.headers.get("X-GitHub-Delivery", "")
    if not event or not delivery or len(delivery) > 100:
        raise Problem(400, "malformed-delivery",
                      "X-GitHub-Event and X-GitHub-Delivery headers are required.")
    payload = _payload(body, request.headers.get("Content-Type", "application/json"))
    _event_shape(event, payload)
    options = GithubConfig.model_validate({**integration.config, **secret_values})
    try:
        batch = github_batch(event, payload, options)
    except (KeyError, TypeError, ValueError) as error:
        raise Problem(400, "malformed-body",
                      f"The {event} payload lacks what it should carry ({error}).") from None
    stats = await _record_and_load(service, tenant_id, integration_id, "github", delivery,
                                   event, batch)
    if stats is None:
        return {"status": "duplicate", "delivery": delivery}, 202
    outcome = "ignored" if batch is None else "processed"
    return {"status": outcome, "delivery": delivery, "event": event, "stats": stats}, 202


async def receive_generic(service: EtlService, integration_id: str
                          ) -> tuple[dict[str, Any], int]:
    """Handle one generic delivery ``{"entity", "data"}``; returns the document and status."""
    tenant_id, integration, secret_values, body = await _verified(
        service, integration_id, "generic", "X-Pulse-Signature-256")
    delivery = request.headers.get("X-Pulse-Delivery") or \
        f"sha256:{hashlib.sha256(body).hexdigest()}"
    if len(delivery) > 100:
        raise Problem(400, "malformed-delivery", "X-Pulse-Delivery is limited to 100 chars.")
    payload = _payload(body, "application/json")
    try:
        parsed = generic.Delivery.model_validate(payload)
    except ValidationError as error:
        raise validation_problem(field_errors(error),
                                 "The delivery is not valid.") from None
    config = generic.GenericConfig.model_validate({**integration.config, **secret_values})
    batch = generic.rows_batch(parsed.entity, list(parsed.data), config)
    stats = await _record_and_load(service, tenant_id, integration_id, "generic", delivery,
                                   parsed.entity, batch)
    if stats is None:
        return {"status": "duplicate", "delivery": delivery}, 202
    return {"status": "processed", "delivery": delivery, "entity": parsed.entity,
            "stats": stats}, 202
