"""The validator: parse once, run every registered rule, rewrite what passed.

``valid`` is False when any finding's (effective) severity is ``error``. A rule that
raises counts as an error finding of that rule: the gate fails closed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError

from pulse_ai_validation.catalog import Catalog
from pulse_ai_validation.rules import (
    SEVERITY_RANK,
    Finding,
    Severity,
    ValidationContext,
    ValidationPolicy,
)

log = logging.getLogger(__name__)

DIALECT = "postgres"


@dataclass
class ValidationResult:
    """What the validator decided about one SQL text."""

    valid: bool
    findings: list[Finding]
    #: the normalised SQL (rewritten: tenant scope and LIMIT) when valid, else None
    sql: str | None
    #: the normalised SQL before the rewrites (for healing and semantics), when it parsed
    normalized: str | None = None
    limit: int | None = None
    context: ValidationContext | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The result as the ``validate/sql-syntax`` answer."""
        return {
            "valid": self.valid,
            "findings": [f.as_dict() for f in self.findings],
            "sql": self.sql,
            "limit": self.limit,
        }


POSTGRES = Dialect.get_or_raise(DIALECT)


class _CommandFallbackFilter(logging.Filter):
    """Drops sqlglot's "falling back to parsing as a 'Command'" warning: the validator
    reports that statement as a finding (``readonly.statement``) instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every other record."""
        return "Falling back to parsing as a 'Command'" not in record.getMessage()


logging.getLogger("sqlglot").addFilter(_CommandFallbackFilter())


def parse(sql: str) -> list[Any]:
    """Parse ``sql`` as PostgreSQL statements (empty ones dropped); sqlglot's errors raise."""
    return [statement for statement in POSTGRES.parse(sql) if statement]


class Validator:
    """Runs a fixed list of rules (the built-ins and those other plugins registered)."""

    def __init__(self, rules: Sequence[Any]) -> None:
        seen: dict[str, Any] = {}
        for rule in rules:
            seen.setdefault(str(rule.rule_id), rule)
        self.rules: list[Any] = list(seen.values())

    @property
    def rule_ids(self) -> list[str]:
        """The ids of the rules, in the order they run."""
        return [rule.rule_id for rule in self.rules]

    def describe(self) -> list[dict[str, Any]]:
        """Every rule with its id, default severity, stage and description."""
        return [
            {"rule_id": rule.rule_id, "severity": rule.severity,
             "stage": getattr(rule, "stage", "tree"),
             "security": bool(getattr(rule, "security", False)),
             "description": rule.description}
            for rule in self.rules
        ]

    def validate(
        self,
        sql: str,
        catalog: Catalog,
        policy: ValidationPolicy | None = None,
        tenant_id: str | None = None,
        *,
        rewrite: bool = True,
    ) -> ValidationResult:
        """Check ``sql`` against every rule; rewrite it when it passed and ``rewrite``."""
        policy = policy or ValidationPolicy()
        context = ValidationContext(sql=sql, catalog=catalog, policy=policy,
                                    tenant_id=tenant_id)
        if len(sql) > policy.max_sql_length:
            finding = Finding("complexity.size", "error",
                              f"The SQL is {len(sql)} characters long; at most "
                              f"{policy.max_sql_length}.")
            return ValidationResult(False, [finding], None, context=context)
        try:
            context.statements = parse(sql)
        except (ParseError, TokenError) as error:
            context.parse_error = error
        except (RecursionError, ValueError) as error:  # absurd nesting, odd literals
            context.parse_error = TokenError(str(error) or "The SQL cannot be read.")
        findings = self._run(context, "statements")
        if _blocking(findings) or context.statements is None or len(context.statements) != 1:
            return ValidationResult(False, findings, None, context=context)
        findings += self._run(context, "tree")
        if _blocking(findings):
            return ValidationResult(False, findings, None, context=context)
        if not rewrite:
            normalized = _generate(context.tree)
            if normalized is None:
                findings.append(Finding("syntax.parse", "error",
                                        "The SQL cannot be written back as PostgreSQL."))
            return ValidationResult(normalized is not None, findings, normalized, normalized,
                                    context=context)
        tree = context.tree  # rewritten in place: the parse is this validation's own
        for rule in self.rules:
            rewriter = getattr(rule, "rewrite", None)
            if rewriter is None or self._severity(rule, policy) is None:
                continue
            tree = rewriter(context, tree)
            context.statements = [tree]
        rewritten = _generate(tree)
        if rewritten is None:
            findings.append(Finding("syntax.parse", "error",
                                    "The SQL cannot be written back as PostgreSQL."))
            return ValidationResult(False, findings, None, context=context)
        for placeholder, source in context.substitutions.items():
            if rewritten.count(placeholder) != 1:  # never guessed: fail closed all the same
                return ValidationResult(False, [*findings, Finding(
                    "tenant.scope", "error", "The tenant scope could not be applied.")],
                    None, context=context)
            rewritten = rewritten.replace(placeholder, source)
        return ValidationResult(True, findings, rewritten, None, context.limit_applied,
                                context=context)

    def _run(self, context: ValidationContext, stage: str) -> list[Finding]:
        findings: list[Finding] = []
        for rule in self.rules:
            if getattr(rule, "stage", "tree") != stage:
                continue
            severity = self._severity(rule, context.policy)
            if severity is None:
                continue
            try:
                produced: Iterable[Finding] = list(rule.check(context))
            except Exception as error:  # noqa: BLE001 - a failing rule fails the query
                log.warning("validation rule %s raised", rule.rule_id, exc_info=True)
                produced = [Finding(str(rule.rule_id), "error",
                                    f"The query could not be analysed by rule "
                                    f"{rule.rule_id}: {type(error).__name__}.")]
                severity = "error"
            for item in produced:
                findings.append(_with_severity(item, severity, rule))
        return findings

    @staticmethod
    def _severity(rule: Any, policy: ValidationPolicy) -> Severity | None:
        """The tenant's severity for ``rule`` (None: off); security rules cannot be lowered."""
        chosen = policy.severities.get(rule.rule_id)
        default: Severity = rule.severity
        if chosen is None:
            return default
        if getattr(rule, "security", False) and (
            chosen == "off" or SEVERITY_RANK[chosen] < SEVERITY_RANK[default]
        ):
            return default
        if chosen == "off":
            return None
        return chosen


def _with_severity(item: Finding, severity: Severity, rule: Any) -> Finding:
    """``item`` with the tenant's severity when it carries the rule's default one."""
    if item.severity == rule.severity and severity != rule.severity:
        return Finding(item.rule_id, severity, item.message, item.location, item.details)
    return item


def _blocking(findings: Iterable[Finding]) -> bool:
    return any(item.severity == "error" for item in findings)


def _generate(tree: Any) -> str | None:
    try:
        # copy=False: the tree is this validation's own (sqlglot copies it otherwise)
        return str(POSTGRES.generate(tree, copy=False))
    except Exception:  # noqa: BLE001 - sqlglot cannot write it: refuse rather than guess
        log.warning("sqlglot could not generate SQL", exc_info=True)
        return None
