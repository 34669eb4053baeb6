"""DORA's distributions give their samples: the observations their percentiles come from."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from dora_rows import Rows, percentile
from test_metric_contract import DAYS, START, brute_force, generate_history, read_raw

from pulse_engine import MetricQuery
from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture

DISTRIBUTIONS = ("lead_time_for_changes", "failed_deployment_recovery_time",
                 "time_to_restore_service")


async def test_only_the_distributions_give_samples(engine: PulseEngine) -> None:
    for name in engine.metrics.names():
        definition = engine.metrics.get(name)
        assert definition is not None
        if definition.name.startswith("dora."):
            assert (definition.samples is not None) == (definition.kind == "distribution")


@pytest.mark.parametrize("seed", [5])
async def test_samples_are_the_observations_of_compute(
    rows: Rows, dora_tenant: TenantFixture, engine: PulseEngine, seed: int
) -> None:
    await generate_history(rows, seed)
    raw = await read_raw(rows)
    for days in (DAYS, 20):
        end = START + timedelta(days=days)
        query = MetricQuery(dora_tenant.id, START, end, interval="week")
        expected = brute_force(raw, START, end)
        for metric in DISTRIBUTIONS:
            definition = engine.metrics.get(f"dora.{metric}")
            assert definition is not None and definition.samples is not None
            got = definition.check_samples(await definition.samples(engine, query))
            computed = definition.check(await definition.compute(engine, query)).value
            assert len(got.values) == computed.sample_size == expected[metric]["sample_size"]
            assert got.values, metric
            assert computed.percentiles is not None
            for fraction in (0.5, 0.75, 0.9):
                key = f"p{int(fraction * 100)}"
                assert percentile(list(got.values), fraction) == pytest.approx(
                    computed.percentiles[key]), (metric, key)
                assert computed.percentiles[key] == pytest.approx(
                    expected[metric]["percentiles"][key])
            assert sum(got.values) / len(got.values) == pytest.approx(computed.mean)


async def test_samples_follow_the_filters(
    rows: Rows, dora_tenant: TenantFixture, engine: PulseEngine
) -> None:
    await generate_history(rows, 8)
    end = START + timedelta(days=DAYS)
    definition = engine.metrics.get("dora.time_to_restore_service")
    assert definition is not None and definition.samples is not None
    total = (await definition.samples(engine, MetricQuery(dora_tenant.id, START, end))).values
    parts = [
        (await definition.samples(engine, MetricQuery(
            dora_tenant.id, START, end, filters={"repository": (service,)}))).values
        for service in ("api", "web", "jobs")
    ]
    # the unlinked incidents of "ghost" belong to no repository
    pooled = Counter(v for part in parts for v in part)
    assert pooled <= Counter(total)
    assert Counter(total) - pooled == Counter({7200.0: 3})
    assert sum(map(len, parts)) < len(total)
    assert all(parts)
