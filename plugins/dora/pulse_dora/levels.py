"""Performance levels (elite / high / medium / low) by the DORA reports of 2021, 2023 and 2024.

Thresholds are those of METRICS.md. Deployment frequency is classified from the median
number of deployment days per week (and per month) over the window. The 2024 clusters
are descriptive (its "high" cluster has a worse change failure rate than "medium"), so a
2024 change failure rate is classified by the nearest cluster value, and the answer says
so in ``method``. Rework rate has no published levels.
"""

from __future__ import annotations

from typing import Any

HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY
MONTH = 30 * DAY
SIX_MONTHS = 182 * DAY

#: Upper bounds (exclusive) of lead time for elite, high, medium.
_LEAD_TIME = {
    "2021": (HOUR, WEEK, SIX_MONTHS),
    "2023": (DAY, WEEK, MONTH),
    "2024": (DAY, WEEK, MONTH),
}
#: Upper bounds (exclusive) of recovery time for elite, high, medium. (2024's "medium" is
#: "< 1 day" like "high"; the gap up to its "low" of 1 week - 1 month is read as medium.)
_RECOVERY = {
    "2021": (HOUR, DAY, WEEK),
    "2023": (HOUR, DAY, WEEK),
    "2024": (HOUR, DAY, WEEK),
}
#: Upper bounds (inclusive) of change failure rate for elite, high, medium.
_FAILURE_RATE = {"2021": (0.15, 0.20, 0.30), "2023": (0.05, 0.10, 0.15)}
#: The 2024 cluster values of change failure rate.
_FAILURE_CLUSTERS_2024 = (("elite", 0.05), ("high", 0.20), ("medium", 0.10), ("low", 0.40))
LEVELS = ("elite", "high", "medium", "low")


def _by_upper_bounds(value: float, bounds: tuple[float, float, float], inclusive: bool) -> str:
    for level, bound in zip(LEVELS, bounds, strict=False):
        if value < bound or (inclusive and value == bound):
            return level
    return "low"


def classify_duration(metric: str, median: float | None, benchmark: str) -> dict[str, Any]:
    """The level of a lead time or recovery time (by its median)."""
    if median is None:
        return {"level": None, "method": "threshold", "reason": "no data"}
    table = _LEAD_TIME if metric == "lead_time_for_changes" else _RECOVERY
    return {"level": _by_upper_bounds(median, table[benchmark], False), "method": "threshold"}


def classify_failure_rate(rate: float | None, benchmark: str) -> dict[str, Any]:
    """The level of a change failure rate; by nearest cluster value for 2024."""
    if rate is None:
        return {"level": None, "method": "threshold", "reason": "no data"}
    if benchmark == "2024":
        # ties go to the better level (clusters are listed best first)
        level, value = min(_FAILURE_CLUSTERS_2024, key=lambda item: abs(rate - item[1]))
        return {
            "level": level,
            "method": "nearest-cluster",
            "cluster_value": value,
            "note": "The 2024 report's clusters are descriptive (high has a worse change "
            "failure rate than medium); the rate is classified by the nearest cluster value.",
        }
    return {"level": _by_upper_bounds(rate, _FAILURE_RATE[benchmark], True), "method": "threshold"}


def classify_frequency(
    days_per_week: float, days_per_month: float, deployment_days: int, window_days: float,
    benchmark: str,
) -> dict[str, Any]:
    """The level of deployment frequency from median deployment days per week and month."""
    basis = {
        "median_deployment_days_per_week": days_per_week,
        "median_deployment_days_per_month": days_per_month,
    }
    if days_per_week >= 5:
        level = "elite"
    elif benchmark == "2021":
        six_month_rate = deployment_days / window_days * 182 if window_days else 0.0
        level = "high" if days_per_month >= 1 else "medium" if six_month_rate >= 1 else "low"
    elif days_per_week >= 1:
        level = "high"
    elif days_per_month >= 1:
        level = "medium"
    else:
        level = "low"
    return {"level": level, "method": "median-deployment-days", **basis}
