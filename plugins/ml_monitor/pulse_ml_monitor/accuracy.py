"""Prediction accuracy over time, from the predictions whose actual outcome is known.

* numbers: MAE = mean |predicted - actual|; MAPE = mean |predicted - actual| / |actual| over
  the predictions whose actual is not 0 (those are counted in ``mape_excluded``);
* classes: accuracy = correct / all; per class, precision = correct / predicted as it,
  recall = correct / actually it; macro averages over the classes that have a defined
  value; calibration in ten confidence bins [0, 0.1) ... [0.9, 1.0] (mean confidence vs the
  share correct), the expected calibration error (count-weighted |accuracy - confidence|)
  and the Brier score of the confidence as the probability of being correct.

Buckets are UTC days, ISO weeks (Monday) or months of ``predicted_at``; ``all`` is one
bucket, the window. Only buckets holding predictions are listed.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

BINS = 10


def bucket_end(start: datetime, interval: str) -> datetime:
    """The exclusive end of the UTC day, week or month starting at ``start``."""
    if interval == "day":
        return start + timedelta(days=1)
    if interval == "week":
        return start + timedelta(days=7)
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return start.replace(year=year, month=month)


def _where(version: str | None, kind: str) -> str:
    return (
        "model = :model AND kind = '" + kind + "' AND actual_at IS NOT NULL "
        "AND predicted_at >= :start AND predicted_at < :end"
        + (" AND model_version = :version" if version is not None else "")
    )


def _bucket(interval: str) -> str:
    if interval == "all":
        return "CAST(NULL AS timestamptz)"
    return f"date_trunc('{interval}', predicted_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"


async def numeric(
    session: AsyncSession, params: dict[str, Any], version: str | None, interval: str
) -> list[dict[str, Any]]:
    """MAE and MAPE per bucket."""
    rows = await session.execute(
        text(f"SELECT {_bucket(interval)} AS b, count(*) AS n, "
             "avg(abs(predicted_value - actual_value)) AS mae, "
             "avg(abs(predicted_value - actual_value) / abs(actual_value)) "
             "FILTER (WHERE actual_value <> 0) AS mape, "
             "count(*) FILTER (WHERE actual_value = 0) AS zero "
             f"FROM ai_predictions WHERE {_where(version, 'numeric')} GROUP BY 1 ORDER BY 1"),
        params)
    return [
        {"bucket": row.b, "count": row.n, "mae": row.mae, "mape": row.mape,
         "mape_excluded": row.zero}
        for row in rows
    ]


async def classes(
    session: AsyncSession, params: dict[str, Any], version: str | None, interval: str
) -> list[dict[str, Any]]:
    """Accuracy, per-class precision and recall, and calibration per bucket."""
    where = _where(version, "class")
    bucket = _bucket(interval)
    predicted = await session.execute(
        text(f"SELECT {bucket} AS b, predicted_class AS label, count(*) AS n, "
             "count(*) FILTER (WHERE predicted_class = actual_class) AS correct "
             f"FROM ai_predictions WHERE {where} GROUP BY 1, 2"), params)
    actual = await session.execute(
        text(f"SELECT {bucket} AS b, actual_class AS label, count(*) AS n "
             f"FROM ai_predictions WHERE {where} GROUP BY 1, 2"), params)
    calibration = await session.execute(
        text(f"SELECT {bucket} AS b, least(floor(confidence * {BINS}), {BINS - 1}) AS bin, "
             "count(*) AS n, avg(confidence) AS confidence, "
             "avg(CASE WHEN predicted_class = actual_class THEN 1.0 ELSE 0.0 END) AS hit, "
             "sum(power(confidence - CASE WHEN predicted_class = actual_class THEN 1.0 "
             "ELSE 0.0 END, 2)) AS squared "
             f"FROM ai_predictions WHERE {where} AND confidence IS NOT NULL "
             "GROUP BY 1, 2 ORDER BY 2"), params)
    by_bucket: dict[Any, dict[str, Any]] = defaultdict(
        lambda: {"predicted": {}, "support": {}, "bins": []})
    for row in predicted:
        by_bucket[row.b]["predicted"][row.label] = (row.n, row.correct)
    for row in actual:
        by_bucket[row.b]["support"][row.label] = row.n
    for row in calibration:
        by_bucket[row.b]["bins"].append(row)
    out = []
    for key in sorted(by_bucket, key=lambda b: (b is not None, b)):
        found = by_bucket[key]
        total = sum(n for n, _ in found["predicted"].values())
        correct = sum(c for _, c in found["predicted"].values())
        labels = sorted(set(found["predicted"]) | set(found["support"]))
        scores = []
        for label in labels:
            n_predicted, n_correct = found["predicted"].get(label, (0, 0))
            support = found["support"].get(label, 0)
            scores.append({
                "label": label, "predicted": n_predicted, "support": support,
                "precision": n_correct / n_predicted if n_predicted else None,
                "recall": n_correct / support if support else None,
            })
        precisions = [s["precision"] for s in scores if s["precision"] is not None]
        recalls = [s["recall"] for s in scores if s["recall"] is not None]
        bins = found["bins"]
        with_confidence = sum(row.n for row in bins)
        out.append({
            "bucket": key, "count": total, "accuracy": correct / total if total else None,
            "macro_precision": sum(precisions) / len(precisions) if precisions else None,
            "macro_recall": sum(recalls) / len(recalls) if recalls else None,
            "classes": scores,
            "calibration": [
                {"low": int(row.bin) / BINS, "high": (int(row.bin) + 1) / BINS,
                 "count": row.n, "mean_confidence": float(row.confidence),
                 "accuracy": float(row.hit)}
                for row in bins
            ],
            "expected_calibration_error": (
                sum(row.n / with_confidence * abs(float(row.hit) - float(row.confidence))
                    for row in bins) if with_confidence else None),
            "brier_score": (sum(float(row.squared) for row in bins) / with_confidence
                            if with_confidence else None),
            "with_confidence": with_confidence,
        })
    return out


def _empty_numeric() -> dict[str, Any]:
    return {"count": 0, "mae": None, "mape": None, "mape_excluded": 0}


def _empty_classes() -> dict[str, Any]:
    return {"count": 0, "accuracy": None, "macro_precision": None, "macro_recall": None,
            "classes": [], "calibration": [], "expected_calibration_error": None,
            "brier_score": None, "with_confidence": 0}


async def accuracy(
    session: AsyncSession, *, model: str, version: str | None, start: datetime,
    end: datetime, interval: str,
) -> dict[str, Any]:
    """The accuracy document of one model (and version) over ``[start, end)``."""
    params: dict[str, Any] = {"model": model, "start": start, "end": end}
    if version is not None:
        params["version"] = version

    def series(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for row in rows:
            bucket = row.pop("bucket")
            row["start"], row["end"] = bucket, bucket_end(bucket, interval)
        return rows

    overall_numeric = await numeric(session, params, version, "all")
    overall_classes = await classes(session, params, version, "all")
    numeric_total = overall_numeric[0] if overall_numeric else _empty_numeric()
    numeric_total.pop("bucket", None)
    class_total = overall_classes[0] if overall_classes else _empty_classes()
    class_total.pop("bucket", None)
    if interval == "all":
        numeric_series = [dict(numeric_total)] if numeric_total["count"] else []
        class_series = [dict(class_total)] if class_total["count"] else []
        for item in (*numeric_series, *class_series):
            item["start"], item["end"] = start, end
    else:
        numeric_series = series(await numeric(session, params, version, interval))
        class_series = series(await classes(session, params, version, interval))
    return {
        "model": model, "model_version": version, "interval": interval,
        "start": start, "end": end,
        "numeric": {**numeric_total, "start": start, "end": end},
        "numeric_series": numeric_series,
        "classes": {**class_total, "start": start, "end": end},
        "class_series": class_series,
    }
