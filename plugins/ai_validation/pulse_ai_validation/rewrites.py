"""The two rewrites every accepted query gets: the tenant scope and the LIMIT.

Both are rules (registered through ``register_validation_rules`` like the checks): their
``check`` refuses what cannot be rewritten safely, their ``rewrite`` runs on a query that
passed every check.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator

from sqlglot import exp

from pulse_ai_validation.builtin_rules import Rule
from pulse_ai_validation.rules import Finding, ValidationContext, finding


def _literal_int(node: exp.Expr | None) -> int | None:
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            return int(node.name)
        except ValueError:
            return None
    return None


class TenantScopeRule(Rule):
    """Every stored table becomes a subquery over its allow-listed columns filtered to the
    caller's tenant: the query's own WHERE is never trusted."""

    rule_id = "tenant.scope"
    description = ("Every allow-listed table is rewritten to a subquery of its allow-listed "
                   "columns filtered to the caller's tenant.")

    def check(self, context: ValidationContext) -> Iterator[Finding]:
        """Refuse what the rewrite could not cover: table samples, a missing tenant."""
        for table in context.stored_tables():
            if table.args.get("sample") is not None:
                yield finding(self, "TABLESAMPLE is not allowed.", table)
        if context.tenant_id is not None:
            try:
                uuid.UUID(context.tenant_id)
            except ValueError:
                yield finding(self, "The tenant is not a valid id.", None)

    def rewrite(self, context: ValidationContext, tree: exp.Expr) -> exp.Expr:
        """Replace each stored table of the tenant's catalog by its tenant-filtered subquery.

        The table becomes a placeholder named with a random nonce; the validator writes the
        SQL once and puts each subquery's text (built once per table and tenant, see
        :func:`scoped_source`) where its placeholder stands.
        """
        if context.tenant_id is None:
            return tree
        tenant = str(uuid.UUID(context.tenant_id))
        for table in context.stored_tables():
            known = context.catalog.table(table.name)
            if known is None or not known.tenant_scoped:
                continue
            placeholder = f"pulse_scope_{context.nonce}_{len(context.substitutions)}"
            context.substitutions[f'"{placeholder}"'] = scoped_source(
                known.name, known.column_names, tenant)
            alias = table.args.get("alias")
            if not isinstance(alias, exp.TableAlias):
                alias = exp.TableAlias(this=exp.to_identifier(table.name))
            table.replace(exp.Table(this=exp.to_identifier(placeholder, quoted=True),
                                    alias=alias))
        return tree


@functools.lru_cache(maxsize=4096)
def scoped_source(table: str, columns: tuple[str, ...], tenant: str) -> str:
    """``(SELECT <columns> FROM "public"."<table>" WHERE "tenant_id" = '<tenant>'::uuid)``."""
    inner = exp.Select(
        expressions=[exp.column(name, quoted=True) for name in columns],
    ).from_(exp.table_(table, db="public", quoted=True), copy=False).where(
        exp.EQ(this=exp.column("tenant_id", quoted=True),
               expression=exp.cast(exp.Literal.string(str(uuid.UUID(tenant))), "uuid")),
        copy=False,
    )
    return f"({inner.sql(dialect='postgres')})"


class LimitRule(Rule):
    """A LIMIT is added, or capped at the policy's maximum."""

    rule_id = "limit.cap"
    description = "The outermost query gets a LIMIT (added or capped)."
    security = False

    def check(self, context: ValidationContext) -> Iterator[Finding]:
        """Refuse a LIMIT, FETCH or OFFSET that is not a constant (or too large an OFFSET)."""
        tree = context.tree
        if not isinstance(tree, exp.Query):
            return
        limit = tree.args.get("limit")
        if isinstance(limit, exp.Limit):
            value = limit.expression
            if not (isinstance(value, exp.Var) and value.name.upper() == "ALL") and (
                _literal_int(value) is None
            ):
                yield finding(self, "LIMIT must be a whole number.", limit,
                              severity="error")
        elif isinstance(limit, exp.Fetch) and limit.args.get("count") is not None and (
            _literal_int(limit.args["count"]) is None
        ):
            yield finding(self, "FETCH FIRST must be a whole number.", limit, severity="error")
        offset = tree.args.get("offset")
        if isinstance(offset, exp.Offset):
            value = _literal_int(offset.expression)
            if value is None or value > context.policy.max_offset:
                yield finding(self, f"OFFSET must be a whole number up to "
                              f"{context.policy.max_offset}.", offset, severity="error")

    def rewrite(self, context: ValidationContext, tree: exp.Expr) -> exp.Expr:
        """Add ``LIMIT default_limit`` or cap the existing one at ``max_limit``."""
        policy = context.policy
        if isinstance(tree, (exp.Values, exp.Subquery)):
            source = tree if isinstance(tree, exp.Subquery) else exp.Subquery(this=tree)
            source.set("alias", exp.TableAlias(this=exp.to_identifier("pulse_result")))
            tree = exp.select("*").from_(source)
        if not isinstance(tree, exp.Query):
            return tree
        limit = tree.args.get("limit")
        wanted = policy.default_limit
        if isinstance(limit, exp.Limit):
            value = _literal_int(limit.expression)
            wanted = policy.max_limit if value is None else min(value, policy.max_limit)
        elif isinstance(limit, exp.Fetch):
            value = _literal_int(limit.args.get("count"))
            wanted = min(value if value is not None else 1, policy.max_limit)
            if limit.args.get("limit_options") and limit.args["limit_options"].args.get(
                "with_ties"
            ):
                wanted = min(value or 1, policy.max_limit)
        tree.set("limit", exp.Limit(expression=exp.Literal.number(wanted)))
        context.limit_applied = wanted
        return tree
