"""The metric contract's optional ``samples``: who may give them and what they must be."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pulse_engine import (
    Freshness,
    MetricComputation,
    MetricDefinition,
    MetricQuery,
    MetricSamples,
    MetricValue,
)

FRESH = Freshness(data_until=None, refresh_pending=False)


async def compute(engine: Any, query: MetricQuery) -> MetricComputation:
    value = MetricValue(value=2.0, sample_size=3, percentiles={"p50": 2.0}, mean=2.0)
    return MetricComputation(value, [value], FRESH)


async def samples(engine: Any, query: MetricQuery) -> MetricSamples:
    return MetricSamples(values=(1.0, 2.0, 3.0), freshness=FRESH)


def test_a_distribution_may_give_samples() -> None:
    definition = MetricDefinition("t.d", "seconds", "distribution", "D.", False, compute,
                                  samples=samples)
    assert definition.samples is samples
    assert MetricDefinition("t.e", "seconds", "distribution", "D.", False, compute).samples is None


@pytest.mark.parametrize("kind", ["count", "ratio", "rate", "gauge"])
def test_only_a_distribution_gives_samples(kind: str) -> None:
    with pytest.raises(ValueError, match="only a distribution"):
        MetricDefinition("t.x", "count", kind, "X.", True, compute,  # type: ignore[arg-type]
                         samples=samples)


def test_check_samples_takes_a_tuple_of_finite_numbers() -> None:
    definition = MetricDefinition("t.d", "seconds", "distribution", "D.", False, compute,
                                  samples=samples)
    good = MetricSamples(values=(1, 2.5, 0.0), freshness=FRESH)
    assert definition.check_samples(good) is good
    assert definition.check_samples(MetricSamples((), FRESH)).values == ()
    with pytest.raises(TypeError):
        definition.check_samples([1.0, 2.0])
    for bad in ((math.nan,), (math.inf,), (True,), ("1",), (None,)):
        with pytest.raises(ValueError):
            definition.check_samples(MetricSamples(values=bad, freshness=FRESH))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        definition.check_samples(MetricSamples(values=[1.0], freshness=FRESH))  # type: ignore[arg-type]
