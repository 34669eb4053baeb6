"""The built-in validation rules, each registered through ``register_validation_rules``.

Parse-level enforcement throughout: every rule walks sqlglot's tree (PostgreSQL
dialect), never the text. Rules are ordered: the ``statements`` stage (syntax, one
statement) gates the ``tree`` stage; the two rewrites run last on a query that passed.
"""

from __future__ import annotations

import difflib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import ClassVar

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError
from sqlglot.optimizer.scope import Scope
from sqlglot.tokens import TokenType

from pulse_ai_validation.rules import (
    Finding,
    Location,
    Severity,
    ValidationContext,
    finding,
)

# -- data ------------------------------------------------------------------------------

#: sqlglot's typed function classes a read-only analytics query may call.
ALLOWED_FUNCTION_CLASSES: frozenset[str] = frozenset({
    # aggregates
    "Count", "Sum", "Avg", "Min", "Max", "Stddev", "StddevPop", "StddevSamp", "Variance",
    "VariancePop", "PercentileCont", "PercentileDisc", "Median", "Mode", "ArrayAgg",
    "GroupConcat", "LogicalAnd", "LogicalOr", "Corr", "CovarPop", "CovarSamp", "RegrSlope",
    "RegrIntercept", "CountIf", "ApproxDistinct",
    # window
    "RowNumber", "Rank", "DenseRank", "PercentRank", "CumeDist", "Ntile", "Lag", "Lead",
    "FirstValue", "LastValue", "NthValue",
    # scalar
    "Coalesce", "Nullif", "Cast", "Case", "If", "Greatest", "Least", "Abs", "Floor", "Ceil",
    "Round", "Sqrt", "Pow", "Ln", "Log", "Exp", "Sign", "Mod", "WidthBucket", "Lower", "Upper",
    "Initcap", "Length", "Trim", "Concat", "ConcatWs", "Substring", "Left", "Right",
    "Replace", "StrPosition", "SplitPart", "RegexpLike", "RegexpILike", "RegexpReplace",
    "RegexpExtract", "Pad", "MD5",
    # time
    "CurrentTimestamp", "CurrentDate", "CurrentTime", "Localtimestamp", "Localtime",
    "Extract", "TimestampTrunc", "DateTrunc", "TimeToStr", "StrToTime", "StrToDate",
    "UnixToTime", "Date", "DateBin", "JustifyInterval", "JustifyDays", "JustifyHours",
    "MakeInterval", "TsOrDsToDate", "TimeStrToTime",
    # arrays and sets
    "Array", "ArraySize", "ArrayContainsAll", "ArrayOverlaps", "ArrayContains",
    "ArrayPosition", "ArrayToString", "Explode", "Unnest", "ExplodingGenerateSeries",
    "GenerateSeries", "Any", "All", "Exists", "ArrayContainedBy", "Collate",
    # operators sqlglot models as functions
    "And", "Or", "Xor",
})

#: PostgreSQL functions sqlglot leaves anonymous that an analytics query may call.
ALLOWED_FUNCTION_NAMES: frozenset[str] = frozenset({
    "age", "cardinality", "make_date", "make_timestamp", "make_timestamptz", "isfinite",
    "date_part", "every", "array_remove", "array_cat", "string_to_array", "regexp_match",
    "regexp_matches_count", "btrim", "ltrim", "rtrim", "char_length", "octet_length",
    "num_nonnulls", "num_nulls", "trunc", "div", "cbrt", "degrees", "radians",
    "percentile_cont", "percentile_disc", "unnest", "generate_series", "to_number",
    "date_add", "date_subtract", "timezone", "justify_interval", "array_length",
})

#: Functions refused with a clear message (files, network, sessions, locks, sleep...).
DENIED_FUNCTIONS: frozenset[str] = frozenset({
    "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_ls_logdir",
    "pg_ls_waldir", "pg_ls_tmpdir", "pg_ls_archive_statusdir", "lo_import", "lo_export",
    "lo_open", "lo_get", "lo_put", "lo_create", "lo_unlink", "lo_from_bytea", "loread",
    "lowrite", "dblink", "dblink_exec", "dblink_connect", "dblink_send_query", "set_config",
    "current_setting", "pg_sleep", "pg_sleep_for", "pg_sleep_until", "pg_terminate_backend",
    "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile", "pg_advisory_lock",
    "pg_advisory_xact_lock", "pg_try_advisory_lock", "pg_notify", "nextval", "setval",
    "currval", "lastval", "txid_current", "pg_switch_wal", "pg_create_restore_point",
    "query_to_xml", "query_to_xml_and_xmlschema", "table_to_xml", "database_to_xml",
    "cursor_to_xml", "schema_to_xml", "xpath", "version", "inet_server_addr",
    "inet_server_port", "pg_backend_pid", "pg_postmaster_start_time", "pg_logical_emit_message",
    "pg_create_logical_replication_slot", "pg_drop_replication_slot", "pg_file_write",
    "pg_file_unlink", "pg_file_rename", "copy", "pg_get_userbyid", "pg_get_functiondef",
    "pg_get_viewdef", "has_table_privilege", "pg_has_role", "current_user", "session_user",
    "current_role", "user", "current_database", "current_schema", "current_schemas",
    "repeat", "pg_column_size", "pg_relation_size", "pg_total_relation_size",
    "pg_database_size", "pg_execute_server_program", "pg_stat_get_activity",
    "gen_random_uuid", "random", "setseed", "pg_import_system_collations",
    "pg_catalog", "format", "pg_current_logfile", "pg_start_backup", "pg_stop_backup",
    "pg_promote", "pg_export_snapshot", "txid_current_snapshot", "clock_timestamp",
})

#: Name prefixes denied whatever a tenant adds (server, files, sessions, catalog probes).
DENIED_PREFIXES: tuple[str, ...] = ("pg_", "lo_", "dblink", "to_reg", "has_", "txid_",
                                    "inet_", "current_", "session_", "set_", "xml")

#: sqlglot classes of denied functions (their SQL names above explain the refusal).
DENIED_FUNCTION_CLASSES: dict[str, str] = {
    "CurrentUser": "current_user", "SessionUser": "session_user", "Repeat": "repeat",
    "Rand": "random", "Uuid": "gen_random_uuid", "CurrentSchema": "current_schema",
}

#: Type names a CAST may name (no reg* types: they read the catalogs).
ALLOWED_CAST_TYPES: frozenset[str] = frozenset({
    "INT", "BIGINT", "SMALLINT", "TINYINT", "DECIMAL", "DOUBLE", "FLOAT", "TEXT", "VARCHAR",
    "CHAR", "NCHAR", "NVARCHAR", "BOOLEAN", "DATE", "TIME", "TIMETZ", "TIMESTAMP",
    "TIMESTAMPTZ", "TIMESTAMPLTZ", "INTERVAL", "UUID", "BPCHAR", "UBIGINT", "UINT", "MONEY",
    "ARRAY",
})

#: Node types that only a writing, session-changing or opaque statement contains.
FORBIDDEN_NODES: tuple[type[exp.Expr], ...] = tuple(
    cls for cls in (
        getattr(exp, name, None)
        for name in (
            "Command", "Insert", "Update", "Delete", "Merge", "Copy", "Create", "Drop", "Alter",
            "TruncateTable", "Into", "Lock", "Transaction", "Commit", "Rollback", "Set",
            "SetItem", "Grant", "Revoke", "Pragma", "Use", "Describe", "Kill", "Cache",
            "Uncache", "LoadData", "Analyze", "Refresh", "Returning", "Comment", "Detach",
            "Attach", "Export", "Install", "Declare", "DeclareItem", "Summarize",
        )
    )
    if isinstance(cls, type)
)

#: Root statement types a query may be.
READ_ROOTS: tuple[type[exp.Expr], ...] = (exp.Select, exp.SetOperation, exp.Values,
                                                exp.Subquery)


def function_name(node: exp.Func) -> str:
    """The SQL name of a function node (lower-case)."""
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.sql_name().lower()


def nearest(name: str, candidates: Iterable[str], count: int = 3) -> list[str]:
    """The ``count`` names of ``candidates`` closest to ``name``: those it abbreviates
    (``env`` -> ``environment``) first, then by difflib ratio (>= 0.5)."""
    pool = sorted(set(candidates))
    lowered = name.lower()
    prefixed = [c for c in pool if len(lowered) >= 2 and c.startswith(lowered) and c != lowered]
    similar = difflib.get_close_matches(lowered, pool, n=count, cutoff=0.5)
    return list(dict.fromkeys([*sorted(prefixed, key=len), *similar]))[:count]


class Rule(ABC):
    """Base of the built-in rules: an id, a default severity and a description."""

    rule_id: ClassVar[str]
    severity: ClassVar[Severity] = "error"
    description: ClassVar[str]
    stage: ClassVar[str] = "tree"
    security: ClassVar[bool] = True

    @abstractmethod
    def check(self, context: ValidationContext) -> Iterable[Finding]:
        """The findings of this rule."""


# -- statements stage -----------------------------------------------------------------


class SyntaxRule(Rule):
    """The SQL parses (sqlglot, PostgreSQL dialect); else the line, column and message."""

    rule_id = "syntax.parse"
    description = "The SQL parses as PostgreSQL."
    stage = "statements"

    def check(self, context: ValidationContext) -> Iterator[Finding]:
        """One finding for a parse error, with its line and column."""
        error = context.parse_error
        if error is None:
            return
        if isinstance(error, ParseError) and error.errors:
            first = error.errors[0]
            description = _readable(str(first.get("description") or "invalid syntax"))
            near = str(first.get("highlight") or "").strip()
            line, col = int(first.get("line") or 1), int(first.get("col") or 1)
            message = f"Syntax error at line {line}, column {col}: {description}"
            if near:
                message += f" (near {near!r})"
            start = max(1, col - len(near) + 1) if near else col
            yield Finding(self.rule_id, self.severity, message, Location(line, start))
            return
        text = str(error)
        match = re.search(r"[Ll]ine[: ]+(\d+).*?[Cc]ol[: ]+(\d+)", text)
        location = Location(int(match[1]), int(match[2])) if match else None
        yield Finding(self.rule_id, self.severity,
                      f"The SQL cannot be read: {text.splitlines()[0]}", location)


def _readable(description: str) -> str:
    """sqlglot's message with its token reprs spelled as the text they stand for."""
    return re.sub(
        r"<Token token_type: TokenType\.(\w+), text: (.*?), line: \d+.*?>",
        lambda m: "the end of the SQL" if m[1] == "SENTINEL" else repr(m[2]),
        description,
    )


def offset_location(sql: str, offset: int) -> Location:
    """The 1-based line and column of a character offset."""
    line = sql.count("\n", 0, offset) + 1
    return Location(line, offset - sql.rfind("\n", 0, offset))


def _second_statement(sql: str) -> Location | None:
    """Where the second statement starts (the first token after the first ``;``)."""
    try:
        tokens = Dialect.get_or_raise("postgres").tokenize(sql)
    except (TokenError, ValueError):
        return None
    seen = False
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            seen = True
        elif seen:
            return offset_location(sql, token.start)
    return None


class SingleStatementRule(Rule):
    """Exactly one statement: stacked queries are refused whatever the others are."""

    rule_id = "statement.single"
    description = "Exactly one statement."
    stage = "statements"

    def check(self, context: ValidationContext) -> Iterator[Finding]:
        """A finding unless the SQL holds exactly one statement."""
        if context.statements is None:
            return
        count = len(context.statements)
        if count == 0:
            yield Finding(self.rule_id, self.severity, "The SQL holds no statement.")
        elif count > 1:
            yield Finding(self.rule_id, self.severity,
                          f"The SQL holds {count} statements; send exactly one.",
                          _second_statement(context.sql), {"count": count})


# -- tree stage -----------------------------------------------------------------------


class ReadOnlyRule(Rule):
    """Only SELECT, WITH and VALUES; nothing that writes, locks or changes the session."""

    rule_id = "readonly.statement"
    description = ("Only SELECT, WITH and VALUES: no DML, DDL, DCL, COPY, SELECT INTO, "
                   "locking clauses, transaction control, SET, or opaque commands.")

    def check(self, context: ValidationContext) -> Iterator[Finding]:
        """A finding for a non-query root and for each writing node anywhere in the tree."""
        tree = context.tree
        if isinstance(tree, exp.Command):
            command = str(tree.this).upper()
            yield finding(self, f"{command} statements are not allowed: only SELECT, WITH "
                          "and VALUES queries.", tree, statement=command)
            return
        if not isinstance(tree, READ_ROOTS):
            kind = type(tree).__name__.upper()
            yield finding(self, f"Only SELECT, WITH and VALUES queries are allowed (this is "
                          f"read as {kind}).", tree, statement=kind)
            return
        for node in context.nodes:
            if isinstance(node, FORBIDDEN_NODES):
                kind = {"Into": "SELECT INTO", "Lock": "a locking clause (FOR UPDATE/SHARE)"}.get(
                    type(node).__name__, type(node).__name__.upper())
                where = " inside a WITH" if node.find_ancestor(exp.CTE) else ""
                yield finding(self, f"{kind}{where} is not allowed in a read-only query.",
                              node, kind=type(node).__name__)
            elif isinstance(node, (exp.Placeholder, exp.Parameter)):
                yield finding(self, "Parameters and placeholders are not allowed; write "
                              "the values.", node, kind=type(node).__name__)


class FunctionRule(Rule):
    """Functions come from an allow-list (plus the tenant's additions); some are denied."""

    rule_id = "function.allowed"
    description = ("Every function is allow-listed; file, network, session and sleep "
                   "functions are denied.")

    def check(self, context: ValidationContext) -> Iterator[Finding]:
        """A finding per function outside the allow-list, denied, quoted or qualified."""
        extra = {name for name in context.policy.extra_functions - DENIED_FUNCTIONS
                 if not name.startswith(DENIED_PREFIXES)}
        for node in context.of(exp.Func):
            name = function_name(node)
            cls = type(node).__name__
            parent = node.parent
            if isinstance(parent, exp.Dot) and parent.expression is node:
                yield finding(self, f"Schema-qualified function {parent.sql('postgres')!r} "
                              "is not allowed; call functions by their plain name.", node,
                              function=name)
                continue
            if isinstance(node, exp.Anonymous):
                this = node.args.get("this")
                if isinstance(this, exp.Identifier) and this.quoted:
                    yield finding(self, f"Quoted function name \"{this.name}\" is not "
                                  "allowed.", node, function=name)
                    continue
                if name in DENIED_FUNCTIONS or name.startswith(DENIED_PREFIXES):
                    yield finding(self, f"Function {name}() is denied: it reaches files, the "
                                  "network, sessions or server state.", node, function=name,
                                  denied=True)
                elif name not in ALLOWED_FUNCTION_NAMES and name not in extra:
                    yield finding(self, f"Function {name}() is not in the allow-list.", node,
                                  function=name)
                continue
            if cls in DENIED_FUNCTION_CLASSES:
                denied = DENIED_FUNCTION_CLASSES[cls]
                yield finding(self, f"Function {denied}() is denied.", node, function=denied,
                              denied=True)
            elif cls not in ALLOWED_FUNCTION_CLASSES and name not in extra:
                yield finding(self, f"Function {name}() is not in the allow-list.", node,
                              function=name)
            elif isinstance(node, exp.Cast):
                to = node.args.get("to")
                if isinstance(to, exp.DataType):
                    yield from self._check_type(to, node)

    def _check_type(self, data_type: exp.DataType, node: exp.Expr) -> Iterator[Finding]:
        names = [data_type, *data_type.find_all(exp.DataType)]
        for item in names:
            type_name = item.this.name if isinstance(item.this, exp.DataType.Type) else ""
            if type_name not in ALLOWED_CAST_TYPES:
                spelled = item.sql("postgres")
                yield finding(self, f"Casting to {spelled} is not allowed.", node,
                              type=spelled)
                return


class SchemaTableRule(Rule):
    """Only allow-listed tables of the analytics model, unqualified: no catalogs."""

    rule_id = "schema.table"
    description = ("Only allow-listed tables of the analytics model (no system catalogs, "
                   "no schemas).")

    def check(self, context: ValidationContext) -> Iterator[Finding]:
        """A finding per table reference outside the allow-list."""
        names = sorted(table.name for table in context.catalog.tables.values())
        for table in context.of(exp.Table):
            if not isinstance(table.this, exp.Identifier):
                continue  # a table function: the function rule checks it
            qualifier = ".".join(
                part.name for part in (table.args.get("catalog"), table.args.get("db")) if part
            )
            if qualifier:
                yield finding(self, f"Schema-qualified table {table.sql('postgres')!r} is not "
                              "allowed; use the model's table names alone.", table,
                              table=table.name, schema=qualifier)
                continue
            if context.is_cte_reference(table):
                continue
            name = table.this.name
            known = context.catalog.table(name)
            if known is None or (table.this.quoted and name != known.name):
                system = name.lower().startswith(("pg_", "information_schema", "sql_"))
                message = (f"Table {name!r} is a system catalog: not allowed." if system
                           else f"Unknown table {name!r}.")
                suggestions = [] if system else nearest(name, names)
                if suggestions:
                    message += f" Did you mean {', '.join(suggestions)}?"
                yield finding(self, message, table, table=name, suggestions=suggestions)


class CteNameRule(Rule):
    """A CTE may not take a table's or a system catalog's name (no shadowing tricks)."""

    rule_id = "schema.cte_name"
    description = "CTE names differ from the model's tables and system catalogs."

    def check(self, context: ValidationContext) -> Iterator[Finding]:
        """A finding per CTE named like a stored table."""
        for cte in context.of(exp.CTE):
            name = cte.alias_or_name
            if context.catalog.table(name) is not None or name.lower().startswith(
                ("pg_", "information_schema")
            ):
                yield finding(self, f"CTE name {name!r} shadows a table; choose another.",
                              cte, cte=name)


class SchemaColumnRule(Rule):
    """Every column exists in a table the query reads (nearest names when not)."""

    rule_id = "schema.column"
    description = "Only allow-listed columns of the tables read."
    security = False  # the tenant rewrite exposes allow-listed columns only

    def check(self, context: ValidationContext) -> Iterator[Finding]:
        """A finding per column no source in scope has."""
        catalog = context.catalog
        for scope in context.scopes:
            outputs: list[set[str] | None] = []  # None: a source whose columns are unknown
            by_alias: dict[str, set[str] | None] = {}
            chain: Scope | None = scope
            first = True
            while chain is not None:
                for alias, source in chain.sources.items():
                    columns: set[str] | None
                    if isinstance(source, exp.Table):
                        table = catalog.table(source.name)
                        columns = ({c.lower() for c in table.column_names}
                                   if table is not None else None)
                        alias_columns = source.args.get("alias")
                        if isinstance(alias_columns, exp.TableAlias) and alias_columns.columns:
                            columns = {c.name.lower() for c in alias_columns.columns}
                    else:
                        columns = _scope_outputs(source)
                    by_alias.setdefault(alias.lower(), columns)
                    if first:
                        outputs.append(columns)
                first = False
                chain = chain.parent
            expression = scope.expression
            aliases = {
                e.alias.lower() for e in getattr(expression, "expressions", [])
                if isinstance(e, exp.Alias)
            } if isinstance(expression, exp.Select) else set()
            for column in scope.columns:
                name = column.name.lower()
                if not column.name or isinstance(column.this, exp.Star):
                    continue
                qualifier = column.table
                if qualifier:
                    columns = by_alias.get(qualifier.lower(), set())
                    if qualifier.lower() not in by_alias:
                        yield finding(self, f"Unknown table or alias {qualifier!r} in "
                                      f"{column.sql('postgres')!r}.", column,
                                      column=column.name, table=qualifier,
                                      suggestions=nearest(qualifier, by_alias))
                    elif columns is not None and name not in columns:
                        yield self._unknown(column, columns)
                    continue
                if name in aliases and column.find_ancestor(exp.Order, exp.Group, exp.Having):
                    continue
                if any(c is None or name in c for c in outputs):
                    continue
                if any(c is None or name in c for c in by_alias.values()):
                    continue  # a correlated reference to an outer scope
                pool: set[str] = set()
                for c in outputs:
                    pool |= c or set()
                yield self._unknown(column, pool or catalog.all_columns())

    def _unknown(self, column: exp.Column, pool: set[str]) -> Finding:
        suggestions = nearest(column.name, pool)
        message = f"Unknown column {column.sql('postgres')!r}."
        if suggestions:
            message += f" Did you mean {', '.join(suggestions)}?"
        return finding(self, message, column, column=column.name, suggestions=suggestions)


def _named_selects(node: exp.Expr) -> list[str]:
    try:
        return list(node.named_selects) if isinstance(node, exp.Query) else []
    except Exception:  # noqa: BLE001 - an odd projection: no aliases to offer
        return []


def _scope_outputs(source: object) -> set[str] | None:
    """The output column names of a derived source, or None when they cannot be known."""
    expression = getattr(source, "expression", None)
    if not isinstance(expression, exp.Query):
        return None
    if isinstance(expression, exp.Select) and any(
        isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star))
        for e in expression.expressions
    ):
        return None
    parent = expression.parent
    alias = parent.args.get("alias") if parent is not None else None
    if isinstance(alias, exp.TableAlias) and alias.columns:
        return {c.name.lower() for c in alias.columns}
    return {name.lower() for name in _named_selects(expression)}


class GroupByRule(Rule):
    """Aggregates beside plain columns need a GROUP BY (PostgreSQL refuses it otherwise)."""

    rule_id = "query.group_by"
    description = "A SELECT mixing aggregates and plain columns has a GROUP BY."
    security = False

    def check(self, context: ValidationContext) -> Iterator[Finding]:
        """A finding per SELECT with aggregates, plain columns and no GROUP BY."""
        for select in context.of(exp.Select):
            if select.args.get("group"):
                continue
            plain, aggregated = [], False
            for projection in select.expressions:
                inner = projection.this if isinstance(projection, exp.Alias) else projection
                if inner.find(exp.Window) is not None:
                    continue
                if _own(inner, exp.AggFunc, select):
                    aggregated = True
                elif _own(inner, exp.Column, select):
                    plain.append(inner)
            if aggregated and plain:
                names = ", ".join(p.sql("postgres") for p in plain)
                yield finding(self, f"{names} must be in a GROUP BY beside the aggregates.",
                              plain[0], columns=[p.sql("postgres") for p in plain])


def _own(node: exp.Expr, kind: type[exp.Expr], select: exp.Select) -> bool:
    """Whether ``node`` holds a ``kind`` that belongs to ``select`` (not to a subquery)."""
    return any(found.find_ancestor(exp.Select) is select for found in node.find_all(kind))


class JoinLimitRule(Rule):
    """At most ``max_joins`` joins."""

    rule_id = "complexity.joins"
    description = "At most the policy's number of joins."
    security = False

    def check(self, context: ValidationContext) -> Iterator[Finding]:
        """A finding when the query joins too many times."""
        joins = list(context.of(exp.Join))
        limit = context.policy.max_joins
        if len(joins) > limit:
            yield finding(self, f"{len(joins)} joins; at most {limit} are allowed.",
                          joins[limit], joins=len(joins), limit=limit)


class DepthRule(Rule):
    """Subqueries nest at most ``max_subquery_depth`` levels; the tree is bounded."""

    rule_id = "complexity.depth"
    description = "Subqueries nest at most the policy's depth; the statement's size is bounded."

    def check(self, context: ValidationContext) -> Iterator[Finding]:
        """A finding for too deep a nesting or too large a tree."""
        limit = context.policy.max_subquery_depth
        nodes = 0
        deepest, where = 0, None
        for node in context.nodes:
            nodes += 1
            if isinstance(node, exp.Select):
                depth = 0
                ancestor = node.parent
                while ancestor is not None:
                    if isinstance(ancestor, exp.Select):
                        depth += 1
                    ancestor = ancestor.parent
                if depth > deepest:
                    deepest, where = depth, node
        if deepest > limit:
            yield finding(self, f"Subqueries nest {deepest} levels; at most {limit}.", where,
                          depth=deepest, limit=limit)
        if nodes > context.policy.max_nodes:
            yield finding(self, f"The statement is too large ({nodes} nodes; at most "
                          f"{context.policy.max_nodes}).", None, nodes=nodes)


class RecursionRule(Rule):
    """No ``WITH RECURSIVE``: its size cannot be bounded before it runs."""

    rule_id = "complexity.recursive"
    description = "No recursive CTEs."

    def check(self, context: ValidationContext) -> Iterator[Finding]:
        """A finding for a recursive WITH."""
        for with_ in context.of(exp.With):
            if with_.args.get("recursive"):
                yield finding(self, "WITH RECURSIVE is not allowed.", with_)


class CartesianRule(Rule):
    """No Cartesian product of stored tables (a join with no condition)."""

    rule_id = "complexity.cartesian"
    description = "Every join of two stored tables has a join condition."

    def check(self, context: ValidationContext) -> Iterator[Finding]:
        """A finding per unconditioned join of a stored table."""
        for select in context.of(exp.Select):
            joins = select.args.get("joins") or []
            where = select.args.get("where")
            for join in joins:
                on = join.args.get("on")
                if join.args.get("using") or (on is not None and on.find(exp.Column)):
                    continue
                target = join.this
                if not isinstance(target, exp.Table) or not isinstance(target.this, exp.Identifier):
                    continue
                if context.is_cte_reference(target) or join.args.get("kind") == "LATERAL":
                    continue
                alias = target.alias_or_name.lower()
                if where is not None and _links(where, alias):
                    continue
                yield finding(self, f"Joining {target.name!r} without a condition is a "
                              "Cartesian product; add ON or a WHERE equality.", target,
                              table=target.name)


def _links(where: exp.Expr, alias: str) -> bool:
    """Whether ``where`` has an equality between ``alias``'s column and another's."""
    for eq in where.find_all(exp.EQ):
        left, right = eq.left, eq.right
        if isinstance(left, exp.Column) and isinstance(right, exp.Column):
            tables = {left.table.lower(), right.table.lower()}
            if alias in tables and len(tables) == 2:
                return True
    return False


class SetReturningRule(Rule):
    """``generate_series`` only over ranges bounded by constants, of bounded length."""

    rule_id = "complexity.set_returning"
    description = "Set-returning functions produce a bounded number of rows."

    def check(self, context: ValidationContext) -> Iterator[Finding]:
        """A finding per series that is unbounded or too long."""
        limit = context.policy.max_series_rows
        for node in context.of(exp.GenerateSeries, exp.ExplodingGenerateSeries):
            rows = series_length(node)
            if rows is None:
                yield finding(self, "generate_series() needs constant bounds and step.",
                              node)
            elif rows > limit:
                yield finding(self, f"generate_series() would produce {rows} rows; at most "
                              f"{limit}.", node, rows=rows, limit=limit)
        for pad in context.of(exp.Pad):
            length = _number(pad.expression)
            if length is None or length > MAX_PAD:
                yield finding(self, f"lpad()/rpad() need a constant length up to {MAX_PAD}.",
                              pad)
        for node in context.of(exp.Anonymous):
            if function_name(node) == "generate_series":
                yield finding(self, "generate_series() needs constant bounds and step.", node)


MAX_PAD = 10000

_INTERVAL_UNITS = {
    "microsecond": 1e-6, "millisecond": 1e-3, "second": 1, "minute": 60, "hour": 3600,
    "day": 86400, "week": 604800, "month": 2592000, "year": 31536000,
}


def _seconds(node: exp.Expr | None) -> float | None:
    """The length in seconds of an interval literal, else None."""
    if isinstance(node, exp.Interval):
        value = node.this
        unit = node.args.get("unit")
        text = value.name if isinstance(value, exp.Literal) else None
        if text is None:
            return None
        spec = f"{text} {unit.name if unit is not None else ''}".strip().lower()
    elif isinstance(node, exp.Literal) and node.is_string:
        spec = node.name.lower()
    elif isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal):
        spec = node.this.name.lower()
    else:
        return None
    total = 0.0
    matches = re.findall(r"(-?\d+(?:\.\d+)?)\s*([a-z]+)", spec)
    if not matches:
        return None
    for amount, unit_name in matches:
        unit_key = unit_name.rstrip("s")
        if unit_key not in _INTERVAL_UNITS:
            return None
        total += float(amount) * _INTERVAL_UNITS[unit_key]
    return total


def _instant(node: exp.Expr | None) -> datetime | None:
    """The time a constant expression names (now() as the current time), else None."""
    now = datetime(2026, 1, 1)
    if isinstance(node, (exp.CurrentTimestamp, exp.CurrentDate)):
        return now
    if isinstance(node, exp.Cast):
        return _instant(node.this) if not isinstance(node.this, exp.Literal) else _instant(
            node.this)
    if isinstance(node, exp.Literal) and node.is_string:
        try:
            return datetime.fromisoformat(node.name.replace("Z", ""))
        except ValueError:
            return None
    if isinstance(node, (exp.Add, exp.Sub)):
        base = _instant(node.left)
        delta = _seconds(node.right)
        if base is None or delta is None:
            return None
        step = timedelta(seconds=delta)
        return base + step if isinstance(node, exp.Add) else base - step
    if isinstance(node, (exp.TimestampTrunc, exp.DateTrunc)):
        return _instant(node.this)
    if isinstance(node, exp.Paren):
        return _instant(node.this)
    return None


def _number(node: exp.Expr | None) -> float | None:
    if isinstance(node, exp.Literal) and not node.is_string:
        return float(node.name)
    if isinstance(node, exp.Neg):
        value = _number(node.this)
        return -value if value is not None else None
    return None


def series_length(node: exp.Expr) -> int | None:
    """How many rows a ``generate_series`` node yields, or None when not constant."""
    start, end = node.args.get("start"), node.args.get("end")
    step = node.args.get("step")
    first, last = _number(start), _number(end)
    if first is not None and last is not None:
        increment = _number(step) if step is not None else 1.0
        if increment is None or increment == 0:
            return None
        return max(0, int((last - first) / increment) + 1)
    begin, finish = _instant(start), _instant(end)
    seconds = _seconds(step)
    if begin is None or finish is None or not seconds:
        return None
    return max(0, int((finish - begin).total_seconds() / seconds) + 1)


def builtin_rules() -> list[object]:
    """The built-in checks (the tenant scope and LIMIT rewrites live in
    :mod:`pulse_ai_validation.rewrites`)."""
    return [
        SyntaxRule(), SingleStatementRule(), ReadOnlyRule(), FunctionRule(),
        SchemaTableRule(), CteNameRule(), SchemaColumnRule(), GroupByRule(), JoinLimitRule(),
        DepthRule(), RecursionRule(), CartesianRule(), SetReturningRule(),
    ]
