"""Every endpoint on a hand-computed fixture: pull-request flow and its phases, reviews,
sizes, outcomes, open aging, review load and graph, contributors, silos, main developers,
churn, release cadence, branch lifetime; the bot pattern, the privacy setting, filters,
pages and tenant isolation.

The scenario (March 2026, UTC; repository ``svc``):

* PR 1 (Ada): first commit 03-01 10:00, opened 03-02 10:00, Bob requests changes 03-02
  14:00 and approves 03-03 10:00, merged 03-03 12:00, deployed to production 03-03 18:00;
  30+10 lines, 3 files. coding 24 h, pickup 4 h, review 22 h, deploy 6 h, cycle 56 h,
  time to merge 50 h, 2 rounds.
* PR 2 (Cy): opened 03-10 09:00, Ada comments 03-10 10:00, merged 03-11 09:00, not
  deployed; 5 lines, 1 file. coding 0, pickup 1 h, review 23 h, to merge 24 h, 0 rounds.
* PR 3 (Ada): opened 03-12 09:00, Ada reviews it herself 03-12 14:00 (not a review),
  merged 03-12 15:00 without review; 400 lines, 12 files. to merge 6 h.
* PR 4 (dependabot[bot]): opened and merged 03-05, reviewed by Bob: a bot's, left out.
* PR 5 (Bob): opened 03-15 09:00, reviewed by renovate[bot] (left out), closed 03-16.
* PR 6 (Cy): opened 03-20 08:00, open. PR 7 (Ada): opened 02-01, open. PR 8 (Bob): opened
  03-25 00:00, merged 04-02 (after the window): open at its end.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from github_rows import Rows, at, percentile
from pulse_etl import model
from pulse_github.plugin import FACTS
from quart import Quart
from sqlalchemy import text

from pulse_engine import MetricQuery
from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture, make_tenant

PREFIX = "/api/v1/analytics/github"
MARCH = {"start": "2026-03-01", "end": "2026-04-01"}
H = 3600.0


@dataclass
class Scenario:
    repository: str
    other_repository: str
    ada: str
    bob: str
    cy: str
    bot: str
    prs: dict[int, str]


async def build(engine: PulseEngine, tenant_id: str) -> Scenario:
    rows = Rows(engine, tenant_id)
    project = await rows.add(model.projects, name="Shop", key="SHOP")
    repo = await rows.repository("svc", project)
    other = await rows.repository("other")
    ada, ada_id = await rows.person("Ada", "ada", "ada@example.test")
    ada_git = await rows.identity(ada, "ada-git")  # a second identity, the same person
    bob, bob_id = await rows.person("Bob", "bob", "bob@example.test")
    cy, cy_id = await rows.person("Cy", "cy", "cy@example.test")
    bot, bot_id = await rows.person("dependabot[bot]", "dependabot[bot]")
    _renovate, renovate_id = await rows.person("renovate[bot]", "renovate[bot]")

    c1 = await rows.commit(repo, ada_git, "2026-03-01 10:00", tz=120, pr=1,
                           files=(("src/a.py", 20, 5), ("src/b.py", 10, 5)))
    merge1 = await rows.commit(repo, bob_id, "2026-03-03 12:00", merge=True, pr=1)
    await rows.commit(repo, cy_id, "2026-03-10 08:30", tz=330,
                      files=(("src/a.py", 3, 0), ("docs/x.md", 2, 0)))
    await rows.commit(repo, ada_id, "2026-03-12 13:00", tz=-300,
                      files=(("src/a.py", 1, 1), ("src/b.py", 4, 0)))
    await rows.commit(other, bob_id, "2026-03-15 09:00", files=(("main.go", 7, 2),))
    assert c1

    prs: dict[int, str] = {}
    prs[1] = await rows.pull_request(repo, 1, ada_id, "2026-03-02 10:00",
                                     merged="2026-03-03 12:00", additions=30, deletions=10,
                                     files=3, merge_sha=merge1, head_ref="feature-a")
    await rows.review(prs[1], bob_id, "2026-03-02 14:00", "changes_requested")
    await rows.review(prs[1], bob_id, "2026-03-03 10:00", "approved")
    await rows.deployment(repo, "2026-03-03 18:00", (merge1,))
    await rows.deployment(repo, "2026-03-03 17:00", (merge1,), environment="staging")
    prs[2] = await rows.pull_request(repo, 2, cy_id, "2026-03-10 09:00",
                                     merged="2026-03-11 09:00", additions=5, deletions=0,
                                     files=1, merge_sha="f" * 40)
    await rows.comment(prs[2], ada_id, "2026-03-10 10:00")
    prs[3] = await rows.pull_request(repo, 3, ada_id, "2026-03-12 09:00",
                                     merged="2026-03-12 15:00", additions=300, deletions=100,
                                     files=12, head_ref="feature-a")
    await rows.review(prs[3], ada_git, "2026-03-12 14:00", "approved")
    prs[4] = await rows.pull_request(repo, 4, bot_id, "2026-03-05 01:00",
                                     merged="2026-03-05 02:00", additions=1, deletions=1,
                                     files=1)
    await rows.review(prs[4], bob_id, "2026-03-05 01:30", "approved")
    prs[5] = await rows.pull_request(repo, 5, bob_id, "2026-03-15 09:00",
                                     closed="2026-03-16 09:00")
    await rows.review(prs[5], renovate_id, "2026-03-15 10:00", "commented")
    prs[6] = await rows.pull_request(repo, 6, cy_id, "2026-03-20 08:00")
    prs[7] = await rows.pull_request(repo, 7, ada_id, "2026-02-01 00:00")
    prs[8] = await rows.pull_request(repo, 8, bob_id, "2026-03-25 00:00",
                                     merged="2026-04-02 00:00")
    await rows.deployment(other, "2026-03-10 00:00", ())
    await rows.deployment(other, "2026-03-20 00:00", ())
    await rows.deployment(other, "2026-03-24 00:00", ())
    for facts in FACTS:  # the rows were written past the ETL loads
        await facts.refresh(engine, tenant_id)
    return Scenario(repo, other, ada, bob, cy, bot, prs)


@pytest.fixture
async def scenario(engine: PulseEngine, gh_tenant: TenantFixture) -> Scenario:
    return await build(engine, gh_tenant.id)


async def get(client: Any, path: str, **params: str) -> Any:
    response = await client.get(f"{PREFIX}/{path}", query_string=params)
    return response


async def ok(client: Any, path: str, **params: str) -> dict[str, Any]:
    response = await get(client, path, **params)
    body = await response.get_json()
    assert response.status_code == 200, body
    return dict(body)


async def eventually(read: Any, check: Any, seconds: float = 30.0) -> bool:
    """Whether ``check(await read())`` holds within ``seconds`` of wall time (a bound on a
    queued refresh, not a speed target: reads themselves take time on a loaded machine)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        if check(await read()):
            return True
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)


def stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"median": None, "p75": None, "p90": None, "mean": None, "sample_size": 0}
    return {"median": percentile(values, 0.5), "p75": percentile(values, 0.75),
            "p90": percentile(values, 0.9), "mean": sum(values) / len(values),
            "sample_size": len(values)}


async def test_cycle_time_and_phases(scenario: Scenario, gh_tenant: TenantFixture) -> None:
    body = await ok(gh_tenant.viewer_client, "pull-requests/cycle-time", **MARCH)
    [point] = body["series"]
    assert point["merged"] == 3  # the bot's pull request is left out
    assert point["cycle_time"] == stats([56 * H])
    assert point["time_to_merge"] == stats([50 * H, 24 * H, 6 * H])
    assert point["phases"] == {
        "coding": stats([24 * H, 0, 0]), "pickup": stats([4 * H, 1 * H]),
        "review": stats([22 * H, 23 * H]), "deploy": stats([6 * H])}
    weekly = await ok(gh_tenant.viewer_client, "pull-requests/cycle-time", interval="week",
                      **MARCH)
    # weeks from Monday 2026-02-23: PR 1 merged in the week of 03-02, PR 2 and 3 of 03-09
    assert [(p["start"][:10], p["merged"]) for p in weekly["series"]] == [
        ("2026-03-01", 0), ("2026-03-02", 1), ("2026-03-09", 2), ("2026-03-16", 0),
        ("2026-03-23", 0), ("2026-03-30", 0)]
    assert sum(p["merged"] for p in weekly["series"]) == point["merged"]


async def test_reviews_sizes_outcomes_aging(scenario: Scenario,
                                            gh_tenant: TenantFixture) -> None:
    client = gh_tenant.viewer_client
    reviews = await ok(client, "pull-requests/reviews", **MARCH)
    [first] = reviews["time_to_first_review"]
    # opened in March, not a bot's: 1, 2, 3, 5, 6, 8; reviewed by someone else: 1 and 2
    assert (first["opened"], first["without_review"]) == (6, 4)
    assert {k: first[k] for k in ("median", "p75", "p90", "mean", "sample_size")} == stats(
        [4 * H, 1 * H])
    [rounds] = reviews["review_rounds"]
    assert rounds["merged"] == 3
    assert {k: rounds[k] for k in ("median", "p75", "p90", "mean", "sample_size")} == stats(
        [2, 0, 0])

    sizes = await ok(client, "pull-requests/size", **MARCH)
    assert sizes["merged"] == 3 and sizes["unsized"] == 0
    assert {b["bucket"]: b["count"] for b in sizes["lines"]} == {
        "xs": 1, "s": 1, "m": 0, "l": 1, "xl": 0}
    assert {b["bucket"]: b["count"] for b in sizes["files"]} == {
        "1": 1, "2-5": 1, "6-10": 0, "11-20": 1, "21+": 0}
    versus = {b["bucket"]: b["time_to_merge"]["median"] for b in sizes["size_vs_time"]}
    assert versus == {"xs": 24 * H, "s": 50 * H, "m": None, "l": 6 * H, "xl": None}

    [outcome] = (await ok(client, "pull-requests/outcomes", **MARCH))["series"]
    assert outcome == {"start": outcome["start"], "end": outcome["end"], "merged": 3,
                       "closed_unmerged": 1, "merge_rate": 0.75, "merged_without_review": 1,
                       "merged_without_review_rate": 1 / 3}

    aging = await ok(client, "pull-requests/open-aging", limit="2", **MARCH)
    end = at("2026-04-01 00:00")
    ages = {7: (end - at("2026-02-01 00:00")).total_seconds(),
            6: (end - at("2026-03-20 08:00")).total_seconds(),
            8: (end - at("2026-03-25 00:00")).total_seconds()}
    assert aging["open"] == 3 and aging["median_age"] == percentile(list(ages.values()), 0.5)
    assert {b["bucket"]: b["count"] for b in aging["buckets"]} == {
        "<1d": 0, "1-3d": 0, "3-7d": 0, "7-14d": 2, "14-30d": 0, ">30d": 1}
    assert [(i["number"], i["age"]) for i in aging["items"]] == [(7, ages[7]), (6, ages[6])]
    rest = await ok(client, "pull-requests/open-aging", cursor=aging["next_cursor"], **MARCH)
    assert [(i["number"], i["age"]) for i in rest["items"]] == [(8, ages[8])]
    assert rest["next_cursor"] is None


async def test_review_load_graph_and_contributors(scenario: Scenario,
                                                  gh_tenant: TenantFixture) -> None:
    client = gh_tenant.analyst_client
    load = await ok(client, "reviews/load", **MARCH)
    # Bob's two reviews of PR 1 (his review of the bot's PR 4 and Ada's of her own PR 3
    # are left out; a review comment is not a review)
    assert [(i["person"]["name"], i["reviews_given"], i["pull_requests_reviewed"],
             i["reviews_received"]) for i in load["items"]] == [
        ("Bob", 2, 1, 0), ("Ada", 0, 0, 2)]
    graph = await ok(client, "reviews/graph", **MARCH)
    assert graph["edges"] == [{"reviewer": scenario.bob, "author": scenario.ada, "weight": 2}]
    assert {n["person"]["name"]: (n["given"], n["received"]) for n in graph["nodes"]} == {
        "Ada": (0, 2), "Bob": (2, 0)}

    people = await ok(client, "contributors", **MARCH)
    found = {i["person"]["name"]: {k: v for k, v in i.items() if k != "person"}
             for i in people["items"]}
    assert people["total_commits"] == 5
    assert found["Ada"] == {"commits": 2, "non_merge_commits": 2, "additions": 35,
                            "deletions": 11, "prs_opened": 2, "prs_merged": 2, "reviews": 0,
                            "active_days": 3}  # 03-01 (commit), 03-02 (PR 1), 03-12 (both)
    assert found["Bob"] == {"commits": 2, "non_merge_commits": 1, "additions": 7,
                            "deletions": 2, "prs_opened": 2, "prs_merged": 0, "reviews": 3,
                            "active_days": 5}
    assert found["Cy"]["commits"] == 1 and found["Cy"]["prs_opened"] == 2
    # bots are contributors too (their commits are in git log); here a PR of dependabot
    assert found["dependabot[bot]"]["prs_opened"] == 1
    order = [(-i["commits"], i["person"]["id"]) for i in people["items"]]
    assert order == sorted(order)  # commits descending, then id
    patterns = await ok(client, "commit-patterns", **MARCH)
    assert patterns["total"] == people["total_commits"]
    cells = {(d, h): n for d, row in enumerate(patterns["heatmap"]) for h, n in enumerate(row)
             if n}
    # 03-01 is a Sunday: 10:00 UTC at +02:00 is 12; 03-03 12:00 UTC (Tue); 03-10 08:30 at
    # +05:30 is 14:00 (Tue); 03-12 13:00 at -05:00 is 08:00 (Thu); 03-15 09:00 (Sun)
    assert cells == {(6, 12): 1, (1, 12): 1, (1, 14): 1, (3, 8): 1, (6, 9): 1}


async def test_repository_analytics(scenario: Scenario, gh_tenant: TenantFixture) -> None:
    client = gh_tenant.analyst_client
    spots = await ok(client, "hotspots", **MARCH)
    found = [(i["repository"]["name"], i["path"], i["commits"], i["authors"], i["additions"],
              i["deletions"]) for i in spots["items"]]
    assert found[:2] == [("svc", "src/a.py", 3, 2, 24, 6), ("svc", "src/b.py", 2, 1, 14, 5)]
    assert sorted(found[2:]) == [("other", "main.go", 1, 1, 7, 2), ("svc", "docs/x.md", 1, 1, 2, 0)]
    silos = await ok(client, "knowledge-silos", **MARCH)
    assert [(i["path"], i["commits"], i["person"]["name"]) for i in silos["items"]] == [
        ("src/b.py", 2, "Ada")]
    dirs = await ok(client, "knowledge-silos", kind="directory", min_commits="1", **MARCH)
    assert sorted((i["path"], i["commits"]) for i in dirs["items"]) == [
        ("", 1), ("docs", 1)]
    owners = await ok(client, "main-developers", **MARCH)
    assert [(i["path"], i["main_developer"]["name"], i["added"], i["total_added"], i["authors"])
            for i in owners["items"] if i["repository"]["name"] == "svc"] == sorted([
        ("docs/x.md", "Cy", 2, 2, 1), ("src/a.py", "Ada", 21, 24, 2),
        ("src/b.py", "Ada", 14, 14, 1)])
    coupling = await ok(client, "change-coupling", min_revs="2", min_shared_revs="2",
                        **MARCH)
    assert [(i["path"], i["coupled_path"], i["shared_commits"], i["degree"])
            for i in coupling["items"]] == [("src/a.py", "src/b.py", 2, 2 / 2.5)]
    assert (await ok(client, "change-coupling", **MARCH))["items"] == []  # code-maat's 5

    [churn] = (await ok(client, "repositories/churn", **MARCH))["series"]
    assert {k: churn[k] for k in ("commits", "additions", "deletions", "files_changed")} == {
        "commits": 4, "additions": 47, "deletions": 13, "files_changed": 7}
    cadence = await ok(client, "repositories/release-cadence", **MARCH)
    assert cadence["series"][0]["releases"] == 4  # staging is not production
    assert [(r["repository"]["name"], r["releases"], r["median_seconds_between"])
            for r in cadence["repositories"]] == [
        ("other", 3, percentile([10 * 24 * H, 4 * 24 * H], 0.5)), ("svc", 1, None)]
    [life] = (await ok(client, "repositories/branch-lifetime", **MARCH))["series"]
    # feature-a: PR 1 (first commit 03-01 10:00) and PR 3 (merged 03-12 15:00);
    # branch-2 (03-10 09:00 to 03-11 09:00); branch-5 (03-15 09:00 to 03-16 09:00)
    assert (life["branches"], life["merged"]) == (3, 2)
    assert {k: life[k] for k in ("median", "p75", "p90", "mean", "sample_size")} == stats(
        [(at("2026-03-12 15:00") - at("2026-03-01 10:00")).total_seconds(), 24 * H, 24 * H])


async def test_filters_pages_and_activity(scenario: Scenario, gh_tenant: TenantFixture) -> None:
    client = gh_tenant.analyst_client
    only_other = await ok(client, "contributors", repository="other", **MARCH)
    assert [(i["person"]["name"], i["commits"]) for i in only_other["items"]] == [("Bob", 1)]
    by_project = await ok(client, "pull-requests/outcomes", project="SHOP", **MARCH)
    assert by_project["series"][0]["merged"] == 3
    ada = await ok(client, "contributors", person="ada@example.test", **MARCH)
    assert [i["person"]["id"] for i in ada["items"]] == [scenario.ada]
    whole = await ok(client, "contributors", **MARCH)
    first = await ok(client, "contributors", limit="1", **MARCH)
    second = await ok(client, "contributors", limit="1", cursor=first["next_cursor"], **MARCH)
    assert first["items"] + second["items"] == whole["items"][:2]
    assert {i["person"]["name"] for i in whole["items"][:2]} == {"Ada", "Bob"}
    activity = await ok(client, "contributors/activity", interval="week", person="cy",
                        **MARCH)
    [cy] = activity["items"]
    assert [(p["start"][:10], p["commits"], p["prs_opened"]) for p in cy["series"]
            if p["commits"] or p["prs_opened"]] == [("2026-03-09", 1, 1), ("2026-03-16", 0, 1)]
    changes = await ok(client, "contributors/changes", start="2026-03-08", end="2026-03-15")
    # in 03-08..03-15: Cy and Ada commit; in 03-01..03-08: Ada and Bob (the merge)
    assert changes["new"]["count"] == 1 and changes["new"]["people"][0]["name"] == "Cy"
    assert changes["departed"]["count"] == 1
    assert changes["departed"]["people"][0]["name"] == "Bob"


async def test_absence_factor(scenario: Scenario, gh_tenant: TenantFixture) -> None:
    body = await ok(gh_tenant.analyst_client, "contributor-absence-factor", **MARCH)
    # non-merge commits: Ada 2, Cy 1, Bob 1 -> Ada alone makes half
    assert (body["value"], body["commits"]) == (1, 4)
    assert [p["person"]["name"] for p in body["people"]] == ["Ada"]
    lines = await ok(gh_tenant.analyst_client, "contributor-absence-factor", by="lines",
                     **MARCH)
    # lines: Ada 25 + 21... Ada 46, Bob 9, Cy 5 of 60: Ada alone
    assert (lines["value"], lines["total_weight"]) == (1, 60)


async def test_privacy_setting(scenario: Scenario, gh_tenant: TenantFixture) -> None:
    viewer = gh_tenant.viewer_client
    for path in ("contributors", "reviews/load", "reviews/graph", "main-developers",
                 "contributors/activity"):
        response = await get(viewer, path, **MARCH)
        assert response.status_code == 403, path
        assert response.content_type == "application/problem+json"
    assert (await get(viewer, "hotspots", person="ada", **MARCH)).status_code == 403
    hidden = await ok(viewer, "contributor-absence-factor", **MARCH)
    assert (hidden["value"], hidden["people"], hidden["people_hidden"]) == (1, [], True)
    silos = await ok(viewer, "knowledge-silos", **MARCH)
    assert [i["person"] for i in silos["items"]] == [None]
    changes = await ok(viewer, "contributors/changes", **MARCH)
    assert changes["new"]["people"] is None and changes["new"]["count"] >= 1

    # the tenant opens breakdowns to viewers, then closes them to everyone
    url = f"/api/v1/admin/tenants/{gh_tenant.id}/plugins/github"
    opened = await gh_tenant.admin_client.put(url, json={
        "enabled": True, "config": {"person_breakdown_roles": ["viewer", "analyst", "admin"]}})
    assert opened.status_code == 200, await opened.get_json()
    # cached answers are dropped when the configuration-change event arrives
    assert await eventually(lambda: ok(viewer, "contributor-absence-factor", **MARCH),
                            lambda body: body["people_hidden"] is False)
    assert (await get(viewer, "contributors", **MARCH)).status_code == 200
    closed = await gh_tenant.admin_client.put(url, json={
        "enabled": True, "config": {"person_breakdown_roles": []}})
    assert closed.status_code == 200
    assert (await get(gh_tenant.admin_client, "contributors", **MARCH)).status_code == 403
    assert (await get(viewer, "contributors", **MARCH)).status_code == 403
    bad = await gh_tenant.admin_client.put(url, json={
        "enabled": True, "config": {"person_breakdown_roles": ["owner"]}})
    assert bad.status_code == 422


async def refreshed(engine: PulseEngine, tenant_id: str) -> dict[str, Any]:
    """When each of the tenant's facts was last refreshed."""
    async with engine.db.tenant_session(tenant_id) as session:
        return {row.facts: row.refreshed_at for row in await session.execute(
            text("SELECT facts, refreshed_at FROM facts_refresh_state"))}


async def test_bot_pattern_is_a_tenant_setting(scenario: Scenario, engine: PulseEngine,
                                               gh_tenant: TenantFixture) -> None:
    before = await refreshed(engine, gh_tenant.id)
    assert set(before) == {"github", "github_files"}
    url = f"/api/v1/admin/tenants/{gh_tenant.id}/plugins/github"
    response = await gh_tenant.admin_client.put(url, json={
        "enabled": True, "config": {"bot_patterns": ["^cy$"]}})
    assert response.status_code == 200

    async def time_to_merge() -> Any:
        [point] = (await ok(gh_tenant.viewer_client, "pull-requests/cycle-time",
                            **MARCH))["series"]
        return point["time_to_merge"]

    # the facts are recomputed with the new patterns (queued on the configuration change)
    assert await eventually(time_to_merge, lambda found: found == stats([50 * H, 6 * H, 1 * H]))
    [outcome] = (await ok(gh_tenant.viewer_client, "pull-requests/outcomes", **MARCH))["series"]
    # dependabot counts now (merged), Cy does not (PR 2 merged): still 3 merged
    assert outcome["merged"] == 3
    # the per-pull-request facts were recomputed; the per-file facts, which no setting
    # moves, were not
    assert await engine.queue.wait_idle(30)
    after = await refreshed(engine, gh_tenant.id)
    assert after["github"] > before["github"]
    assert after["github_files"] == before["github_files"]
    bad = await gh_tenant.admin_client.put(url, json={
        "enabled": True, "config": {"bot_patterns": ["("]}})
    assert bad.status_code == 422


async def test_tenant_isolation(scenario: Scenario, github_app: Quart,
                                gh_tenant: TenantFixture) -> None:
    other = await make_tenant(github_app)
    client = other.analyst_client
    # the other tenant's repository and person ids name nothing here
    for name, value in (("repository", scenario.repository), ("person", scenario.ada),
                        ("repository", "svc")):
        response = await get(client, "hotspots", **{name: value}, **MARCH)
        assert response.status_code == 422, (name, await response.get_json())
    for path in ("contributors", "hotspots", "reviews/load", "main-developers",
                 "knowledge-silos", "change-coupling"):
        assert (await ok(client, path, **MARCH))["items"] == [], path
    assert (await ok(client, "commit-patterns", **MARCH))["total"] == 0
    assert (await ok(client, "pull-requests/outcomes", **MARCH))["series"][0]["merged"] == 0
    assert (await ok(client, "pull-requests/open-aging", **MARCH))["open"] == 0
    # a cursor of the first tenant's list shows the second tenant nothing of the first's
    first = await ok(gh_tenant.analyst_client, "contributors", limit="1", **MARCH)
    page = await ok(client, "contributors", cursor=first["next_cursor"], **MARCH)
    assert page["items"] == []


@pytest.mark.parametrize(("path", "params", "field"), [
    ("hotspots", {"start": "2026-03-10", "end": "2026-03-01"}, "end"),
    ("hotspots", {"start": "2020-01-01", "end": "2026-01-01"}, "start"),
    ("hotspots", {"start": "nope"}, "start"),
    ("hotspots", {"tz": "Mars/Olympus"}, "tz"),
    ("hotspots", {"limit": "0"}, "limit"),
    ("hotspots", {"project": "nope"}, "project"),
    ("pull-requests/cycle-time", {"interval": "hour"}, "interval"),
    ("hotspots", {"person": "nobody@example.test"}, "person"),
    ("hotspots", {"end": "2300-01-01"}, "end"),
    ("change-coupling", {"min_degree": "2"}, "min_degree"),
    ("change-coupling", {"min_degree": "nan"}, "min_degree"),
    ("contributor-absence-factor", {"by": "stars"}, "by"),
    ("knowledge-silos", {"kind": "module"}, "kind"),
    ("hotspots", {"unknown": "1"}, "unknown"),
])
async def test_bad_input_is_a_named_422(gh_tenant: TenantFixture, path: str,
                                        params: dict[str, str], field: str) -> None:
    response = await get(gh_tenant.analyst_client, path, **params)
    body = await response.get_json()
    assert response.status_code == 422, body
    assert response.content_type == "application/problem+json"
    assert field in [error["field"] for error in body["errors"]], body


@pytest.mark.parametrize("cursor", ["x", "WyJhIl0", "WzEsMl0", "W251bGwsIm5vcGUiXQ"])
async def test_bad_cursors_are_400(gh_tenant: TenantFixture, cursor: str) -> None:
    for path in ("contributors", "hotspots", "change-coupling", "pull-requests/open-aging",
                 "main-developers"):
        response = await get(gh_tenant.analyst_client, path, cursor=cursor)
        assert response.status_code == 400, (path, await response.get_json())
        assert response.content_type == "application/problem+json"


async def test_metrics_equal_the_routes(scenario: Scenario, engine: PulseEngine,
                                        gh_tenant: TenantFixture) -> None:
    client = gh_tenant.viewer_client

    async def metric(name: str, **params: str) -> dict[str, Any]:
        response = await client.get(f"/api/v1/metrics/github.{name}",
                                    query_string={**MARCH, **params})
        body = await response.get_json()
        assert response.status_code == 200, body
        return dict(body)

    cycle = (await ok(client, "pull-requests/cycle-time", **MARCH))["series"][0]
    to_merge = (await metric("pr_time_to_merge"))["value"]
    assert (to_merge["value"], to_merge["sample_size"]) == (
        cycle["time_to_merge"]["median"], cycle["time_to_merge"]["sample_size"])
    assert to_merge["percentiles"]["p90"] == cycle["time_to_merge"]["p90"]
    first = (await metric("pr_time_to_first_review"))["value"]
    assert (first["value"], first["sample_size"]) == (2.5 * H, 2)
    unreviewed = (await metric("prs_merged_without_review"))["value"]
    assert (unreviewed["numerator"], unreviewed["denominator"]) == (1, 3)
    commits = await metric("commits", interval="week")
    assert commits["value"]["value"] == 5
    assert sum(p["value"] for p in commits["series"]) == 5
    absence = (await metric("contributor_absence_factor"))["value"]
    assert (absence["value"], absence["sample_size"]) == (1, 4)
    only_other = (await metric("commits", repository="other"))["value"]
    assert only_other["value"] == 1
    # the observations behind a distribution, for medians over several scopes
    definition = engine.metrics.get("github.pr_time_to_merge")
    assert definition is not None and definition.samples is not None
    samples = await definition.samples(engine, MetricQuery(
        tenant_id=gh_tenant.id, start=at("2026-03-01 00:00"), end=at("2026-04-01 00:00")))
    assert sorted(samples.values) == [6 * H, 24 * H, 50 * H]


async def test_health_reports_counts_and_reasons(engine: PulseEngine,
                                                 gh_tenant: TenantFixture) -> None:
    before = (await engine.health.plugin_health("github"))["checks"]
    rows = Rows(engine, gh_tenant.id)
    repo = await rows.repository("quiet")
    _, author = await rows.person("Quiet", "quiet")
    await rows.commit(repo, author, "2020-01-01 00:00", files=(("a", 1, 0),))
    now = datetime.now(UTC)
    await rows.pull_request(repo, 1, author,
                            (now - timedelta(days=3)).strftime("%Y-%m-%d %H:%M"),
                            merged=(now - timedelta(days=2)).strftime("%Y-%m-%d %H:%M"))
    document = await engine.health.plugin_health("github")
    checks = document["checks"]
    quiet = checks["review_data"]
    assert quiet["status"] == "degraded"
    assert quiet["tenants_without_reviews"] == before["review_data"][
        "tenants_without_reviews"] + 1
    assert "token" in quiet["reason"]
    fresh = checks["freshness"]
    assert fresh["status"] == "degraded" and "ETL jobs" in fresh["reason"]
    commits = {s["source"]: s for s in fresh["sources"] if s["kind"] == "commit"}
    assert commits["test"]["stale_tenants"] >= 1
    assert gh_tenant.id not in str(document)
