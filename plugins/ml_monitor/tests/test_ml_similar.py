"""Embeddings kept current from ETL loads over the queue, and ``POST /api/v1/ml/similar``:
the nearest rows by an independent numpy computation, tenant isolation tested like an
attacker (also under filters matching few rows), and filtered queries returning the asked
number through every path (exact, iterative scan, over-fetch)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from pulse_ml_monitor.embedder import hashing_embedder, vector_literal
from pulse_ml_monitor.embeddings import index_tenant
from pulse_ml_monitor.vectors import exact_statement, nearest, scope_filter, vector_support
from quart import Quart
from sqlalchemy import text

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture, make_settings, make_tenant, running_app

API = "/api/v1/ml"
VOCABULARY = ("checkout payment login search cache queue database latency timeout memory disk "
              "deploy rollback api gateway auth token session billing invoice report export import "
              "mobile web android ios dashboard chart alert email webhook kafka redis postgres "
              "index migration schema build test flaky pipeline docker kubernetes node pod")
WORDS = VOCABULARY.split()


def sentence(rng: np.random.Generator, words: int = 6) -> str:
    """A random title of a few vocabulary words."""
    return " ".join(rng.choice(WORDS, words))


async def load_rows(engine: PulseEngine, tenant_id: str, incidents: list[str],
                    work_items: list[str], pull_requests: list[str]) -> dict[str, list[str]]:
    """Insert ETL rows of one tenant as the loader would; returns their ids per type."""
    ids: dict[str, list[str]] = {"incident": [], "work_item": [], "pull_request": []}
    repository = str(uuid.uuid4())
    async with engine.db.tenant_session(tenant_id) as session:
        for title in incidents:
            ids["incident"].append(str(await session.scalar(text(
                "INSERT INTO incidents (tenant_id, id, source, external_id, title, service, "
                "severity, created_at_source) VALUES (CAST(:t AS uuid), gen_random_uuid(), "
                "'test', gen_random_uuid()::text, :title, 'shop', 'sev2', now()) RETURNING id"),
                {"t": tenant_id, "title": title})))
        for i, title in enumerate(work_items):
            ids["work_item"].append(str(await session.scalar(text(
                "INSERT INTO work_items (tenant_id, id, source, external_id, key, title, type, "
                "status) VALUES (CAST(:t AS uuid), gen_random_uuid(), 'test', "
                "gen_random_uuid()::text, :key, :title, 'bug', 'open') RETURNING id"),
                {"t": tenant_id, "title": title, "key": f"PUL-{i}"})))
        for i, title in enumerate(pull_requests):
            ids["pull_request"].append(str(await session.scalar(text(
                "INSERT INTO pull_requests (tenant_id, id, source, external_id, repository_id, "
                "number, title, state) VALUES (CAST(:t AS uuid), gen_random_uuid(), 'test', "
                "gen_random_uuid()::text, CAST(:r AS uuid), :n, :title, 'open') RETURNING id"),
                {"t": tenant_id, "r": repository, "n": i + 1, "title": title})))
    return ids


async def stored_vectors(engine: PulseEngine, tenant_id: str,
                         types: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """``entity_id -> vector`` of a tenant's stored embeddings (read as the owner)."""
    async with engine.db.system_session() as session:
        rows = (await session.execute(text(
            "SELECT entity_type, entity_id::text, embedding::text FROM embeddings "
            "WHERE tenant_id = CAST(:t AS uuid)"), {"t": tenant_id})).all()
    return {
        entity_id: np.array([float(x) for x in vector.strip("[]").split(",")])
        for entity_type, entity_id, vector in rows if types is None or entity_type in types
    }


def exact_top(vectors: dict[str, np.ndarray], query: np.ndarray, k: int,
              exclude: str | None = None) -> list[str]:
    """The ``k`` ids nearest to ``query`` by cosine distance, by brute force."""
    scored = sorted(
        ((1 - float(v @ query) / (np.linalg.norm(v) * np.linalg.norm(query)), key)
         for key, v in vectors.items() if key != exclude))
    return [key for _, key in scored[:k]]


async def wait_for_embeddings(engine: PulseEngine, tenant_id: str, expected: int) -> None:
    """Poll until the tenant has ``expected`` vectors (the consumer runs in-process)."""
    for _ in range(150):
        if len(await stored_vectors(engine, tenant_id)) >= expected:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{len(await stored_vectors(engine, tenant_id))} != {expected}")


async def test_loads_are_embedded_over_the_queue_and_found_by_text(
    ml_tenant: TenantFixture, other_tenant: TenantFixture, engine: PulseEngine
) -> None:
    rng = np.random.default_rng(1)
    target = "checkout service returns 500 errors after deploy"
    ids = await load_rows(engine, ml_tenant.id,
                          [target, "login page slow on mobile", "disk full on build node"],
                          [sentence(rng) for _ in range(30)], [sentence(rng) for _ in range(5)])
    await engine.announce_data_loaded(ml_tenant.id, {
        "incidents": {"created": 3}, "work_items": {"created": 30},
        "pull_requests": {"created": 5}}, None)
    await wait_for_embeddings(engine, ml_tenant.id, 38)
    # the other tenant holds the same text: it must never be answered to this one
    theirs = await load_rows(engine, other_tenant.id, [target], [], [])
    await index_tenant(engine, hashing_embedder(), other_tenant.id)
    response = await ml_tenant.viewer_client.post(f"{API}/similar", json={
        "text": "checkout 500 error after a deploy", "limit": 5})
    body = await response.get_json()
    assert response.status_code == 200, body
    assert body["items"][0]["entity_id"] == ids["incident"][0]
    vectors = await stored_vectors(engine, ml_tenant.id)
    query = hashing_embedder().embed(["checkout 500 error after a deploy"])[0]
    assert [item["entity_id"] for item in body["items"]] == exact_top(vectors, query, 5)
    assert theirs["incident"][0] not in {item["entity_id"] for item in body["items"]}
    # by entity: itself excluded, the rest by distance
    by_entity = await (await ml_tenant.viewer_client.post(f"{API}/similar", json={
        "entity": {"type": "incident", "id": ids["incident"][0]}, "limit": 4})).get_json()
    assert [item["entity_id"] for item in by_entity["items"]] == exact_top(
        vectors, vectors[ids["incident"][0]], 4, exclude=ids["incident"][0])
    # an updated title is embedded again; an unchanged one is not rewritten
    async with engine.db.tenant_session(ml_tenant.id) as session:
        await session.execute(text("UPDATE incidents SET title = 'kafka consumer lag', "
                                   "updated_at = now() WHERE id = CAST(:id AS uuid)"),
                              {"id": ids["incident"][1]})
    written = await index_tenant(engine, hashing_embedder(), ml_tenant.id)
    assert written["incident"] == 1 and written["work_item"] == 0
    found = await (await ml_tenant.viewer_client.post(f"{API}/similar", json={
        "text": "kafka consumer lag", "limit": 1, "entity_types": ["incident"]})).get_json()
    assert found["items"][0]["entity_id"] == ids["incident"][1]


async def test_tenant_isolation_of_similarity(
    ml_tenant: TenantFixture, other_tenant: TenantFixture, engine: PulseEngine
) -> None:
    rng = np.random.default_rng(2)
    mine = await load_rows(engine, ml_tenant.id, [sentence(rng) for _ in range(40)],
                           [sentence(rng) for _ in range(40)], [])
    theirs = await load_rows(engine, other_tenant.id, [sentence(rng) for _ in range(2)],
                             [sentence(rng) for _ in range(60)], [])
    for tenant in (ml_tenant.id, other_tenant.id):
        await index_tenant(engine, hashing_embedder(), tenant)
    client = other_tenant.viewer_client
    # an entity of another tenant does not exist for the caller
    response = await client.post(f"{API}/similar", json={
        "entity": {"type": "incident", "id": mine["incident"][0]}})
    assert response.status_code == 404
    # a filter matching few rows returns those few, all the caller's, never a neighbour's
    for query in ({"text": sentence(rng)}, {"entity": {"type": "work_item",
                                                       "id": theirs["work_item"][0]}}):
        body = await (await client.post(f"{API}/similar", json={
            **query, "entity_types": ["incident"], "limit": 50})).get_json()
        assert sorted(item["entity_id"] for item in body["items"]) == sorted(
            theirs["incident"])
    everything = await (await client.post(f"{API}/similar", json={
        "text": sentence(rng), "limit": 100})).get_json()
    own = set(theirs["incident"]) | set(theirs["work_item"])
    assert {item["entity_id"] for item in everything["items"]} <= own
    assert len(everything["items"]) == 62


@pytest.mark.parametrize("body", [
    {}, {"text": ""}, {"text": "   "}, {"text": "x", "entity": {"type": "incident",
                                                              "id": str(uuid.uuid4())}},
    {"entity": {"type": "incident", "id": "not-a-uuid"}},
    {"entity": {"type": "commit", "id": str(uuid.uuid4())}},
    {"text": "x", "limit": 0}, {"text": "x", "limit": 101}, {"text": "x", "limit": "5"},
    {"text": "x", "entity_types": []}, {"text": "x", "entity_types": ["deployment"]},
    {"text": "x" * 4001}, {"text": "x", "extra": 1},
])
async def test_bad_similarity_requests_are_422(ml_tenant: TenantFixture,
                                               body: dict[str, Any]) -> None:
    response = await ml_tenant.viewer_client.post(f"{API}/similar", json=body)
    assert response.status_code == 422, await response.get_json()
    assert response.content_type == "application/problem+json"


async def test_filtered_queries_return_k_through_every_path(
    ml_tenant: TenantFixture, other_tenant: TenantFixture, engine: PulseEngine
) -> None:
    """The HNSW paths forced (``exact_below=0``): the iterative scan (pgvector >= 0.8) and
    the over-fetch fallback of older pgvector both return k rows of the filter, equal to
    the exact answer here (a few hundred rows: the graph search is exhaustive enough)."""
    rng = np.random.default_rng(3)
    ids = await load_rows(engine, ml_tenant.id, [sentence(rng) for _ in range(30)],
                          [sentence(rng) for _ in range(200)], [])
    await load_rows(engine, other_tenant.id, [], [sentence(rng) for _ in range(300)], [])
    for tenant in (ml_tenant.id, other_tenant.id):
        await index_tenant(engine, hashing_embedder(), tenant)
    support = await vector_support(engine, refresh=True)
    vectors = await stored_vectors(engine, ml_tenant.id, ("incident",))
    assert sorted(vectors) == sorted(ids["incident"])
    query = hashing_embedder().embed([sentence(rng)])[0]
    expected = exact_top(vectors, query, 20)
    paths = ["overfetch", "exact"] + (["iterative"] if support.iterative_scan else [])
    for force in paths:
        async with engine.db.tenant_session(ml_tenant.id) as session:
            result = await nearest(
                session, support, tenant_id=ml_tenant.id, model=hashing_embedder().name,
                query=vector_literal(query), k=20, entity_types=("incident",),
                exact_below=0, force=force)  # type: ignore[arg-type]
        assert [n.entity_id for n in result.neighbours] == expected, force
    # not forced, without iterative scans: the over-fetch path (or its exact fallback)
    async with engine.db.tenant_session(ml_tenant.id) as session:
        result = await nearest(
            session, support, tenant_id=ml_tenant.id, model=hashing_embedder().name,
            query=vector_literal(query), k=20, entity_types=("incident",), exact_below=0,
            allow_iterative=False)
    assert result.strategy in ("overfetch", "exact")
    assert [n.entity_id for n in result.neighbours] == expected


@pytest.fixture(scope="module")
async def overfetch_app(
    pulse_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Quart]:
    """An app configured as on a pgvector without iterative scans, never reading exactly."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PULSE_ML_ITERATIVE_SCAN", "off")
        patch.setenv("PULSE_ML_EXACT_BELOW", "0")
        settings = make_settings(pulse_database_url, tmp_path_factory.mktemp("mlover"))
        async with running_app(settings) as app:
            yield app


async def test_the_api_over_fetches_without_iterative_scans(overfetch_app: Quart) -> None:
    engine: PulseEngine = overfetch_app.extensions["pulse"]
    tenant = await make_tenant(overfetch_app)
    rng = np.random.default_rng(4)
    await load_rows(engine, tenant.id, [sentence(rng) for _ in range(25)],
                    [sentence(rng) for _ in range(150)], [])
    await index_tenant(engine, hashing_embedder(), tenant.id)
    body = await (await tenant.viewer_client.post(f"{API}/similar", json={
        "text": sentence(rng), "entity_types": ["incident"], "limit": 12})).get_json()
    assert body["strategy"] in ("overfetch", "exact")
    assert len(body["items"]) == 12
    assert {item["entity_type"] for item in body["items"]} == {"incident"}
    health = await (await overfetch_app.test_client().get("/health/ml")).get_json()
    assert health["pgvector"]["iterative_scan_used"] is False


async def test_reindex_is_admin_only_and_queued(ml_tenant: TenantFixture) -> None:
    response = await ml_tenant.analyst_client.post(f"{API}/embeddings/reindex", json={})
    assert response.status_code == 403
    response = await ml_tenant.admin_client.post(f"{API}/embeddings/reindex", json={
        "entity_types": ["incident"], "full": True})
    assert response.status_code == 202
    assert (await response.get_json())["queued"]





async def test_the_exact_read_is_index_only_on_the_covering_btree(
    ml_tenant: TenantFixture, engine: PulseEngine
) -> None:
    """The exact read needs no heap page per matching row: with the planner kept off
    sequential and bitmap scans (on a table this small it would rather read it whole), it is
    an index-only scan of ``ix_embeddings_scope_vectors`` (not an index scan fetching each
    row from the heap), and still the exact top k."""
    rng = np.random.default_rng(5)
    await load_rows(engine, ml_tenant.id, [sentence(rng) for _ in range(40)], [], [])
    await index_tenant(engine, hashing_embedder(), ml_tenant.id)
    await engine.db.vacuum_analyze(["embeddings"])  # all-visible, as autovacuum leaves it
    support = await vector_support(engine, refresh=True)
    query = hashing_embedder().embed([sentence(rng)])[0]
    where = scope_filter(("incident",), None)
    params = {"tenant": ml_tenant.id, "model": hashing_embedder().name,
              "query": vector_literal(query), "k": 7, "types": ["incident"]}
    async with engine.db.tenant_session(ml_tenant.id) as session:
        for setting in ("enable_seqscan", "enable_bitmapscan"):
            await session.execute(text(f"SET LOCAL {setting} = off"))
        plan = "\n".join(row[0] for row in await session.execute(
            text(f"EXPLAIN {exact_statement(where)}"), params))
        result = await nearest(session, support, tenant_id=ml_tenant.id,
                               model=hashing_embedder().name, query=vector_literal(query), k=7,
                               entity_types=("incident",))
    assert "Index Only Scan using ix_embeddings_scope_vectors" in plan, plan
    assert result.strategy == "exact"
    vectors = await stored_vectors(engine, ml_tenant.id, ("incident",))
    assert [n.entity_id for n in result.neighbours] == exact_top(vectors, query, 7)
