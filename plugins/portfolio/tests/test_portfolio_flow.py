"""Team flow, sprints, objectives, trends, executive view, risks and exports, against
hand-computed fixtures."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from portfolio_rows import Acme, Rows

from pulse_engine.testing import TenantFixture, make_tenant

T0 = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
WINDOW = {"start": "2024-01-01", "end": "2024-02-01"}


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


async def ok(tenant: TenantFixture, path: str, **query: Any) -> Any:
    response = await tenant.viewer_client.get(f"/api/v1/portfolio/{path}", query_string=query)
    body = await response.get_json()
    assert response.status_code == 200, body
    return body


async def flow_scenario(rows: Rows) -> dict[str, str]:
    alpha = await rows.project("Alpha")
    beta = await rows.project("Beta")
    await rows.team("alpha-team", alpha)
    # 1: started day 1, waiting (Blocked) 2 days, done day 5: cycle 4 d, active 2 of 4
    one = await rows.item(alpha, created=at(0), resolved=at(5), points=3, key="A-1",
                          changes=[(at(0), "To Do"), (at(1), "In Progress"), (at(2), "Blocked"),
                                   (at(4), "In Progress"), (at(5), "Done")])
    # 2: a bug, no history: cycle = creation to resolution = 2 d
    await rows.item(alpha, type="Bug", created=at(8), resolved=at(10), points=1, key="A-2")
    # 3: debt by label, started day 3, in review (a wait state) from day 6, done day 9
    await rows.item(alpha, created=at(2), resolved=at(9), labels=["tech-debt"], key="A-3",
                    changes=[(at(3), "In Progress"), (at(6), "Ready for Review"),
                             (at(9), "Done")])
    # 4: in progress since day 2, still open at the end (day 31): aging 29 d
    await rows.item(alpha, status="In Progress", created=at(1), key="A-4",
                    changes=[(at(2), "In Progress")])
    # 5: in progress since day 25: 6 days old, not aging
    await rows.item(alpha, status="In Progress", created=at(20), key="A-5",
                    changes=[(at(25), "In Progress")])
    # 6: never started (only to-do): not WIP
    await rows.item(alpha, status="To Do", created=at(3), key="A-6", changes=[(at(3), "Backlog")])
    # beta: an incident finished in week 2
    await rows.item(beta, type="Incident", created=at(9), resolved=at(9.5), key="B-1")
    return {"alpha": alpha, "beta": beta, "one": one}


async def test_flow_of_a_team(rows: Rows, tenant: TenantFixture) -> None:
    await flow_scenario(rows)
    body = await ok(tenant, "flow", scope="team", id="alpha-team", **WINDOW)
    assert body["finished"] == 3
    # cycle times 4, 2, 6 days
    assert body["cycle_time"]["median"] == 4 * 86400
    assert body["cycle_time"]["mean"] == 4 * 86400
    assert body["wip"] == 2
    assert body["aging"]["count"] == 1 and body["aging"]["items"][0]["key"] == "A-4"
    assert body["aging"]["items"][0]["age_days"] == 29
    # item 1: active 1 + 1 of 4 days; item 3: active 3 of 6 days; item 2 has no history
    efficiency = body["flow_efficiency"]
    assert efficiency["items"] == 2
    assert efficiency["active_seconds"] == 5 * 86400
    assert efficiency["total_seconds"] == 10 * 86400
    assert efficiency["value"] == 0.5
    weeks = {row["week"]: row["items"] for row in body["throughput_per_week"]}
    assert weeks == {"2024-01-01": 1, "2024-01-08": 2, "2024-01-15": 0, "2024-01-22": 0,
                     "2024-01-29": 0}
    types = body["effort_by_work_type"]
    assert {name: types[name]["items"] for name in types} == {
        "feature": 1, "bug": 1, "debt": 1, "incident": 0}
    assert types["feature"]["share_points"] == 0.75
    whole = await ok(tenant, "flow", **WINDOW)
    assert whole["finished"] == 4 and whole["effort_by_work_type"]["incident"]["items"] == 1


async def test_wait_states_are_the_tenants(rows: Rows, tenant: TenantFixture) -> None:
    await flow_scenario(rows)
    response = await tenant.admin_client.put(
        f"/api/v1/admin/tenants/{tenant.id}/plugins/portfolio",
        json={"enabled": True, "config": {"wait_states": ["Blocked"]}})
    assert response.status_code == 200, await response.get_json()
    efficiency = (await ok(tenant, "flow", scope="project", id="Alpha", **WINDOW))[
        "flow_efficiency"]
    # review now counts as active: item 3 is active 6 of 6 days
    assert efficiency["active_seconds"] == 8 * 86400 and efficiency["value"] == 0.8


async def test_velocity_and_planned_work(rows: Rows, tenant: TenantFixture) -> None:
    alpha = await rows.project("Alpha")
    s1 = await rows.sprint(alpha, "S1", at(0), at(14))
    s2 = await rows.sprint(alpha, "S2", at(14), at(28))
    await rows.item(alpha, created=at(-1), resolved=at(5), points=5, sprint_id=s1)
    await rows.item(alpha, created=at(3), resolved=at(13), points=3, sprint_id=s1)  # unplanned
    await rows.item(alpha, created=at(-2), resolved=at(16), points=2, sprint_id=s1)  # late
    await rows.item(alpha, created=at(10), resolved=at(20), points=4, sprint_id=s2)
    await rows.item(alpha, type="bug", created=at(20), resolved=at(21))  # no sprint
    body = await ok(tenant, "sprints", scope="project", id="Alpha", **WINDOW)
    by_name = {s["name"]: s for s in body["sprints"]}
    assert by_name["S1"]["points_done"] == 8 and by_name["S1"]["items_done"] == 2
    assert by_name["S2"]["points_done"] == 4
    assert body["velocity"]["mean_points"] == 6
    assert body["velocity"]["coefficient_of_variation"] == 2 / 6
    assert (body["planned"], body["unplanned"]) == (3, 2)


async def test_objectives_crud_and_delivered(rows: Rows, tenant: TenantFixture,
                                             portfolio_app: Any) -> None:
    ids = await flow_scenario(rows)
    client = tenant.analyst_client
    created = await client.post("/api/v1/portfolio/objectives", json={
        "name": "Faster reviews", "projects": ["Beta"], "labels": ["tech-debt"],
        "epics": ["A-1"], "due_date": "2024-06-30"})
    objective = await created.get_json()
    assert created.status_code == 201, objective
    assert objective["projects"] == [ids["beta"]]
    delivered = await ok(tenant, f"objectives/{objective['id']}/delivered", **WINDOW)
    # B-1 (Beta), A-3 (label), A-1 (the epic itself): 3 of the 4 items finished
    assert delivered["items"] == 3 and delivered["share_of_all_items"] == 0.75
    assert delivered["by_work_type"] == {"feature": 1, "bug": 0, "debt": 1, "incident": 1}
    patched = await client.patch(f"/api/v1/portfolio/objectives/{objective['id']}",
                                 json={"labels": []})
    assert (await patched.get_json())["labels"] == []
    listed = await ok(tenant, "objectives")
    assert [o["id"] for o in listed["items"]] == [objective["id"]]
    # viewers read, never write; unknown projects and ids are refused
    assert (await tenant.viewer_client.post("/api/v1/portfolio/objectives",
                                            json={"name": "x"})).status_code == 403
    bad = await client.post("/api/v1/portfolio/objectives", json={"name": "x",
                                                                  "projects": ["nope"]})
    assert bad.status_code == 422
    assert (await client.get("/api/v1/portfolio/objectives/not-a-uuid")).status_code == 404
    # another tenant cannot see, change or delete it
    other = await make_tenant(portfolio_app)
    path = f"/api/v1/portfolio/objectives/{objective['id']}"
    assert (await other.analyst_client.get(path)).status_code == 404
    assert (await other.analyst_client.patch(path, json={"name": "mine"})).status_code == 404
    assert (await other.analyst_client.delete(path)).status_code == 404
    assert (await ok(other, "objectives"))["items"] == []
    assert (await client.delete(path)).status_code == 204
    assert (await client.get(path)).status_code == 404


async def test_objectives_page(rows: Rows, tenant: TenantFixture) -> None:
    made = []
    for n in range(5):
        response = await tenant.analyst_client.post("/api/v1/portfolio/objectives",
                                                    json={"name": f"o{n}"})
        made.append((await response.get_json())["id"])
    seen: list[str] = []
    cursor = None
    while True:
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await ok(tenant, "objectives", **query)
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == made
    bad = await tenant.viewer_client.get("/api/v1/portfolio/objectives",
                                         query_string={"cursor": "garbage"})
    assert bad.status_code == 400


async def test_trend_of_a_linear_series_and_its_chart(rows: Rows, tenant: TenantFixture) -> None:
    alpha = await rows.project("Alpha")
    # week k (k = 0..11) finishes 2k + 1 items: slope 2 per week exactly
    for week in range(12):
        for n in range(2 * week + 1):
            moment = at(7 * week + 1 + n / 100)
            await rows.item(alpha, created=moment - timedelta(hours=1), resolved=moment)
    await rows.refresh()
    query = {"metric": "portfolio.throughput", "start": "2024-01-01", "end": "2024-03-25",
             "interval": "week", "horizon": "4"}
    body = await ok(tenant, "trends", **query)
    assert [p["value"] for p in body["series"]] == [2 * k + 1 for k in range(12)]
    trend = body["trend"]
    assert abs(trend["slope"] - 2) < 1e-9 and trend["significant"]
    assert trend["direction"] == "improving"
    assert len(body["forecast"]["points"]) == 4
    first = body["forecast"]["points"][0]
    assert first["low95"] <= first["low80"] <= first["value"] <= first["high80"] <= first["high95"]
    assert abs(first["value"] - 25) < 1.5  # the next week of 2k + 1
    for image, magic in (("png", b"\x89PNG"), ("svg", b"<?xml")):
        response = await tenant.viewer_client.get("/api/v1/portfolio/chart",
                                                  query_string={**query, "format": image})
        assert response.status_code == 200
        assert (await response.get_data()).startswith(magic)
        assert response.content_type.startswith("image/")
    unsupported = await tenant.viewer_client.get("/api/v1/portfolio/trends", query_string={
        **query, "metric": "acme.incidents", "team": "x"})
    assert unsupported.status_code == 422


async def test_executive_view_with_a_third_party_kpi(
    rows: Rows, tenant: TenantFixture, acme: Acme
) -> None:
    alpha = await rows.project("Alpha")
    acme.incidents[(tenant.id, alpha)] = 4
    acme.escapes[(tenant.id, alpha)] = (1, 10)
    default = await ok(tenant, "executive", end="2024-04-01")
    assert default["default_set"]
    assert {k["metric"] for k in default["kpis"]} >= {"dora.lead_time_for_changes",
                                                      "portfolio.throughput"}
    targets = {k["metric"]: k["target"] for k in default["kpis"]}
    assert targets["dora.lead_time_for_changes"] == 86_400
    assert targets["portfolio.throughput"] is None
    assert {k["metric"]: k["level"] for k in default["kpis"]}["dora.lead_time_for_changes"] \
        == "no_data"
    response = await tenant.admin_client.put(
        f"/api/v1/admin/tenants/{tenant.id}/plugins/portfolio", json={"enabled": True, "config": {
            "executive_kpis": [{"metric": "acme.incidents", "target": 5},
                               {"metric": "acme.escape_rate", "target": 0.05},
                               {"metric": "portfolio.throughput"}]}})
    assert response.status_code == 200, await response.get_json()
    body = await ok(tenant, "executive", end="2024-04-03T12:00:00")
    # the 13 whole weeks before the week of the end
    assert body["window"]["start"].startswith("2024-01-01T00:00:00")
    assert body["window"]["end"].startswith("2024-04-01T00:00:00")
    kpis = {k["metric"]: k for k in body["kpis"]}
    assert len(kpis["acme.incidents"]["weekly"]) == 1  # acme answers one bucket
    assert len(kpis["portfolio.throughput"]["weekly"]) == 13
    assert not body["default_set"]
    assert kpis["acme.incidents"]["value"] == 4 and kpis["acme.incidents"]["level"] == "on_target"
    assert kpis["acme.escape_rate"]["value"] == 0.1
    assert kpis["acme.escape_rate"]["level"] == "off_target"
    assert kpis["portfolio.throughput"]["level"] == "no_target"
    assert kpis["acme.incidents"]["plugin"] == "acme"
    exported = await tenant.viewer_client.get("/api/v1/portfolio/export", query_string={
        "table": "executive", "end": "2024-04-01"})
    assert exported.content_type.startswith("text/csv")
    table = list(csv.DictReader(io.StringIO((await exported.get_data()).decode())))
    assert [row["metric"] for row in table] == ["acme.incidents", "acme.escape_rate",
                                                "portfolio.throughput"]
    refused = await tenant.admin_client.put(
        f"/api/v1/admin/tenants/{tenant.id}/plugins/portfolio",
        json={"enabled": True, "config": {"executive_kpis": [{"metric": ""}]}})
    assert refused.status_code == 422


async def test_exports_as_csv(rows: Rows, tenant: TenantFixture, acme: Acme) -> None:
    ids = await flow_scenario(rows)
    acme.incidents[(tenant.id, ids["alpha"])] = 2
    acme.incidents[(tenant.id, ids["beta"])] = 1
    response = await tenant.viewer_client.get("/api/v1/portfolio/export", query_string={
        "table": "aggregate", "metric": "acme.incidents", **WINDOW})
    table = list(csv.DictReader(io.StringIO((await response.get_data()).decode())))
    assert [(r["level"], r["name"], r["value"]) for r in table] == [
        ("project", "Alpha", "2.0"), ("project", "Beta", "1.0"), ("team", "alpha-team", "2.0"),
        ("tenant", "combined", "3.0"), ("tenant", "direct", "3.0")]
    aging = await tenant.viewer_client.get("/api/v1/portfolio/export", query_string={
        "table": "aging", **WINDOW})
    assert [r["key"] for r in csv.DictReader(io.StringIO((await aging.get_data()).decode()))
            ] == ["A-4"]
    missing = await tenant.viewer_client.get("/api/v1/portfolio/export",
                                             query_string={"table": "aggregate"})
    assert missing.status_code == 422


async def test_risks_with_evidence(rows: Rows, tenant: TenantFixture) -> None:
    ids = await flow_scenario(rows)
    for day in range(5):  # enough history to forecast from: 8 days with a completion
        await rows.item(ids["alpha"], created=at(-20), resolved=at(-10 + day))
    await tenant.analyst_client.post("/api/v1/portfolio/objectives", json={
        "name": "Ship alpha", "projects": ["Alpha"], "due_date": "2024-02-02"})
    body = await ok(tenant, "risks", **WINDOW)
    kinds = {flag["kind"]: flag for flag in body["flags"]}
    assert kinds["aging_work"]["evidence"]["count"] == 1
    # three open items, eight finished in forty days: not done a day after the end
    past_due = kinds["forecast_past_due"]
    assert past_due["evidence"]["remaining"] == 3 and past_due["subject"] == "Ship alpha"


async def test_a_sole_contributor_on_an_active_repository(rows: Rows,
                                                         tenant: TenantFixture) -> None:
    solo = await rows.repository("solo")
    shared = await rows.repository("shared")
    ann, bob, cat = [await rows.person(f"{n}@example.com") for n in ("ann", "bob", "cat")]
    for day in range(3):
        await rows.commit(solo, ann, at(day + 1))
    await rows.commit(solo, bob, at(5))
    for person in (ann, bob, cat, ann, bob, cat):  # two each: two people make half
        await rows.commit(shared, person, at(6))
    flags = [f for f in (await ok(tenant, "risks", **WINDOW))["flags"]
             if f["kind"] == "sole_contributor"]
    assert [(f["subject"], f["evidence"]["commits"]) for f in flags] == [("solo", 4)]
    assert flags[0]["evidence"]["metric"] == "github.contributor_absence_factor"


async def test_cycle_time_and_throughput_per_week_are_computed_in_sql(
        rows: Rows, tenant: TenantFixture) -> None:
    alpha = await rows.project("Alpha")
    hour = timedelta(hours=1)
    # week 1: cycles of 1, 2, 4 and 10 hours, and an item that started after it was
    # resolved (no cycle time, but finished); week 2: nothing; week 3: one item without
    # status history, from its creation in week 2 to three days later
    for k, hours in enumerate((1, 2, 4, 10)):
        created = at(1 + k)
        await rows.item(alpha, created=created, resolved=created + hours * hour,
                        changes=[(created, "In Progress")])
    await rows.item(alpha, created=at(2), resolved=at(3), changes=[(at(3) + hour, "In Progress")])
    await rows.item(alpha, created=at(13), resolved=at(16))
    await rows.refresh()
    window = {"start": "2024-01-01", "end": "2024-01-22", "interval": "week"}
    response = await tenant.viewer_client.get("/api/v1/metrics/portfolio.cycle_time",
                                              query_string=window)
    body = await response.get_json()
    assert response.status_code == 200, body
    h = 3600.0
    week1, week2, week3 = body["series"]
    # [1, 2, 4, 10] h: p75 at rank 2.25 = 4 + 0.25 * 6, p90 at rank 2.7 = 4 + 0.7 * 6
    assert week1["sample_size"] == 4 and week1["value"] == pytest.approx(3 * h)
    assert week1["percentiles"] == pytest.approx({"p50": 3 * h, "p75": 5.5 * h, "p90": 8.2 * h})
    assert week1["mean"] == pytest.approx(4.25 * h)
    assert week2["sample_size"] == 0 and week2["value"] is None and week2["mean"] is None
    assert week3["value"] == pytest.approx(72 * h) and week3["sample_size"] == 1
    # the whole window, [1, 2, 4, 10, 72] h: p90 at rank 3.6 = 10 + 0.6 * 62
    whole = body["value"]
    assert whole["sample_size"] == 5 and whole["value"] == pytest.approx(4 * h)
    assert whole["percentiles"] == pytest.approx({"p50": 4 * h, "p75": 10 * h, "p90": 47.2 * h})
    assert whole["mean"] == pytest.approx(17.8 * h)
    response = await tenant.viewer_client.get("/api/v1/metrics/portfolio.throughput",
                                              query_string=window)
    counts = await response.get_json()
    assert [v["value"] for v in counts["series"]] == [5, 0, 1] and counts["value"]["value"] == 6
