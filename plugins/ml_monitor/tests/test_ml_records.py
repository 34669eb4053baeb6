"""Learning memory, predictions (and their accuracy) and model calls (and their percentiles):
strict writes, paginated lists, numbers checked against a brute-force computation in
Python, and tenant isolation."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from pulse_engine.app import PulseEngine
from pulse_engine.testing import ApiClient, TenantFixture

API = "/api/v1/ml"


async def ok(response: Any, status: int = 200) -> Any:
    """The JSON body of a response that must have ``status``."""
    body = await response.get_json()
    assert response.status_code == status, body
    return body


async def problem(response: Any, status: int) -> dict[str, Any]:
    """A problem+json answer with ``status``."""
    body = await response.get_json()
    assert response.status_code == status, body
    assert response.content_type == "application/problem+json"
    return dict(body)


async def count(engine: PulseEngine, table: str, tenant_id: str) -> int:
    """Rows of ``table`` of one tenant (read as the owner)."""
    async with engine.db.system_session() as session:
        return int(await session.scalar(
            text(f"SELECT count(*) FROM {table} WHERE tenant_id = CAST(:t AS uuid)"),
            {"t": tenant_id}) or 0)


async def all_pages(client: ApiClient, path: str, **query: Any) -> list[dict[str, Any]]:
    """Every item of a paginated list, following ``next_cursor``."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        args = {**query, **({"cursor": cursor} if cursor else {})}
        body = await ok(await client.get(path, query_string=args))
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


FEEDBACK = {
    "question": "deployments last week per team",
    "ai_output": "SELECT team, count(*) FROM deployments GROUP BY team",
    "error": "column team does not exist",
    "error_kind": "schema.unknown_column",
    "correction": "SELECT t.name, count(*) FROM deployments d JOIN teams t ...",
    "outcome": "fixed",
    "model": "gpt-x",
    "context": {"dashboard": "dora"},
}


async def test_feedback_is_stored_listed_newest_first_and_paginated(
    ml_tenant: TenantFixture, engine: PulseEngine
) -> None:
    created = []
    for i in range(5):
        body = await ok(await ml_tenant.viewer_client.post(
            f"{API}/learning-memory", json={**FEEDBACK, "question": f"q{i}"}), 201)
        assert body["recorded_by"] == ml_tenant.viewer.id
        assert body["source"] == "api" and body["context"] == {"dashboard": "dora"}
        created.append(body["id"])
    pages = await all_pages(ml_tenant.viewer_client, f"{API}/learning-memory", limit=2)
    assert [item["id"] for item in pages] == created[::-1]
    one = await ok(await ml_tenant.viewer_client.get(f"{API}/learning-memory/{created[2]}"))
    assert one["question"] == "q2"
    filtered = await ok(await ml_tenant.viewer_client.get(
        f"{API}/learning-memory", query_string={"outcome": "partial"}))
    assert filtered["items"] == []


@pytest.mark.parametrize("change", [
    {"ai_output": ""},
    {"ai_output": None},
    {"outcome": "great"},
    {"surprise": 1},
    {"context": [1, 2]},
    {"source": "Not A Slug"},
    {"error_kind": "x" * 201},
    {"question": "x" * 20_001},
    {"context": {"big": float("inf")}},
    {"context": {"blob": "x" * 70_000}},
])
async def test_bad_feedback_is_422_and_stores_nothing(
    ml_tenant: TenantFixture, engine: PulseEngine, change: dict[str, Any]
) -> None:
    before = await count(engine, "ai_learning_memory", ml_tenant.id)
    await problem(await ml_tenant.viewer_client.post(
        f"{API}/learning-memory", json={**FEEDBACK, **change}), 422)
    assert await count(engine, "ai_learning_memory", ml_tenant.id) == before


async def test_feedback_of_another_tenant_is_invisible(
    ml_tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    mine = await ok(await ml_tenant.viewer_client.post(f"{API}/learning-memory", json=FEEDBACK),
                    201)
    await problem(await other_tenant.admin_client.get(
        f"{API}/learning-memory/{mine['id']}"), 404)
    theirs = await all_pages(other_tenant.admin_client, f"{API}/learning-memory")
    assert mine["id"] not in {item["id"] for item in theirs}


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "9" * 30, "1.5", "%20"])
async def test_bad_ids_are_404(ml_tenant: TenantFixture, raw: str) -> None:
    for path in ("learning-memory", "anomalies"):
        await problem(await ml_tenant.viewer_client.get(f"{API}/{path}/{raw}"), 404)


async def test_ai_validation_feedback_hooks_write_and_read_learning_memory(
    ml_tenant: TenantFixture, other_tenant: TenantFixture, engine: PulseEngine
) -> None:
    feedback = {"question": "q", "failed_sql": "SELECT nope FROM deployments",
                "error": "column nope", "error_kind": "schema.unknown_column",
                "corrected_sql": "SELECT id FROM deployments", "outcome": "fixed",
                "recorded_by": ml_tenant.analyst.id}
    results = await engine.call_hook("ai_learning_record_feedback", engine=engine,
                                     tenant_id=ml_tenant.id, feedback=feedback)
    assert [plugin for plugin, _ in results] == ["ml_monitor"]
    record_id = results[0][1]
    async with engine.db.system_session() as session:
        row = (await session.execute(text(
            "SELECT source, ai_output, correction, tenant_id::text FROM ai_learning_memory "
            "WHERE id = :id"), {"id": int(record_id)})).one()
    assert row == ("ai_validation", feedback["failed_sql"], feedback["corrected_sql"],
                   ml_tenant.id)
    found = await engine.call_hook("ai_learning_find_feedback", engine=engine,
                                   tenant_id=ml_tenant.id, error_kind="schema.unknown_column",
                                   limit=10)
    assert found[0][0] == "ml_monitor"
    assert [item["id"] for item in found[0][1]] == [record_id]
    assert {k: found[0][1][0][k] for k in feedback} == feedback
    none = await engine.call_hook("ai_learning_find_feedback", engine=engine,
                                  tenant_id=other_tenant.id, error_kind=None, limit=10)
    assert none == [] or none[0][1] == []
    # feedback this table cannot hold is left to pulse-ai-validation's own table
    bad = await engine.call_hook("ai_learning_record_feedback", engine=engine,
                                 tenant_id=ml_tenant.id,
                                 feedback={**feedback, "outcome": "sideways"})
    assert all(plugin != "ml_monitor" for plugin, _ in bad)
    assert engine.plugins.records["ml_monitor"].status == "loaded"


# --- predictions -----------------------------------------------------------------------


def numeric_truth(rows: list[tuple[float, float]]) -> dict[str, Any]:
    """MAE and MAPE by their definitions."""
    errors = [abs(p - a) for p, a in rows]
    ratios = [abs(p - a) / abs(a) for p, a in rows if a != 0]
    return {"count": len(rows), "mae": sum(errors) / len(errors) if errors else None,
            "mape": sum(ratios) / len(ratios) if ratios else None,
            "mape_excluded": sum(1 for _, a in rows if a == 0)}


def class_truth(rows: list[tuple[str, str, float]]) -> dict[str, Any]:
    """Accuracy, per-class precision/recall, ECE and Brier by their definitions."""
    labels = sorted({p for p, _, _ in rows} | {a for _, a, _ in rows})
    scores = {}
    for label in labels:
        predicted = [r for r in rows if r[0] == label]
        actual = [r for r in rows if r[1] == label]
        correct = [r for r in rows if r[0] == label == r[1]]
        scores[label] = (len(correct) / len(predicted) if predicted else None,
                         len(correct) / len(actual) if actual else None)
    bins: dict[int, list[tuple[float, int]]] = {}
    for p, a, c in rows:
        bins.setdefault(min(int(c * 10), 9), []).append((c, int(p == a)))
    ece = sum(len(v) / len(rows) * abs(sum(h for _, h in v) / len(v) - sum(c for c, _ in v)
                                       / len(v)) for v in bins.values())
    brier = sum((c - int(p == a)) ** 2 for p, a, c in rows) / len(rows)
    return {"count": len(rows), "accuracy": sum(p == a for p, a, _ in rows) / len(rows),
            "scores": scores, "ece": ece, "brier": brier,
            "bins": {k: len(v) for k, v in bins.items()}}


async def test_accuracy_over_time_equals_the_definitions(
    ml_tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    rng = random.Random(5)
    client = ml_tenant.analyst_client
    base = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday
    numeric: dict[int, list[tuple[float, float]]] = {0: [], 1: []}
    classes: dict[int, list[tuple[str, str, float]]] = {0: [], 1: []}
    for i in range(60):
        week = i % 2
        at = base + timedelta(days=7 * week + rng.randint(0, 6), hours=rng.randint(0, 23))
        if i % 3:
            predicted, actual = round(rng.uniform(-5, 20), 3), rng.choice([0.0, 4.0, 10.0, -2.5])
            body = {"model": "eta", "model_version": "1", "input_ref": f"pr/{i}",
                    "kind": "numeric", "predicted_value": predicted, "predicted_at":
                    at.isoformat(), "confidence": 0.5}
            created = await ok(await client.post(f"{API}/predictions", json=body), 201)
            if i % 5:  # the others never get an actual: not counted
                await ok(await client.put(f"{API}/predictions/{created['id']}/actual",
                                          json={"actual_value": actual}))
                numeric[week].append((predicted, actual))
        else:
            predicted_class = rng.choice(["bug", "feature", "chore"])
            actual_class = predicted_class if rng.random() < 0.6 else rng.choice(
                ["bug", "feature", "chore"])
            confidence = round(rng.uniform(0.3, 1.0), 3)
            await ok(await client.post(f"{API}/predictions", json={
                "model": "eta", "model_version": "1", "input_ref": f"wi/{i}", "kind": "class",
                "predicted_class": predicted_class, "confidence": confidence,
                "predicted_at": at.isoformat(), "actual_class": actual_class}), 201)
            classes[week].append((predicted_class, actual_class, confidence))
    # another tenant's predictions of the same model change nothing
    await ok(await other_tenant.analyst_client.post(f"{API}/predictions", json={
        "model": "eta", "model_version": "1", "input_ref": "x", "kind": "numeric",
        "predicted_value": 1e6, "actual_value": 0.5,
        "predicted_at": base.isoformat()}), 201)
    body = await ok(await ml_tenant.viewer_client.get(f"{API}/predictions/accuracy", query_string={
        "model": "eta", "start": "2026-10-05", "end": "2026-10-19", "interval": "week"}))
    every_numeric = numeric[0] + numeric[1]
    truth = numeric_truth(every_numeric)
    assert body["numeric"]["count"] == truth["count"]
    assert body["numeric"]["mae"] == pytest.approx(truth["mae"])
    assert body["numeric"]["mape"] == pytest.approx(truth["mape"])
    assert body["numeric"]["mape_excluded"] == truth["mape_excluded"]
    assert [point["start"][:10] for point in body["numeric_series"]] == ["2026-10-05",
                                                                          "2026-10-12"]
    for week, point in enumerate(body["numeric_series"]):
        expected = numeric_truth(numeric[week])
        assert point["count"] == expected["count"]
        assert point["mae"] == pytest.approx(expected["mae"])
        assert point["mape"] == pytest.approx(expected["mape"])
    every_class = classes[0] + classes[1]
    truth_c = class_truth(every_class)
    overall = body["classes"]
    assert overall["count"] == truth_c["count"]
    assert overall["accuracy"] == pytest.approx(truth_c["accuracy"])
    for score in overall["classes"]:
        precision, recall = truth_c["scores"][score["label"]]
        assert score["precision"] == pytest.approx(precision)
        assert score["recall"] == pytest.approx(recall)
    assert overall["expected_calibration_error"] == pytest.approx(truth_c["ece"])
    assert overall["brier_score"] == pytest.approx(truth_c["brier"])
    assert {int(b["low"] * 10 + 1e-9): b["count"] for b in overall["calibration"]} == \
        truth_c["bins"]
    for week, point in enumerate(body["class_series"]):
        assert point["accuracy"] == pytest.approx(class_truth(classes[week])["accuracy"])


@pytest.mark.parametrize("body", [
    {"kind": "numeric"},
    {"kind": "numeric", "predicted_class": "bug"},
    {"kind": "class", "predicted_value": 1.0},
    {"kind": "numeric", "predicted_value": 1e300},
    {"kind": "numeric", "predicted_value": 1.0, "confidence": 1.5},
    {"kind": "numeric", "predicted_value": 1.0, "actual_class": "bug"},
    {"kind": "numeric", "predicted_value": 1.0, "predicted_at": "1900-01-01"},
    {"kind": "maybe", "predicted_value": 1.0},
])
async def test_bad_predictions_are_422(
    ml_tenant: TenantFixture, engine: PulseEngine, body: dict[str, Any]
) -> None:
    base = {"model": "m", "model_version": "1", "input_ref": "r"}
    await problem(await ml_tenant.analyst_client.post(f"{API}/predictions",
                                                      json={**base, **body}), 422)
    assert await count(engine, "ai_predictions", ml_tenant.id) == 0


async def test_actuals_are_facts_and_roles_hold(
    ml_tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    base = {"model": "m", "model_version": "1", "input_ref": "r", "kind": "numeric",
            "predicted_value": 3.0}
    await problem(await ml_tenant.viewer_client.post(f"{API}/predictions", json=base), 403)
    created = await ok(await ml_tenant.analyst_client.post(f"{API}/predictions", json=base), 201)
    path = f"{API}/predictions/{created['id']}/actual"
    await problem(await ml_tenant.analyst_client.put(path, json={"actual_class": "x"}), 422)
    await problem(await other_tenant.analyst_client.put(path, json={"actual_value": 1}), 404)
    first = await ok(await ml_tenant.analyst_client.put(path, json={"actual_value": 2.0}))
    again = await ok(await ml_tenant.analyst_client.put(path, json={"actual_value": 2.0}))
    assert first == again
    await problem(await ml_tenant.analyst_client.put(path, json={"actual_value": 5.0}), 409)
    listed = await all_pages(ml_tenant.viewer_client, f"{API}/predictions", resolved="true")
    assert [item["id"] for item in listed] == [created["id"]]
    await problem(await ml_tenant.viewer_client.get(f"{API}/predictions/accuracy", query_string={
        "model": "m", "start": "2026-01-02", "end": "2026-01-01"}), 422)
    await problem(await ml_tenant.viewer_client.get(f"{API}/predictions/accuracy", query_string={
        "model": "m", "start": "1970-01-01", "end": "2199-01-01", "interval": "day"}), 422)


# --- performance ---------------------------------------------------------------------


async def test_performance_percentiles_equal_numpy(
    ml_tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    rng = random.Random(9)
    calls: dict[tuple[str, str], list[dict[str, Any]]] = {}
    now = datetime.now(UTC)
    for i in range(90):
        key = (rng.choice(["gpt", "claude"]), rng.choice(["sql", "summary"]))
        call = {"model": key[0], "operation": key[1],
                "latency_ms": round(rng.expovariate(1 / 300), 3),
                "input_tokens": rng.randint(0, 4000), "output_tokens": rng.randint(0, 800),
                "cost": round(rng.uniform(0, 0.05), 5), "success": rng.random() < 0.9,
                "recorded_at": (now - timedelta(hours=i)).isoformat()}
        await ok(await ml_tenant.analyst_client.post(f"{API}/performance", json=call), 201)
        calls.setdefault(key, []).append(call)
    await ok(await other_tenant.analyst_client.post(f"{API}/performance", json={
        "model": "gpt", "operation": "sql", "latency_ms": 1e9, "success": False}), 201)
    body = await ok(await ml_tenant.viewer_client.get(f"{API}/performance"))
    assert [(g["model"], g["operation"]) for g in body["groups"]] == sorted(calls)
    for group in body["groups"]:
        mine = calls[(group["model"], group["operation"])]
        latencies = np.array([c["latency_ms"] for c in mine])
        assert group["calls"] == len(mine)
        assert group["successes"] == sum(c["success"] for c in mine)
        for q in (50, 90, 95, 99):
            assert group["latency_ms"][f"p{q}"] == pytest.approx(np.percentile(latencies, q))
        assert group["latency_ms"]["max"] == pytest.approx(latencies.max())
        assert group["input_tokens"] == sum(c["input_tokens"] for c in mine)
        assert group["cost"] == pytest.approx(sum(c["cost"] for c in mine))
    listed = await all_pages(ml_tenant.viewer_client, f"{API}/performance/calls", limit=40,
                             success="false")
    assert len(listed) == sum(not c["success"] for group in calls.values() for c in group)


@pytest.mark.parametrize("change", [
    {"latency_ms": -1}, {"latency_ms": "fast"}, {"input_tokens": 1.5}, {"success": "yes"},
    {"model": ""}, {"cost": float("inf")}, {"extra": True},
])
async def test_bad_calls_are_422(
    ml_tenant: TenantFixture, engine: PulseEngine, change: dict[str, Any]
) -> None:
    call = {"model": "m", "operation": "o", "latency_ms": 10, "success": True, **change}
    response = await ml_tenant.analyst_client.post(f"{API}/performance", json=call)
    assert response.status_code in (400, 422)
    assert await count(engine, "ai_performance_metrics", ml_tenant.id) == 0
