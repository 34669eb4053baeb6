"""The ``/api/v1/ai`` routes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint
from quart_schema import validate_request, validate_response

from pulse_ai_validation.builtin_rules import ALLOWED_FUNCTION_NAMES
from pulse_ai_validation.catalog import catalog_from_document
from pulse_ai_validation.execution import QueryFailed
from pulse_ai_validation.feedback import find_feedback, record_feedback
from pulse_ai_validation.healing import heal
from pulse_ai_validation.schemas import (
    DataStructureAnswer,
    DataStructureRequest,
    FeedbackAnswer,
    FeedbackRequest,
    HealingAnswer,
    HealingRequest,
    QueryAnswer,
    ResultSchemaList,
    SchemaAnswer,
    SemanticsAnswer,
    SemanticsRequest,
    SqlRequest,
    SyntaxAnswer,
)
from pulse_ai_validation.semantics import judge
from pulse_engine import (
    Problem,
    current_principal,
    current_tenant_id,
    invalid_field,
    problem_responses,
    require_role,
)

if TYPE_CHECKING:
    from pulse_ai_validation.service import AiValidationService
    from pulse_engine import Engine

#: PostgreSQL error classes a query can cause (answered 422, never 500)
_CLIENT_SQLSTATES = ("22", "42", "2B", "0A", "21", "23", "25", "40", "54")


def build_blueprint(engine: Engine, service: AiValidationService) -> Blueprint:
    """The blueprint of every ``/api/v1/ai`` route."""
    blueprint = Blueprint("ai_validation", __name__,
                          url_prefix=f"{engine.settings.api_v1_prefix}/ai")

    @blueprint.get("/schema")
    @validate_response(SchemaAnswer)
    @problem_responses(503)
    async def schema() -> dict[str, Any]:
        """The allow-listed tables and columns an assistant may query, and the rules."""
        policy = await service.policy(current_tenant_id())
        document = service.catalog.as_document()
        rules = []
        for rule in service.validator.describe():
            effective = service.validator._severity(
                next(r for r in service.validator.rules if r.rule_id == rule["rule_id"]), policy
            )
            rules.append({**rule, "effective_severity": effective or "off"})
        return {
            **document,
            "rules": rules,
            "allowed_functions": sorted(ALLOWED_FUNCTION_NAMES | policy.extra_functions),
            "default_limit": policy.default_limit,
            "max_limit": policy.max_limit,
        }

    @blueprint.post("/validate/sql-syntax")
    @validate_request(SqlRequest)
    @validate_response(SyntaxAnswer)
    @problem_responses(413, 503)
    async def validate_syntax(data: SqlRequest) -> dict[str, Any]:
        """Whether the SQL may run: findings (rule, severity, message, location) and the
        rewritten SQL (tenant scope, LIMIT)."""
        tenant_id = current_tenant_id()
        result = service.validator.validate(
            data.sql, service.catalog, await service.policy(tenant_id), tenant_id
        )
        return result.as_dict()

    @blueprint.post("/validate/sql-semantics")
    @validate_request(SemanticsRequest)
    @validate_response(SemanticsAnswer)
    @problem_responses(413, 503)
    async def validate_semantics(data: SemanticsRequest) -> dict[str, Any]:
        """How confident the validator is that the SQL answers the question, and why."""
        tenant_id = current_tenant_id()
        catalog = (catalog_from_document(data.schema_.model_dump()) if data.schema_
                   else service.catalog)
        memory = await find_feedback(engine, tenant_id, None, 200)
        return judge(data.question, data.sql, catalog, memory).as_dict()

    @blueprint.post("/validate/data-structure")
    @validate_request(DataStructureRequest)
    @validate_response(DataStructureAnswer)
    @problem_responses(413, 503)
    async def validate_structure(data: DataStructureRequest) -> dict[str, Any]:
        """Check a result set against a named schema (TeamAnalysis, DoraMetrics, ...)."""
        schemas = service.schemas
        if data.schema_name not in schemas.models:
            raise invalid_field("schema", f"unknown schema; one of "
                                f"{', '.join(sorted(schemas.models))}")
        return schemas.validate(
            data.schema_name, [c.model_dump() for c in data.columns], list(data.rows)
        )

    @blueprint.get("/result-schemas")
    @validate_response(ResultSchemaList)
    @problem_responses(503)
    async def result_schemas() -> dict[str, Any]:
        """The result-set schemas data-structure validation knows."""
        return {"items": service.schemas.describe()}

    @blueprint.post("/learning/record-feedback")
    @require_role("analyst")
    @validate_request(FeedbackRequest)
    @validate_response(FeedbackAnswer, 201)
    @problem_responses(413, 503)
    async def learning_record(data: FeedbackRequest) -> tuple[dict[str, Any], int]:
        """Store a failure, its correction and the outcome (ml-monitor's memory if present)."""
        feedback = data.model_dump()
        feedback["recorded_by"] = current_principal().user_id
        record_id, plugin = await record_feedback(engine, current_tenant_id(), feedback)
        return {"id": record_id, "stored_by": plugin}, 201

    @blueprint.post("/learning/healing-suggestions")
    @validate_request(HealingRequest)
    @validate_response(HealingAnswer)
    @problem_responses(413, 503)
    async def learning_heal(data: HealingRequest) -> dict[str, Any]:
        """Ranked fixes for a failing query; each one passed validation."""
        tenant_id = current_tenant_id()
        policy = await service.policy(tenant_id)
        memory = await find_feedback(engine, tenant_id, None, 200)
        return heal(service.validator, service.catalog, policy, tenant_id, data.sql,
                    data.error, data.question, memory)

    @blueprint.post("/query")
    @require_role("analyst")
    @validate_request(SqlRequest)
    @validate_response(QueryAnswer)
    @problem_responses(413, 422, 503)
    async def query(data: SqlRequest) -> dict[str, Any]:
        """Run SQL that passes validation: as the execution role, read-only, timed out,
        row-capped, under the tenant's row-level security."""
        tenant_id = current_tenant_id()
        policy = await service.policy(tenant_id)
        result = service.validator.validate(data.sql, service.catalog, policy, tenant_id)
        if not result.valid or result.sql is None:
            raise Problem(422, "sql-refused", "The SQL did not pass validation.",
                          findings=[f.as_dict() for f in result.findings])
        try:
            ran = await service.executor.run(tenant_id, result.sql, policy.max_limit)
        except QueryFailed as failure:
            if failure.code == "57014":
                raise Problem(422, "query-timeout", "The query ran longer than "
                              f"{service.settings.statement_timeout_ms} ms.") from failure
            if failure.code.startswith(_CLIENT_SQLSTATES):
                raise Problem(422, "query-failed", f"PostgreSQL refused the query: "
                              f"{failure.message}", sqlstate=failure.code) from failure
            raise
        return {
            "sql": result.sql, "columns": ran.columns, "rows": ran.rows,
            "row_count": len(ran.rows), "truncated": ran.truncated,
            "elapsed_ms": ran.elapsed_ms, "findings": [f.as_dict() for f in result.findings],
        }

    return blueprint
