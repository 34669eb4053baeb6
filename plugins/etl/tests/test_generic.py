"""The generic connector: bulk JSON/CSV imports through jobs, and signed webhooks, with bad
input (wrong types, unknown fields, huge payloads, bad signatures) and duplicates."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

import pytest
from pulse_etl import model
from pulse_etl.service import EtlService
from sqlalchemy import func, select

from pulse_engine.problems import Problem
from pulse_engine.testing import TenantFixture

SECRET = "generic-webhook-secret-0123456789"
SHA = "7638417db6d59f3c431d3e1f261cc637155684cd"
DEPLOYMENTS = [
    {"id": "argo-101", "service": "checkout", "environment": "production", "status": "succeeded",
     "started_at": "2024-06-03T10:00:00Z", "finished_at": "2024-06-03T10:12:00Z", "sha": SHA,
     "ref": "main", "name": "deploy-prod", "repository": "github:octocat/Hello-World"},
    {"id": "argo-102", "service": "checkout", "environment": "staging", "status": "failed",
     "started_at": "2024-06-03T09:00:00Z", "finished_at": "2024-06-03T09:05:00Z",
     "name": "deploy-staging"},
    {"id": "argo-103", "service": "checkout", "environment": "production", "status": "running",
     "started_at": "2024-06-04T09:00:00Z", "name": "deploy-prod"},
]
INCIDENT = {"id": "PD-Q1W2E3", "title": "Checkout latency", "service": "checkout",
            "status": "resolved", "urgency": "high", "created_at": "2024-06-03T11:00:00Z",
            "resolved_at": "2024-06-03T12:30:00+00:00", "deployment": "argo-101",
            "url": "https://acme.pagerduty.com/incidents/Q1W2E3"}
WORK_ITEMS_CSV = (
    "id,key,title,type,status,status_category,points,sprint,project,assignee_email,labels,"
    "created_at,resolved_at\n"
    "1,LIN-1,Login page,story,Done,done,3,Cycle 7,LIN,Ada@Example.test,frontend;auth,"
    "2024-06-01T09:00:00Z,2024-06-04T09:00:00Z\n"
    "2,LIN-2,\"Fix crash, on start\",bug,In Review,in_progress,1.5,Cycle 7,LIN,,,"
    "2024-06-02T09:00:00Z,\n"
    "3,LIN-3,Spike,task,Todo,todo,,,LIN,,,2024-06-03T09:00:00Z,\n"
)


async def count(etl: EtlService, tenant_id: str, table: str) -> int:
    async with etl.engine.db.tenant_session(tenant_id) as session:
        return int(await session.scalar(
            select(func.count()).select_from(model.metadata.tables[table])) or 0)


async def import_job(tenant: TenantFixture, config: dict[str, Any]) -> dict[str, Any]:
    response = await tenant.analyst_client.post(
        "/app/etl/jobs", json={"connector": "generic", "config": config})
    body = await response.get_json()
    assert response.status_code == 202, body
    for _ in range(400):
        job = await (await tenant.viewer_client.get(f"/app/etl/jobs/{body['id']}")).get_json()
        if job["status"] not in ("queued", "running"):
            return dict(job)
        await asyncio.sleep(0.05)
    raise AssertionError(job)


async def test_json_import_of_deployments_and_incidents(etl: EtlService,
                                                        etl_tenant: TenantFixture) -> None:
    job = await import_job(etl_tenant, {"source": "argocd", "entity": "deployments",
                                        "data": DEPLOYMENTS})
    assert job["status"] == "succeeded", job
    assert job["stats"]["deployments"] == {"created": 3, "updated": 0}
    incidents = await import_job(etl_tenant, {"source": "pagerduty", "entity": "incidents",
                                              "format": "json", "data": json.dumps([INCIDENT])})
    assert incidents["status"] == "succeeded", incidents
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        rows = {r.external_id: r for r in (await session.execute(select(model.deployments))).all()}
        incident = (await session.execute(select(model.incidents))).one()
    assert rows["argo-101"].result == "success" and rows["argo-102"].result == "failure"
    assert rows["argo-103"].result is None and rows["argo-103"].finished_at is None
    assert rows["argo-101"].source == "argocd"
    assert incident.link_reason == "explicit" and incident.deployment_id == rows["argo-101"].id
    assert (incident.severity, incident.source) == ("high", "pagerduty")
    again = await import_job(etl_tenant, {"source": "argocd", "entity": "deployments",
                                          "data": list(reversed(DEPLOYMENTS))})
    assert again["stats"]["deployments"] == {"created": 0, "updated": 0}


async def test_csv_import_of_work_items_in_batches(etl: EtlService,
                                                   etl_tenant: TenantFixture) -> None:
    etl.settings.batch_size = 2
    job = await import_job(etl_tenant, {"source": "linear", "entity": "work_items",
                                        "format": "csv", "data": WORK_ITEMS_CSV})
    assert job["status"] == "succeeded", job
    assert job["stats"]["work_items"] == {"created": 3, "updated": 0}
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        items = {r.key: r for r in (await session.execute(select(model.work_items))).all()}
        cursor = (await session.execute(select(model.sync_cursors.c.cursor))).scalar_one()
    assert items["LIN-1"].labels == ["frontend", "auth"] and items["LIN-1"].points == 3.0
    assert items["LIN-2"].title == "Fix crash, on start" and items["LIN-2"].points == 1.5
    assert items["LIN-1"].sprint_id == items["LIN-2"].sprint_id is not None
    assert items["LIN-3"].sprint_id is None and items["LIN-3"].assignee_identity_id is None
    assert cursor == {"done": 3}  # committed in two batches: a resumed job skips them
    assert await count(etl, etl_tenant.id, "sprints") == 1


@pytest.mark.parametrize(("config", "field"), [
    ({"entity": "deployments", "data": [DEPLOYMENTS[0], {**DEPLOYMENTS[1], "colour": "red"}]},
     "config.data.1.colour"),
    ({"entity": "deployments", "data": [{**DEPLOYMENTS[0], "finished_at": "yesterday"}]},
     "config.data.0.finished_at"),
    ({"entity": "deployments", "data": [{**DEPLOYMENTS[0], "finished_at": None}]},
     "config.data.0"),
    ({"entity": "deployments", "data": [{**DEPLOYMENTS[0], "status": "great"}]},
     "config.data.0.status"),
    ({"entity": "deployments", "data": [{**DEPLOYMENTS[0], "sha": "not-a-sha"}]},
     "config.data.0.sha"),
    ({"entity": "deployments", "data": [{**DEPLOYMENTS[0], "service": 42}]},
     "config.data.0.service"),
    ({"entity": "incidents", "data": [{**INCIDENT, "created_at": None}]},
     "config.data.0.created_at"),
    ({"entity": "incidents", "data": [{**INCIDENT, "resolved_at": "2024-06-01T00:00:00Z"}]},
     "config.data.0"),
    ({"entity": "work_items", "format": "csv",
      "data": WORK_ITEMS_CSV.replace(",1.5,", ",one and a half,")}, "config.data.1.points"),
    ({"entity": "work_items", "format": "csv", "data": "id,kind\n1,story\n"},
     "config.data.0.kind"),
    ({"entity": "work_items", "format": "json", "data": "[{not json"}, "config.data"),
    ({"entity": "releases", "data": []}, "config.entity"),
    ({"entity": "incidents"}, "config"),
    ({"data": [INCIDENT]}, "config.data"),
    ({"entity": "incidents", "data": [INCIDENT], "source": "Not A Source!"}, "config.source"),
])
async def test_bad_rows_are_a_422_naming_row_and_field(
        etl_tenant: TenantFixture, config: dict[str, Any], field: str) -> None:
    response = await etl_tenant.analyst_client.post(
        "/app/etl/jobs", json={"connector": "generic", "config": config})
    body = await response.get_json()
    assert response.status_code == 422, body
    assert field in [error["field"] for error in body["errors"]], body


async def test_huge_import_is_refused(etl: EtlService, etl_tenant: TenantFixture) -> None:
    rows = [{**DEPLOYMENTS[0], "id": f"run-{n}"} for n in range(6000)]
    response = await etl_tenant.analyst_client.post(
        "/app/etl/jobs", json={"connector": "generic", "config": {
            "entity": "deployments", "data": rows}})
    assert response.status_code == 413
    rows_limit = {"connector": "generic", "config": {
        "entity": "work_items", "data": [{"id": "1", "type": "t", "status": "s"}] * 10_001}}
    with pytest.raises(Problem) as refused:
        await etl.create_job(etl_tenant.id, rows_limit, None, enqueue=False)
    assert refused.value.extra["errors"][0]["field"] == "config.data"
    assert "at most 10000 rows" in refused.value.extra["errors"][0]["message"]


@pytest.fixture
async def hook(etl_tenant: TenantFixture) -> str:
    response = await etl_tenant.admin_client.post("/app/etl/integrations", json={
        "connector": "generic", "name": "pagerduty", "config": {
            "source": "pagerduty", "webhook_secret": SECRET}})
    body = await response.get_json()
    assert response.status_code == 201, body
    assert SECRET not in json.dumps(body)
    return f"/app/etl/webhooks/generic/{body['id']}"


def signed(body: bytes, secret: str = SECRET, **headers: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Pulse-Signature-256": f"sha256={digest}", "Content-Type": "application/json",
            **headers}


async def test_webhook_loads_signed_deliveries_once(etl_app, etl: EtlService,
                                                    etl_tenant: TenantFixture, hook: str) -> None:
    client = etl_app.test_client()
    body = json.dumps({"entity": "incidents", "data": INCIDENT}).encode()
    first = await client.post(hook, data=body, headers=signed(body))
    document = await first.get_json()
    assert first.status_code == 202, document
    assert document["status"] == "processed"
    assert document["stats"]["incidents"] == {"created": 1, "updated": 0}
    again = await client.post(hook, data=body, headers=signed(body))
    assert (await again.get_json())["status"] == "duplicate"
    # the same incident resolved later, under its own delivery id: updated, not duplicated
    later = json.dumps({"entity": "incidents", "data": [
        {**INCIDENT, "resolved_at": "2024-06-03T13:00:00Z"}]}).encode()
    response = await client.post(hook, data=later, headers=signed(later, **{
        "X-Pulse-Delivery": "evt-2"}))
    assert (await response.get_json())["stats"]["incidents"] == {"created": 0, "updated": 1}
    assert await count(etl, etl_tenant.id, "incidents") == 1
    assert await count(etl, etl_tenant.id, "webhook_deliveries") == 2


async def test_webhook_bad_input(etl_app, etl: EtlService, etl_tenant: TenantFixture,
                                 hook: str) -> None:
    client = etl_app.test_client()
    body = json.dumps({"entity": "incidents", "data": [INCIDENT]}).encode()
    for headers in (signed(body, secret="wrong-secret-wrong-secret"),
                    {"Content-Type": "application/json"},
                    {"X-Pulse-Signature-256": "md5=abc"}):
        response = await client.post(hook, data=body, headers=headers)
        assert response.status_code == 401
    cases = [
        ({"entity": "incidents", "data": [{**INCIDENT, "severity": "sev1"}]}, "data.0.severity"),
        ({"entity": "incidents", "data": [INCIDENT, {**INCIDENT, "created_at": 17}]},
         "data.1.created_at"),
        ({"entity": "incidents", "data": [INCIDENT], "tenant": "other"}, "tenant"),
        ({"entity": "incidents", "data": "a string"}, "data"),
        ({"data": [INCIDENT]}, "entity"),
    ]
    for payload, field in cases:
        raw = json.dumps(payload).encode()
        response = await client.post(hook, data=raw, headers=signed(raw))
        document = await response.get_json()
        assert response.status_code == 422, (payload, document)
        assert field in [error["field"] for error in document["errors"]], document
    for raw, status in ((b"{not json", 400), (b"[1, 2]", 400),
                        (b" " * (etl.settings.webhook_max_bytes + 1), 413)):
        response = await client.post(hook, data=raw, headers=signed(raw))
        assert response.status_code == status, raw[:20]
    missing = "/app/etl/webhooks/generic/00000000-0000-0000-0000-000000000000"
    assert (await client.post(missing, data=body, headers=signed(body))).status_code == 404
    assert await count(etl, etl_tenant.id, "incidents") == 0
    assert await count(etl, etl_tenant.id, "webhook_deliveries") == 0


async def test_webhook_route_is_per_connector(etl_app, etl_tenant: TenantFixture) -> None:
    response = await etl_tenant.admin_client.post("/app/etl/integrations", json={
        "connector": "github", "name": "gh", "config": {
            "repositories": ["octocat/Hello-World"], "webhook_secret": SECRET}})
    github_id = (await response.get_json())["id"]
    body = json.dumps({"entity": "incidents", "data": [INCIDENT]}).encode()
    response = await etl_app.test_client().post(f"/app/etl/webhooks/generic/{github_id}",
                                                data=body, headers=signed(body))
    assert response.status_code == 404
