"""Walk-forward calibration backtest of pulse-portfolio's delivery forecasts.

From many forecast origins of each daily-throughput history, forecast "when will
``remaining`` more be done" (and "how many by ``days`` days from now") from the
``history`` days before the origin only, then check against what happened: the P50, P70,
P85 and P95 of a calibrated forecast must come true about 50, 70, 85 and 95% of the time
(the issue: P85 in 78-92%, P50 in 40-60%).

Histories:

* synthetic, with a known process: independent Poisson days; a two-state (lull / burst)
  Markov-switching Poisson; weekday-only negative-binomial days; a drifting rate;
* real: commits and merged pull requests per day from real repositories' git history, as
  Debian ships it (``/usr/share/doc/libharfbuzz0b/changelog.gz`` is harfbuzz's ``git
  log``; strace's and gnupg's ``changelog.gz`` are gitlog-to-changelog output). Their
  daily counts are extracted once into ``bench/portfolio_histories/*.csv`` (committed;
  ``--extract`` redoes it from the files).

Each method is run on the same origins: ``bootstrap`` (independent days: the baseline
the issue says fails), ``block`` (stationary block bootstrap with recency weights) and
``calibrated`` (``block`` recalibrated on the scope's own earlier backtests: Pulse's
default). Coverage is reported with a 95% interval: Wilson's, and a moving-block
bootstrap over origins (neighbouring origins share days, so they are not independent;
the block interval is the honest one).

    nice -n 10 .venv/bin/python bench/portfolio_backtest.py [--origins 195] [--quick]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import gzip
import math
import re
import sys
import time
from pathlib import Path
from typing import cast

import numpy as np
from pulse_portfolio.forecast import (
    ForecastModel,
    NotEnoughHistory,
    actual_when,
    forecast,
)

HERE = Path(__file__).parent / "portfolio_histories"
LEVELS = (50, 70, 85, 95)


def synthetic(name: str, days: int, seed: int) -> np.ndarray:
    """A known-process daily throughput history."""
    rng = np.random.default_rng(seed)
    if name == "poisson":
        return rng.poisson(1.2, days)
    if name == "regimes":  # lulls (0.15/day) and bursts (2.5/day), ~3 weeks each
        state, out = 0, []
        for _ in range(days):
            if rng.random() < 1 / 21:
                state = 1 - state
            out.append(rng.poisson(2.5 if state else 0.15))
        return np.asarray(out)
    if name == "weekdays":  # nothing at weekends, over-dispersed weekdays
        counts = rng.negative_binomial(2, 2 / (2 + 1.6), days)
        counts[np.arange(days) % 7 >= 5] = 0
        return counts
    if name == "drift":  # the log-rate takes a random walk
        log_rate = np.cumsum(rng.normal(0, 0.05, days)) + math.log(1.2)
        return rng.poisson(np.exp(np.clip(log_rate, -3, 2)))
    raise ValueError(name)


def extract() -> None:
    """Daily counts of the real histories from the git logs Debian ships."""
    HERE.mkdir(exist_ok=True)

    def write(name: str, days: collections.Counter[dt.date], source: str) -> None:
        first, last = min(days), max(days)
        with open(HERE / name, "w") as out:
            out.write(f"# {source}\n# date,count (every day from the first to the last)\n")
            day = first
            while day <= last:
                out.write(f"{day.isoformat()},{days.get(day, 0)}\n")
                day += dt.timedelta(days=1)

    with gzip.open("/usr/share/doc/libharfbuzz0b/changelog.gz", "rt", errors="replace") as raw:
        text = raw.read()
    commits: collections.Counter[dt.date] = collections.Counter()
    merges: collections.Counter[dt.date] = collections.Counter()
    for block in re.split(r"\n(?=commit [0-9a-f]{40})", text):
        found = re.search(r"^Date:\s+(.+)$", block, re.M)
        if not found:
            continue
        when = dt.datetime.strptime(found.group(1).strip(), "%a %b %d %H:%M:%S %Y %z")
        day = when.astimezone(dt.UTC).date()
        commits[day] += 1
        if re.search(r"^\s+Merge pull request #\d+", block, re.M):
            merges[day] += 1
    source = "from `git log` shipped as /usr/share/doc/libharfbuzz0b/changelog.gz"
    write("harfbuzz-commits.csv", commits, f"harfbuzz commits per day (UTC author date), {source}")
    write("harfbuzz-merged-prs.csv", merges,
          f'harfbuzz merged pull requests per day ("Merge pull request #" commits), {source}')
    for package in ("strace", "gnupg"):
        with gzip.open(f"/usr/share/doc/{package}/changelog.gz", "rt", errors="replace") as raw:
            log = raw.read()
        days = collections.Counter(dt.date.fromisoformat(m)
                                   for m in re.findall(r"^(\d{4}-\d\d-\d\d)  ", log, re.M))
        write(f"{package}-commits.csv", days, f"{package} ChangeLog entries per day "
              f"(gitlog-to-changelog: one per commit), from /usr/share/doc/{package}/changelog.gz")


def real(name: str) -> np.ndarray:
    """A committed real history's daily counts."""
    lines = (HERE / f"{name}.csv").read_text().splitlines()
    return np.asarray([int(line.split(",")[1]) for line in lines if not line.startswith("#")])


def wilson(hits: int, n: int) -> tuple[float, float]:
    """Wilson's 95% interval of a proportion."""
    if n == 0:
        return (math.nan, math.nan)
    z = 1.96
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def block_interval(met: np.ndarray, rng: np.random.Generator, block: int = 10,
                   rounds: int = 2000) -> tuple[float, float]:
    """A moving-block bootstrap 95% interval of the mean of ``met`` (origins in order)."""
    n = len(met)
    if n == 0:
        return (math.nan, math.nan)
    block = min(block, n)
    starts = rng.integers(0, n - block + 1, size=(rounds, math.ceil(n / block)))
    index = (starts[:, :, None] + np.arange(block)).reshape(rounds, -1)[:, :n]
    means = met[index].mean(axis=1)
    return (float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975)))


def backtest(series: np.ndarray, question: str, amount: int, model: ForecastModel,
             origins: int, history: int, seed: int) -> dict[str, object]:
    """Coverage of each level over ``origins`` origins spread evenly over ``series``."""
    n = len(series)
    candidates = []
    for origin in range(history, n):
        if question == "when":
            if actual_when(series[origin:], amount) is not None:
                candidates.append(origin)
        elif origin + amount <= n:
            candidates.append(origin)
    if not candidates:
        return {"origins": 0}
    picked = sorted({candidates[int(i)] for i in np.linspace(0, len(candidates) - 1, origins)})
    met: dict[int, list[bool]] = {level: [] for level in LEVELS}
    refused = 0
    started = time.perf_counter()
    for k, origin in enumerate(picked):
        past = series[origin - history:origin]
        try:
            result = forecast(past.tolist(), model=model, seed=seed + k,
                              remaining=amount if question == "when" else None,
                              days=None if question == "when" else amount)
        except NotEnoughHistory:
            refused += 1
            continue
        if question == "when":
            actual = actual_when(series[origin:], amount)
            assert actual is not None
            for level in LEVELS:
                day = result.values[level]
                met[level].append(day is None or actual <= day)
        else:
            done = int(series[origin:origin + amount].sum())
            for level in LEVELS:
                count = result.values[level]
                met[level].append(count is not None and done >= count)
    rng = np.random.default_rng(seed)
    out: dict[str, object] = {"origins": len(picked) - refused, "refused": refused,
                              "seconds": time.perf_counter() - started}
    for level in LEVELS:
        values = np.asarray(met[level], dtype=float)
        hits = int(values.sum())
        out[f"p{level}"] = (hits / len(values) if len(values) else math.nan,
                            wilson(hits, len(values)), block_interval(values, rng))
    return out


def main() -> None:
    """Run the backtests and print one table row per history, method and question."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--origins", type=int, default=195)
    parser.add_argument("--history", type=int, default=180, help="days before each origin")
    parser.add_argument("--quick", action="store_true", help="fewer origins and trials")
    parser.add_argument("--trials", type=int, default=0, help="trials per forecast "
                        "(default 10,000; 2,000 with --quick)")
    parser.add_argument("--extract", action="store_true", help="re-extract the real histories")
    parser.add_argument("--methods", default="bootstrap,block,calibrated")
    parser.add_argument("--only", default="", help="comma-separated history names")
    parser.add_argument("--block", type=float, default=ForecastModel.block_days)
    parser.add_argument("--half-life", type=float, default=ForecastModel.half_life_days or 0)
    args = parser.parse_args()
    if args.extract:
        extract()
    origins = 60 if args.quick else args.origins
    trials = args.trials or (2000 if args.quick else 10_000)
    histories: list[tuple[str, np.ndarray, int, int]] = [
        # name, daily counts, "when" remaining, "how many" days
        ("synthetic poisson", synthetic("poisson", 1500, 1), 10, 28),
        ("synthetic regimes", synthetic("regimes", 1500, 2), 10, 28),
        ("synthetic weekdays", synthetic("weekdays", 1500, 3), 10, 28),
        ("synthetic drift", synthetic("drift", 1500, 4), 10, 28),
        ("harfbuzz merged PRs", real("harfbuzz-merged-prs"), 10, 28),
        ("harfbuzz commits", real("harfbuzz-commits")[-3000:], 50, 28),
        ("strace commits", real("strace-commits"), 10, 28),
        ("gnupg commits", real("gnupg-commits"), 10, 28),
    ]
    wanted = {name.strip() for name in args.only.split(",") if name.strip()}
    print(f"origins={origins} history={args.history}d trials={trials} block={args.block}d "
          f"half-life={args.half_life or None}d")
    print("| history | question | method | origins (refused) | P50 | P70 | P85 | P95 | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, series, remaining, days in histories:
        if wanted and name not in wanted:
            continue
        for question, amount in (("when", remaining), ("how_many", days)):
            for method in args.methods.split(","):
                model = ForecastModel(method=method, trials=trials,  # type: ignore[arg-type]
                                      block_days=args.block,
                                      half_life_days=args.half_life or None)
                result = backtest(series, question, amount, model, origins, args.history, 7)
                if not result["origins"]:
                    continue
                cells = []
                for level in LEVELS:
                    cell = cast(tuple[float, tuple[float, float], tuple[float, float]],
                                result[f"p{level}"])
                    rate, (wl, wh), (bl, bh) = cell
                    cells.append(f"{rate:.0%} [{bl:.0%}-{bh:.0%}] (W {wl:.0%}-{wh:.0%})")
                label = f"when {amount} more" if question == "when" else f"how many in {amount}d"
                print(f"| {name} | {label} | {method} | {result['origins']} "
                      f"({result['refused']}) | " + " | ".join(cells)
                      + f" | {result['seconds']:.0f} |", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
