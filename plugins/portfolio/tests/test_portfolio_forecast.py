"""Delivery forecasts: hand-computed answers, refusals, caps, scopes, bad input."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from portfolio_rows import Rows
from pulse_portfolio import forecast

from pulse_engine.testing import TenantFixture

URL = "/api/v1/portfolio/forecasts/delivery"
START = "2024-03-01"


async def post(tenant: TenantFixture, body: dict[str, Any], status: int = 200) -> Any:
    response = await tenant.viewer_client.post(URL, json=body)
    answer = await response.get_json()
    assert response.status_code == status, answer
    if status >= 400:
        assert response.content_type == "application/problem+json"
    return answer


async def test_a_steady_pace_gives_one_date(tenant: TenantFixture) -> None:
    # two a day, every day: 10 items are done on the fifth day (start counts)
    answer = await post(tenant, {"throughput": [2] * 60, "remaining": 10, "start": START})
    assert answer["percentiles"] == {level: "2024-03-05" for level in ("50", "70", "85", "95")}
    assert answer["trials"] == 10_000 and answer["question"] == "when"
    assert answer["history"]["days_with_completion"] == 60 and answer["history"]["items"] == 120
    assert answer["capped"] == []
    how_many = await post(tenant, {"throughput": [2] * 60, "by_date": "2024-03-05",
                                   "start": START})
    assert how_many["percentiles"] == {level: 10 for level in ("50", "70", "85", "95")}


async def test_a_coin_flip_day_follows_the_geometric_law(tenant: TenantFixture) -> None:
    # independent days, one item with probability 1/2: P(done by day d) = 1 - 2^-(d+1)
    # P70 -> day 1 (0.75), P85 -> day 2 (0.875), P95 -> day 4 (0.969; day 3 is 0.9375)
    answer = await post(tenant, {"throughput": [0, 1] * 40, "remaining": 1, "start": START,
                                 "method": "bootstrap", "seed": 3,
                                 "percentiles": [70, 85, 95]})
    assert answer["percentiles"] == {"70": "2024-03-02", "85": "2024-03-03", "95": "2024-03-05"}


def test_the_simulation_equals_a_brute_force_bootstrap() -> None:
    history = np.array([0, 3, 0, 0, 1, 5, 0, 2, 0, 1] * 9)
    model = forecast.ForecastModel(method="bootstrap")
    sims = forecast.simulate_when(history, 7, model, 20_000, np.random.default_rng(1))
    rng = np.random.default_rng(2)
    brute = []
    for _ in range(20_000):
        total, day = 0, 0
        while True:
            total += int(history[rng.integers(len(history))])
            if total >= 7:
                break
            day += 1
        brute.append(day)
    for q in (0.5, 0.85, 0.95):
        assert abs(np.quantile(sims, q) - np.quantile(brute, q)) <= 1


def test_calibration_corrects_a_forecast_that_was_too_narrow() -> None:
    # in the backtests the outcome fell past the simulated 85th percentile 40% of the time
    pits = [0.1] * 30 + [0.99] * 20
    levels = forecast.recalibrate(pits, [0.5, 0.85], shrinkage=0)
    assert levels[0] == pytest.approx(0.1005, abs=1e-3)
    assert levels[1] > 0.99
    assert forecast.recalibrate([], [0.85], shrinkage=8) == [pytest.approx(0.85, abs=1e-3)]


def test_overlapping_backtests_count_as_few_independent_outcomes() -> None:
    # disjoint outcome windows: each is its own outcome
    assert forecast.effective_backtests([(0, 10), (10, 10), (20, 10)]) == 3
    # a week apart, each waiting 100 days: 114 days covered over a mean of 100
    assert forecast.effective_backtests([(0, 100), (7, 100), (14, 100)]) == pytest.approx(1.14)
    assert forecast.effective_backtests([]) == 0
    # the PITs of the test above, held by 5 independent outcomes instead of 50, with 8
    # pseudo-backtests: coverage at l in (0.1, 0.99) is (0.1 * 30 + 8 l) / 13 >= 0.5 from
    # l = 0.4375 (instead of 0.1005)
    levels = forecast.recalibrate([0.1] * 30 + [0.99] * 20, [0.5], shrinkage=8, effective=5)
    assert levels[0] == pytest.approx(0.4375, abs=1e-3)


def test_a_backtest_whose_items_were_not_done_counts_as_a_miss() -> None:
    # one item a day for 390 days, then 10 empty days. Backtests of "when 5 more" run from
    # day 389 back, a week apart (30 origins in days 180-389, each with a full 180-day
    # past). From day 389 only one more item came: not done by the end. Its trials (one a
    # day) were all done by day 4, before the 11 days it watched: PIT 1, a miss at every
    # level, kept instead of dropped; every other backtest was done on day 4 as simulated
    history = np.array([1] * 390 + [0] * 10)
    model = forecast.ForecastModel(calibration_trials=500)
    pits, effective = forecast._calibration(history, "when", 5, model,
                                            np.random.default_rng(1), 10)
    assert len(pits) == len(range(389, 179, -7)) == 30
    assert pits[0] == 1.0 and set(pits[1:]) == {0.0}
    # outcome windows of 11 and 5 days, a week apart: disjoint, each its own outcome
    assert effective == pytest.approx(30)


def test_a_sparse_history_is_not_calibrated_on_overlapping_backtests() -> None:
    # an item every tenth day for two years: 10 more take about 100 days, so backtests a
    # week apart watch the same months; a dense history's backtests do not overlap
    sparse = forecast.forecast(([1] + [0] * 9) * 73, remaining=10, seed=3)
    assert sparse.calibration_backtests >= 12 > sparse.calibration_effective
    assert sparse.method == "block" and sparse.levels_used == {50: 0.5, 70: 0.7, 85: 0.85,
                                                               95: 0.95}
    dense = forecast.forecast([int(v) for v in np.random.default_rng(5).poisson(1.5, 730)],
                              remaining=10, seed=3)
    assert dense.method == "calibrated" and dense.calibration_effective >= 12


async def test_too_little_history_is_refused(tenant: TenantFixture) -> None:
    refused = await post(tenant, {"throughput": [0, 0, 1, 0, 1, 1, 0, 1], "remaining": 3,
                                  "start": START}, 422)
    assert refused["type"].endswith("/not-enough-history")
    assert refused["days_with_completion"] == 4 and refused["minimum"] == 5
    stated = await post(tenant, {"throughput": [1] * 20, "remaining": 3, "start": START,
                                 "minimum_days": 30}, 422)
    assert stated["minimum"] == 30


async def test_likelihoods_above_95_are_capped_and_shown(tenant: TenantFixture) -> None:
    answer = await post(tenant, {"throughput": [0, 1, 2, 0, 3] * 20, "remaining": 20,
                                 "start": START, "percentiles": [50, 99], "seed": 1,
                                 "due_date": "2025-01-01"})
    assert answer["capped"] == ["99"]
    assert set(answer["percentiles"]) == {"50", "99"}
    assert answer["due"] == {"due_date": "2025-01-01", "likelihood": 0.95, "capped": True}


@pytest.mark.parametrize(("body", "field"), [
    ({"remaining": 3, "start": START}, "throughput or scope"),
    ({"throughput": [1] * 9, "scope": "tenant", "remaining": 3, "start": START}, "not both"),
    ({"throughput": [1] * 9, "start": START}, "remaining or by_date"),
    ({"throughput": [1] * 9, "remaining": 0, "start": START}, "remaining"),
    ({"throughput": [1] * 9, "remaining": 3}, "start is required"),
    ({"throughput": [1, -1] * 9, "remaining": 3, "start": START}, "between 0"),
    ({"throughput": [1] * 9, "by_date": "2024-02-01", "start": START}, "by_date"),
    ({"throughput": [1] * 9, "by_date": "2090-02-01", "start": START}, "by_date"),
    ({"throughput": [1] * 9, "remaining": 3, "start": START, "percentiles": [0]}, "between 1"),
    ({"throughput": [1] * 4000, "remaining": 3, "start": START}, "throughput"),
    ({"scope": "project", "remaining": 3}, "id is required"),
    ({"scope": "project", "id": "missing", "remaining": 3}, "id"),
    ({"throughput": [1] * 9, "remaining": 3, "start": START, "tz": "Nowhere/X"}, "tz"),
    ({"throughput": [1] * 9, "remaining": 3, "start": START, "extra": 1}, "extra"),
])
async def test_bad_requests_are_problems(tenant: TenantFixture, body: dict[str, Any],
                                         field: str) -> None:
    answer = await post(tenant, body, 422)
    assert field in str(answer), answer


async def test_a_scope_forecasts_from_its_stored_work_items(
    rows: Rows, tenant: TenantFixture, portfolio_app: Any
) -> None:
    alpha = await rows.project("Alpha")
    beta = await rows.project("Beta")
    await rows.team("alpha-team", alpha)
    start = date(2024, 3, 1)
    done_days = [start - timedelta(days=d) for d in (1, 2, 2, 4, 8, 9, 15, 30, 31, 31)]
    for day in done_days:
        moment = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        await rows.item(alpha, created=moment - timedelta(days=3), resolved=moment)
    await rows.item(beta, created=datetime(2024, 2, 1, tzinfo=UTC),
                    resolved=datetime(2024, 2, 20, tzinfo=UTC))
    for scope, ident in (("project", "Alpha"), ("team", "alpha-team")):
        answer = await post(tenant, {"scope": scope, "id": ident, "remaining": 5,
                                     "start": "2024-03-01", "history_days": 60, "seed": 1})
        # brute force over the rows: 10 items on 8 distinct days, the last on Feb 29
        assert answer["history"] == {"days": 60, "days_with_completion": 8, "items": 10,
                                     "first": "2024-01-30", "last": "2024-02-29"}
        assert all(answer["percentiles"][level] >= "2024-03-01" for level in answer["percentiles"])
    whole = await post(tenant, {"scope": "tenant", "remaining": 5, "start": "2024-03-01",
                                "history_days": 60, "seed": 1})
    assert whole["history"]["items"] == 11
    from pulse_engine.testing import make_tenant

    other = await make_tenant(portfolio_app)
    await post(other, {"scope": "project", "id": "Alpha", "remaining": 5,
                       "start": "2024-03-01"}, 422)
    refused = await post(other, {"scope": "tenant", "remaining": 5, "start": "2024-03-01"}, 422)
    assert refused["days_with_completion"] == 0


async def test_a_long_history_is_calibrated_on_its_own_backtests(tenant: TenantFixture) -> None:
    rng = np.random.default_rng(5)
    history = [int(v) for v in rng.poisson(1.5, 730)]
    answer = await post(tenant, {"throughput": history, "remaining": 20, "start": START,
                                 "seed": 2})
    assert answer["method"]["name"] == "calibrated"
    assert answer["method"]["calibration_backtests"] >= 12
    assert answer["method"]["effective_backtests"] >= 12
    # a short one is the block bootstrap alone, and says so
    short = await post(tenant, {"throughput": history[-180:], "remaining": 20,
                                "start": START, "seed": 2})
    assert short["method"]["name"] == "block"
    assert short["method"]["calibration_backtests"] == 0
    dates = [answer["percentiles"][level] for level in ("50", "70", "85", "95")]
    assert dates == sorted(dates)
