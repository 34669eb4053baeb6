"""Monte Carlo delivery forecasts over daily throughput, calibrated on their own backtests.

Two questions, as the flow-metrics tools ask them:

* **when** (``remaining``): the day by which ``remaining`` more items are done, with
  likelihood 50, 70, 85 and 95%;
* **how many** (``by_date``): the number of items done from the first forecast day through
  a date (inclusive), with those likelihoods (``85``: at least that many, 85% likely).

How a trial draws the future (see ``docs/portfolio.md`` for the measurements behind it):

1. **Stationary block bootstrap** (Politis & Romano 1994) over the last ``window`` days:
   a trial copies runs of consecutive historical days (geometric lengths, mean
   ``block_days``), so a lull or a burst stays together instead of being shuffled away.
   A plain day-by-day bootstrap treats days as independent, which real throughput is
   not; its spread is too narrow and its P85 comes true far less than 85% of the time.
2. **Recency weighting**: a run starts on a day with a weight halving every
   ``half_life_days`` back, so the recent pace counts more than a pace of months ago.
3. **Calibration on the scope's own walk-forward backtests**: the same forecast is made
   from earlier origins inside the history (only data before each origin, only origins
   whose outcome is known), recording where the actual outcome fell in its simulated
   distribution. The simulated quantile level reported for a stated likelihood ``q`` is
   the level that was met a fraction ``q`` of the time in those backtests (quantile
   recalibration), shrunk towards ``q`` by how many *independent* outcomes the backtests
   hold: backtests whose outcome windows overlap watched the same days and count as one
   (:func:`effective_backtests`). A backtest whose items were not all done by the end of
   the history is kept as a miss (censored), not dropped.

Everything is bounded: trials, the history read, the horizon of a trial.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

#: The likelihoods every forecast reports.
LEVELS: tuple[int, ...] = (50, 70, 85, 95)
#: Likelihoods above this are capped (and shown as capped): a forecast cannot promise more.
MAX_LEVEL = 95
#: The trials of a forecast.
TRIALS = 10_000
#: Trials of each calibration backtest.
CALIBRATION_TRIALS = 1_000
#: A trial that has not finished by then counts as "not by this horizon".
MAX_HORIZON_DAYS = 3_660

Method = Literal["bootstrap", "block", "calibrated"]


@dataclass(frozen=True)
class ForecastModel:
    """How a forecast draws its trials.

    :param method: ``bootstrap`` (independent days, the baseline), ``block`` (stationary
        block bootstrap with recency weights) or ``calibrated`` (``block`` recalibrated on
        the scope's own backtests: the default).
    :param window: the most recent days of history the trials draw from.
    :param block_days: the mean length of a run of consecutive days (``block`` and up).
    :param half_life_days: recency weight half-life of a run's first day (None: uniform).
    :param pace_uncertainty: each trial first scales its pace by the ratio of a block
        resample of the whole window's mean to the window's mean (the uncertainty of the
        pace itself, which dominates when the horizon is as long as the window).
    :param calibration_origins: at most this many backtests calibrate a forecast.
    :param min_calibration: fewer effective (independent) backtests than this: no
        calibration (``block`` alone).
    :param shrinkage: pseudo-backtests at the stated level mixed into the calibration
        (against the effective number of backtests).
    """

    method: Method = "calibrated"
    window: int = 180
    block_days: float = 20.0
    pace_uncertainty: bool = True
    half_life_days: float | None = 90.0
    calibration_origins: int = 30
    min_calibration: int = 12
    shrinkage: float = 8.0
    trials: int = TRIALS
    calibration_trials: int = CALIBRATION_TRIALS
    horizon: int = MAX_HORIZON_DAYS


@dataclass
class Forecast:
    """A forecast: per likelihood, the day offset (when) or the item count (how many)."""

    kind: Literal["when", "how_many"]
    #: level (50, 70, 85, 95) to days from the first forecast day (0 = that day itself),
    #: None when not reached within the horizon; or, for how many, the item count
    values: dict[int, int | None]
    trials: int
    #: level to the simulated quantile level used after calibration
    levels_used: dict[int, float]
    calibration_backtests: int
    #: how many independent outcomes the backtests hold (see :func:`effective_backtests`)
    calibration_effective: float
    method: str
    #: the simulated outcomes (completion day offsets, or totals), for likelihood queries
    outcomes: np.ndarray = field(repr=False)


def _weights(length: int, half_life: float | None) -> np.ndarray:
    if not half_life:
        return np.full(length, 1.0 / length)
    age = np.arange(length)[::-1]  # the newest day has age 0
    raw = np.power(0.5, age / half_life)
    return raw / raw.sum()


class _Sampler:
    """Draws consecutive days of trials from a history, chunk by chunk."""

    def __init__(self, history: np.ndarray, model: ForecastModel, trials: int,
                 rng: np.random.Generator) -> None:
        self.history = history
        self.n = len(history)
        self.rng = rng
        self.trials = trials
        self.independent = model.method == "bootstrap"
        self.restart = 1.0 / max(model.block_days, 1.0)
        weights = _weights(self.n, None if self.independent else model.half_life_days)
        self.cdf = np.cumsum(weights)
        self.cdf[-1] = 1.0
        self.position = self._starts(trials)
        self.pace = np.ones(trials)
        if model.pace_uncertainty and not self.independent and history.sum() > 0:
            self.pace = self._paces(model.block_days)

    def _paces(self, block: float) -> np.ndarray:
        """Per trial, a stationary-bootstrap resample's mean over the window's mean."""
        blocks = max(1, round(self.n / block))
        starts = self.rng.integers(0, self.n, size=(self.trials, blocks))
        prefix = np.concatenate([[0], np.cumsum(np.concatenate([self.history, self.history]))])
        length = self.n / blocks
        ends = starts + max(1, round(length))
        sums = (prefix[ends] - prefix[starts]).sum(axis=1)
        return np.maximum(sums / (blocks * max(1, round(length))) / self.history.mean(), 1e-3)

    def _starts(self, size: int) -> np.ndarray:
        return np.minimum(np.searchsorted(self.cdf, self.rng.random(size), side="right"),
                          self.n - 1)

    def take(self, days: int) -> np.ndarray:
        """The next ``days`` days of every trial (trials x days)."""
        out = np.empty((self.trials, days), dtype=np.int64)
        if self.independent:
            return self.history[self._starts(self.trials * days).reshape(self.trials, days)]
        position = self.position
        for day in range(days):
            out[:, day] = self.history[position]
            position = position + 1
            jump = (self.rng.random(self.trials) < self.restart) | (position >= self.n)
            count = int(jump.sum())
            if count:
                position[jump] = self._starts(count)
        self.position = position
        return out


def simulate_when(history: np.ndarray, remaining: int, model: ForecastModel, trials: int,
                  rng: np.random.Generator, horizon: int | None = None) -> np.ndarray:
    """Per trial, the day offset (0 = the first day) on which ``remaining`` items are done;
    ``horizon`` (not done within it) for a trial that is not."""
    horizon = model.horizon if horizon is None else horizon
    sampler = _Sampler(history, model, trials, rng)
    target = remaining / sampler.pace
    done_on = np.full(trials, horizon, dtype=np.int64)
    total = np.zeros(trials, dtype=np.int64)
    open_ = np.ones(trials, dtype=bool)
    day = 0
    chunk = max(8, min(256, 2 * math.ceil(remaining / max(history.mean(), 1e-9))))
    while day < horizon and open_.any():
        size = min(chunk, horizon - day)
        block = sampler.take(size)
        running = total[:, None] + np.cumsum(block, axis=1)
        reached = running >= target[:, None]
        hit = reached.any(axis=1) & open_
        done_on[hit] = day + reached[hit].argmax(axis=1)
        open_ &= ~hit
        total = running[:, -1]
        day += size
        chunk = min(chunk * 2, 1024)
    return done_on


def simulate_how_many(history: np.ndarray, days: int, model: ForecastModel, trials: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Per trial, the items done over ``days`` days."""
    sampler = _Sampler(history, model, trials, rng)
    total = np.zeros(trials, dtype=np.int64)
    left = days
    while left > 0:
        size = min(left, 512)
        total += sampler.take(size).sum(axis=1)
        left -= size
    return np.floor(total * sampler.pace + rng.random(trials)).astype(np.int64)


def when_day(outcomes: np.ndarray, level: float, horizon: int) -> int | None:
    """The smallest day offset by which a fraction ``level`` of trials are done."""
    ordered = np.sort(outcomes)
    index = min(len(ordered) - 1, max(0, math.ceil(level * len(ordered)) - 1))
    day = int(ordered[index])
    return None if day >= horizon else day


def how_many_items(outcomes: np.ndarray, level: float) -> int:
    """The largest count reached by at least a fraction ``level`` of trials."""
    ordered = np.sort(outcomes)[::-1]
    index = min(len(ordered) - 1, max(0, math.ceil(level * len(ordered)) - 1))
    return int(ordered[index])


def _pit_when(outcomes: np.ndarray, actual: int) -> float:
    """The share of trials done strictly before the actual day: the forecast at level q
    came true exactly when this is below q."""
    return float(np.mean(outcomes < actual))


def _pit_how_many(outcomes: np.ndarray, actual: int) -> float:
    """The share of trials with more than the actual count (met when below q)."""
    return float(np.mean(outcomes > actual))


def actual_when(future: np.ndarray, remaining: int) -> int | None:
    """The day offset on which ``remaining`` items were actually done (None: not yet)."""
    running = np.cumsum(future)
    reached = np.nonzero(running >= remaining)[0]
    return int(reached[0]) if len(reached) else None


def effective_backtests(windows: Sequence[tuple[int, int]]) -> float:
    """How many independent outcomes backtests hold, from their outcome windows
    ``(origin, days watched)``: the days the windows cover together over their mean
    length. Disjoint windows give their number; backtests a week apart that each wait
    months for their items watched the same months, and count about once."""
    if not windows:
        return 0.0
    covered, reach = 0, -1
    for origin, days in sorted(windows):
        end = origin + max(days, 1)
        covered += max(0, end - max(origin, reach))
        reach = max(reach, end)
    mean = sum(max(days, 1) for _, days in windows) / len(windows)
    return min(float(len(windows)), covered / mean)


def recalibrate(pits: Sequence[float], levels: Sequence[float], shrinkage: float,
                effective: float | None = None) -> list[float]:
    """The simulated quantile level per stated level ``q``: the smallest level ``l`` at
    which a share ``q`` of the backtests came true (a backtest at level ``l`` comes true
    when its PIT is below ``l``), counting ``shrinkage`` perfectly calibrated
    pseudo-backtests (true a share ``l`` of the time) against ``effective`` independent
    backtests (default: every backtest is independent)."""
    values = np.sort(np.asarray(pits, dtype=float))
    weight = 1.0 if effective is None or not len(values) else effective / len(values)
    grid = np.linspace(0.0005, 0.9995, 1999)
    coverage = (weight * np.searchsorted(values, grid, side="left") + shrinkage * grid) / (
        weight * len(values) + shrinkage)
    out = []
    for q in levels:
        index = int(np.searchsorted(coverage, q, side="left"))
        out.append(float(grid[min(index, len(grid) - 1)]))
    return out


def _calibration(history: np.ndarray, kind: str, amount: int, model: ForecastModel,
                 rng: np.random.Generator, longest: int) -> tuple[list[float], float]:
    """PIT values of backtests from earlier origins of ``history``, and how many
    independent outcomes they hold."""
    n = len(history)
    # each backtest draws from a full window, as the forecast itself does: a backtest from
    # a shorter past is a different forecast, and would calibrate the wrong one
    first = model.window
    last = n - (amount if kind == "how_many" else longest)
    if last <= first:
        return [], 0.0
    step = max(7, (last - first) // model.calibration_origins)
    pits: list[float] = []
    windows: list[tuple[int, int]] = []
    for origin in range(last - 1, first - 1, -step):
        past = history[origin - model.window:origin]
        future = history[origin:]
        if np.count_nonzero(past) < 5:
            continue
        if kind == "when":
            actual = actual_when(future, amount)
            horizon = min(max(longest * 2, 64), model.horizon)
            sims = simulate_when(past, amount, model, model.calibration_trials, rng,
                                 horizon=horizon)
            if actual is None:
                # not done by the end of the history: missed at every level below the
                # share of trials done by then (dropping it would drop the slow outcomes
                # and teach the calibration that the forecasts are too cautious)
                pits.append(float(np.mean(sims < min(len(future), horizon))))
                windows.append((origin, len(future)))
                continue
            pits.append(_pit_when(sims, actual))
            windows.append((origin, actual + 1))
        else:
            actual = int(future[:amount].sum())
            sims = simulate_how_many(past, amount, model, model.calibration_trials, rng)
            pits.append(_pit_how_many(sims, actual))
            windows.append((origin, amount))
    return pits, effective_backtests(windows)


class NotEnoughHistory(ValueError):
    """The history has too few days with a completion to forecast from."""

    def __init__(self, days_with_completion: int, minimum: int) -> None:
        super().__init__(f"{days_with_completion} days with a completion; at least {minimum}")
        self.days_with_completion = days_with_completion
        self.minimum = minimum


def forecast(history: Sequence[int], *, remaining: int | None = None,
             days: int | None = None, model: ForecastModel = ForecastModel(),
             levels: Sequence[int] = LEVELS, minimum_days: int = 5,
             seed: int | None = None) -> Forecast:
    """Forecast ``remaining`` items (when) or ``days`` days (how many) from ``history``
    (daily completions, oldest first, ending the day before the first forecast day).

    Raises :class:`NotEnoughHistory` below ``minimum_days`` days with a completion.
    """
    if (remaining is None) == (days is None):
        raise ValueError("give remaining or days")
    full = np.asarray(history, dtype=np.int64)
    recent = full[-model.window:]
    active = int(np.count_nonzero(recent))
    if active < minimum_days:
        raise NotEnoughHistory(active, minimum_days)
    rng = np.random.default_rng(seed)
    kind: Literal["when", "how_many"] = "when" if remaining is not None else "how_many"
    amount = int(remaining if remaining is not None else days)  # type: ignore[arg-type]
    if kind == "when":
        outcomes = simulate_when(recent, amount, model, model.trials, rng)
    else:
        outcomes = simulate_how_many(recent, amount, model, model.trials, rng)
    stated = [level / 100 for level in levels]
    used = stated
    backtests, effective = 0, 0.0
    if model.method == "calibrated":
        longest = int(np.quantile(outcomes, 0.99)) + 1 if kind == "when" else amount
        pits, effective = _calibration(full, kind, amount, model, rng,
                                       min(longest, model.horizon))
        backtests = len(pits)
        if effective >= model.min_calibration:
            used = recalibrate(pits, stated, model.shrinkage, effective)
    values: dict[int, int | None] = {}
    for level, q in zip(levels, used, strict=True):
        values[level] = (when_day(outcomes, q, model.horizon) if kind == "when"
                         else how_many_items(outcomes, q))
    return Forecast(
        kind=kind, values=values, trials=model.trials,
        levels_used=dict(zip(levels, used, strict=True)), calibration_backtests=backtests,
        calibration_effective=round(effective, 1),
        method=model.method if effective >= model.min_calibration or model.method != "calibrated"
        else "block", outcomes=outcomes,
    )


def likelihood(result: Forecast, offset: int) -> float:
    """The stated likelihood that the forecast's outcome is met by day ``offset`` (when)
    or reaches ``offset`` items (how many), read through the calibration."""
    if result.kind == "when":
        raw = float(np.mean(result.outcomes <= offset))
    else:
        raw = float(np.mean(result.outcomes >= offset))
    pairs = sorted((used, level / 100) for level, used in result.levels_used.items())
    xs = [0.0, *(p[0] for p in pairs), 1.0]
    ys = [0.0, *(p[1] for p in pairs), 1.0]
    return float(np.interp(raw, xs, ys))
