"""The rule contract: findings, severities, the context a rule checks, and the policy.

A rule is any object with a ``rule_id``, a default ``severity``, a ``description`` and a
``check(context)`` returning findings. Optional attributes: ``stage`` (``"statements"``
rules run on the parsed statement list, even when it is not one statement; ``"tree"``
rules, the default, run on the single statement), ``security`` (True: a tenant cannot
lower its severity) and ``rewrite(context, tree) -> tree`` (run in registration order on
a query that passed every check: the tenant scope and the LIMIT are rewrites).
Rules are registered through the ``register_validation_rules`` hook.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.optimizer.scope import Scope, traverse_scope

from pulse_ai_validation.catalog import Catalog

Severity = Literal["error", "warning", "info"]
#: what a tenant may set a rule to (``off`` drops its findings)
SeveritySetting = Literal["error", "warning", "info", "off"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "error": 2}


@dataclass(frozen=True)
class Location:
    """Where in the SQL a finding points (1-based line and column)."""

    line: int
    column: int

    def as_dict(self) -> dict[str, int]:
        """The location as JSON."""
        return {"line": self.line, "column": self.column}


@dataclass(frozen=True)
class Finding:
    """One problem (or note) a rule found."""

    rule_id: str
    severity: Severity
    message: str
    location: Location | None = None
    #: machine-readable details (the unknown name, the nearest valid ones...)
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The finding as JSON."""
        return {
            "rule_id": self.rule_id,
            "severity": self.severity,
            "message": self.message,
            "location": self.location.as_dict() if self.location else None,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class ValidationPolicy:
    """The limits and per-tenant choices a validation runs under."""

    default_limit: int = 1000
    max_limit: int = 10000
    max_offset: int = 100000
    max_joins: int = 8
    max_subquery_depth: int = 4
    max_series_rows: int = 100000
    max_sql_length: int = 20000
    max_nodes: int = 3000
    #: extra PostgreSQL function names a tenant allows (never one of the denied)
    extra_functions: frozenset[str] = frozenset()
    #: rule id -> severity a tenant chose
    severities: Mapping[str, SeveritySetting] = field(default_factory=dict)


@dataclass
class ValidationContext:
    """What a rule checks: the SQL, its parse, the catalog, the policy and the tenant."""

    sql: str
    catalog: Catalog
    policy: ValidationPolicy
    tenant_id: str | None = None
    statements: list[exp.Expr] | None = None
    parse_error: ParseError | TokenError | None = None
    #: the LIMIT the rewrite gave the query
    limit_applied: int | None = None
    #: a random value naming this validation's placeholders (see the tenant rewrite)
    nonce: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: placeholder text -> what the written SQL holds instead
    substitutions: dict[str, str] = field(default_factory=dict)
    _scopes: list[Scope] | None = None
    _cte_tables: set[int] | None = None
    _nodes: list[exp.Expr] | None = None

    @property
    def tree(self) -> exp.Expr:
        """The single statement (tree rules run only when there is exactly one)."""
        assert self.statements is not None and len(self.statements) == 1
        return self.statements[0]

    @property
    def nodes(self) -> list[exp.Expr]:
        """Every node of the statement, breadth first (walked once for all rules)."""
        if self._nodes is None:
            self._nodes = list(self.tree.walk())
        return self._nodes

    def of(self, *kinds: type[exp.Expr]) -> list[Any]:
        """The statement's nodes of the given types, breadth first."""
        return [node for node in self.nodes if isinstance(node, kinds)]

    @property
    def scopes(self) -> list[Scope]:
        """The query's scopes (sqlglot's scope analysis), computed once."""
        if self._scopes is None:
            self._scopes = traverse_scope(self.tree)
        return self._scopes

    def is_cte_reference(self, table: exp.Table) -> bool:
        """Whether ``table`` names a CTE visible where it stands (not a stored table)."""
        if self._cte_tables is None:
            found: set[int] = set()
            for scope in self.scopes:
                for node in scope.tables:
                    if not node.args.get("db") and not node.args.get("catalog") and (
                        node.name in scope.cte_sources
                    ):
                        found.add(id(node))
            self._cte_tables = found
        return id(table) in self._cte_tables

    def stored_tables(self) -> list[exp.Table]:
        """Every table reference that is not a CTE's nor a table function."""
        return [
            table for table in self.tree.find_all(exp.Table)
            if isinstance(table.this, exp.Identifier) and not self.is_cte_reference(table)
        ]


@runtime_checkable
class ValidationRule(Protocol):
    """A validation rule (see the module docstring for the optional attributes)."""

    rule_id: str
    severity: Severity
    description: str

    def check(self, context: ValidationContext) -> Iterable[Finding]:
        """The findings of this rule on ``context``."""
        ...


def locate(node: exp.Expr | None) -> Location | None:
    """The position sqlglot recorded for ``node`` (or its first identifier), if any."""
    if node is None:
        return None
    candidates = [node, *node.find_all(exp.Identifier, exp.Literal)]
    for candidate in candidates:
        meta = candidate.meta if hasattr(candidate, "meta") else None
        if meta and "line" in meta and "col" in meta:
            # sqlglot's column is where the token ends; point at its start
            start_col = int(meta["col"]) - len(candidate.name or "") + 1
            return Location(int(meta["line"]), max(1, start_col))
    return None


def finding(
    rule: Any, message: str, node: exp.Expr | None = None,
    severity: Severity | None = None, **details: Any,
) -> Finding:
    """A finding of ``rule`` at ``node`` (with the rule's default severity unless given)."""
    return Finding(rule.rule_id, severity or rule.severity, message, locate(node), details)
