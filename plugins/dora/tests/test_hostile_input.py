"""Issue 11 (items 1 and 2) on the DORA routes: no request runs the database without bound,
and bad input is a 4xx problem naming the parameter, never a 500.

Each request is sent as raw, percent-encoded text and bounded by :data:`ANSWER_WITHIN`:
on the code before these checks the year-1 windows never answered (asyncpg sends year 1
as ``-infinity`` and ``generate_series`` never ends), the others answered 500 or 200.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from sqlalchemy import text
from test_metrics import BASE

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture

#: Seconds within which every answer must come (a runaway query fails the test instead).
ANSWER_WITHIN = 20


async def answer(tenant: TenantFixture, path: str, query: str) -> Any:
    """GET ``BASE/path?query`` as the tenant's viewer, within :data:`ANSWER_WITHIN` seconds."""
    return await asyncio.wait_for(
        tenant.viewer_client.get(f"{BASE}/{path}?{query}"), ANSWER_WITHIN
    )


def cursor_of(value: str) -> str:
    """A cursor in the engine's encoding (URL-safe base64 of a JSON list) around ``value``."""
    return base64.urlsafe_b64encode(json.dumps([value]).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("path", "query", "fields"),
    [
        # runaway windows (they never answered)
        ("deployment_frequency", "start=0001-01-01&end=0001-01-05", {"start", "end"}),
        ("lead-time/breakdown", "interval=week&start=0001-01-01&end=0001-01-05",
         {"start", "end"}),
        ("gitlab", "metric=deployment_frequency&start_date=0001-01-01&end_date=0001-01-02",
         {"start_date", "end_date"}),
        ("summary", "start=9999-12-31T00:00:00Z&end=9999-12-31T23:59:59.999999Z",
         {"start", "end"}),
        # dates that overflow with offsets, or a day added (they answered 500)
        ("summary", "start=0001-01-01T00:00:00%2B05:00", {"start"}),
        ("summary", "start=2024-01-01&end=9999-12-31T23:59:59-05:00", {"end"}),
        ("gitlab", "metric=lead_time_for_changes&start_date=2024-01-01&end_date=9999-12-31",
         {"end_date"}),
        ("lead_time_for_changes/drilldown", "start=0001-01-01T00:00:00-01:00", {"start"}),
        # outside 1970..2200, as written
        ("summary", "start=1969-12-31&end=1970-01-05", {"start"}),
        ("summary", "start=2199-12-01&end=2200-01-02", {"end"}),
        # zones Python accepts and PostgreSQL does not (they answered 500)
        ("summary", "tz=posixrules", {"tz"}),
        ("deployment_frequency", "tz=right/UTC", {"tz"}),
        ("summary", "tz=posix/Europe/Paris", {"tz"}),
        # '²'.isdigit() is true, then int() failed
        ("deployment_frequency/drilldown", "limit=%C2%B2", {"limit"}),
        # NUL characters (PostgreSQL refuses them in text)
        ("summary", "team=a%00b", {"team"}),
        ("summary", "environment=prod%00", {"environment"}),
        ("summary", "tz=UTC%00", {"tz"}),
        ("summary", "start=2024-01-01%00", {"start"}),
        ("gitlab", "metric=change_failure_rate&environment_tiers=production%00", {
            "environment_tiers"}),
        # a parameter no route reads
        ("summary", "starts=2024-01-01", {"starts"}),
    ],
)
async def test_bad_input_is_a_422_naming_the_parameter(
    dora_tenant: TenantFixture, path: str, query: str, fields: set[str]
) -> None:
    response = await answer(dora_tenant, path, query)
    body = await response.get_json()
    assert response.status_code == 422, body
    assert response.content_type == "application/problem+json"
    assert body["type"].endswith("/validation-error")
    assert {error["field"] for error in body["errors"]} == fields, body


@pytest.mark.parametrize("value", ["a\x00b", "20240101000000000000/\x00", "x" * 40])
async def test_a_cursor_that_is_not_a_sort_key_is_a_400(
    dora_tenant: TenantFixture, value: str
) -> None:
    response = await answer(
        dora_tenant, "deployment_frequency/drilldown", f"cursor={cursor_of(value)}"
    )
    body = await response.get_json()
    assert response.status_code == 400, body
    assert body["type"].endswith("/invalid-cursor")


async def test_a_series_of_too_many_buckets_is_refused(dora_tenant: TenantFixture) -> None:
    response = await dora_tenant.admin_client.put(
        f"/api/v1/admin/tenants/{dora_tenant.id}/plugins/dora",
        json={"enabled": True, "config": {"max_window_days": 3660}},
    )
    assert response.status_code == 200, await response.get_json()
    window = "start=2015-01-01&end=2024-12-31"
    daily = await answer(dora_tenant, "deployment_frequency", f"interval=day&{window}")
    body = await daily.get_json()
    assert daily.status_code == 422, body
    assert [error["field"] for error in body["errors"]] == ["interval"]
    breakdown = await answer(dora_tenant, "lead-time/breakdown", f"interval=day&{window}")
    assert breakdown.status_code == 422
    # the same window by month, or as one bucket, is fine
    assert (await answer(dora_tenant, "deployment_frequency", f"interval=month&{window}")
            ).status_code == 200
    assert (await answer(dora_tenant, "summary", window)).status_code == 200


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("summary", "start=1970-01-01&end=1970-02-01&tz=Asia/Tokyo"),
        ("deployment_frequency", "start=2199-11-01&end=2200-01-01&interval=day"),
        ("gitlab", "metric=deployment_frequency&start_date=2199-12-01&end_date=2199-12-31"),
        ("lead-time/breakdown", "start=1970-01-01T00:00:00%2B14:00&end=1970-01-10"),
        ("summary", "tz=Etc/GMT%2B5"),
    ],
)
async def test_the_edges_of_the_range_answer(
    dora_tenant: TenantFixture, path: str, query: str
) -> None:
    response = await answer(dora_tenant, path, query)
    assert response.status_code == 200, await response.get_json()


async def test_a_zone_python_knows_and_this_postgresql_does_not_is_a_422(
    dora_tenant: TenantFixture, engine: PulseEngine
) -> None:
    """Python's tz database can be newer than PostgreSQL's (``America/Coyhaique`` is 2025's,
    unknown to PostgreSQL 16.2): such a zone is refused, not sent to the database."""
    from pulse_engine.queryparams import known_zones

    async with engine.db.tenant_session(dora_tenant.id) as session:
        database = set((await session.execute(text("SELECT name FROM pg_timezone_names"))
                        ).scalars())
    newer = sorted(known_zones() - database)
    if not newer:
        pytest.skip("this PostgreSQL knows every zone Python does")
    response = await answer(dora_tenant, "summary", f"tz={newer[0]}")
    body = await response.get_json()
    assert response.status_code == 422, body
    assert [error["field"] for error in body["errors"]] == ["tz"]
