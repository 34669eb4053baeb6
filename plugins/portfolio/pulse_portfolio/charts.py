"""Charts of a series with its forecast band (matplotlib, Agg backend: no display)."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402


def render(document: dict[str, Any], image_format: str) -> bytes:
    """A PNG or SVG of a trend document (``/portfolio/trends``'s answer)."""
    figure = Figure(figsize=(8, 3.5), dpi=100)
    axes = figure.subplots()
    series = document["series"]
    xs = list(range(len(series)))
    ys = [point["value"] for point in series]
    axes.plot(xs, [y if y is not None else float("nan") for y in ys], marker="o",
              label=document["metric"])
    points = document["forecast"]["points"]
    if points:
        fx = [len(series) - 1 + p["offset"] for p in points]
        axes.fill_between(fx, [p["low95"] for p in points], [p["high95"] for p in points],
                          alpha=0.15, label="95%")
        axes.fill_between(fx, [p["low80"] for p in points], [p["high80"] for p in points],
                          alpha=0.3, label="80%")
        axes.plot(fx, [p["value"] for p in points], linestyle="--", label="forecast")
    axes.set_title(f"{document['metric']} per {document['interval']} ({document['unit']})")
    labels = [point["start"].date().isoformat() if point["start"] else "" for point in series]
    step = max(1, len(labels) // 8)
    axes.set_xticks(xs[::step], labels[::step], rotation=30, fontsize=7)
    axes.legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format=image_format)
    return buffer.getvalue()
