"""The ``{api_v1_prefix}/ml`` endpoints and ``/health/ml``.

Reads need any tenant role; feedback may come from any user (``viewer``); predictions and
model calls are written by an ``analyst`` (or an API key of one); alerts are acknowledged
and resolved by an analyst; re-embedding and an immediate scan need an ``admin``. Every
read and write runs in the caller's tenant-bound transaction (row-level security).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response
from sqlalchemy import ColumnElement, Select, and_, func, insert, select, text, update

from pulse_engine import (
    Problem,
    body_limit,
    check_window,
    current_principal,
    current_tenant_id,
    fetch_page,
    invalid_field,
    problem_responses,
    public,
    require_role,
    tenant_session,
)
from pulse_ml_monitor import accuracy, detector
from pulse_ml_monitor.config import MlSettings
from pulse_ml_monitor.embedder import vector_literal
from pulse_ml_monitor.embeddings import EMBED_QUEUE
from pulse_ml_monitor.health import HealthDocument, ml_health
from pulse_ml_monitor.scan import SCAN_QUEUE
from pulse_ml_monitor.schemas import (
    Accuracy,
    AccuracyQuery,
    ActualIn,
    AnomalyItem,
    AnomalyPage,
    AnomalyQuery,
    DetectIn,
    DetectOut,
    LearningIn,
    LearningItem,
    LearningPage,
    LearningQuery,
    PerformanceIn,
    PerformanceItem,
    PerformancePage,
    PerformanceQuery,
    PerformanceRecordsQuery,
    PerformanceSummary,
    PredictionIn,
    PredictionItem,
    PredictionPage,
    PredictionQuery,
    ReindexIn,
    ScanQueued,
    SimilarIn,
    SimilarOut,
    TransitionIn,
    WindowQuery,
    check_kind_fields,
)
from pulse_ml_monitor.tables import (
    ai_learning_memory,
    ai_performance_metrics,
    ai_predictions,
    ml_anomaly_alerts,
)
from pulse_ml_monitor.vectors import nearest, vector_support, vectors_unavailable

if TYPE_CHECKING:
    from pulse_engine import Engine
    from pulse_ml_monitor.embedder import EmbedderSlot

#: Default window of the summaries.
DEFAULT_WINDOW = timedelta(days=90)
#: Most groups a performance summary lists.
MAX_GROUPS = 500
_ID = re.compile(r"^[1-9][0-9]{0,18}$")


def parse_id(raw: str, what: str) -> int:
    """A path id as a bigint; 404 for anything that cannot be one."""
    if _ID.match(raw) and int(raw) < 2**63:
        return int(raw)
    raise Problem(404, "not-found", f"No {what} {raw[:40]!r}.")


def window_of(query: WindowQuery, interval: str = "all") -> tuple[datetime, datetime]:
    """The query's window (default: the 90 days to now), checked."""
    end = query.end or datetime.now(UTC)
    start = query.start or end - DEFAULT_WINDOW
    check_window(start, end, interval)
    return start, end


def _equal(column: ColumnElement[Any], value: Any) -> list[ColumnElement[bool]]:
    return [] if value is None else [column == value]


def _learning(row: Any) -> dict[str, Any]:
    return {**{c: getattr(row, c) for c in (
        "recorded_at", "source", "question", "ai_output", "error", "error_kind", "correction",
        "outcome", "model", "recorded_by", "context")}, "id": str(row.id)}


def _prediction(row: Any) -> dict[str, Any]:
    return {**{c: getattr(row, c) for c in (
        "predicted_at", "model", "model_version", "input_ref", "kind", "predicted_value",
        "predicted_class", "confidence", "actual_value", "actual_class", "actual_at")},
        "id": str(row.id)}


def _performance(row: Any) -> dict[str, Any]:
    return {**{c: getattr(row, c) for c in (
        "recorded_at", "model", "operation", "latency_ms", "input_tokens", "output_tokens",
        "cost", "success", "error_type")}, "id": str(row.id)}


def _alert(row: Any) -> dict[str, Any]:
    return {**{c: getattr(row, c) for c in (
        "metric", "scope", "first_at", "last_at", "peak_at", "observed", "score", "direction",
        "severity", "points", "model", "status", "detected_at", "updated_at",
        "acknowledged_at", "acknowledged_by", "resolved_at", "resolved_by", "note")},
        "id": str(row.id), "expected": [row.expected_low, row.expected_high]}


async def _page(
    query: Select[Any], column: ColumnElement[Any], args: Any,
    to_item: Callable[[Any], dict[str, Any]],
) -> dict[str, Any]:
    async with tenant_session() as session:
        page = await fetch_page(session, query, column, kind=int, limit=args.capped_limit,
                                cursor=args.cursor, to_item=to_item, descending=True)
    return page.as_dict()


def build_blueprints(
    engine: Engine, settings: MlSettings, embedders: EmbedderSlot
) -> list[Blueprint]:
    """The ``ml`` API blueprint and the ``/health/ml`` blueprint."""
    api = Blueprint("ml", __name__, url_prefix=f"{engine.settings.api_v1_prefix}/ml")
    health = Blueprint("ml_health", __name__, url_prefix="/health/ml")

    # --- learning memory ---------------------------------------------------------------

    @api.post("/learning-memory")
    @require_role("viewer")
    @validate_request(LearningIn)
    @validate_response(LearningItem, 201)
    @problem_responses()
    async def add_feedback(data: LearningIn) -> tuple[dict[str, Any], int]:
        """Record feedback on an AI answer (who: the caller)."""
        values = data.model_dump()
        values["recorded_by"] = current_principal().user_id
        async with tenant_session() as session:
            row = (await session.execute(
                insert(ai_learning_memory).values(tenant_id=current_tenant_id(), **values)
                .returning(ai_learning_memory))).one()
        return _learning(row), 201

    @api.get("/learning-memory")
    @require_role("viewer")
    @validate_querystring(LearningQuery)
    @validate_response(LearningPage)
    @problem_responses()
    async def list_feedback(query_args: LearningQuery) -> dict[str, Any]:
        """Feedback records, newest first."""
        t = ai_learning_memory
        query = select(t).where(and_(True, *_equal(t.c.error_kind, query_args.error_kind),
                                     *_equal(t.c.outcome, query_args.outcome),
                                     *_equal(t.c.source, query_args.source),
                                     *_equal(t.c.model, query_args.model)))
        return await _page(query, t.c.id, query_args, _learning)

    @api.get("/learning-memory/<record_id>")
    @require_role("viewer")
    @validate_response(LearningItem)
    @problem_responses()
    async def get_feedback(record_id: str) -> dict[str, Any]:
        """One feedback record."""
        key = parse_id(record_id, "feedback record")
        async with tenant_session() as session:
            row = (await session.execute(
                select(ai_learning_memory).where(ai_learning_memory.c.id == key))).first()
        if row is None:
            raise Problem(404, "not-found", f"No feedback record {record_id}.")
        return _learning(row)

    # --- predictions -------------------------------------------------------------------

    @api.post("/predictions")
    @require_role("analyst")
    @validate_request(PredictionIn)
    @validate_response(PredictionItem, 201)
    @problem_responses()
    async def add_prediction(data: PredictionIn) -> tuple[dict[str, Any], int]:
        """Record a prediction (with its actual outcome when already known)."""
        values = data.model_dump(exclude_none=True)
        if data.actual_value is not None or data.actual_class is not None:
            values["actual_at"] = datetime.now(UTC)
        async with tenant_session() as session:
            row = (await session.execute(
                insert(ai_predictions).values(tenant_id=current_tenant_id(), **values)
                .returning(ai_predictions))).one()
        return _prediction(row), 201

    @api.put("/predictions/<prediction_id>/actual")
    @require_role("analyst")
    @validate_request(ActualIn)
    @validate_response(PredictionItem)
    @problem_responses(409)
    async def set_actual(prediction_id: str, data: ActualIn) -> dict[str, Any]:
        """Record the actual outcome of a prediction (the same one again is a no-op; a
        different one is a 409: outcomes are facts, not edits)."""
        key = parse_id(prediction_id, "prediction")
        t = ai_predictions
        async with tenant_session() as session:
            row = (await session.execute(
                select(t).where(t.c.id == key).with_for_update())).first()
            if row is None:
                raise Problem(404, "not-found", f"No prediction {prediction_id}.")
            try:
                check_kind_fields(row.kind, data.actual_value, data.actual_class, "actual")
            except ValueError as error:
                raise invalid_field("actual_value" if row.kind == "numeric" else "actual_class",
                                    str(error)) from None
            if row.actual_at is not None:
                if (row.actual_value, row.actual_class) == (data.actual_value,
                                                            data.actual_class):
                    return _prediction(row)
                raise Problem(409, "actual-already-recorded",
                              f"Prediction {prediction_id} already has its actual outcome.")
            row = (await session.execute(
                update(t).where(t.c.id == key).values(
                    actual_value=data.actual_value, actual_class=data.actual_class,
                    actual_at=data.actual_at or datetime.now(UTC)).returning(t))).one()
        return _prediction(row)

    @api.get("/predictions")
    @require_role("viewer")
    @validate_querystring(PredictionQuery)
    @validate_response(PredictionPage)
    @problem_responses()
    async def list_predictions(query_args: PredictionQuery) -> dict[str, Any]:
        """Predictions, newest first."""
        t = ai_predictions
        conditions = [*_equal(t.c.model, query_args.model),
                      *_equal(t.c.model_version, query_args.model_version),
                      *_equal(t.c.kind, query_args.kind)]
        if query_args.resolved is not None:
            conditions.append(t.c.actual_at.is_not(None) if query_args.resolved
                              else t.c.actual_at.is_(None))
        return await _page(select(t).where(and_(True, *conditions)), t.c.id, query_args,
                           _prediction)

    @api.get("/predictions/accuracy")
    @require_role("viewer")
    @validate_querystring(AccuracyQuery)
    @validate_response(Accuracy)
    @problem_responses(503)
    async def prediction_accuracy(query_args: AccuracyQuery) -> dict[str, Any]:
        """MAE and MAPE (numbers), accuracy, precision, recall and calibration (classes),
        over the window and per bucket, of the predictions with an actual outcome."""
        start, end = window_of(query_args, query_args.interval)
        async with tenant_session() as session:
            return await accuracy.accuracy(
                session, model=query_args.model, version=query_args.model_version,
                start=start, end=end, interval=query_args.interval)

    # --- performance -------------------------------------------------------------------

    @api.post("/performance")
    @require_role("analyst")
    @validate_request(PerformanceIn)
    @validate_response(PerformanceItem, 201)
    @problem_responses()
    async def add_call(data: PerformanceIn) -> tuple[dict[str, Any], int]:
        """Record one call of a model."""
        async with tenant_session() as session:
            row = (await session.execute(
                insert(ai_performance_metrics).values(
                    tenant_id=current_tenant_id(), **data.model_dump(exclude_none=True))
                .returning(ai_performance_metrics))).one()
        return _performance(row), 201

    @api.get("/performance/calls")
    @require_role("viewer")
    @validate_querystring(PerformanceRecordsQuery)
    @validate_response(PerformancePage)
    @problem_responses()
    async def list_calls(query_args: PerformanceRecordsQuery) -> dict[str, Any]:
        """Recorded calls, newest first."""
        t = ai_performance_metrics
        query = select(t).where(and_(True, *_equal(t.c.model, query_args.model),
                                     *_equal(t.c.operation, query_args.operation),
                                     *_equal(t.c.success, query_args.success)))
        return await _page(query, t.c.id, query_args, _performance)

    @api.get("/performance")
    @require_role("viewer")
    @validate_querystring(PerformanceQuery)
    @validate_response(PerformanceSummary)
    @problem_responses(503)
    async def performance(query_args: PerformanceQuery) -> dict[str, Any]:
        """Latency percentiles, success rate, tokens and cost per model and operation."""
        start, end = window_of(query_args)
        t = ai_performance_metrics
        latency = t.c.latency_ms
        query = (
            select(
                t.c.model, t.c.operation, func.count().label("calls"),
                func.count().filter(t.c.success).label("successes"),
                *[func.percentile_cont(q).within_group(latency).label(f"p{int(q * 100)}")
                  for q in (0.5, 0.9, 0.95, 0.99)],
                func.avg(latency).label("mean"), func.max(latency).label("max"),
                func.sum(t.c.input_tokens).label("input_tokens"),
                func.sum(t.c.output_tokens).label("output_tokens"),
                func.sum(t.c.cost).label("cost"),
            )
            .where(t.c.recorded_at >= start, t.c.recorded_at < end,
                   *_equal(t.c.model, query_args.model),
                   *_equal(t.c.operation, query_args.operation))
            .group_by(t.c.model, t.c.operation)
            .order_by(t.c.model, t.c.operation)
            .limit(MAX_GROUPS + 1)
        )
        async with tenant_session() as session:
            rows = (await session.execute(query)).all()
        groups = [
            {
                "model": row.model, "operation": row.operation, "calls": row.calls,
                "successes": row.successes, "success_rate": row.successes / row.calls,
                "latency_ms": {"p50": row.p50, "p90": row.p90, "p95": row.p95,
                               "p99": row.p99, "mean": float(row.mean), "max": row.max},
                "input_tokens": int(row.input_tokens), "output_tokens": int(row.output_tokens),
                "cost": float(row.cost),
            }
            for row in rows[:MAX_GROUPS]
        ]
        return {"start": start, "end": end, "groups": groups,
                "truncated": len(rows) > MAX_GROUPS}

    # --- anomalies -----------------------------------------------------------------------

    @api.get("/anomalies")
    @require_role("viewer")
    @validate_querystring(AnomalyQuery)
    @validate_response(AnomalyPage)
    @problem_responses()
    async def list_anomalies(query_args: AnomalyQuery) -> dict[str, Any]:
        """Anomaly alerts, newest first."""
        t = ml_anomaly_alerts
        query = select(t).where(and_(True, *_equal(t.c.status, query_args.status),
                                     *_equal(t.c.severity, query_args.severity),
                                     *_equal(t.c.metric, query_args.metric),
                                     *_equal(t.c.scope, query_args.scope)))
        return await _page(query, t.c.id, query_args, _alert)

    @api.get("/anomalies/<alert_id>")
    @require_role("viewer")
    @validate_response(AnomalyItem)
    @problem_responses()
    async def get_anomaly(alert_id: str) -> dict[str, Any]:
        """One alert."""
        key = parse_id(alert_id, "alert")
        async with tenant_session() as session:
            row = (await session.execute(
                select(ml_anomaly_alerts).where(ml_anomaly_alerts.c.id == key))).first()
        if row is None:
            raise Problem(404, "not-found", f"No alert {alert_id}.")
        return _alert(row)

    async def transition(alert_id: str, to: str, note: str | None) -> dict[str, Any]:
        key = parse_id(alert_id, "alert")
        t = ml_anomaly_alerts
        who = current_principal().user_id
        async with tenant_session() as session:
            row = (await session.execute(
                select(t).where(t.c.id == key).with_for_update())).first()
            if row is None:
                raise Problem(404, "not-found", f"No alert {alert_id}.")
            if row.status == "resolved":
                raise Problem(409, "alert-resolved", f"Alert {alert_id} is already resolved.")
            if row.status == to:  # acknowledging twice changes nothing
                return _alert(row)
            values: dict[str, Any] = {"status": to, "updated_at": func.now()}
            values["acknowledged_at" if to == "acknowledged" else "resolved_at"] = func.now()
            values["acknowledged_by" if to == "acknowledged" else "resolved_by"] = who
            if note is not None:
                values["note"] = note
            row = (await session.execute(
                update(t).where(t.c.id == key).values(**values).returning(t))).one()
        return _alert(row)

    @api.post("/anomalies/<alert_id>/acknowledge")
    @require_role("analyst")
    @validate_request(TransitionIn)
    @validate_response(AnomalyItem)
    @problem_responses(409)
    async def acknowledge(alert_id: str, data: TransitionIn) -> dict[str, Any]:
        """Acknowledge an open alert (409 once resolved)."""
        return await transition(alert_id, "acknowledged", data.note)

    @api.post("/anomalies/<alert_id>/resolve")
    @require_role("analyst")
    @validate_request(TransitionIn)
    @validate_response(AnomalyItem)
    @problem_responses(409)
    async def resolve(alert_id: str, data: TransitionIn) -> dict[str, Any]:
        """Resolve an open or acknowledged alert (409 when already resolved)."""
        return await transition(alert_id, "resolved", data.note)

    @api.post("/anomalies/detect")
    @body_limit(settings.detect_max_bytes)
    @require_role("viewer")
    @validate_request(DetectIn)
    @validate_response(DetectOut)
    @problem_responses(413)
    async def detect(data: DetectIn) -> dict[str, Any]:
        """Find the anomalies of a series sent in the request (nothing is stored)."""
        if len(data.series) > settings.detect_max_points:
            raise invalid_field("series", f"at most {settings.detect_max_points} points")
        times = np.array([point.at.timestamp() for point in data.series])
        values = np.array([point.value for point in data.series])
        periods: tuple[int, ...] | None = (
            None if data.seasonality == "auto" else ()
            if data.seasonality == "none" else tuple(data.seasonality)
        )
        try:
            found = await asyncio.to_thread(
                detector.detect, times, values, interval_seconds=data.interval_seconds,
                periods=periods, alpha=data.alpha,
                max_anomaly_fraction=data.max_anomaly_fraction, direction=data.direction)
        except detector.SeriesError as error:
            raise invalid_field("series", str(error)) from None
        anomalies = [
            {"at": data.series[i].at, "value": data.series[i].value,
             "score": float(found.score[i]),
             "expected": [float(found.low[i]), float(found.high[i])]}
            for i in sorted(found.indices, key=lambda i: times[i])
        ]
        return {"model": detector.MODEL_NAME, "points": len(data.series),
                "interval_seconds": found.interval_seconds, "periods": list(found.periods),
                "threshold": found.threshold, "anomalies": anomalies}

    @api.post("/anomalies/scan")
    @require_role("admin")
    @validate_response(ScanQueued, 202)
    @problem_responses(503)
    async def scan_now() -> tuple[dict[str, Any], int]:
        """Queue an anomaly scan of the caller's tenant now."""
        message_id = await engine.queue.publish(
            SCAN_QUEUE, {"requested_at": datetime.now(UTC).isoformat()},
            tenant_id=current_tenant_id())
        return {"queued": message_id}, 202

    # --- similarity ----------------------------------------------------------------------

    async def usable_support() -> Any:
        support = await vector_support(engine)
        if not support.usable:
            support = await vector_support(engine, refresh=True)
            if not support.usable:
                raise vectors_unavailable(support)
        return support

    @api.post("/similar")
    @require_role("viewer")
    @validate_request(SimilarIn)
    @validate_response(SimilarOut)
    @problem_responses(503)
    async def similar(data: SimilarIn) -> dict[str, Any]:
        """The caller's tenant's work items, pull requests or incidents nearest to a text
        or to one of them (through the HNSW index; filtered queries return ``limit``
        rows when that many match)."""
        support = await usable_support()
        embedder = await embedders.get()
        tenant_id = current_tenant_id()
        exclude: tuple[str, str] | None = None
        async with tenant_session() as session:
            if data.entity is not None:
                query = await session.scalar(
                    text("SELECT CAST(embedding AS text) FROM embeddings WHERE "
                         "entity_type = :type AND entity_id = CAST(:id AS uuid) "
                         "AND model = :model"),
                    {"type": data.entity.type, "id": data.entity.id, "model": embedder.name})
                if query is None:
                    raise Problem(404, "not-found",
                                  f"No embedded {data.entity.type} {data.entity.id}.")
                exclude = (data.entity.type, data.entity.id.lower())
            else:
                assert data.text is not None
                vector = (await asyncio.to_thread(embedder.embed, [data.text]))[0]
                if not np.any(vector):
                    raise invalid_field("text", "has no words or characters to compare")
                query = vector_literal(vector)
            result = await nearest(
                session, support, tenant_id=tenant_id, model=embedder.name, query=query,
                k=data.limit,
                entity_types=tuple(data.entity_types) if data.entity_types else None,
                exclude=exclude, ef_search=settings.ef_search,
                max_scan_tuples=settings.max_scan_tuples, exact_below=settings.exact_below,
                allow_iterative=settings.iterative_scan == "auto")
        return {
            "model": embedder.name, "strategy": result.strategy,
            "items": [
                {"entity_type": n.entity_type, "entity_id": n.entity_id, "title": n.title,
                 "distance": n.distance, "similarity": 1 - n.distance}
                for n in result.neighbours
            ],
        }

    @api.post("/embeddings/reindex")
    @require_role("admin")
    @validate_request(ReindexIn)
    @validate_response(ScanQueued, 202)
    @problem_responses(503)
    async def reindex(data: ReindexIn) -> tuple[dict[str, Any], int]:
        """Queue an embedding pass of the caller's tenant."""
        await usable_support()
        message_id = await engine.queue.publish(
            EMBED_QUEUE, {"entities": data.entity_types, "full": data.full},
            tenant_id=current_tenant_id())
        return {"queued": message_id}, 202

    # --- health --------------------------------------------------------------------------

    @health.get("")
    @public
    @validate_response(HealthDocument, 503)
    @validate_response(HealthDocument)
    async def health_ml() -> tuple[dict[str, Any], int]:
        """pgvector, vector indexes, embeddings per entity type, the anomaly scan's
        freshness and the embedder (aggregate counts only; public)."""
        document = await ml_health(engine, settings, embedders)
        return document, 200 if document["status"] != "unhealthy" else 503

    return [api, health]

