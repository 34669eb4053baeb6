"""pulse-ml-monitor's tables (all tenant-scoped: row-level security applies to each).

* ``ai_learning_memory``: feedback and corrections on AI output (what was asked, what the
  AI produced, the error, the correction, who, when, the outcome);
* ``ai_predictions``: a model's prediction (a number or a class, with a confidence) and,
  once known, the actual outcome;
* ``ai_performance_metrics``: one call of a model: latency, tokens, cost, success;
* ``ml_anomaly_alerts``: an anomaly of a metric in a scope, merged while it lasts, with the
  expected range, score, severity and status (open, acknowledged, resolved);
* ``ml_scan_state``: when the anomaly scan last ran for a tenant (health freshness);
* ``embeddings``: one vector per entity and embedder (pgvector, HNSW index), created only
  on a server that has pgvector (see :mod:`pulse_ml_monitor.vectors`);
* ``ml_embedding_state``: how far the embedding of each entity type has got per tenant.

Every table has a ``bigint`` identity ``id`` that orders its lists (keyset pagination).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()

#: Dimensions of every stored vector (the default embedder and all-MiniLM-L6-v2 both give 384).
VECTOR_DIMENSIONS = 384


def _tenant() -> Column[Any]:
    return Column("tenant_id", UUID(as_uuid=False), nullable=False)


def _id() -> Column[Any]:
    return Column("id", BigInteger, Identity(always=False), nullable=False)


def _time(name: str, nullable: bool = True, now: bool = False) -> Column[Any]:
    return Column(
        name, DateTime(timezone=True), nullable=nullable,
        server_default=func.now() if now else None,
    )


ai_learning_memory = Table(
    "ai_learning_memory",
    metadata,
    _tenant(),
    _id(),
    _time("recorded_at", nullable=False, now=True),
    Column("source", String(100), nullable=False, comment="who sent it: api, ai_validation..."),
    Column("question", Text, comment="what the user asked"),
    Column("ai_output", Text, nullable=False, comment="what the AI produced"),
    Column("error", Text, comment="what was wrong with it"),
    Column("error_kind", String(200), comment="a classification of the error (a rule id)"),
    Column("correction", Text, comment="the corrected output"),
    Column("outcome", String(20), nullable=False),
    Column("model", String(200)),
    Column("recorded_by", String(200), comment="the user (id) who gave the feedback"),
    Column("context", JSONB, nullable=False, server_default="{}"),
    PrimaryKeyConstraint("tenant_id", "id"),
    Index("ix_ai_learning_memory_kind", "tenant_id", "error_kind", "id"),
)

ai_predictions = Table(
    "ai_predictions",
    metadata,
    _tenant(),
    _id(),
    _time("predicted_at", nullable=False, now=True),
    Column("model", String(200), nullable=False),
    Column("model_version", String(100), nullable=False),
    Column("input_ref", String(500), nullable=False, comment="what the prediction is about"),
    Column("kind", String(20), nullable=False, comment="numeric or class"),
    Column("predicted_value", Float),
    Column("predicted_class", String(200)),
    Column("confidence", Float, comment="0..1: the model's probability of its answer"),
    Column("actual_value", Float),
    Column("actual_class", String(200)),
    _time("actual_at"),
    PrimaryKeyConstraint("tenant_id", "id"),
    Index("ix_ai_predictions_model", "tenant_id", "model", "predicted_at"),
)

ai_performance_metrics = Table(
    "ai_performance_metrics",
    metadata,
    _tenant(),
    _id(),
    _time("recorded_at", nullable=False, now=True),
    Column("model", String(200), nullable=False),
    Column("operation", String(200), nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("input_tokens", Integer, nullable=False, server_default="0"),
    Column("output_tokens", Integer, nullable=False, server_default="0"),
    Column("cost", Float, nullable=False, server_default="0", comment="in cost_currency"),
    Column("success", Boolean, nullable=False),
    Column("error_type", String(200)),
    PrimaryKeyConstraint("tenant_id", "id"),
    Index("ix_ai_performance_metrics_model", "tenant_id", "model", "operation", "recorded_at"),
)

ml_anomaly_alerts = Table(
    "ml_anomaly_alerts",
    metadata,
    _tenant(),
    _id(),
    Column("metric", String(200), nullable=False),
    Column("scope", String(300), nullable=False, comment="tenant, or filter=value"),
    _time("first_at", nullable=False),
    _time("last_at", nullable=False),
    _time("peak_at", nullable=False),
    Column("observed", Float, nullable=False, comment="the value at the peak"),
    Column("expected_low", Float, nullable=False),
    Column("expected_high", Float, nullable=False),
    Column("score", Float, nullable=False, comment="robust z-score of the peak"),
    Column("direction", String(10), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("points", Integer, nullable=False),
    Column("model", String(100), nullable=False),
    Column("status", String(20), nullable=False, server_default="open"),
    _time("detected_at", nullable=False, now=True),
    _time("updated_at", nullable=False, now=True),
    _time("acknowledged_at"),
    Column("acknowledged_by", String(200)),
    _time("resolved_at"),
    Column("resolved_by", String(200)),
    Column("note", Text),
    PrimaryKeyConstraint("tenant_id", "id"),
    Index("ix_ml_anomaly_alerts_series", "tenant_id", "metric", "scope", "last_at"),
    Index("ix_ml_anomaly_alerts_status", "tenant_id", "status", "id"),
)

ml_scan_state = Table(
    "ml_scan_state",
    metadata,
    _tenant(),
    _time("scanned_at", nullable=False),
    Column("series_scanned", Integer, nullable=False),
    Column("anomalies", Integer, nullable=False),
    Column("errors", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("tenant_id"),
)

ml_embedding_state = Table(
    "ml_embedding_state",
    metadata,
    _tenant(),
    Column("entity_type", String(40), nullable=False),
    Column("model", String(200), nullable=False),
    _time("indexed_until", nullable=False),
    _time("indexed_at", nullable=False),
    PrimaryKeyConstraint("tenant_id", "entity_type", "model"),
)

TABLES = (ai_learning_memory, ai_predictions, ai_performance_metrics, ml_anomaly_alerts,
          ml_scan_state, ml_embedding_state)

#: The pgvector table: created by the migration only where the extension exists, and not on
#: the engine's metadata (its column type needs pgvector); read and written in SQL.
EMBEDDINGS_TABLE = "embeddings"

#: The scope b-tree, covering the exact read: a tenant's vectors together in its leaf pages,
#: read index-only (an index tuple holds a 384-dimension vector: 1.5 kB, under b-tree's
#: 2.7 kB limit). It also counts the rows a filter matches. It replaced ``ix_embeddings_scope``
#: (the same key without ``INCLUDE``; migration ``ml_0002``).
EMBEDDINGS_VECTORS_INDEX = (
    f"CREATE INDEX IF NOT EXISTS ix_embeddings_scope_vectors ON {EMBEDDINGS_TABLE} "
    "(tenant_id, model, entity_type) INCLUDE (entity_id, embedding)"
)

#: The HNSW index's options: m = 24 since ``ml_0003`` (m = 16 before). At 1,000,000 clustered
#: 384-dimension vectors m = 16 stopped at recall@10 0.938 even at ef_search 1000; m = 24
#: reaches 0.956 at ef_search 400 (bench/README.md), for the same index size on disk.
EMBEDDINGS_HNSW_OPTIONS = {"m": 24, "ef_construction": 64}


def hnsw_index_ddl(name: str, options: dict[str, int]) -> str:
    """``CREATE INDEX IF NOT EXISTS`` of an HNSW index ``name`` on the vectors, ``options``."""
    return (
        f"CREATE INDEX IF NOT EXISTS {name} ON {EMBEDDINGS_TABLE} "
        "USING hnsw (embedding vector_cosine_ops) WITH ("
        + ", ".join(f"{key} = {value}" for key, value in options.items()) + ")"
    )


EMBEDDINGS_HNSW_INDEX = hnsw_index_ddl("ix_embeddings_hnsw", EMBEDDINGS_HNSW_OPTIONS)

EMBEDDINGS_DDL = (
    f"""
    CREATE TABLE IF NOT EXISTS {EMBEDDINGS_TABLE} (
        tenant_id uuid NOT NULL,
        entity_type varchar(40) NOT NULL,
        entity_id uuid NOT NULL,
        model varchar(200) NOT NULL,
        content_hash varchar(64) NOT NULL,
        title text,
        embedding vector({VECTOR_DIMENSIONS}) NOT NULL,
        source_updated_at timestamptz,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, entity_type, entity_id, model)
    )
    """,
    EMBEDDINGS_VECTORS_INDEX,
    EMBEDDINGS_HNSW_INDEX,
)
