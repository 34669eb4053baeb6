"""Validation latency of pulse-ai-validation beside a bare sqlglot parse, in one run.

For every statement of the legit corpus (``plugins/ai_validation/tests/data/legit_sql.json``,
120 typical analytics queries) it times, interleaved, ``sqlglot.parse`` alone (the
baseline) and the full validation (parse, every registered built-in rule, the tenant-scope
and LIMIT rewrites, SQL generation), over several rounds, and prints p50/p95/p99 of each
and their ratio. In-process: no HTTP, no database (the validator needs neither).

    .venv/bin/python bench/ai_validation_bench.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from pathlib import Path

import sqlglot
from pulse_ai_validation.catalog import ANALYTICS_CATALOG
from pulse_ai_validation.plugin import register_validation_rules
from pulse_ai_validation.rules import ValidationPolicy
from pulse_ai_validation.validator import Validator

LEGIT = Path(__file__).parent.parent / "plugins/ai_validation/tests/data/legit_sql.json"
TENANT = "5f0c2a4e-8d7b-4c1e-9a3f-2b6d8e1f0a7c"


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def main() -> None:
    """Time both and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    statements = [item["sql"] for item in json.loads(LEGIT.read_text())]
    validator = Validator(register_validation_rules())
    policy = ValidationPolicy()
    for sql in statements:  # warm up (imports, caches)
        assert validator.validate(sql, ANALYTICS_CATALOG, policy, TENANT).valid
        sqlglot.parse(sql, read="postgres")
    samples: dict[str, list[float]] = {
        "parse wall": [], "validate wall": [], "parse cpu": [], "validate cpu": []}
    gc.collect()
    for _ in range(args.rounds):
        for sql in statements:
            wall, cpu = time.perf_counter(), time.thread_time()
            sqlglot.parse(sql, read="postgres")
            samples["parse cpu"].append((time.thread_time() - cpu) * 1000)
            samples["parse wall"].append((time.perf_counter() - wall) * 1000)
            wall, cpu = time.perf_counter(), time.thread_time()
            validator.validate(sql, ANALYTICS_CATALOG, policy, TENANT)
            samples["validate cpu"].append((time.thread_time() - cpu) * 1000)
            samples["validate wall"].append((time.perf_counter() - wall) * 1000)
    count = len(samples["parse wall"])
    print(f"{len(statements)} statements x {args.rounds} rounds = {count} samples each")
    print("wall: elapsed time (includes waiting for a CPU on a loaded machine); "
          "cpu: this thread's CPU time")
    print(f"{'':34}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'mean ms':>9}")
    for clock in ("wall", "cpu"):
        for name, key in (("sqlglot.parse (baseline)", "parse"), ("full validation", "validate")):
            values = samples[f"{key} {clock}"]
            print(f"{name + ' [' + clock + ']':34}{percentile(values, 0.5):>9.3f}"
                  f"{percentile(values, 0.95):>9.3f}{percentile(values, 0.99):>9.3f}"
                  f"{statistics.fmean(values):>9.3f}")
        for label, fraction in (("p50", 0.5), ("p99", 0.99)):
            ratio = percentile(samples[f"validate {clock}"], fraction) / percentile(
                samples[f"parse {clock}"], fraction)
            print(f"  {label} ratio validation / parse [{clock}]: {ratio:.2f}x")
        p99 = percentile(samples[f"validate {clock}"], 0.99)
        print(f"  target p99 < 20 ms [{clock}]: {'met' if p99 < 20 else 'NOT met'} "
              f"({p99:.3f} ms)")


if __name__ == "__main__":
    main()
