"""The /api/v1/ai routes: answers, problems for bad input, third-party rules and schemas,
tenant configuration, learning feedback and healing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, Field
from quart import Quart
from sqlalchemy import text
from sqlglot import exp

from pulse_engine import hookimpl
from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture, make_tenant


class NoSelectStar:
    """A third-party rule: warn about SELECT *."""

    rule_id = "acme.no_select_star"
    severity = "warning"
    description = "Name the columns you need."

    def check(self, context: Any) -> Iterator[Any]:
        """A finding per star projection."""
        from pulse_ai_validation.rules import Finding

        for _star in context.tree.find_all(exp.Star):
            yield Finding(self.rule_id, "warning", "SELECT * reads every column.")


class VelocityRow(BaseModel):
    """A schema another plugin registers."""

    sprint: str
    points: float = Field(ge=0)


class AcmePlugin:
    """A plugin object adding a rule and a result schema through ai-validation's hooks."""

    @hookimpl
    def register_validation_rules(self) -> list[object]:
        """The third-party rule."""
        return [NoSelectStar()]

    @hookimpl
    def register_result_schemas(self) -> dict[str, type[BaseModel]]:
        """The third-party schema."""
        return {"AcmeVelocity": VelocityRow}


@pytest.fixture(scope="module")
def pulse_module_plugins() -> dict[str, object]:
    """The module's app registers :class:`AcmePlugin` besides the installed plugins."""
    return {"acme": AcmePlugin()}


async def post(client: Any, path: str, body: Any) -> tuple[int, Any]:
    """POST ``body`` to ``/api/v1/ai/<path>``; status and JSON."""
    response = await client.post(f"/api/v1/ai/{path}", json=body)
    return response.status_code, await response.get_json()


async def test_schema_lists_the_allow_list_without_tenant_or_private_columns(
    ai_tenant: TenantFixture,
) -> None:
    response = await ai_tenant.viewer_client.get("/api/v1/ai/schema")
    assert response.status_code == 200
    body = await response.get_json()
    tables = {t["name"]: t for t in body["tables"]}
    assert {"commits", "deployments", "pull_requests", "incidents"} <= set(tables)
    assert not {"tenants", "users", "integrations", "etl_jobs", "ai_validation_feedback"} & set(
        tables)
    every = [c["name"] for t in body["tables"] for c in t["columns"]]
    assert "tenant_id" not in every and "email" not in every and "author_email" not in every
    authored = next(c for c in tables["commits"]["columns"] if c["name"] == "authored_at")
    assert authored["type"] == "timestamp with time zone" and authored["description"]
    rules = {r["rule_id"]: r for r in body["rules"]}
    assert {"syntax.parse", "statement.single", "readonly.statement", "function.allowed",
            "schema.table", "schema.column", "tenant.scope", "limit.cap",
            "complexity.joins", "acme.no_select_star"} <= set(rules)
    assert rules["readonly.statement"]["security"] is True


async def test_validate_sql_syntax_answers(ai_tenant: TenantFixture) -> None:
    status, body = await post(ai_tenant.viewer_client, "validate/sql-syntax",
                              {"sql": "SELECT * FROM commits"})
    assert status == 200 and body["valid"] is True
    assert [f["rule_id"] for f in body["findings"]] == ["acme.no_select_star"]
    assert ai_tenant.id in body["sql"] and body["limit"] == 1000
    status, body = await post(ai_tenant.viewer_client, "validate/sql-syntax",
                              {"sql": "SELECT 1; DROP TABLE commits"})
    assert status == 200 and body["valid"] is False and body["sql"] is None
    assert body["findings"][0]["location"] == {"line": 1, "column": 11}  # DROP


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("validate/sql-syntax", {}),
        ("validate/sql-syntax", {"sql": ""}),
        ("validate/sql-syntax", {"sql": 5}),
        ("validate/sql-syntax", {"sql": "SELECT 1", "extra": True}),
        ("validate/sql-syntax", {"sql": "x" * 20001}),
        ("validate/sql-syntax", ["SELECT 1"]),
        ("validate/sql-semantics", {"sql": "SELECT 1"}),
        ("validate/sql-semantics", {"question": "q", "sql": "SELECT 1", "schema": {"tables": []}}),
        ("validate/sql-semantics", {"question": "q", "sql": "SELECT 1",
                                    "schema": {"tables": [{"name": "t"}]}}),
        ("validate/data-structure", {"schema": "Nope", "columns": [{"name": "a"}], "rows": []}),
        ("validate/data-structure", {"schema": "DoraMetrics", "columns": [], "rows": []}),
        ("validate/data-structure", {"schema": "DoraMetrics", "columns": [{"name": "a"}],
                                     "rows": "x"}),
        ("learning/healing-suggestions", {"error": "x"}),
        ("learning/record-feedback", {"failed_sql": "SELECT 1", "outcome": "maybe"}),
        ("learning/record-feedback", {"failed_sql": "SELECT 1", "outcome": "fixed",
                                      "error_kind": "Not A Kind"}),
        ("query", {"sql": None}),
    ],
)
async def test_bad_bodies_are_problems(
    ai_tenant: TenantFixture, path: str, body: Any
) -> None:
    response = await ai_tenant.analyst_client.post(f"/api/v1/ai/{path}", json=body)
    assert 400 <= response.status_code < 500, await response.get_data()
    assert response.content_type == "application/problem+json"


async def test_not_json_is_a_problem(ai_tenant: TenantFixture) -> None:
    response = await ai_tenant.analyst_client.post(
        "/api/v1/ai/validate/sql-syntax", data=b"\xff\xfe", headers={
            "Content-Type": "application/json"})
    assert 400 <= response.status_code < 500
    assert response.content_type == "application/problem+json"


async def test_tenant_config_sets_severities_and_functions(ai_tenant: TenantFixture) -> None:
    path = f"/api/v1/admin/tenants/{ai_tenant.id}/plugins/ai_validation"
    bad = await ai_tenant.admin_client.put(path, json={
        "enabled": True, "config": {"severities": {"acme.no_select_star": "fatal"}}})
    assert bad.status_code == 422
    bad = await ai_tenant.admin_client.put(path, json={
        "enabled": True, "config": {"extra_functions": ["drop table"]}})
    assert bad.status_code == 422
    good = await ai_tenant.admin_client.put(path, json={"enabled": True, "config": {
        "severities": {"acme.no_select_star": "error", "readonly.statement": "off"},
        "extra_functions": ["jsonb_agg"]}})
    assert good.status_code == 200, await good.get_json()
    status, body = await post(ai_tenant.viewer_client, "validate/sql-syntax",
                              {"sql": "SELECT * FROM commits"})
    assert body["valid"] is False and body["findings"][0]["severity"] == "error"
    status, body = await post(ai_tenant.viewer_client, "validate/sql-syntax",
                              {"sql": "SELECT jsonb_agg(sha) FROM commits"})
    assert body["valid"] is True
    status, body = await post(ai_tenant.viewer_client, "validate/sql-syntax",
                              {"sql": "DELETE FROM commits"})
    assert body["valid"] is False
    schema = await (await ai_tenant.viewer_client.get("/api/v1/ai/schema")).get_json()
    rules = {r["rule_id"]: r for r in schema["rules"]}
    assert rules["acme.no_select_star"]["effective_severity"] == "error"
    assert rules["readonly.statement"]["effective_severity"] == "error"
    assert "jsonb_agg" in schema["allowed_functions"]


async def test_semantics_with_the_tenant_schema_and_a_given_one(
    ai_tenant: TenantFixture,
) -> None:
    question = "How many production deployments per week in the last 30 days?"
    right = ("SELECT date_trunc('week', finished_at), count(*) FROM deployments WHERE "
             "environment = 'production' AND finished_at >= now() - interval '30 days' "
             "GROUP BY 1")
    wrong = right.replace("'week'", "'month'")
    _, good = await post(ai_tenant.viewer_client, "validate/sql-semantics",
                         {"question": question, "sql": right})
    _, bad = await post(ai_tenant.viewer_client, "validate/sql-semantics",
                        {"question": question, "sql": wrong})
    assert good["confidence"] > bad["confidence"]
    assert any(r["aspect"] == "grouping" and r["effect"] < 0 for r in bad["reasons"])
    external = {"tables": [{"name": "Orders", "columns": [
        {"name": "OrderId", "type": "number"}, {"name": "customer_name", "type": "text"},
        {"name": "total_amount", "type": "number"}, {"name": "created_at", "type": "timestamp"}]}]}
    _, answer = await post(ai_tenant.viewer_client, "validate/sql-semantics", {
        "question": "Average total amount per customer name", "schema": external,
        "sql": "SELECT customer_name, avg(total_amount) FROM orders GROUP BY customer_name"})
    _, worse = await post(ai_tenant.viewer_client, "validate/sql-semantics", {
        "question": "Average total amount per customer name", "schema": external,
        "sql": "SELECT customer_name, sum(total_amount) FROM orders GROUP BY customer_name"})
    assert answer["confidence"] > 0.5 > worse["confidence"]
    assert "customer_name" in answer["question_intent"]["group_columns"]


async def test_data_structure_builtin_and_registered(ai_tenant: TenantFixture) -> None:
    columns = [{"name": "repository", "type": "text"}, {"name": "period", "type": "date"},
               {"name": "total_changes", "type": "integer"},
               {"name": "rework_changes", "type": "integer"},
               {"name": "rework_rate", "type": "numeric"}]
    status, body = await post(ai_tenant.viewer_client, "validate/data-structure", {
        "schema": "ReworkAnalysis", "columns": columns,
        "rows": [["a", "2024-01-01", 10, 2, 0.2], ["b", "2024-01-01", 4, 5, 1.25],
                 ["c", "2024-01-01", 4, 1, 0.9], [None, "2024-01-01", 1, 0, 0]]})
    assert status == 200 and body["valid"] is False and body["rows_checked"] == 4
    assert sorted({e["row"] for e in body["errors"]}) == [1, 2, 3]
    status, body = await post(ai_tenant.viewer_client, "validate/data-structure", {
        "schema": "DoraMetrics", "columns": [{"name": "period", "type": "date"},
                                             {"name": "deployment_frequency", "type": "text"}],
        "rows": [{"period": "2024-01-01", "deployment_frequency": 1.5}]})
    assert body["valid"] is False
    assert body["errors"] == [{"row": None, "column": "deployment_frequency",
                               "message": "column type 'text' is not number"}]
    status, body = await post(ai_tenant.viewer_client, "validate/data-structure", {
        "schema": "AcmeVelocity", "columns": [{"name": "sprint"}, {"name": "points"}],
        "rows": [["S1", 3], ["S2", -1]]})
    assert [e["row"] for e in body["errors"]] == [1]
    listing = await (await ai_tenant.viewer_client.get("/api/v1/ai/result-schemas")).get_json()
    owners = {item["name"]: item["plugin"] for item in listing["items"]}
    assert owners["AcmeVelocity"] == "acme" and owners["TeamAnalysis"] == "ai_validation"


async def test_feedback_is_stored_per_tenant_and_heals(
    ai_app: Quart, ai_tenant: TenantFixture
) -> None:
    engine: PulseEngine = ai_app.extensions["pulse"]
    failed = "SELECT count(*) FROM deployments WHERE env = 'prod'"
    fixed = "SELECT count(*) FROM deployments WHERE environment = 'production'"
    status, _ = await post(ai_tenant.viewer_client, "learning/record-feedback",
                           {"failed_sql": failed, "outcome": "fixed"})
    assert status == 403  # viewers may not write
    status, body = await post(ai_tenant.analyst_client, "learning/record-feedback", {
        "question": "production deployments", "failed_sql": failed, "corrected_sql": fixed,
        "error": "column env does not exist", "error_kind": "schema.column",
        "outcome": "fixed"})
    assert status == 201
    monitor = engine.plugins.records.get("ml_monitor")
    # pulse-ml-monitor answers first when it is installed and working (firstresult)
    assert body["stored_by"] == ("ml_monitor" if monitor is not None and not monitor.failed
                                 else "ai_validation")
    if body["stored_by"] == "ai_validation":
        async with engine.db.system_session() as session:
            row = (await session.execute(text(
                "SELECT tenant_id::text, failed_sql, corrected_sql, recorded_by "
                "FROM ai_validation_feedback WHERE id = :id"), {"id": body["id"]})).one()
        assert tuple(row) == (ai_tenant.id, failed, fixed, ai_tenant.analyst.id)
    status, heal = await post(ai_tenant.analyst_client, "learning/healing-suggestions",
                              {"sql": failed.replace("'prod'", "'production'")})
    assert status == 200
    first = heal["suggestions"][0]  # the learned fix (the nearest name gives the same SQL)
    assert first["kind"] == "learned" and first["sql"] == (
        "SELECT COUNT(*) FROM deployments WHERE environment = 'production'")
    other = await make_tenant(ai_app)
    status, theirs = await post(other.analyst_client, "learning/healing-suggestions",
                                {"sql": failed})
    assert "learned" not in {s["kind"] for s in theirs["suggestions"]}


@pytest.mark.parametrize(
    ("sql", "kind", "expected"),
    [
        ("SELECT `service`, count(*) FROM deployments GROUP BY `service`", "transpile",
         'SELECT "service", COUNT(*) FROM deployments GROUP BY "service"'),
        ("SELECT TOP 5 name FROM repositories ORDER BY name", "transpile",
         "SELECT name FROM repositories ORDER BY name LIMIT 5"),
        ("SELECT strftime('%Y', authored_at), count(*) FROM commits GROUP BY 1", "transpile",
         "SELECT TO_CHAR(CAST(authored_at AS TIMESTAMP), 'YYYY'), COUNT(*) FROM commits "
         "GROUP BY 1"),
        ("SELECT IFNULL(sum(additions), 0) FROM commits LIMIT 5", None, None),
        ("SELECT authored_att FROM commits", "nearest_name", "SELECT authored_at FROM commits"),
        ("SELECT service, count(*) FROM deployments", "add_group_by",
         "SELECT service, COUNT(*) FROM deployments GROUP BY service"),
        # T-SQL's transpile and the time-function fix agree; the higher-ranked one is kept
        ("SELECT count(*) FROM deployments WHERE finished_at > GETDATE()", "transpile",
         "SELECT COUNT(*) FROM deployments WHERE finished_at > CURRENT_TIMESTAMP"),
        ("SELECT count(*) FROM deployments WHERE unix_timestamp(finished_at) > 1", "time_function",
         "SELECT COUNT(*) FROM deployments WHERE EXTRACT(EPOCH FROM finished_at) > 1"),
        ("SELECT sha FROM commits", "add_limit", "SELECT sha FROM commits LIMIT 1000"),
    ],
)
async def test_healing_suggestions_are_validated_fixes(
    ai_tenant: TenantFixture, sql: str, kind: str | None, expected: str | None
) -> None:
    status, body = await post(ai_tenant.viewer_client, "learning/healing-suggestions",
                              {"sql": sql})
    assert status == 200
    for suggestion in body["suggestions"]:
        _, check = await post(ai_tenant.viewer_client, "validate/sql-syntax",
                              {"sql": suggestion["sql"]})
        assert check["valid"] is True, suggestion
    if kind is not None:
        assert expected in [s["sql"] for s in body["suggestions"] if s["kind"] == kind]
