"""pulse-ml-monitor's anomaly detector vs a rolling z-score, on labelled synthetic series.

Each series is hourly, with a daily and a weekly pattern, a slow trend and heavy-tailed
noise (Student's t, 4 degrees of freedom: operational series have fat tails), and carries
injected anomalies of four kinds, each a labelled window:

* ``spike``: one to three points 7-12 noise sigmas off;
* ``level``: a level shift of 4-6 sigmas lasting 12-48 hours, then back;
* ``trend``: a ramp to 6-8 sigmas over 24-48 hours, then back (a trend change);
* ``season``: the daily pattern shifted by 8-12 hours (or its amplitude tripled) for two days.

Both detectors see the same series. Scoring is by events: flagged points at most
``--gap`` points apart are one alert; an alert is a true positive when one of its points
falls in a labelled window (widened by ``--tolerance`` points); precision = true alerts /
alerts, recall = windows holding a flagged point / windows, F1 their harmonic mean.

The baseline is the usual rolling z-score: the mean and standard deviation of the previous
``--window`` points, a point flagged when it is more than ``--z`` deviations away; it is
run as configured (48 points, 3 deviations) and over a grid of windows and thresholds, of
which the best F1 is reported too (the baseline is tuned on the test data; the detector
is not).

    .venv/bin/python bench/ml_anomaly_bench.py [--series 40] [--days 60] [--seed 7]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from pulse_ml_monitor.detector import detect, group_events

HOUR = 3600.0
KINDS = ("spike", "level", "trend", "season")


@dataclass
class Series:
    """A labelled synthetic series."""

    values: NDArray[np.float64]
    windows: list[tuple[int, int, str]] = field(default_factory=list)


def make_series(rng: np.random.Generator, days: int) -> Series:
    """One hourly series with anomalies of every kind (two of each), labelled."""
    n = days * 24
    t = np.arange(n)
    sigma = rng.uniform(0.5, 2.0)
    daily_amplitude = rng.uniform(3, 8) * sigma
    daily = daily_amplitude * np.sin(2 * np.pi * (t % 24) / 24 + rng.uniform(0, 2 * np.pi))
    weekly = rng.uniform(1, 3) * sigma * np.where((t // 24) % 7 >= 5, -1.0, 0.4)
    level = rng.uniform(20, 100) + np.cumsum(rng.normal(0, 0.02 * sigma, n))
    noise = sigma * rng.standard_t(4, n) / np.sqrt(2)  # t4 has variance 2
    values = level + daily + weekly + noise
    series = Series(values)
    taken = np.zeros(n, dtype=bool)
    taken[: 14 * 24] = True  # two weeks of history before the first anomaly

    def place(length: int) -> int | None:
        for _ in range(200):
            start = int(rng.integers(0, n - length - 24))
            if not taken[max(0, start - 48): start + length + 48].any():
                taken[start: start + length] = True
                return start
        return None

    for kind in KINDS * 2:
        length = {"spike": int(rng.integers(1, 4)), "level": int(rng.integers(12, 49)),
                  "trend": int(rng.integers(24, 49)), "season": 48}[kind]
        start = place(length)
        if start is None:
            continue
        end = start + length
        sign = rng.choice([-1.0, 1.0])
        if kind == "spike":
            values[start:end] += sign * rng.uniform(7, 12) * sigma
        elif kind == "level":
            values[start:end] += sign * rng.uniform(4, 6) * sigma
        elif kind == "trend":
            values[start:end] += sign * np.linspace(0, rng.uniform(6, 8) * sigma, length)
        else:
            segment = t[start:end]
            if rng.random() < 0.5:
                shift = int(rng.integers(8, 13))
                values[start:end] += (daily_amplitude * np.sin(
                    2 * np.pi * ((segment + shift) % 24) / 24) - daily[start:end])
            else:
                values[start:end] += 2 * daily[start:end]
        series.windows.append((start, end - 1, kind))
    return series


def rolling_zscore(values: NDArray[np.float64], window: int, z: float) -> list[int]:
    """Points more than ``z`` standard deviations from the previous ``window`` points' mean."""
    flagged = []
    cumsum = np.concatenate([[0.0], np.cumsum(values)])
    cumsq = np.concatenate([[0.0], np.cumsum(values * values)])
    for i in range(window, values.size):
        mean = (cumsum[i] - cumsum[i - window]) / window
        var = (cumsq[i] - cumsq[i - window]) / window - mean * mean
        std = np.sqrt(max(var, 1e-12))
        if abs(values[i] - mean) > z * std:
            flagged.append(i)
    return flagged


@dataclass
class Score:
    """Event-scored counts of one detector."""

    alerts: int = 0
    true_alerts: int = 0
    windows: int = 0
    windows_hit: int = 0
    hits_by_kind: dict[str, list[int]] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, flagged: list[int], windows: list[tuple[int, int, str]], gap: int,
            tolerance: int) -> None:
        """Score one series' flagged points against its windows."""
        events = group_events(sorted(flagged), gap)
        wide = [(a - tolerance, b + tolerance, kind) for a, b, kind in windows]
        self.alerts += len(events)
        self.true_alerts += sum(
            any(any(a <= p <= b for p in event) for a, b, _ in wide) for event in events)
        flagged_set = set(flagged)
        for a, b, kind in wide:
            hit = any(p in flagged_set for p in range(a, b + 1))
            self.windows += 1
            self.windows_hit += hit
            self.hits_by_kind.setdefault(kind, [0, 0])
            self.hits_by_kind[kind][0] += hit
            self.hits_by_kind[kind][1] += 1

    @property
    def precision(self) -> float:
        """True alerts / alerts."""
        return self.true_alerts / self.alerts if self.alerts else 0.0

    @property
    def recall(self) -> float:
        """Windows hit / windows."""
        return self.windows_hit / self.windows if self.windows else 0.0

    @property
    def f1(self) -> float:
        """The harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=40)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--gap", type=int, default=3, help="points joining flags into one alert")
    parser.add_argument("--tolerance", type=int, default=3, help="points around each window")
    parser.add_argument("--window", type=int, default=48, help="rolling z-score window")
    parser.add_argument("--z", type=float, default=3.0, help="rolling z-score threshold")
    parser.add_argument("--grid", default="24,48,168:2.5,3,3.5",
                        help="windows:thresholds of the tuned baselines (best F1 reported)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    ours, baseline = Score(), Score()
    windows_text, zs_text = args.grid.split(":")
    grid = {(int(w), float(z)): Score() for w in windows_text.split(",")
            for z in zs_text.split(",")}
    for _ in range(args.series):
        series = make_series(rng, args.days)
        for (window, z), score in grid.items():
            score.add(rolling_zscore(series.values, window, z), series.windows, args.gap,
                      args.tolerance)
        times = np.arange(series.values.size) * HOUR
        started = time.perf_counter()
        found = detect(times, series.values)
        ours.seconds += time.perf_counter() - started
        ours.add(found.indices, series.windows, args.gap, args.tolerance)
        started = time.perf_counter()
        flagged = rolling_zscore(series.values, args.window, args.z)
        baseline.seconds += time.perf_counter() - started
        baseline.add(flagged, series.windows, args.gap, args.tolerance)
    points = args.series * args.days * 24
    print(f"{args.series} series x {args.days * 24} hourly points ({points} points), "
          f"{ours.windows} labelled windows, seed {args.seed}")
    print(f"{'detector':44} {'alerts':>7} {'precision':>9} {'recall':>7} {'F1':>6} "
          f"{'ms/series':>9}")
    (best_window, best_z), best = max(grid.items(), key=lambda item: item[1].f1)
    for name, score in (("robust-seasonal-esd (pulse)", ours),
                        (f"rolling z-score (w={args.window}, z={args.z})", baseline),
                        (f"best z-score of grid (w={best_window}, z={best_z})", best)):
        print(f"{name:44} {score.alerts:>7} {score.precision:>9.3f} {score.recall:>7.3f} "
              f"{score.f1:>6.3f} {1000 * score.seconds / args.series:>9.1f}")
    print("recall by kind (pulse / baseline): " + ", ".join(
        f"{kind} {ours.hits_by_kind[kind][0]}/{ours.hits_by_kind[kind][1]} / "
        f"{baseline.hits_by_kind[kind][0]}/{baseline.hits_by_kind[kind][1]}"
        for kind in KINDS if kind in ours.hits_by_kind))
    for name, other in (("the default z-score", baseline), ("the best-tuned z-score", best)):
        ratio = ours.f1 / other.f1 if other.f1 else float("inf")
        print(f"F1 ratio vs {name}: {ratio:.2f}x "
              f"(target >= 1.3x: {'met' if ratio >= 1.3 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
