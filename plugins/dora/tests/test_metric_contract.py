"""DORA's metrics under the engine's metric contract: the catalog, ``compute`` against the
DORA routes, and against a brute-force computation over the raw ETL rows."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dora_rows import PRODUCTION, Rows, percentile
from pulse_etl import model
from sqlalchemy import select
from test_metrics import core_scenario, ok

from pulse_engine import MetricComputation, MetricQuery
from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture

METRICS = (
    "deployment_frequency", "lead_time_for_changes", "change_failure_rate",
    "failed_deployment_recovery_time", "time_to_restore_service", "deployment_rework_rate",
)
KINDS = {
    "deployment_frequency": "count", "lead_time_for_changes": "distribution",
    "change_failure_rate": "ratio", "failed_deployment_recovery_time": "distribution",
    "time_to_restore_service": "distribution", "deployment_rework_rate": "ratio",
}
NUMERATORS = {"change_failure_rate": "failed_deployments",
              "deployment_rework_rate": "rework_deployments"}


async def compute(engine: PulseEngine, metric: str, query: MetricQuery) -> MetricComputation:
    """``dora.<metric>`` computed through the contract, checked against its kind."""
    definition = engine.metrics.get(f"dora.{metric}")
    assert definition is not None
    return definition.check(await definition.compute(engine, query))


def as_contract(metric: str, point: dict[str, Any]) -> dict[str, Any]:
    """What the contract's value of a route's point must be (as JSON)."""
    kind = KINDS[metric]
    return {
        "start": point.get("start"), "end": point.get("end"), "value": point["value"],
        "sample_size": point["sample_size"],
        "numerator": point[NUMERATORS[metric]] if kind == "ratio" else None,
        "denominator": point["deployments"] if kind == "ratio" else None,
        "percentiles": {"p50": point["median"], "p75": point["p75"], "p90": point["p90"]}
        if kind == "distribution" else None,
        "mean": point["mean"] if kind == "distribution" else None,
    }


async def test_the_catalog_describes_each_metric(engine: PulseEngine) -> None:
    entries = {entry.name: entry for entry in engine.metrics.catalog() if entry.plugin == "dora"}
    assert {name.removeprefix("dora.") for name in entries} == set(METRICS)
    for name, entry in entries.items():
        metric = name.removeprefix("dora.")
        assert entry.kind == KINDS[metric]
        assert [f.name for f in entry.filters] == ["environment", "team", "project", "repository"]
        definition = engine.metrics.get(name)
        assert definition is not None
        assert set(definition.cache_tags) == {"etl.data", "dora.data"}
    assert entries["dora.deployment_frequency"].direction == "higher_is_better"
    assert entries["dora.lead_time_for_changes"].direction == "lower_is_better"


@pytest.mark.parametrize("interval", ["day", "week", "month", "all"])
async def test_compute_equals_the_routes(
    rows: Rows, dora_tenant: TenantFixture, engine: PulseEngine, interval: str
) -> None:
    await core_scenario(rows)
    # New York: the window starts at 05:00 UTC and spans a DST change
    window = {"start": "2024-01-02", "end": "2024-03-15", "tz": "America/New_York"}
    query = MetricQuery(
        dora_tenant.id, datetime(2024, 1, 2, 5, tzinfo=UTC), datetime(2024, 3, 15, 4, tzinfo=UTC),
        interval=interval,  # type: ignore[arg-type]
        tz="America/New_York", filters={"team": ("core",)},
    )
    summary = await ok(dora_tenant, "summary", team="core", **window)
    for metric in METRICS:
        result = await compute(engine, metric, query)
        series = await ok(dora_tenant, metric, interval=interval, team="core", **window)
        assert [value.model_dump(mode="json") for value in result.series] == [
            as_contract(metric, point) for point in series["points"]], metric
        whole = as_contract(metric, summary["metrics"][metric])
        assert result.value.model_dump(mode="json", exclude={"start", "end"}) == {
            name: value for name, value in whole.items() if name not in ("start", "end")}, metric
        assert result.value.start == query.start and result.value.end == query.end
        assert result.freshness.model_dump(mode="json") == summary["freshness"]


async def test_compute_refuses_what_the_routes_refuse(
    rows: Rows, dora_tenant: TenantFixture, engine: PulseEngine
) -> None:
    from pulse_engine import Problem

    await core_scenario(rows)
    query = MetricQuery(dora_tenant.id, datetime(2024, 1, 1, tzinfo=UTC),
                        datetime(2024, 2, 1, tzinfo=UTC), filters={"team": ("nobody",)})
    with pytest.raises(Problem) as refused:
        await compute(engine, "lead_time_for_changes", query)
    assert refused.value.status == 422
    assert [error["field"] for error in refused.value.extra["errors"]] == ["team"]


# --- brute force over the raw rows -----------------------------------------------------

START = datetime(2024, 1, 1, tzinfo=UTC)
DAYS = 56
LINK_WINDOW = timedelta(days=7)
HOTFIX_REF = "hotfix/x"


async def generate_history(rows: Rows, seed: int) -> None:
    """Eight weeks of three services: deployments to production, prod and staging (some
    failed, some hotfixes), the commits each shipped, and incidents (some naming a SHA, some
    of a service never deployed)."""
    rng = random.Random(seed)
    shipped: list[str] = []
    for service in ("api", "web", "jobs"):
        repository = await rows.repository(service)
        for day in range(DAYS):
            if rng.random() < 0.45:
                continue
            finished = START + timedelta(days=day, minutes=rng.randrange(24 * 60))
            environment = rng.choice(("production", "production", "prod", "staging"))
            result = "failure" if rng.random() < 0.15 else "success"
            shas: tuple[str, ...] = ()
            if result == "success":
                authored = [finished - timedelta(minutes=rng.randrange(-30, 5 * 24 * 60))
                            for _ in range(rng.randrange(1, 4))]
                shas = tuple([await rows.commit(repository, moment.strftime("%Y-%m-%d %H:%M"))
                              for moment in authored])
                shipped += shas
            await rows.deployment(
                repository, service, finished.strftime("%Y-%m-%d %H:%M"),
                environment=environment, result=result, shas=shas,
                ref=HOTFIX_REF if rng.random() < 0.1 else "main",
            )
        for _ in range(6):
            created = START + timedelta(minutes=rng.randrange(DAYS * 24 * 60))
            resolved = created + timedelta(minutes=rng.randrange(30, 40 * 60))
            await rows.incident(
                service, created.strftime("%Y-%m-%d %H:%M"),
                resolved.strftime("%Y-%m-%d %H:%M") if rng.random() < 0.85 else None,
                deployment_ref=rng.choice(shipped) if shipped and rng.random() < 0.3 else None,
            )
    for day in (3, 20, 41):  # a service never deployed: its incidents stay unlinked
        created = START + timedelta(days=day, hours=rng.randrange(24))
        await rows.incident("ghost", created.strftime("%Y-%m-%d %H:%M"),
                            (created + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M"))
    await rows.refresh()


@dataclass
class Raw:
    """The tenant's raw ETL rows the DORA metrics derive from."""

    deployments: list[Any]
    shipped: list[Any]
    commits: dict[tuple[str, str], Any]
    incidents: list[Any]


async def read_raw(rows: Rows) -> Raw:
    """Every raw row of the tenant (pulse-etl's tables, not DORA's facts)."""
    async with rows.engine.db.tenant_session(rows.tenant_id) as session:
        deployments = (await session.execute(select(model.deployments))).all()
        shipped = (await session.execute(select(model.deployment_commits))).all()
        commits = (await session.execute(select(model.commits))).all()
        incidents = (await session.execute(select(model.incidents))).all()
    return Raw(list(deployments), list(shipped),
               {(str(c.repository_id), c.sha): c for c in commits}, list(incidents))


def brute_force(raw: Raw, start: datetime, end: datetime) -> dict[str, dict[str, Any]]:
    """Every metric over ``[start, end)`` straight from METRICS.md's definitions."""
    production = [d for d in raw.deployments
                  if d.environment in PRODUCTION and d.result == "success"]
    by_id = {str(d.id): d for d in production}
    # a change counts once, at its first successful production deployment
    first: dict[tuple[str, str], Any] = {}
    for row in raw.shipped:
        deployment = by_id.get(str(row.deployment_id))
        key = (str(row.repository_id), row.sha)
        if deployment is not None and (
                key not in first or deployment.finished_at < first[key].finished_at):
            first[key] = deployment

    def link(incident: Any) -> Any:
        if incident.deployment_ref is not None:
            named = [deployment for (_, sha), deployment in first.items()
                     if sha == incident.deployment_ref]
            if named:
                return min(named, key=lambda d: d.finished_at)
        before = [d for d in production if d.service == incident.service
                  and incident.created_at_source - LINK_WINDOW < d.finished_at
                  <= incident.created_at_source]
        return max(before, key=lambda d: d.finished_at) if before else None

    links = {str(i.id): link(i) for i in raw.incidents}
    failed = {str(d.id) for d in links.values() if d is not None}
    in_window = [d for d in production if start <= d.finished_at < end]
    leads = []
    for key, deployment in first.items():
        commit = raw.commits[key]
        lead = (deployment.finished_at - commit.authored_at).total_seconds()
        if start <= deployment.finished_at < end and not commit.is_merge and lead > 0:
            leads.append(lead)
    resolved = [i for i in raw.incidents
                if i.resolved_at is not None and start <= i.resolved_at < end]
    restores = [(i.resolved_at - i.created_at_source).total_seconds() for i in resolved]
    recoveries = [(i.resolved_at - i.created_at_source).total_seconds() for i in resolved
                  if links[str(i.id)] is not None]

    def distribution(values: list[float]) -> dict[str, Any]:
        return {
            "value": percentile(values, 0.5) if values else None, "sample_size": len(values),
            "percentiles": {f"p{int(f * 100)}": percentile(values, f) if values else None
                            for f in (0.5, 0.75, 0.9)},
            "mean": sum(values) / len(values) if values else None,
        }

    def ratio(hits: int) -> dict[str, Any]:
        total = len(in_window)
        return {"value": hits / total if total else None, "sample_size": total,
                "numerator": hits, "denominator": total}

    return {
        "deployment_frequency": {"value": len(in_window) or None,
                                 "sample_size": len(in_window)},
        "lead_time_for_changes": distribution(leads),
        "change_failure_rate": ratio(sum(str(d.id) in failed for d in in_window)),
        "failed_deployment_recovery_time": distribution(recoveries),
        "time_to_restore_service": distribution(restores),
        "deployment_rework_rate": ratio(sum(d.ref == HOTFIX_REF for d in in_window)),
    }


def close_to(expected: dict[str, Any], actual: dict[str, Any]) -> None:
    """``actual`` has ``expected``'s fields, numbers equal to floating-point rounding."""
    for name, value in expected.items():
        if isinstance(value, dict):
            close_to(value, actual[name])
        elif isinstance(value, float):
            assert actual[name] == pytest.approx(value), name
        else:
            assert actual[name] == value, name


@pytest.mark.parametrize("seed", [3, 11])
async def test_compute_equals_a_brute_force_over_the_raw_rows(
    rows: Rows, dora_tenant: TenantFixture, engine: PulseEngine, seed: int
) -> None:
    await generate_history(rows, seed)
    raw = await read_raw(rows)
    end = START + timedelta(days=DAYS)
    query = MetricQuery(dora_tenant.id, START, end, interval="week")
    for metric in METRICS:
        result = await compute(engine, metric, query)
        close_to(brute_force(raw, START, end)[metric], result.value.model_dump())
        assert len(result.series) == DAYS // 7
        for value in result.series:
            assert value.start is not None and value.end is not None
            expected = brute_force(raw, value.start, value.end)[metric]
            close_to(expected, value.model_dump())
    sizes = {metric: (await compute(engine, metric, query)).value.sample_size
             for metric in METRICS}
    # the history exercises every metric, linked and unlinked incidents included
    assert all(sizes.values()), sizes
    assert sizes["failed_deployment_recovery_time"] < sizes["time_to_restore_service"]


async def test_the_host_serves_dora_metrics_as_the_dora_routes_compute_them(
    rows: Rows, dora_tenant: TenantFixture
) -> None:
    await core_scenario(rows)
    window = {"start": "2024-01-01", "end": "2024-02-01", "interval": "week", "team": "core"}
    response = await dora_tenant.viewer_client.get(
        "/api/v1/metrics/dora.lead_time_for_changes", query_string=window)
    answer = await response.get_json()
    assert response.status_code == 200, answer
    series = await ok(dora_tenant, "lead_time_for_changes", **window)
    assert answer["series"] == [as_contract("lead_time_for_changes", point)
                                for point in series["points"]]
    assert answer["freshness"] == series["freshness"]
    unsupported = await dora_tenant.viewer_client.get(
        "/api/v1/metrics/dora.change_failure_rate", query_string={"service": "api"})
    assert unsupported.status_code == 422
    assert [e["field"] for e in (await unsupported.get_json())["errors"]] == ["service"]
