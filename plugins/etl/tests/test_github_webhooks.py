"""The GitHub webhook receiver with GitHub's real payloads (and a review comment event built
from the real review event with a comment object in GitHub's documented shape). Signed
deliveries of a handled event but the wrong shape, or holding a NUL character or a lone
surrogate, are 422 problems and store nothing (issue 11 item 2)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from pulse_etl import model
from pulse_etl.service import EtlService
from quart import Quart
from sqlalchemy import func, select

from pulse_engine.testing import TenantFixture

SECRET = "It's a Secret to Everybody"


def shared_dir() -> Path:
    """``shared/`` beside the repository (or ``PULSE_SHARED_DIR``)."""
    configured = os.environ.get("PULSE_SHARED_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[3] / ".." / "shared"


PAYLOADS = shared_dir() / "data" / "github-webhooks"
pytestmark = pytest.mark.skipif(not PAYLOADS.is_dir(), reason="shared payloads not found")


def payload(name: str) -> bytes:
    return (PAYLOADS / f"{name}.json").read_bytes()


def signed(body: bytes, event: str, delivery: str, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery, "Content-Type": "application/json"}


@pytest.fixture
async def hook(etl_tenant: TenantFixture) -> str:
    response = await etl_tenant.admin_client.post("/app/etl/integrations", json={
        "connector": "github", "name": "gh", "config": {
            "repositories": ["Codertocat/Hello-World"], "webhook_secret": SECRET,
            "token": "ghp_secret", "releases_as_deployments": True,
            "incident_labels": ["bug"]}})
    body = await response.get_json()
    assert response.status_code == 201, body
    assert "webhook_secret" not in json.dumps(body) and "ghp_secret" not in json.dumps(body)
    return f"/app/etl/webhooks/github/{body['id']}"


async def _count(etl: EtlService, tenant_id: str, table) -> int:
    async with etl.engine.db.tenant_session(tenant_id) as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def test_every_handled_event_is_loaded(etl_app, etl: EtlService,
                                             etl_tenant: TenantFixture, hook: str) -> None:
    client = etl_app.test_client()
    for index, name in enumerate(sorted(p.stem for p in PAYLOADS.glob("*.json"))):
        event = name.split("--")[0]
        body = payload(name)
        response = await client.post(hook, data=body, headers=signed(body, event, f"d-{index}"))
        document = await response.get_json()
        assert response.status_code == 202, (name, document)
        assert document["status"] == "processed", (name, document)
    tenant = etl_tenant.id
    async with etl.engine.db.tenant_session(tenant) as session:
        pr = (await session.execute(select(model.pull_requests))).one()
        deployments = {d.external_id: d for d in
                       (await session.execute(select(model.deployments))).all()}
        review = (await session.execute(select(model.reviews))).one()
        work_item = (await session.execute(select(model.work_items))).one()
    assert (pr.number, pr.state, pr.additions) == (2, "closed", 1)
    assert deployments["145988746"].result == "success"
    assert deployments["145988746"].environment == "production"
    assert "release:17372790" in deployments
    assert review.state == "commented"
    assert work_item.key == "Codertocat/Hello-World#1"
    assert await _count(etl, tenant, model.incidents) == 1  # labelled "bug" = incident here
    assert await _count(etl, tenant, model.webhook_deliveries) == len(list(PAYLOADS.glob("*.json")))


async def test_bad_signature_stores_nothing(etl_app, etl: EtlService, etl_tenant, hook) -> None:
    body = payload("pull_request--opened.payload")
    client = etl_app.test_client()
    for headers in (signed(body, "pull_request", "x", secret="wrong"),
                    {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "x"}):
        response = await client.post(hook, data=body, headers=headers)
        assert response.status_code == 401
    assert await _count(etl, etl_tenant.id, model.pull_requests) == 0
    assert await _count(etl, etl_tenant.id, model.webhook_deliveries) == 0


async def test_duplicates_malformed_unknown_and_large(etl_app, etl, etl_tenant, hook) -> None:
    client = etl_app.test_client()
    body = payload("pull_request--opened.payload")
    first = await client.post(hook, data=body, headers=signed(body, "pull_request", "same"))
    again = await client.post(hook, data=body, headers=signed(body, "pull_request", "same"))
    assert (await first.get_json())["status"] == "processed"
    assert (await again.get_json())["status"] == "duplicate"
    ping = b'{"zen": "Keep it logically awesome.", "hook_id": 1}'
    response = await client.post(hook, data=ping, headers=signed(ping, "ping", "p"))
    assert (response.status_code, (await response.get_json())["status"]) == (202, "ignored")
    broken = b"{not json"
    response = await client.post(hook, data=broken, headers=signed(broken, "push", "b"))
    assert response.status_code == 400
    lacking = b'{"repository": {"full_name": "a/b"}}'
    response = await client.post(hook, data=lacking,
                                 headers=signed(lacking, "pull_request", "l"))
    assert response.status_code == 422  # the shape of a pull_request event is checked
    fields = {error["field"] for error in (await response.get_json())["errors"]}
    assert fields == {"repository.name", "pull_request"}
    huge = b" " * (etl.settings.webhook_max_bytes + 1)
    response = await client.post(hook, data=huge, headers=signed(huge, "push", "h"))
    assert response.status_code == 413
    unknown = "/app/etl/webhooks/github/00000000-0000-0000-0000-000000000000"
    response = await client.post(unknown, data=body, headers=signed(body, "pull_request", "u"))
    assert response.status_code == 404
    assert await _count(etl, etl_tenant.id, model.webhook_deliveries) == 2


async def test_review_comment_event(etl_app, etl: EtlService, etl_tenant, hook) -> None:
    review_event = json.loads(payload("pull_request_review--submitted.payload"))
    review = review_event["review"]
    comment = {
        "url": f"{review_event['pull_request']['url']}/comments/2001", "id": 2001,
        "pull_request_review_id": review["id"], "node_id": "PRRC_kwDOAbc",
        "diff_hunk": "@@ -1 +1 @@\n-Hello\n+Hello World", "path": "README.md",
        "position": 1, "original_position": 1, "commit_id": review["commit_id"],
        "original_commit_id": review["commit_id"], "user": review["user"],
        "body": "Maybe a trailing newline?", "created_at": "2019-05-15T15:21:00Z",
        "updated_at": "2019-05-15T15:21:00Z", "html_url": f"{review['html_url']}#r2001",
        "pull_request_url": review_event["pull_request"]["url"],
        "author_association": "OWNER", "line": 1, "side": "RIGHT",
    }
    event = {"action": "created", "comment": comment,
             "pull_request": review_event["pull_request"],
             "repository": review_event["repository"], "sender": review_event["sender"]}
    client = etl_app.test_client()
    body = json.dumps(event).encode()
    response = await client.post(
        hook, data=body, headers=signed(body, "pull_request_review_comment", "c-1"))
    assert (response.status_code, (await response.get_json())["status"]) == (202, "processed")
    # the review arrives after its comment: both rows point at the same pull request
    body = payload("pull_request_review--submitted.payload")
    response = await client.post(hook, data=body,
                                 headers=signed(body, "pull_request_review", "r-1"))
    assert response.status_code == 202
    async with etl.engine.db.tenant_session(etl_tenant.id) as session:
        stored = (await session.execute(select(model.review_comments))).one()
        pr = (await session.execute(select(model.pull_requests))).one()
        linked = (await session.execute(select(model.reviews))).one()
    assert (stored.path, stored.body) == ("README.md", "Maybe a trailing newline?")
    assert stored.pull_request_id == pr.id and stored.review_id == linked.id
    deleted = json.dumps({**event, "action": "deleted"}).encode()
    response = await client.post(
        hook, data=deleted, headers=signed(deleted, "pull_request_review_comment", "c-2"))
    assert response.status_code == 202
    assert await _count(etl, etl_tenant.id, model.review_comments) == 1


STORED_TABLES = (model.webhook_deliveries, model.repositories, model.pull_requests,
                 model.deployments, model.commits, model.integrations)


async def stored(etl: EtlService, tenant_id: str) -> dict[str, int]:
    """Rows per table that a delivery or an integration could have written."""
    async with etl.engine.db.tenant_session(tenant_id) as session:
        return {table.name: int(await session.scalar(
            select(func.count()).select_from(table)) or 0) for table in STORED_TABLES}


def changed(name: str, edit: Any) -> bytes:
    """A real payload with ``edit(document)`` applied, as JSON bytes."""
    document = json.loads(payload(name))
    edit(document)
    return json.dumps(document).encode()


def _set(path: str, value: Any) -> Any:
    def edit(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for part in parents:
            document = document[part]
        document[last] = value
    return edit


# (built at collection; without the shared payloads the module is skipped, and so are these)
WRONG_SHAPES = [] if not PAYLOADS.is_dir() else [
    ("pull_request", changed("pull_request--opened.payload", _set("pull_request", "str")),
     "pull_request"),
    ("deployment", changed("deployment--payload", _set("deployment", None)), "deployment"),
    ("deployment_status", changed("deployment_status--payload",
                                  _set("deployment_status", "x")), "deployment_status"),
    ("pull_request", changed("pull_request--opened.payload",
                             _set("pull_request.number", "seven")), "pull_request.number"),
    ("push", changed("push--payload", _set("commits", {"id": "not a list"})), "commits"),
    ("issues", changed("issues--opened.payload", _set("issue.labels", "bug")), "issue.labels"),
    ("release", changed("release--published.payload", _set("release", [])), "release"),
    ("pull_request_review", changed("pull_request_review--submitted.payload",
                                    _set("review.user", "octocat")), "review.user"),
]


@pytest.mark.parametrize(("event", "body", "field"), WRONG_SHAPES,
                         ids=[f"{event}-{field}" for event, _, field in WRONG_SHAPES])
async def test_a_signed_delivery_of_the_wrong_shape_is_a_422(
        etl_app: Quart, etl: EtlService, etl_tenant: TenantFixture, hook: str,
        event: str, body: bytes, field: str) -> None:
    before = await stored(etl, etl_tenant.id)
    response = await etl_app.test_client().post(hook, data=body,
                                                headers=signed(body, event, "d-1"))
    problem = await response.get_json()
    assert response.status_code == 422, problem
    assert response.content_type == "application/problem+json"
    assert field in {error["field"] for error in problem["errors"]}, problem
    assert await stored(etl, etl_tenant.id) == before


UNSTORABLE = {"nul": "Hello\x00World", "surrogate": "Hello\ud800World"}


@pytest.mark.parametrize("kind", sorted(UNSTORABLE))
async def test_unstorable_text_in_a_signed_payload_is_a_422(
        etl_app: Quart, etl: EtlService, etl_tenant: TenantFixture, hook: str,
        kind: str) -> None:
    before = await stored(etl, etl_tenant.id)
    body = changed("push--payload", _set("repository.name", UNSTORABLE[kind]))
    assert b"\\u" in body  # the JSON escape of the character, as a sender would send it
    response = await etl_app.test_client().post(hook, data=body,
                                                headers=signed(body, "push", f"u-{kind}"))
    problem = await response.get_json()
    assert response.status_code == 422, problem
    assert "repository.name" in {error["field"] for error in problem["errors"]}
    form = urlencode({"payload": body.decode()}).encode()
    headers = {**signed(form, "push", f"f-{kind}"),
               "Content-Type": "application/x-www-form-urlencoded"}
    response = await etl_app.test_client().post(hook, data=form, headers=headers)
    assert response.status_code == 422, await response.get_json()
    assert await stored(etl, etl_tenant.id) == before
