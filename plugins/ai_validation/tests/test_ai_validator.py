"""The validator on its own: the corpora, each rule, the rewrites, severities."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
import sqlglot
from conftest import DATA
from pulse_ai_validation.catalog import ANALYTICS_CATALOG
from pulse_ai_validation.plugin import register_validation_rules
from pulse_ai_validation.rules import ValidationPolicy
from pulse_ai_validation.validator import ValidationResult, Validator
from sqlglot import exp

HOSTILE = json.loads((DATA / "hostile_sql.json").read_text())
LEGIT = json.loads((DATA / "legit_sql.json").read_text())
TENANT = "5f0c2a4e-8d7b-4c1e-9a3f-2b6d8e1f0a7c"
VALIDATOR = Validator(register_validation_rules())


def check(sql: str, policy: ValidationPolicy | None = None) -> ValidationResult:
    """Validate ``sql`` for :data:`TENANT`."""
    return VALIDATOR.validate(sql, ANALYTICS_CATALOG, policy, TENANT)


def errors(result: ValidationResult) -> set[str]:
    """The rule ids of the result's error findings."""
    return {f.rule_id for f in result.findings if f.severity == "error"}


def test_the_corpora_are_large_and_cover_every_category() -> None:
    assert len(HOSTILE) >= 300 and len(LEGIT) >= 100
    categories = Counter(item["category"] for item in HOSTILE)
    assert set(categories) == {"stacked", "write", "writable_cte", "dangerous_function",
                               "quoting_trick", "catalog_read", "cross_tenant",
                               "resource_exhaustion"}
    assert min(categories.values()) >= 20


@pytest.mark.parametrize(
    "item", HOSTILE, ids=[f"{i}-{h['category']}" for i, h in enumerate(HOSTILE)])
def test_hostile_statement_is_refused(item: dict[str, str]) -> None:
    result = check(item["sql"])
    assert not result.valid and result.sql is None
    if item["rule"]:
        assert item["rule"] in errors(result), [f.message for f in result.findings]


@pytest.mark.parametrize("item", LEGIT, ids=[q["question"] for q in LEGIT])
def test_legit_statement_is_accepted_and_scoped(item: dict[str, str]) -> None:
    result = check(item["sql"])
    assert result.valid and not result.findings, [f.message for f in result.findings]
    assert result.sql is not None
    tree = sqlglot.parse_one(result.sql, read="postgres")
    # every stored table is read only inside a subquery filtered to the tenant
    stored = [t for t in tree.find_all(exp.Table) if t.args.get("db")]
    original = sqlglot.parse_one(item["sql"], read="postgres")
    ctes = {c.alias_or_name for c in original.find_all(exp.CTE)}
    assert len(stored) == len([t for t in original.find_all(exp.Table)
                               if isinstance(t.this, exp.Identifier) and t.name not in ctes])
    for table in stored:
        assert table.args["db"].name == "public"
        select = table.find_ancestor(exp.Select)
        assert select is not None and isinstance(select.parent, exp.Subquery)
        where = select.args["where"].this
        assert where.sql("postgres") == f"\"tenant_id\" = CAST('{TENANT}' AS UUID)"
        assert "tenant_id" not in [p.name for p in select.expressions]
    assert isinstance(tree.args.get("limit"), exp.Limit)


def test_syntax_error_has_line_column_and_message() -> None:
    result = check("SELECT sha,\n  count(*\nFROM commits")
    [finding] = result.findings
    assert finding.rule_id == "syntax.parse" and finding.location is not None
    assert finding.location.line == 3
    assert re.match(r"Syntax error at line 3, column \d+: ", finding.message)
    assert "Token" not in finding.message


def test_stacked_queries_name_the_second_statement() -> None:
    result = check("SELECT 1;\nDROP TABLE commits")
    [finding] = result.findings
    assert finding.rule_id == "statement.single" and finding.details["count"] == 2
    assert finding.location is not None and finding.location.line == 2


def test_the_querys_own_tenant_filter_is_not_trusted() -> None:
    assert "schema.column" in errors(check(
        "SELECT * FROM commits WHERE tenant_id = '00000000-0000-0000-0000-000000000000'"))
    result = check("SELECT count(*) FROM commits c WHERE c.repository_id IS NOT NULL")
    assert result.sql is not None and result.sql.count(TENANT) == 1


def test_cte_references_are_not_rewritten_but_their_tables_are() -> None:
    result = check("WITH c AS (SELECT repository_id FROM commits) "
                   "SELECT count(*) FROM c JOIN repositories r ON r.id = c.repository_id")
    assert result.valid and result.sql is not None
    assert result.sql.count(TENANT) == 2  # commits inside the CTE, repositories outside


def test_limit_added_capped_and_kept() -> None:
    assert check("SELECT sha FROM commits").limit == 1000
    assert check("SELECT sha FROM commits LIMIT 50000").limit == 10000
    assert check("SELECT sha FROM commits LIMIT 7").limit == 7
    assert check("SELECT sha FROM commits LIMIT ALL").limit == 10000
    assert check("SELECT sha FROM commits FETCH FIRST 3 ROWS ONLY").limit == 3
    assert check("SELECT 1 UNION SELECT 2").limit == 1000
    values = check("VALUES (1), (2)")
    assert values.sql == "SELECT * FROM (VALUES (1), (2)) AS pulse_result LIMIT 1000"
    tight = ValidationPolicy(default_limit=5, max_limit=20)
    assert check("SELECT sha FROM commits", tight).limit == 5
    assert check("SELECT sha FROM commits LIMIT 100", tight).limit == 20


def test_unknown_names_get_the_nearest_valid_ones() -> None:
    [finding] = check("SELECT authored_att FROM commits").findings
    assert finding.rule_id == "schema.column"
    assert finding.details["suggestions"][0] == "authored_at"
    [finding] = check("SELECT * FROM deployment").findings
    assert finding.details["suggestions"][0] == "deployments"
    [finding] = check("SELECT c.sha FROM commits c JOIN repositories r ON r.id = c.repo_id"
                      ).findings
    assert finding.details["column"] == "repo_id"


def test_columns_outside_the_allow_list_are_refused() -> None:
    for sql in ("SELECT email FROM people", "SELECT author_email FROM commits",
                "SELECT c.tenant_id FROM commits c"):
        assert "schema.column" in errors(check(sql)), sql


def test_complexity_limits_follow_the_policy() -> None:
    sql = ("SELECT count(*) FROM commits c JOIN repositories r ON r.id = c.repository_id "
           "JOIN projects p ON p.id = r.project_id")
    assert check(sql).valid
    assert "complexity.joins" in errors(check(sql, ValidationPolicy(max_joins=1)))
    nested = "SELECT * FROM (SELECT * FROM (SELECT sha FROM commits) a) b"
    assert check(nested).valid
    assert "complexity.depth" in errors(check(nested, ValidationPolicy(max_subquery_depth=1)))
    assert check("SELECT * FROM generate_series(1, 100000)").valid
    assert not check("SELECT * FROM generate_series(1, 100001)").valid
    assert check("SELECT * FROM generate_series(now() - interval '1 year', now(), "
                 "interval '1 day')").valid


def test_tenant_severities_lower_quality_rules_only() -> None:
    relaxed = ValidationPolicy(max_joins=0, severities={
        "complexity.joins": "warning", "function.allowed": "off",
        "readonly.statement": "info", "schema.column": "off",
    })
    sql = "SELECT count(*) FROM commits c JOIN repositories r ON r.id = c.repository_id"
    result = check(sql, relaxed)
    assert result.valid
    assert [(f.rule_id, f.severity) for f in result.findings] == [("complexity.joins", "warning")]
    assert not check("SELECT pg_sleep(1)", relaxed).valid  # security rules stay errors
    assert not check("DELETE FROM commits", relaxed).valid
    stricter = ValidationPolicy(severities={"limit.cap": "error"})
    assert check("SELECT sha FROM commits", stricter).valid


def test_tenant_function_additions_never_admit_denied_ones() -> None:
    policy = ValidationPolicy(extra_functions=frozenset(
        {"jsonb_agg", "pg_sleep", "to_regclass", "has_table_privilege", "current_setting"}))
    assert check("SELECT jsonb_agg(sha) FROM commits", policy).valid
    assert not check("SELECT jsonb_agg(sha) FROM commits").valid
    for denied in ("pg_sleep(1)", "to_regclass('users')", "current_setting('role')",
                   "has_table_privilege('users', 'select')"):
        assert "function.allowed" in errors(check(f"SELECT {denied}", policy)), denied


def test_a_rule_that_raises_fails_the_query() -> None:
    class Broken:
        rule_id = "third.broken"
        severity = "warning"
        description = "raises"

        def check(self, context: object) -> list[object]:
            raise ValueError("boom")

    validator = Validator([*register_validation_rules(), Broken()])
    result = validator.validate("SELECT 1", ANALYTICS_CATALOG, None, TENANT)
    assert not result.valid
    assert [f.rule_id for f in result.findings] == ["third.broken"]


def test_oversized_and_absurd_input_is_refused_quickly() -> None:
    assert errors(check("SELECT " + "1 + " * 10000 + "1")) & {"complexity.size",
                                                             "complexity.depth"}
    assert not check("SELECT " + "(" * 5000 + "1" + ")" * 5000).valid
    assert not check("\x00").valid
