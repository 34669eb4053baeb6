"""Healing suggestions for a failing query (``POST /api/v1/ai/learning/healing-suggestions``).

Candidates come from five sources; every one is validated with the tenant's rules before
it is returned, and only those that pass are ranked:

* ``transpile``: the SQL read as another dialect (MySQL, SQLite, T-SQL, BigQuery,
  Snowflake) and written as PostgreSQL by sqlglot (backticks, ``strftime``, ``IFNULL``,
  ``TOP n``...);
* ``nearest_name``: an unknown column or table replaced by the nearest valid names;
* ``add_group_by``: aggregates beside plain columns get the GROUP BY they need;
* ``add_limit``: a query without LIMIT gets the default one;
* ``time_function``: another engine's time functions (``GETDATE()``, ``CURDATE()``,
  ``DATEDIFF``, ``UNIX_TIMESTAMP``, ``JULIANDAY``...) replaced by PostgreSQL's (where a
  transpile gives the same SQL, the higher-ranked transpile is the one kept);
* ``learned``: corrections recorded for similar failed queries.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from pulse_ai_validation.catalog import Catalog
from pulse_ai_validation.rules import ValidationPolicy
from pulse_ai_validation.semantics import jaccard, sql_tokens
from pulse_ai_validation.validator import Validator, parse

log = logging.getLogger(__name__)

DIALECTS = ("mysql", "sqlite", "tsql", "bigquery", "snowflake")
MAX_SUGGESTIONS = 8

Candidate = tuple[str, str, str, float]  # sql, kind, explanation, prior score


def _single(sql: str) -> exp.Expr | None:
    try:
        statements = parse(sql)
    except (ParseError, TokenError, RecursionError, ValueError):
        return None
    return statements[0] if len(statements) == 1 else None


def _transpiled(sql: str) -> Iterator[Candidate]:
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        for dialect in DIALECTS:
            try:
                out = sqlglot.transpile(sql, read=dialect, write="postgres")
            except (ParseError, TokenError, ValueError, RecursionError):
                continue
            if len(out) == 1 and out[0].strip() and out[0] != sql:
                yield (out[0], "transpile", f"Read as {dialect} and written as PostgreSQL.",
                       0.9)
    finally:
        logger.setLevel(level)


def _renamed(tree: exp.Expr, findings: Sequence[dict[str, Any]]) -> Iterator[Candidate]:
    for item in findings:
        details = item.get("details") or {}
        suggestions = details.get("suggestions") or []
        if item["rule_id"] == "schema.column" and details.get("column"):
            wrong = str(details["column"])
            for rank, name in enumerate(suggestions[:3]):
                fixed = tree.copy()
                for column in fixed.find_all(exp.Column):
                    if column.name == wrong:
                        column.set("this", exp.to_identifier(name))
                ratio = difflib.SequenceMatcher(None, wrong.lower(), name).ratio()
                yield (fixed.sql("postgres"), "nearest_name",
                       f"Column {wrong!r} does not exist; {name!r} is the nearest.",
                       0.6 + 0.3 * ratio - 0.05 * rank)
        if item["rule_id"] == "schema.table" and details.get("table"):
            wrong = str(details["table"])
            for rank, name in enumerate(suggestions[:3]):
                fixed = tree.copy()
                for table in fixed.find_all(exp.Table):
                    if table.name == wrong and isinstance(table.this, exp.Identifier):
                        table.set("this", exp.to_identifier(name))
                ratio = difflib.SequenceMatcher(None, wrong.lower(), name).ratio()
                yield (fixed.sql("postgres"), "nearest_name",
                       f"Table {wrong!r} does not exist; {name!r} is the nearest.",
                       0.6 + 0.3 * ratio - 0.05 * rank)


def _group_by(tree: exp.Expr) -> Iterator[Candidate]:
    for select in tree.find_all(exp.Select):
        if select.args.get("group"):
            continue
        plain, aggregated = [], False
        for projection in select.expressions:
            inner = projection.this if isinstance(projection, exp.Alias) else projection
            if inner.find(exp.AggFunc) is not None:
                aggregated = True
            elif not isinstance(inner, (exp.Literal, exp.Star)):
                plain.append(inner)
        if aggregated and plain:
            fixed = tree.copy()
            target = next(s for s in fixed.find_all(exp.Select) if s.sql() == select.sql())
            target.group_by(*[p.copy() for p in plain], copy=False)
            names = ", ".join(p.sql("postgres") for p in plain)
            yield (fixed.sql("postgres"), "add_group_by",
                   f"Aggregates beside plain columns need GROUP BY {names}.", 0.85)
            return


def _limit(tree: exp.Expr, policy: ValidationPolicy) -> Iterator[Candidate]:
    if isinstance(tree, exp.Query) and tree.args.get("limit") is None:
        fixed = tree.copy().limit(policy.default_limit)
        yield (fixed.sql("postgres"), "add_limit",
               f"Add LIMIT {policy.default_limit} (queries are capped anyway).", 0.5)


def _now() -> exp.Expr:
    return exp.CurrentTimestamp()


#: other engines' time functions -> a PostgreSQL expression built from their arguments
TIME_FIXES: dict[str, Callable[[list[exp.Expr]], exp.Expr | None]] = {
    "getdate": lambda a: _now(), "sysdate": lambda a: _now(), "getutcdate": lambda a: _now(),
    "sysdatetime": lambda a: _now(), "curdate": lambda a: exp.CurrentDate(),
    "unix_timestamp": lambda a: exp.Extract(this=exp.var("EPOCH"),
                                            expression=a[0] if a else _now()),
    "from_unixtime": lambda a: exp.UnixToTime(this=a[0]) if a else None,
    "datediff": lambda a: (
        exp.Sub(this=exp.cast(a[0], "date"), expression=exp.cast(a[1], "date"))
        if len(a) == 2 else None
    ),
    "julianday": lambda a: exp.Add(
        this=exp.Div(this=exp.Extract(this=exp.var("EPOCH"), expression=a[0]),
                     expression=exp.Literal.number(86400)),
        expression=exp.Literal.number(2440587.5),
    ) if a else None,
}


def _time_functions(tree: exp.Expr) -> Iterator[Candidate]:
    fixed = tree.copy()
    changed = []
    for node in list(fixed.find_all(exp.Anonymous)):
        name = str(node.name).lower()
        builder = TIME_FIXES.get(name)
        if builder is None:
            continue
        replacement = builder([arg.copy() for arg in node.expressions])
        if replacement is not None:
            node.replace(replacement)
            changed.append(name)
    if changed:
        yield (fixed.sql("postgres"), "time_function",
               f"PostgreSQL's time functions instead of {', '.join(sorted(set(changed)))}().",
               0.8)


def _learned(sql: str, memory: Sequence[dict[str, Any]]) -> Iterator[Candidate]:
    tokens = sql_tokens(sql)
    for record in memory:
        corrected = record.get("corrected_sql")
        if not corrected or record.get("outcome") == "not_fixed":
            continue
        similarity = jaccard(tokens, sql_tokens(str(record.get("failed_sql") or "")))
        if similarity >= 0.5:
            yield (str(corrected), "learned",
                   f"A recorded correction of a similar query ({similarity:.0%} alike).",
                   min(1.0, 0.4 + 0.6 * similarity))


def heal(
    validator: Validator,
    catalog: Catalog,
    policy: ValidationPolicy,
    tenant_id: str | None,
    sql: str,
    error: str | None = None,
    question: str | None = None,
    memory: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Ranked fixes for ``sql``, each validated (only valid ones are returned)."""
    original = validator.validate(sql, catalog, policy, tenant_id, rewrite=False)
    findings = [f.as_dict() for f in original.findings]
    candidates: list[Candidate] = []
    tree = _single(sql)
    if tree is None or "`" in sql or any(
        f["rule_id"] in ("syntax.parse", "function.allowed") for f in findings
    ):
        candidates += _transpiled(sql)
    if tree is not None:
        candidates += _renamed(tree, findings)
        candidates += _group_by(tree)
        candidates += _time_functions(tree)
        candidates += _limit(tree, policy)
    candidates += _learned(sql, memory)
    # a fix may need another: rename or group a transpiled query too
    for text, kind, why, prior in list(candidates):
        if kind != "transpile":
            continue
        first = validator.validate(text, catalog, policy, tenant_id, rewrite=False)
        inner = _single(text)
        if inner is None or first.valid:
            continue
        for more, _kind, why2, prior2 in [*_renamed(inner, [f.as_dict() for f in first.findings]),
                                          *_group_by(inner), *_time_functions(inner)]:
            candidates.append((more, "transpile", f"{why} {why2}", min(prior, prior2)))
    suggestions: dict[str, dict[str, Any]] = {}
    for text, kind, why, prior in candidates:
        checked = validator.validate(text, catalog, policy, tenant_id, rewrite=False)
        if not checked.valid or checked.normalized is None:
            continue
        key = checked.normalized
        if key in suggestions and suggestions[key]["score"] >= prior:
            continue
        suggestions[key] = {
            "sql": key, "kind": kind, "explanation": why, "score": round(prior, 3),
            "valid": True, "findings": [f.as_dict() for f in checked.findings],
        }
    ranked = sorted(suggestions.values(), key=lambda s: (-s["score"], s["sql"]))
    return {"original_findings": findings, "suggestions": ranked[:MAX_SUGGESTIONS]}
