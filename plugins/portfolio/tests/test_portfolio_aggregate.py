"""Cross-project aggregation of catalog metrics, a third-party one included, by kind."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

from portfolio_rows import Acme, Rows, percentile

from pulse_engine.testing import TenantFixture

WINDOW = {"start": "2024-01-01", "end": "2024-04-01"}
A_WAITS = [1.0, 2.0, 3.0, 100.0]
B_WAITS = [4.0, 5.0, 6.0]


async def scenario(rows: Rows, acme: Acme) -> dict[str, str]:
    a = await rows.project("Alpha")
    b = await rows.project("Beta")
    await rows.team("alpha-team", a)
    await rows.team("beta-team", b)
    await rows.team("nobody", None)
    tenant = rows.tenant_id
    acme.waits[(tenant, a)] = A_WAITS
    acme.waits[(tenant, b)] = B_WAITS
    acme.escapes[(tenant, a)] = (1, 4)
    acme.escapes[(tenant, b)] = (3, 16)
    acme.incidents[(tenant, a)] = 3
    acme.incidents[(tenant, b)] = 5
    return {"a": a, "b": b}


async def get(tenant: TenantFixture, metric: str, **query: str) -> dict[str, Any]:
    response = await tenant.viewer_client.get(
        "/api/v1/portfolio/aggregate", query_string={"metric": metric, **WINDOW, **query})
    body = await response.get_json()
    assert response.status_code == 200, body
    return body


async def test_a_third_party_distribution_is_recomputed_from_pooled_samples(
    rows: Rows, tenant: TenantFixture, acme: Acme
) -> None:
    ids = await scenario(rows, acme)
    body = await get(tenant, "acme.review_wait")
    projects = {p["id"]: p["value"] for p in body["projects"]}
    assert projects[ids["a"]]["value"] == 2.5 and projects[ids["b"]]["value"] == 5.0
    pooled = A_WAITS + B_WAITS
    tenant_value = body["tenant"]["value"]
    # brute force: the median of every observation is 4; the median of the two medians
    # (their mean) would be 3.75, the mean of the medians too
    assert tenant_value["value"] == statistics.median(pooled) == 4.0
    assert tenant_value["value"] != statistics.median([2.5, 5.0])
    assert tenant_value["sample_size"] == 7
    for key, fraction in (("p50", 0.5), ("p75", 0.75), ("p90", 0.9)):
        assert tenant_value["percentiles"][key] == percentile(pooled, fraction)
    assert tenant_value["mean"] == sum(pooled) / 7
    assert body["tenant"]["direct"]["value"] == 4.0
    teams = {t["name"]: t for t in body["teams"]}
    assert teams["alpha-team"]["value"]["value"] == 2.5
    assert teams["alpha-team"]["projects"] == [ids["a"]]
    assert teams["nobody"]["value"]["sample_size"] == 0
    assert body["aggregation"] == "percentiles of the pooled samples"


async def test_a_distribution_without_samples_gets_no_combined_value(
    rows: Rows, tenant: TenantFixture, acme: Acme
) -> None:
    await scenario(rows, acme)
    body = await get(tenant, "acme.median_only")
    assert body["tenant"]["value"] is None
    assert all(team["value"] is None for team in body["teams"])
    assert "not combined" in body["aggregation"]
    # the per-project values and the tenant's own read are still there
    assert sorted(p["value"]["value"] for p in body["projects"]) == [2.5, 5.0]
    assert body["tenant"]["direct"]["value"] == 4.0


async def test_ratios_sum_their_parts_and_counts_are_summed(
    rows: Rows, tenant: TenantFixture, acme: Acme
) -> None:
    await scenario(rows, acme)
    ratio = (await get(tenant, "acme.escape_rate"))["tenant"]["value"]
    assert (ratio["numerator"], ratio["denominator"]) == (4, 20)
    assert ratio["value"] == 0.2  # not (1/4 + 3/16) / 2 = 0.21875
    count = (await get(tenant, "acme.incidents"))["tenant"]["value"]
    assert count["value"] == 8 and count["sample_size"] == 8


async def test_dora_and_portfolio_metrics_aggregate_by_project(
    rows: Rows, tenant: TenantFixture
) -> None:
    a = await rows.project("Alpha")
    b = await rows.project("Beta")
    base = datetime(2024, 1, 10, tzinfo=UTC)
    cycles = {a: [1, 2, 9], b: [3, 4]}
    for project, days in cycles.items():
        for n, d in enumerate(days):
            await rows.item(project, created=base, resolved=base + timedelta(days=d + n / 10),
                            changes=[(base, "In Progress"),
                                     (base + timedelta(days=d + n / 10), "Done")])
    await rows.refresh()
    body = await get(tenant, "portfolio.cycle_time")
    pooled = [(d + n / 10) * 86400 for days in cycles.values() for n, d in enumerate(days)]
    assert body["tenant"]["value"]["value"] == statistics.median(pooled)
    assert body["tenant"]["value"]["sample_size"] == 5
    throughput = await get(tenant, "portfolio.throughput")
    assert throughput["tenant"]["value"]["value"] == 5
    assert {p["name"]: p["value"]["value"] for p in throughput["projects"]} == {
        "Alpha": 3, "Beta": 2}
    dora = await get(tenant, "dora.lead_time_for_changes")
    assert dora["per_project"] and dora["tenant"]["value"]["sample_size"] == 0


async def test_bad_input_is_refused(tenant: TenantFixture) -> None:
    for query, field in (
        ({"metric": "nope.metric"}, "metric"),
        ({"metric": "acme.incidents", "start": "2024-05-01", "end": "2024-01-01"}, None),
        ({"metric": "acme.incidents", "start": "2010-01-01", "end": "2024-01-01"}, "start"),
        ({"metric": "acme.incidents", "tz": "Mars/Base"}, "tz"),
        ({"metric": "acme.incidents", "bogus": "1"}, None),
    ):
        response = await tenant.viewer_client.get("/api/v1/portfolio/aggregate",
                                                  query_string=query)
        assert response.status_code in (400, 422), (query, response.status_code)
        assert response.content_type == "application/problem+json"
        if field:
            assert field in [e["field"] for e in (await response.get_json())["errors"]]


async def test_another_tenants_projects_never_show(
    rows: Rows, tenant: TenantFixture, acme: Acme, portfolio_app: Any
) -> None:
    from pulse_engine.testing import make_tenant

    await scenario(rows, acme)
    other = await make_tenant(portfolio_app)
    body = await get(other, "acme.review_wait")
    assert body["projects"] == [] and body["teams"] == []
    assert body["tenant"]["direct"]["sample_size"] == 0
    # the other tenant's data is not reachable by naming its project either
    project = (await get(tenant, "acme.incidents"))["projects"][0]["id"]
    response = await other.viewer_client.get("/api/v1/portfolio/flow", query_string={
        "scope": "project", "id": project})
    assert response.status_code == 422
