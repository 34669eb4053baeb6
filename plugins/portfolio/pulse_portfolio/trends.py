"""Trend (a slope with its confidence interval) and forecast band of any metric series.

* **Trend**: ordinary least squares of the value on the bucket index, with Newey-West
  (HAC) standard errors (statsmodels), because neighbouring buckets of a delivery metric
  are correlated and plain OLS errors would make the interval too narrow. The slope is
  per bucket, in the metric's unit; ``significant`` says whether its 95% interval
  excludes 0.
* **Forecast**: Holt's exponential smoothing with an additive *damped* trend and
  additive errors (statsmodels ``ETSModel``), with its analytic 80% and 95% prediction
  intervals. The damped trend follows a recent slope without extrapolating it forever,
  which is what a short, noisy business series needs; the state-space form gives the
  band from the fitted error variance. Below :data:`MIN_ETS_POINTS` points (or when the
  fit does not converge) the forecast is the OLS line with its prediction interval, and
  ``model`` says so.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

#: Fewer points than this: no trend at all.
MIN_POINTS = 4
#: Fewer points than this: the forecast is the OLS line's.
MIN_ETS_POINTS = 10
#: Most buckets a forecast may ask for.
MAX_HORIZON = 104


def _finite(values: list[float | None]) -> tuple[np.ndarray, np.ndarray]:
    index = np.asarray([i for i, v in enumerate(values) if v is not None and math.isfinite(v)],
                       dtype=float)
    ys = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    return index, ys


def trend(values: list[float | None]) -> dict[str, Any]:
    """The slope per bucket of ``values`` (None buckets left out) with its 95% interval."""
    import statsmodels.api as sm

    xs, ys = _finite(values)
    if len(ys) < MIN_POINTS:
        return {"slope": None, "low": None, "high": None, "significant": False,
                "points": int(len(ys)), "method": f"none: fewer than {MIN_POINTS} values"}
    design = sm.add_constant(xs)
    lags = max(1, int(4 * (len(ys) / 100) ** (2 / 9)))
    if np.ptp(ys) == 0:
        return {"slope": 0.0, "low": 0.0, "high": 0.0, "significant": False,
                "points": int(len(ys)), "relative": 0.0,
                "method": "ols (constant series)"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sm.OLS(ys, design).fit(cov_type="HAC", cov_kwds={"maxlags": lags})
    slope = float(fit.params[1])
    low, high = (float(v) for v in fit.conf_int(0.05)[1])
    mean = float(np.mean(ys))
    return {"slope": slope, "low": low, "high": high, "significant": low > 0 or high < 0,
            "points": int(len(ys)), "relative": slope / mean if mean else None,
            "method": f"ols with newey-west errors (maxlags={lags})"}


def forecast(values: list[float | None], horizon: int) -> dict[str, Any]:
    """``horizon`` more buckets: the point forecast with 80% and 95% bands."""
    import statsmodels.api as sm

    xs, ys = _finite(values)
    if len(ys) < MIN_POINTS:
        return {"model": f"none: fewer than {MIN_POINTS} values", "points": []}
    steps = np.arange(len(values), len(values) + horizon, dtype=float)
    if len(ys) >= MIN_ETS_POINTS and len(ys) == len(values) and np.ptp(ys) > 0:
        try:
            import pandas as pd
            from statsmodels.tsa.exponential_smoothing.ets import ETSModel

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = ETSModel(pd.Series(ys), error="add", trend="add", damped_trend=True)
                fit = model.fit(disp=False)
                predicted = fit.get_prediction(start=len(ys), end=len(ys) + horizon - 1)
                band80 = predicted.summary_frame(alpha=0.2)
                band95 = predicted.summary_frame(alpha=0.05)
            mean = np.asarray(band80["mean"], dtype=float)
            if np.all(np.isfinite(mean)):
                return {"model": "ets(A,Ad,N): damped additive trend", "points": [
                    {"offset": int(step - len(values) + 1), "value": float(m),
                     "low80": float(l80), "high80": float(h80),
                     "low95": float(l95), "high95": float(h95)}
                    for step, m, l80, h80, l95, h95 in zip(
                        steps, mean, band80["pi_lower"], band80["pi_upper"],
                        band95["pi_lower"], band95["pi_upper"], strict=True)]}
        except (ValueError, np.linalg.LinAlgError):  # pragma: no cover - falls back to OLS
            pass
    design = sm.add_constant(xs)
    fit = sm.OLS(ys, design).fit()
    future = sm.add_constant(steps, has_constant="add")
    prediction = fit.get_prediction(future)
    band80 = prediction.summary_frame(alpha=0.2)
    band95 = prediction.summary_frame(alpha=0.05)
    return {"model": "ols line (short or gapped series)", "points": [
        {"offset": int(step - len(values) + 1), "value": float(m), "low80": float(l80),
         "high80": float(h80), "low95": float(l95), "high95": float(h95)}
        for step, m, l80, h80, l95, h95 in zip(
            steps, band80["mean"], band80["obs_ci_lower"], band80["obs_ci_upper"],
            band95["obs_ci_lower"], band95["obs_ci_upper"], strict=True)]}
