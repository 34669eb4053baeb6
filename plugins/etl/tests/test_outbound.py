"""Connectors cannot be turned against the network they run in (issue 11 item 4): source
URLs at internal addresses, in every numeric form or behind a name, are refused when a
configuration is saved (422 naming the field) and again on the address actually connected
to (redirects, DNS rebinding), unless the operator allows them; job errors carry a status
and a short reason, never the source's body. Against real local HTTP servers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from pulse_etl.plugin import service_for
from pulse_etl.service import EtlService
from quart import Quart

from pulse_engine import GuardedTransport, OutboundPolicy, OutboundRefused, Settings
from pulse_engine.testing import TenantFixture, make_tenant, running_app

from .conftest import wait_job
from .replay import ReplayServer


@pytest.fixture
async def strict_app(pulse_settings: Settings, etl_env: None) -> AsyncIterator[Quart]:
    """An app with no outbound allow-list (the default)."""
    async with running_app(pulse_settings) as app:
        yield app


@pytest.fixture
async def strict_tenant(strict_app: Quart) -> TenantFixture:
    """A tenant of ``strict_app``."""
    return await make_tenant(strict_app)


URL_FORMS = ["http://127.0.0.1:8080", "http://2130706433", "http://0x7f000001",
             "http://0177.0.0.1", "http://127.1", "http://[::1]:8080", "http://[::ffff:127.0.0.1]",
             "http://localhost:8080", "http://169.254.169.254", "https://10.0.0.7/api/v3",
             "http://[fd00:ec2::254]"]


@pytest.mark.parametrize("url", URL_FORMS)
async def test_source_urls_at_internal_addresses_are_a_422(
        strict_tenant: TenantFixture, url: str) -> None:
    attempts = [
        ("/app/etl/integrations", {"connector": "github", "name": "gh", "config": {
            "repositories": ["octo/app"], "api_url": url}}, "config.api_url"),
        ("/app/etl/integrations", {"connector": "jira", "name": "jira", "config": {
            "base_url": url, "projects": ["OPS"]}}, "config.base_url"),
        ("/app/etl/jobs", {"connector": "github", "config": {
            "repositories": ["octo/app"], "api_url": url}}, "config.api_url"),
    ]
    for path, body, field in attempts:
        response = await strict_tenant.admin_client.post(path, json=body)
        problem = await response.get_json()
        assert response.status_code == 422, (path, url, problem)
        assert [error["field"] for error in problem["errors"]] == [field], problem
    listing = await (await strict_tenant.viewer_client.get("/app/etl/integrations")).get_json()
    assert listing["items"] == []


@pytest.mark.parametrize("remote", [
    "https://127.0.0.1/octo/app.git", "https://2130706433/octo/app.git",
    "ssh://git@localhost/octo/app.git", "ssh://git@[::1]:2222/app.git",
    "git@0x7f000001:octo/app.git", "git@10.0.0.1:octo/app.git",
    "https://169.254.169.254/latest/meta-data.git",
])
async def test_git_remotes_at_internal_addresses_are_a_422(
        strict_tenant: TenantFixture, remote: str) -> None:
    response = await strict_tenant.analyst_client.post("/app/etl/jobs", json={
        "connector": "git", "config": {"path": remote}})
    problem = await response.get_json()
    assert response.status_code == 422, (remote, problem)
    assert problem["errors"][0]["field"] == "config.path"


async def test_an_integration_update_is_checked_too(
        strict_tenant: TenantFixture) -> None:
    admin = strict_tenant.admin_client
    created = await admin.post("/app/etl/integrations", json={
        "connector": "jira", "name": "jira", "config": {
            "base_url": "https://jira.example.test", "projects": ["OPS"]}})
    assert created.status_code == 201, await created.get_json()
    integration = await created.get_json()
    response = await admin.patch(f"/app/etl/integrations/{integration['id']}", json={
        "config": {"base_url": "http://0x7f000001", "projects": ["OPS"]}})
    assert response.status_code == 422
    assert (await response.get_json())["errors"][0]["field"] == "config.base_url"


def github_config(base: str) -> dict[str, Any]:
    """A github job's configuration against ``base``."""
    return {"repositories": ["octo/app"], "api_url": base, "token": "ghp_test"}


@pytest.fixture
async def localhost_app(pulse_settings: Settings, etl_env: None) -> AsyncIterator[Quart]:
    """An app allowed to reach the host name ``localhost`` only (not 127.0.0.1 itself)."""
    allowed = pulse_settings.model_copy(update={"outbound_allow": ["localhost"]})
    async with running_app(allowed) as app:
        yield app


async def test_a_redirect_to_an_internal_address_is_refused(localhost_app: Quart) -> None:
    tenant = await make_tenant(localhost_app)
    etl = service_for(localhost_app.extensions["pulse"])
    etl.settings.http_max_retries = 0
    async with ReplayServer([{"request": {"path": "/internal"}, "response": {
            "body": {"secret": "metadata"}}}]) as internal:
        redirect = {"request": {"path": "/repos/octo/app"}, "response": {
            "status": 302, "headers": {"location": f"{internal.url}/internal"}}}
        async with ReplayServer([redirect]) as outside:
            base = outside.url.replace("127.0.0.1", "localhost")
            response = await tenant.analyst_client.post("/app/etl/jobs", json={
                "connector": "github", "config": github_config(base)})
            assert response.status_code == 202, await response.get_json()
            job = await wait_job(tenant.analyst_client, (await response.get_json())["id"])
    assert [seen.path for seen in outside.requests] == ["/repos/octo/app"]
    assert internal.requests == []  # the redirect was never followed
    assert job["status"] == "failed"
    assert "127.0.0.1" in job["error"] and "loopback" in job["error"], job["error"]
    assert "metadata" not in job["error"]


Resolver = Callable[..., Awaitable[list[Any]]]


def fake_resolver(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> None:
    """Make the running loop resolve the named hosts to the next of ``answers[host]``
    (the last one repeats), and everything else as usual."""
    loop = asyncio.get_running_loop()
    real: Resolver = loop.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host in answers:
            queue = answers[host]
            address = queue.pop(0) if len(queue) > 1 else queue[0]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]
        return await real(host, port, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)


async def test_the_connected_address_is_checked_not_only_the_configured_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_resolver(monkeypatch, {"rebound.test": ["127.0.0.1"]})
    async with ReplayServer([{"request": {"path": "/probe"}, "response": {"body": {}}}]) as server:
        port = server.url.rsplit(":", 1)[1]
        async with httpx.AsyncClient(transport=GuardedTransport(OutboundPolicy()),
                                     trust_env=False) as client:
            with pytest.raises(OutboundRefused, match="loopback"):
                await client.get(f"http://rebound.test:{port}/probe")
            with pytest.raises(OutboundRefused, match="loopback"):
                await client.get(f"http://2130706433:{port}/probe")
        allowed = GuardedTransport(OutboundPolicy(["127.0.0.0/8"]))
        async with httpx.AsyncClient(transport=allowed, trust_env=False) as client:
            assert (await client.get(f"http://rebound.test:{port}/probe")).status_code == 200
    assert [seen.path for seen in server.requests] == ["/probe"]  # only the allowed request


async def test_dns_rebinding_after_the_configuration_check_fails_the_job(
        strict_app: Quart, strict_tenant: TenantFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # public when the configuration is checked, loopback from then on
    fake_resolver(monkeypatch, {"rebinding.test": ["93.184.216.34", "127.0.0.1"]})
    async with ReplayServer([{"request": {"path": "/repos/octo/app"}, "response": {
            "body": {"id": 1}}}]) as server:
        port = server.url.rsplit(":", 1)[1]
        response = await strict_tenant.analyst_client.post("/app/etl/jobs", json={
            "connector": "github", "config": github_config(f"http://rebinding.test:{port}")})
        assert response.status_code == 202, await response.get_json()
        job = await wait_job(strict_tenant.analyst_client, (await response.get_json())["id"])
    assert job["status"] == "failed" and "loopback" in job["error"], job
    assert server.requests == []


async def test_job_errors_carry_the_status_never_the_body(
        etl: EtlService, etl_tenant: TenantFixture) -> None:
    body = {"message": "SECRET internal page: db=10.0.0.5 password=hunter2"}
    async with ReplayServer([{"request": {"path": "/repos/octo/app"}, "response": {
            "status": 403, "body": body}}]) as server:
        response = await etl_tenant.analyst_client.post("/app/etl/jobs", json={
            "connector": "github", "config": github_config(server.url)})
        job = await wait_job(etl_tenant.analyst_client, (await response.get_json())["id"])
    assert job["status"] == "failed"
    assert "answered 403" in job["error"], job["error"]
    assert "SECRET" not in job["error"] and "hunter2" not in job["error"]
    viewed = await (await etl_tenant.viewer_client.get(f"/app/etl/jobs/{job['id']}")).get_json()
    assert "hunter2" not in str(viewed)
