"""Semantic validation accuracy: pulse-ai-validation's judge vs a lexical-overlap baseline.

Reads the labelled pairs (``plugins/ai_validation/tests/data/semantic_pairs.json``: for each
question the right SQL beside a subtly wrong one), scores both SQL texts with
``pulse_ai_validation.semantics.judge`` over the analytics catalog and with the baseline
(Jaccard overlap of the question's words and the SQL's identifier words) in the same run,
and prints paired accuracy (the right SQL scores strictly higher; a tie counts half),
AUROC (right = positive), per-kind paired accuracy, and reliability bins with the
expected calibration error.

    .venv/bin/python bench/ai_semantics_bench.py [--json]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pulse_ai_validation.catalog import ANALYTICS_CATALOG
from pulse_ai_validation.semantics import judge, lexical_overlap

PAIRS = Path(__file__).parent.parent / "plugins/ai_validation/tests/data/semantic_pairs.json"


def auroc(positives: list[float], negatives: list[float]) -> float:
    """P(score of a random positive > score of a random negative), ties counting half."""
    wins = 0.0
    for p in positives:
        for n in negatives:
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(positives) * len(negatives))


def paired(rights: list[float], wrongs: list[float]) -> float:
    """Share of pairs where the right SQL scores higher (ties count half)."""
    return sum(1.0 if r > w else 0.5 if r == w else 0.0
               for r, w in zip(rights, wrongs, strict=True)) / len(rights)


def reliability(
    scores: list[float], labels: list[int], bins: int = 5
) -> tuple[list[dict[str, float]], float]:
    """Reliability bins (mean confidence, fraction right, count) and the expected
    calibration error (count-weighted |confidence - accuracy|)."""
    table: list[dict[str, float]] = []
    ece = 0.0
    for index in range(bins):
        low, high = index / bins, (index + 1) / bins
        members = [(s, y) for s, y in zip(scores, labels, strict=True)
                   if low <= s < high or (index == bins - 1 and s == 1.0)]
        if not members:
            table.append({"low": low, "high": high, "count": 0, "confidence": 0.0,
                          "accuracy": 0.0})
            continue
        confidence = sum(s for s, _ in members) / len(members)
        accuracy = sum(y for _, y in members) / len(members)
        ece += len(members) / len(scores) * abs(confidence - accuracy)
        table.append({"low": low, "high": high, "count": len(members),
                      "confidence": round(confidence, 3), "accuracy": round(accuracy, 3)})
    return table, round(ece, 3)


def evaluate(pairs: list[dict[str, str]], score: Callable[[str, str], float]) -> dict[str, Any]:
    """Every figure for one scorer."""
    rights = [score(p["question"], p["right"]) for p in pairs]
    wrongs = [score(p["question"], p["wrong"]) for p in pairs]
    by_kind: dict[str, list[float]] = defaultdict(list)
    for pair, r, w in zip(pairs, rights, wrongs, strict=True):
        by_kind[pair["kind"]].append(1.0 if r > w else 0.5 if r == w else 0.0)
    bins, ece = reliability(rights + wrongs, [1] * len(rights) + [0] * len(wrongs))
    return {
        "paired_accuracy": round(paired(rights, wrongs), 3),
        "auroc": round(auroc(rights, wrongs), 3),
        "by_kind": {k: round(sum(v) / len(v), 3) for k, v in sorted(by_kind.items())},
        "reliability": bins,
        "ece": ece,
    }


def main() -> None:
    """Print the judge's and the baseline's figures side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--pairs", type=Path, default=PAIRS,
                        help="the labelled pairs (default: the tuning set; "
                        "semantic_pairs_holdout.json was written after tuning)")
    args = parser.parse_args()
    pairs = json.loads(args.pairs.read_text())
    judge_figures = evaluate(pairs, lambda q, s: judge(q, s, ANALYTICS_CATALOG).confidence)
    baseline = evaluate(pairs, lexical_overlap)
    if args.json:
        print(json.dumps({"pairs": len(pairs), "judge": judge_figures, "baseline": baseline},
                         indent=1))
        return
    print(f"{len(pairs)} pairs ({len(pairs) * 2} question/SQL items)")
    print(f"{'':24}{'judge':>10}{'lexical':>10}")
    for key in ("paired_accuracy", "auroc", "ece"):
        print(f"{key:24}{judge_figures[key]:>10}{baseline[key]:>10}")
    print("paired accuracy by kind:")
    for kind, value in judge_figures["by_kind"].items():
        print(f"  {kind:22}{value:>10}{baseline['by_kind'][kind]:>10}")
    print("reliability bins of the judge (confidence range: count, mean confidence, share right):")
    for row in judge_figures["reliability"]:
        print(f"  [{row['low']:.1f}, {row['high']:.1f}): {row['count']:>3}  "
              f"{row['confidence']:.3f}  {row['accuracy']:.3f}")


if __name__ == "__main__":
    main()
