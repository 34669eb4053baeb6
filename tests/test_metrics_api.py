"""The host's metric routes: the catalog, any metric's read, and what they refuse."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fixtures.plugin_harness import fresh_database
from quart import Quart

from pulse_engine import (
    Freshness,
    MetricComputation,
    MetricDefinition,
    MetricFilter,
    MetricQuery,
    MetricValue,
    hookimpl,
)
from pulse_engine.queryparams import known_zones
from pulse_engine.settings import Settings
from pulse_engine.testing import TenantFixture, make_settings, make_tenant, running_app

DATA_UNTIL = datetime(2026, 3, 1, tzinfo=UTC)


class RatioProbe:
    """A plugin with one ratio metric that records every query it is asked."""

    def __init__(self) -> None:
        self.queries: list[MetricQuery] = []
        self.pending = False

    async def compute(self, engine: Any, query: MetricQuery) -> MetricComputation:
        self.queries.append(query)
        value = MetricValue(
            start=query.start, end=query.end, value=0.25, sample_size=8, numerator=2,
            denominator=8,
        )
        return MetricComputation(
            value, [value], Freshness(data_until=DATA_UNTIL, refresh_pending=self.pending)
        )

    @hookimpl
    def register_metrics(self) -> list[MetricDefinition]:
        return [
            MetricDefinition(
                name="probe.failure_share",
                unit="ratio",
                kind="ratio",
                description="Share of failures.",
                higher_is_better=False,
                compute=self.compute,
                filters=(MetricFilter(name="team", description="Team names."),),
                cache_tags=("probe-data",),
            )
        ]


class LyingProbe:
    """A plugin whose ratio metric leaves out its numerator: a broken contract."""

    @hookimpl
    def register_metrics(self) -> list[MetricDefinition]:
        async def compute(engine: Any, query: MetricQuery) -> MetricComputation:
            value = MetricValue(value=0.5, sample_size=2)
            return MetricComputation(value, [], Freshness(data_until=None, refresh_pending=False))

        return [MetricDefinition("liar.share", "ratio", "ratio", "Broken.", False, compute)]


@pytest.fixture(scope="module")
async def metrics_database_url(pulse_database_url: str) -> AsyncIterator[str]:
    async with fresh_database(pulse_database_url) as url:
        yield url


@pytest.fixture
def settings(metrics_database_url: str, tmp_path: Path) -> Settings:
    return make_settings(metrics_database_url, tmp_path)


@pytest.fixture
async def probe_app(settings: Settings) -> AsyncIterator[tuple[Quart, RatioProbe, TenantFixture]]:
    probe = RatioProbe()
    async with running_app(
        settings, plugins={"probe": probe, "liar": LyingProbe()}, load_entry_points=False
    ) as app:
        yield app, probe, await make_tenant(app)


async def test_catalog_lists_metrics_with_their_contract(probe_app: Any) -> None:
    app, _probe, tenant = probe_app
    response = await tenant.viewer_client.get("/api/v1/metrics")
    assert response.status_code == 200
    entries = {entry["name"]: entry for entry in (await response.get_json())["metrics"]}
    assert entries["probe.failure_share"] == {
        "name": "probe.failure_share",
        "plugin": "probe",
        "unit": "ratio",
        "kind": "ratio",
        "description": "Share of failures.",
        "direction": "lower_is_better",
        "filters": [{"name": "team", "description": "Team names."}],
    }


async def test_catalog_leaves_out_metrics_of_disabled_plugins(probe_app: Any) -> None:
    app, _probe, tenant = probe_app
    switched = await tenant.admin_client.put(
        f"/api/v1/admin/tenants/{tenant.id}/plugins/probe", json={"enabled": False}
    )
    assert switched.status_code == 200, await switched.get_data()
    names = {e["name"] for e in (await (await tenant.viewer_client.get("/api/v1/metrics"))
                                .get_json())["metrics"]}
    assert "probe.failure_share" not in names
    read = await tenant.viewer_client.get("/api/v1/metrics/probe.failure_share")
    assert read.status_code == 404
    assert (await read.get_json())["plugin"] == "probe"


async def test_read_passes_the_validated_query_to_compute(probe_app: Any) -> None:
    app, probe, tenant = probe_app
    response = await tenant.viewer_client.get(
        "/api/v1/metrics/probe.failure_share?start=2026-01-01&end=2026-02-01T00:00:00%2B01:00"
        "&interval=week&tz=Europe/Paris&team=core,web&team=ops"
    )
    assert response.status_code == 200, await response.get_data()
    body = await response.get_json()
    (query,) = probe.queries
    assert query.tenant_id == tenant.id
    assert query.start == datetime(2026, 1, 1, tzinfo=UTC)
    assert query.end == datetime(2026, 1, 31, 23, tzinfo=UTC)
    assert (query.interval, query.tz) == ("week", "Europe/Paris")
    assert query.filters == {"team": ("core", "web", "ops")}
    assert body["value"]["numerator"] == 2 and body["value"]["denominator"] == 8
    assert body["freshness"] == {"data_until": "2026-03-01T00:00:00Z", "refresh_pending": False}
    assert body["filters"] == {"team": ["core", "web", "ops"]}


async def test_reads_are_cached_and_dropped_by_the_metric_tags(probe_app: Any) -> None:
    app, probe, tenant = probe_app
    url = "/api/v1/metrics/probe.failure_share?start=2026-01-01&end=2026-02-01"
    first = await tenant.viewer_client.get(url)
    second = await tenant.viewer_client.get(url)
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit")
    assert len(probe.queries) == 1
    probe.pending = True
    await app.extensions["pulse"].cache.invalidate_tags(tenant.id, ["probe-data"])
    third = await tenant.viewer_client.get(url)
    assert third.headers["X-Cache"] == "miss"
    assert (await third.get_json())["freshness"]["refresh_pending"] is True


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("environment=production", "environment"),  # a filter this metric does not support
        ("colour=red", "colour"),  # not a filter at all
        ("start=0001-01-01&end=0001-01-05", "start"),
        ("start=9999-12-31T00:00:00Z&end=9999-12-31T23:59:59.999999Z", "start"),
        ("start=0001-01-01T00:00:00%2B01:00", "start"),  # overflows when made UTC
        ("start=2026-01-01&end=9999-12-31T23:00:00-05:00", "end"),
        ("tz=posixrules", "tz"),
        ("tz=right/UTC", "tz"),
        ("team=a%00b", "team"),
        ("interval=hour", "interval"),
        ("start=2026-02-01&end=2026-01-01", "start"),
        ("start=1970-01-01&end=2199-12-31&interval=day", "interval"),
    ],
)
async def test_bad_reads_are_422_naming_the_parameter(
    probe_app: Any, query: str, field: str
) -> None:
    app, probe, tenant = probe_app
    response = await tenant.viewer_client.get(f"/api/v1/metrics/probe.failure_share?{query}")
    body = await response.get_json()
    assert response.status_code == 422, body
    assert response.content_type == "application/problem+json"
    named = [error["field"].split(".")[0] for error in body["errors"]]
    assert field in named, body
    assert probe.queries == []


async def test_unknown_metric_is_404(probe_app: Any) -> None:
    _app, _probe, tenant = probe_app
    response = await tenant.viewer_client.get("/api/v1/metrics/nobody.nothing")
    assert response.status_code == 404
    assert (await response.get_json())["type"].endswith("/metric-not-found")


async def test_a_metric_breaking_its_kind_contract_is_not_served(probe_app: Any) -> None:
    _app, _probe, tenant = probe_app
    response = await tenant.viewer_client.get("/api/v1/metrics/liar.share")
    assert response.status_code == 500
    assert "numerator" not in (await response.get_data(as_text=True))


def test_a_definition_refuses_an_unknown_kind_or_filter() -> None:
    async def compute(engine: Any, query: MetricQuery) -> Any:
        raise AssertionError

    with pytest.raises(ValueError, match="kind"):
        MetricDefinition("x.y", "count", "histogram", "", True, compute)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="filters"):
        MetricDefinition(
            "x.y", "count", "count", "", True, compute, filters=(MetricFilter(name="colour",
                                                                               description=""),)
        )


async def test_a_cached_read_is_not_served_once_its_plugin_is_disabled(probe_app: Any) -> None:
    app, _probe, tenant = probe_app
    url = "/api/v1/metrics/probe.failure_share?start=2026-01-01&end=2026-02-01"
    await tenant.viewer_client.get(url)
    assert (await tenant.viewer_client.get(url)).headers["X-Cache"] == "hit"
    switched = await tenant.admin_client.put(
        f"/api/v1/admin/tenants/{tenant.id}/plugins/probe", json={"enabled": False}
    )
    assert switched.status_code == 200
    refused = await tenant.viewer_client.get(url)
    assert refused.status_code == 404
    assert "X-Cache" not in refused.headers


async def test_openapi_names_every_metric_a_read_can_ask_for(probe_app: Any) -> None:
    app, _probe, _tenant = probe_app
    document = await (await app.test_client().get("/openapi.json")).get_json()
    operation = document["paths"]["/api/v1/metrics/{name}"]["get"]
    (name,) = [p for p in operation["parameters"] if p["in"] == "path"]
    assert name["schema"]["enum"] == ["liar.share", "probe.failure_share"]
    declared = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
    assert declared == {"start", "end", "interval", "tz", "project", "team", "repository",
                        "environment", "service"}


async def test_a_zone_the_database_does_not_know_is_a_422(probe_app: Any) -> None:
    app, probe, tenant = probe_app
    engine = app.extensions["pulse"]
    known = await engine.db.time_zones()
    python_only = sorted(known_zones() - known)
    # this PostgreSQL's tz database may be as new as Python's: then stand one zone down
    zone = python_only[0] if python_only else "Europe/Paris"
    engine.db._time_zones = known - {zone}
    response = await tenant.viewer_client.get(
        f"/api/v1/metrics/probe.failure_share?tz={zone}"
    )
    assert response.status_code == 422
    assert [e["field"] for e in (await response.get_json())["errors"]] == ["tz"]
    assert probe.queries == []
