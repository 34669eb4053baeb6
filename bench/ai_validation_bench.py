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
    parse_ms: list[float] = []
    validate_ms: list[float] = []
    gc.collect()
    for _ in range(args.rounds):
        for sql in statements:
            started = time.perf_counter()
            sqlglot.parse(sql, read="postgres")
            parse_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            validator.validate(sql, ANALYTICS_CATALOG, policy, TENANT)
            validate_ms.append((time.perf_counter() - started) * 1000)
    print(f"{len(statements)} statements x {args.rounds} rounds = {len(parse_ms)} samples each")
    print(f"{'':28}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'mean ms':>9}")
    for name, samples in (("sqlglot.parse (baseline)", parse_ms),
                          ("full validation", validate_ms)):
        print(f"{name:28}{percentile(samples, 0.5):>9.3f}{percentile(samples, 0.95):>9.3f}"
              f"{percentile(samples, 0.99):>9.3f}{statistics.fmean(samples):>9.3f}")
    for label, fraction in (("p50", 0.5), ("p99", 0.99)):
        ratio = percentile(validate_ms, fraction) / percentile(parse_ms, fraction)
        print(f"{label} ratio validation / parse: {ratio:.2f}x")
    p99 = percentile(validate_ms, 0.99)
    print(f"target p99 < 20 ms: {'met' if p99 < 20 else 'NOT met'} ({p99:.3f} ms)")


if __name__ == "__main__":
    main()
