"""Bad input to the ETL routes is a 400/422 problem and stores nothing (issue 11 item 2):
NUL characters or lone surrogates in integration names, configurations, connector names
and cursors (webhook payloads: test_github_webhooks)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest
from pulse_etl import model
from pulse_etl.service import EtlService
from sqlalchemy import func, select

from pulse_engine import encode_cursor
from pulse_engine.testing import TenantFixture

UNSTORABLE = {"nul": "Hello\x00World", "surrogate": "Hello\ud800World"}
STORED_TABLES = (model.integrations, model.etl_jobs)


async def stored(etl: EtlService, tenant_id: str) -> dict[str, int]:
    """Rows of the tables a refused request could have written."""
    async with etl.engine.db.tenant_session(tenant_id) as session:
        return {table.name: int(await session.scalar(
            select(func.count()).select_from(table)) or 0) for table in STORED_TABLES}

@pytest.mark.parametrize("kind", sorted(UNSTORABLE))
async def test_unstorable_text_in_integrations_and_jobs_is_a_422(
        etl: EtlService, etl_tenant: TenantFixture, git_root: Path, kind: str) -> None:
    text = UNSTORABLE[kind]
    admin = etl_tenant.admin_client
    before = await stored(etl, etl_tenant.id)
    attempts = [
        ("/app/etl/integrations", {"connector": "git", "name": f"repo{text}",
                                   "config": {"path": str(git_root)}}, "name"),
        ("/app/etl/integrations", {"connector": "git", "name": "repo",
                                   "config": {"path": f"{git_root}{text}"}}, "config.path"),
        ("/app/etl/integrations", {"connector": "github", "name": "gh", "config": {
            "repositories": [f"octo/app{text}"]}}, "config.repositories.0"),
        ("/app/etl/jobs", {"connector": f"git{text}", "config": {}}, "connector"),
        ("/app/etl/jobs", {"connector": "jira", "config": {
            "base_url": "https://example.atlassian.net", "projects": [f"AB{text}"]}},
         "config.projects.0"),
    ]
    for path, body, field in attempts:
        raw = json.dumps(body).encode()  # \u0000 and \ud800 escapes: valid JSON
        response = await admin.post(path, data=raw,
                                    headers={"Content-Type": "application/json"})
        problem = await response.get_json()
        assert response.status_code == 422, (path, problem)
        assert field in {error["field"] for error in problem["errors"]}, (path, problem)
    assert await stored(etl, etl_tenant.id) == before


@pytest.mark.parametrize("kind", sorted(UNSTORABLE))
async def test_unstorable_text_in_cursors_is_refused(
        etl_tenant: TenantFixture, kind: str) -> None:
    value = UNSTORABLE[kind]
    inside = encode_cursor(value)
    raw = quote(value.encode("utf-8", "surrogatepass"))  # as percent-escaped bytes
    for path in ("/app/etl/integrations", "/app/etl/jobs"):
        for cursor in (inside, raw):
            response = await etl_tenant.viewer_client.get(f"{path}?cursor={cursor}")
            problem = await response.get_json()
            assert response.status_code in (400, 422), (path, cursor, problem)
    # Python reads these as UUIDs, PostgreSQL does not
    job_id = "0190a3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b"
    for not_a_job in ("not-a-job-id", f"urn:uuid:{job_id}", f"uuid:{job_id}"):
        response = await etl_tenant.viewer_client.get(
            "/app/etl/jobs", query_string={"cursor": encode_cursor(not_a_job)})
        assert response.status_code == 422, (not_a_job, await response.get_json())
        assert (await response.get_json())["errors"][0]["field"] == "cursor"
