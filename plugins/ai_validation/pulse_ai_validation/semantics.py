"""Semantic validation: does the SQL answer the question?

Deterministic and explainable. The question is read into an *intent* (entities, measure,
grouping, time bucket, ordering, limit, time window, filters) with a small lexicon that
matches case, ``snake_case``, plurals and common synonyms against the schema's names; the
SQL's parse gives the same intent. Each agreement or disagreement adds a weighted term to
a log-odds score; the confidence is its logistic, and every term is returned as a reason.
Recorded feedback (the learning memory) adds a term when the SQL is a known failure or a
known correction of a similar question.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from pulse_ai_validation.catalog import Catalog

# -- words --------------------------------------------------------------------------

#: phrases replaced by canonical words before tokenising (longest first)
PHRASES: dict[str, str] = {
    "pull requests": "pull_request", "pull request": "pull_request",
    "merge requests": "pull_request", "merge request": "pull_request", "prs": "pull_request",
    "pr": "pull_request", "work items": "work_item", "work item": "work_item",
    "lines added": "additions", "lines of code added": "additions",
    "lines removed": "deletions", "lines deleted": "deletions", "files changed": "files_changed",
    "changed files": "changed_files", "story points": "points", "time zone": "tz",
    "status changes": "work_item_status_change", "review comments": "review_comment",
    "number of": "count", "how many": "count", "count of": "count",
    "most recent": "latest", "per cent": "percent", "time to merge": "merge_time",
    "lead time": "lead_time", "merge time": "merge_time", "time to resolve": "resolve_time",
    "time to restore": "resolve_time", "resolution time": "resolve_time",
    "for each": "per", "broken down by": "per", "breakdown by": "per", "grouped by": "per",
    "split by": "per", "in each": "per", "by": "per_by",
    "90th percentile": "p90", "95th percentile": "p95", "75th percentile": "p75",
    "50th percentile": "median", "this year": "window_365", "this month": "window_30",
    "this week": "window_7", "last week": "window_7", "past week": "window_7",
    "last month": "window_30", "past month": "window_30", "last quarter": "window_90",
    "past quarter": "window_90", "last year": "window_365", "past year": "window_365",
    "today": "window_1", "yesterday": "window_1",
}

#: single words mapped to canonical ones
SYNONYMS: dict[str, str] = {
    "deploy": "deployment", "release": "deployment", "ship": "deployment",
    "repo": "repository", "project": "project", "developer": "author", "engineer": "author",
    "contributor": "author", "committer": "author", "person": "people", "user": "author",
    "outage": "incident", "ticket": "work_item", "issue": "work_item", "story": "work_item",
    "task": "work_item", "env": "environment", "environment": "environment",
    "mean": "avg", "average": "avg", "avg": "avg", "total": "sum", "sum": "sum",
    "median": "median", "typical": "median", "distinct": "distinct", "unique": "distinct",
    "different": "distinct", "weekly": "week", "monthly": "month", "daily": "day",
    "yearly": "year", "quarterly": "quarter", "prod": "production", "failing": "failed",
    "failure": "failed", "fail": "failed", "broken": "failed", "succeeded": "success",
    "successful": "success", "reviewer": "reviewer", "comment": "review_comment",
    "member": "team_membership", "membership": "team_membership", "sha": "sha",
    "biggest": "largest", "greatest": "largest", "longest": "largest", "slowest": "largest",
    "highest": "largest", "most": "largest", "top": "top", "fewest": "smallest",
    "least": "smallest", "lowest": "smallest", "shortest": "smallest", "fastest": "smallest",
    "newest": "latest", "earliest": "oldest", "first": "oldest", "maximum": "max",
    "minimum": "min", "percentage": "rate", "ratio": "rate", "share": "rate",
    "fraction": "rate", "proportion": "rate", "percent": "rate",
}

STOP = frozenset("""a an the of in on at to for from with and or is are was were be been
which what who whom whose show list give me find get return do does did that this those
these there their its it all any each every than over during within since between
into out up as how many much""".split())  # noqa: SIM905

#: question words naming a time column
TIME_VERBS: dict[str, tuple[str, ...]] = {
    "merged": ("merged_at",), "opened": ("created_at_source",),
    "created": ("created_at_source", "created_at"), "closed": ("closed_at",),
    "resolved": ("resolved_at",), "deployed": ("finished_at", "started_at"),
    "finished": ("finished_at",), "started": ("started_at",),
    "authored": ("authored_at",), "committed": ("committed_at",),
    "submitted": ("submitted_at",), "changed": ("changed_at",),
}

#: filter words -> literal values (any of) or a column that must be tested for NULL
FILTER_WORDS: dict[str, tuple[str, ...]] = {
    "production": ("production", "prod"), "staging": ("staging",),
    "failed": ("failure", "failed", "error"), "success": ("success",),
    "open": ("open",), "bug": ("bug",), "approved": ("approved",),
    "sev1": ("sev1",), "sev2": ("sev2",), "critical": ("critical", "sev1"),
    "epic": ("epic",), "active": ("active",),
}
NULL_FILTERS: dict[str, tuple[str, ...]] = {
    "merged": ("merged_at", "merged"), "resolved": ("resolved_at",),
    "unresolved": ("resolved_at",), "closed": ("closed_at", "closed"),
}

TIME_UNITS = ("day", "week", "month", "quarter", "year", "hour")

#: foreign-key columns whose name does not say their table
FOREIGN_KEYS: dict[str, str] = {
    "author_identity_id": "person_identities", "committer_identity_id": "person_identities",
    "reviewer_identity_id": "person_identities", "assignee_identity_id": "person_identities",
    "person_id": "people",
}


def snake(name: str) -> str:
    """``CustomerName`` and ``customer_name`` alike: snake_case, lower-case."""
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def singular(word: str) -> str:
    """A crude English singular (``repositories`` -> ``repository``)."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """Canonical words of a question: phrases and synonyms mapped, singular, no stop words."""
    lowered = " " + re.sub(r"[^a-z0-9_%' ]+", " ", text.lower()) + " "
    for phrase in sorted(PHRASES, key=len, reverse=True):
        lowered = re.sub(rf"(?<![a-z0-9_]){re.escape(phrase)}(?![a-z0-9_])",
                         f" {PHRASES[phrase]} ", lowered)
    result = []
    for raw in lowered.split():
        raw = raw.strip("'")
        if not raw or raw in STOP:
            continue
        word = singular(raw) if not raw.startswith("window_") else raw
        result.append(SYNONYMS.get(word, SYNONYMS.get(raw, word)))
    return result


def name_words(name: str) -> set[str]:
    """The words of an identifier: itself, its singular, its snake_case parts."""
    lowered = re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()
    parts = {singular(part) for part in lowered.split("_") if part}
    return {lowered, singular(lowered), *parts}


# -- intents ------------------------------------------------------------------------


@dataclass
class Intent:
    """What a question asks, or what a query computes."""

    tables: set[str] = field(default_factory=set)
    columns: set[str] = field(default_factory=set)
    measures: set[str] = field(default_factory=set)
    measure_columns: set[str] = field(default_factory=set)
    group_columns: set[str] = field(default_factory=set)
    #: per grouping the question asks for, the names that would satisfy it
    group_targets: list[list[str]] = field(default_factory=list)
    time_unit: str | None = None
    order: str | None = None  # "desc" or "asc"
    order_columns: set[str] = field(default_factory=set)
    limit: int | None = None
    window_days: float | None = None
    window_columns: set[str] = field(default_factory=set)
    filters: set[str] = field(default_factory=set)
    literals: set[str] = field(default_factory=set)
    null_tests: set[str] = field(default_factory=set)
    joins: list[tuple[str, str, str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The intent as JSON (sets sorted)."""
        return {key: sorted(value) if isinstance(value, set) else value
                for key, value in self.__dict__.items()}


def _match_table(word: str, catalog: Catalog) -> str | None:
    for table in catalog.tables.values():
        name = snake(table.name)
        if word in (name, singular(name)):
            return table.name
    return None


def _parts(name: str) -> frozenset[str]:
    """The singular snake_case parts of a name, unordered (``files_changed`` and
    ``changed_files`` are the same)."""
    return frozenset(singular(part) for part in name.split("_") if part)


def _match_columns(word: str, catalog: Catalog, tables: Iterable[str]) -> set[str]:
    """Columns of ``tables`` (or of any table) whose name is, or ends with, ``word``."""
    found: set[str] = set()
    scope = [catalog.table(t) for t in tables] or list(catalog.tables.values())
    for table in scope if any(scope) else catalog.tables.values():
        if table is None:
            continue
        for column in table.columns:
            lowered = snake(column.name)
            if _parts(word) == _parts(lowered) or word == lowered or word == singular(lowered) or (
                len(word) > 3 and word in lowered.split("_") and lowered not in ("id",)
                and not lowered.endswith("_id")
            ):
                found.add(lowered)
    return found


def _schema_phrases(question: str, catalog: Catalog) -> str:
    """``question`` with multi-word schema names joined (``total amount`` ->
    ``total_amount``), so their words are not read as measures or synonyms."""
    names = {c.name for t in catalog.tables.values() for c in t.columns} | {
        t.name for t in catalog.tables.values()}
    text = question
    for name in sorted(names, key=len, reverse=True):
        snake = re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()
        parts = [part for part in snake.split("_") if part]
        if len(parts) < 2 or parts[-1] == "id":
            continue
        phrase = r"\s+".join(re.escape(part) for part in parts)
        text = re.sub(rf"(?i)\b{phrase}\b", snake, text)
    return text


def _group_columns(word: str, catalog: Catalog) -> set[str]:
    """Columns a grouping word names: the column itself or those it prefixes
    (``author`` -> ``author_name``, ``author_identity_id``...)."""
    found: set[str] = set()
    for table in catalog.tables.values():
        for column in table.columns:
            lowered = snake(column.name)
            if lowered in (word, singular(word)) or singular(lowered) == word or (
                lowered.startswith(word + "_") and len(word) > 3
            ):
                found.add(lowered)
    return found


def question_intent(question: str, catalog: Catalog) -> Intent:
    """Read a question into an intent."""
    intent = Intent()
    question = _schema_phrases(question, catalog)
    tokens = words(question)
    raw = question.lower()
    for token in tokens:
        table = _match_table(token, catalog)
        if table is not None:
            intent.tables.add(table)
    # measures
    if "count" in tokens:
        intent.measures.add("count")
    for measure in ("avg", "sum", "median", "max", "min", "p90", "p95", "p75", "rate"):
        if measure in tokens:
            intent.measures.add(measure)
    if "distinct" in tokens:
        intent.measures.add("distinct")
    if "sum" in intent.measures and "count" in intent.measures:
        intent.measures.discard("sum")  # "total number of"
    # grouping: the words after "per" ("by" only when no ordering word makes it a sort key)
    ordering = any(t in tokens for t in ("largest", "top", "latest", "busiest", "smallest",
                                          "oldest", "bottom"))
    for index, token in enumerate(tokens):
        if token not in ("per", "per_by") or index + 1 >= len(tokens):
            continue
        if token == "per_by" and ordering:
            continue
        following: list[str] = []
        for word in tokens[index + 1:index + 4]:
            if word in ("per", "per_by"):
                break
            following.append(word)
        if not following:
            continue
        if following[0] in TIME_UNITS:
            intent.time_unit = following[0]
            continue
        for position, target in enumerate(following):
            columns = _group_columns(target, catalog)
            table = _match_table(target, catalog)
            qualified = position + 1 < len(following) and _group_columns(
                following[position + 1], catalog)
            exact = any(target in (snake(c.name), singular(snake(c.name)))
                        for t in catalog.tables.values() for c in t.columns)
            if qualified and not exact:
                continue  # "per deployment service": the column names the grouping
            if columns:
                extra = {table} if table is not None else set()
                intent.group_targets.append(sorted(columns | {target} | extra))
            elif table is not None:
                keys = {table, f"{singular(table)}_id", "id", "name"} | {
                    key for key, owner in FOREIGN_KEYS.items() if owner == table}
                intent.group_targets.append(sorted(keys))
            else:
                break
        for names in intent.group_targets:
            intent.group_columns |= set(names)
    for unit in TIME_UNITS:
        if unit in tokens and re.search(rf"\b(per|by|each|every)\s+{unit}\b|\b{unit}ly\b"
                                        r"|\bdaily\b" if unit == "day" else
                                        rf"\b(per|by|each|every)\s+{unit}\b|\b{unit}ly\b", raw):
            intent.time_unit = unit
    # ordering and limit
    number = re.search(r"\b(?:top|first|last|latest|bottom|the)\s+(\d{1,4})\b"
                       r"|\b(\d{1,4})\s+(?:most|least|largest|biggest|longest|slowest|"
                       r"fastest|latest|newest|oldest|highest|lowest|fewest|busiest)\b", raw)
    if number and not re.search(r"\b(?:last|past)\s+\d+\s+(?:day|week|month|year|hour)", raw[
            max(0, number.start() - 1):number.end() + 12]):
        intent.limit = int(number.group(1) or number.group(2))
    if any(t in tokens for t in ("largest", "top", "latest", "busiest")):
        intent.order = "desc"
    elif any(t in tokens for t in ("smallest", "oldest", "bottom")):
        intent.order = "asc"
    if "max" in intent.measures and intent.order is None and intent.group_columns:
        intent.order = None
    # time window
    window = re.search(r"\b(?:last|past|previous|within)\s+(\d{1,4})\s+(day|week|month|year|"
                       r"hour)s?\b", raw)
    if window:
        amount, unit = int(window.group(1)), window.group(2)
        intent.window_days = amount * {"hour": 1 / 24, "day": 1, "week": 7, "month": 30,
                                       "year": 365}[unit]
    else:
        for token in tokens:
            if token.startswith("window_"):
                intent.window_days = float(token.split("_")[1])
    for verb, verb_columns in TIME_VERBS.items():
        if re.search(rf"\b{verb}\b", raw):
            intent.window_columns |= set(verb_columns)
    # filters
    for token in set(tokens) | set(re.findall(r"[a-z0-9]+", raw)):
        if token in FILTER_WORDS:
            intent.filters.add(token)
    for word in NULL_FILTERS:
        if re.search(rf"\b{word}\b", raw):
            intent.null_tests.add(word)
    intent.literals = {m.lower() for m in re.findall(r"'([^']+)'|\"([^\"]+)\"", question)
                       for m in m if m}
    # column mentions
    for token in tokens:
        intent.columns |= (_match_columns(token, catalog, intent.tables)
                           or _match_columns(token, catalog, ()))
    return intent


_AGGREGATES: dict[type[exp.Expr], str] = {
    exp.Count: "count", exp.Avg: "avg", exp.Sum: "sum", exp.Max: "max", exp.Min: "min",
}


def _columns_in(node: exp.Expr) -> set[str]:
    return {snake(column.name) for column in node.find_all(exp.Column) if column.name}


def sql_intent(tree: exp.Expr, catalog: Catalog) -> Intent:
    """Read a parsed query into an intent."""
    intent = Intent()
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    aliases: dict[str, str] = {}
    for table in tree.find_all(exp.Table):
        name = table.name.lower()
        if name and name not in ctes:
            known_table = catalog.table(name)
            name = known_table.name.lower() if known_table is not None else name
            intent.tables.add(name)
            aliases[table.alias_or_name.lower()] = name
    for column in tree.find_all(exp.Column):
        if column.name:
            intent.columns.add(snake(column.name))
    for node in tree.find_all(exp.AggFunc):
        kind = next((k for t, k in _AGGREGATES.items() if isinstance(node, t)), None)
        if isinstance(node, exp.Count) and isinstance(node.this, exp.Distinct):
            intent.measures.add("distinct")
        if isinstance(node, (exp.PercentileCont, exp.PercentileDisc, exp.Median)):
            fraction = node.this if not isinstance(node, exp.Median) else None
            value = float(fraction.name) if isinstance(fraction, exp.Literal) else 0.5
            kind = {0.5: "median", 0.9: "p90", 0.95: "p95", 0.75: "p75"}.get(value, "pct")
        if kind is not None:
            intent.measures.add(kind)
            intent.measure_columns |= _columns_in(node)
    for div in tree.find_all(exp.Div):
        if div.find(exp.AggFunc) is not None:
            intent.measures.add("rate")
    if any(isinstance(n, exp.Avg) and n.find(exp.Case, exp.If) for n in tree.find_all(exp.Avg)):
        intent.measures.add("rate")
    for group in tree.find_all(exp.Group):
        for item in group.expressions:
            resolved = _resolve_alias(item, tree)
            trunc = resolved.find(exp.TimestampTrunc, exp.DateTrunc)
            if trunc is not None:
                unit = trunc.args.get("unit")
                if unit is not None:
                    intent.time_unit = unit.name.lower()
            intent.group_columns |= _columns_in(resolved)
    order = tree.args.get("order") if isinstance(tree, exp.Query) else None
    if order is None:
        order = next(iter(tree.find_all(exp.Order)), None)
    if isinstance(order, exp.Order) and order.expressions:
        first = order.expressions[0]
        intent.order = "desc" if first.args.get("desc") else "asc"
        intent.order_columns = _columns_in(_resolve_alias(first.this, tree))
    limit = tree.args.get("limit") if isinstance(tree, exp.Query) else None
    if isinstance(limit, exp.Limit) and isinstance(limit.expression, exp.Literal):
        intent.limit = int(limit.expression.name)
    elif isinstance(limit, exp.Fetch) and isinstance(limit.args.get("count"), exp.Literal):
        intent.limit = int(limit.args["count"].name)
    for literal in tree.find_all(exp.Literal):
        if literal.is_string:
            intent.literals.add(literal.name.lower())
    for comparison in tree.find_all(exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between):
        interval = comparison.find(exp.Interval)
        if interval is None or comparison.find(exp.CurrentTimestamp, exp.CurrentDate) is None:
            continue
        days = _interval_days(interval)
        if days is not None:
            intent.window_days = days
            intent.window_columns |= {c for c in _columns_in(comparison)}
    for test in tree.find_all(exp.Is):
        intent.null_tests |= _columns_in(test)
    for join in tree.find_all(exp.Join):
        on = join.args.get("on")
        if on is None:
            continue
        for eq in on.find_all(exp.EQ):
            left, right = eq.left, eq.right
            if isinstance(left, exp.Column) and isinstance(right, exp.Column):
                intent.joins.append((aliases.get(left.table.lower(), left.table.lower()),
                                     left.name.lower(),
                                     aliases.get(right.table.lower(), right.table.lower()),
                                     right.name.lower()))
    return intent


def _resolve_alias(node: exp.Expr, tree: exp.Expr) -> exp.Expr:
    """A GROUP/ORDER BY item that names a projection's alias (or position) as that projection."""
    select = node.find_ancestor(exp.Select) or tree
    projections = select.expressions if isinstance(select, exp.Select) else []
    if isinstance(node, exp.Literal) and not node.is_string and node.name.isdigit():
        index = int(node.name) - 1
        if 0 <= index < len(projections):
            item = projections[index]
            return item.this if isinstance(item, exp.Alias) else item
    if isinstance(node, exp.Column) and not node.table:
        for item in projections:
            if isinstance(item, exp.Alias) and item.alias.lower() == node.name.lower():
                return item.this
    return node


def _interval_days(interval: exp.Interval) -> float | None:
    value = interval.this
    unit = interval.args.get("unit")
    text = f"{value.name if isinstance(value, exp.Literal) else ''} " \
           f"{unit.name if unit is not None else ''}".lower()
    match = re.search(r"(\d+(?:\.\d+)?)\s*(hour|day|week|month|year)", text)
    if not match:
        return None
    return float(match.group(1)) * {"hour": 1 / 24, "day": 1, "week": 7, "month": 30,
                                    "year": 365}[match.group(2)]


# -- judging ------------------------------------------------------------------------


@dataclass
class Judgement:
    """The confidence that the SQL answers the question, with its reasons."""

    confidence: float
    reasons: list[dict[str, Any]]
    question: Intent
    sql: Intent

    def as_dict(self) -> dict[str, Any]:
        """The judgement as the ``validate/sql-semantics`` answer."""
        return {
            "confidence": round(self.confidence, 4),
            "answers_question": self.confidence >= 0.5,
            "reasons": self.reasons,
            "question_intent": self.question.as_dict(),
            "sql_intent": self.sql.as_dict(),
        }


BIAS = 0.5


def _join_plausible(left_table: str, left: str, right_table: str, right: str,
                    catalog: Catalog) -> bool:
    """Whether a join equality follows the model's key naming."""
    if left == right and left != "id":
        return True

    def points_to(column: str, table: str) -> bool:
        target = FOREIGN_KEYS.get(column)
        if target is not None:
            return target == table
        if not column.endswith("_id"):
            return False
        stem = column[:-3]
        return table in (stem, stem + "s", stem + "es", stem[:-1] + "ies" if stem.endswith("y")
                         else stem) or singular(table) == stem
    if right == "id" and points_to(left, right_table):
        return True
    if left == "id" and points_to(right, left_table):
        return True
    return left.endswith("sha") and right.endswith("sha")


def judge(
    question: str, sql: str, catalog: Catalog, memory: Sequence[dict[str, Any]] = ()
) -> Judgement:
    """Score how well ``sql`` answers ``question`` over ``catalog``."""
    asked = question_intent(question, catalog)
    reasons: list[dict[str, Any]] = []

    def add(aspect: str, effect: float, message: str) -> None:
        reasons.append({"aspect": aspect, "effect": round(effect, 3), "message": message})

    try:
        statements = [s for s in sqlglot.parse(sql, read="postgres") if s]
    except (ParseError, TokenError, RecursionError, ValueError):
        statements = []
    if len(statements) != 1 or isinstance(statements[0], exp.Command):
        add("syntax", -4.0, "The SQL is not one query that parses.")
        return Judgement(_logistic(BIAS - 4.0), reasons, asked, Intent())
    tree = statements[0]
    got = sql_intent(tree, catalog)
    score = BIAS
    # entities
    referenced = {FOREIGN_KEYS.get(c) or _table_of_key(c, catalog) for c in got.columns}
    for table in sorted(asked.tables):
        if table in got.tables or table in referenced:
            score += 0.4
            add("entity", 0.4, f"The query reads {table}, which the question names.")
        else:
            score -= 1.5
            add("entity", -1.5, f"The question is about {table}; the query does not read it.")
    # unknown columns and tables (wrong column)
    known = {snake(c) for c in catalog.all_columns()}
    for column in sorted(got.columns - known):
        aliases = {a.alias.lower() for a in tree.find_all(exp.Alias)}
        if column not in aliases and not any(column == t.alias_or_name.lower()
                                             for t in tree.find_all(exp.Table)):
            score -= 1.5
            add("entity", -1.5, f"Column {column} is not in the schema.")
    # measures
    score += _measures(asked, got, add)
    # measured column
    if asked.columns and got.measure_columns and asked.measures - {"count"}:
        wanted = asked.columns - asked.group_columns
        if wanted and not (wanted & got.measure_columns):
            score -= 1.5
            add("measure", -1.5, f"The question measures {', '.join(sorted(wanted))}; the "
                f"query aggregates {', '.join(sorted(got.measure_columns))}.")
        elif wanted & got.measure_columns:
            score += 0.8
            add("measure", 0.8, "The query aggregates the column the question names.")
    # grouping
    score += _grouping(asked, got, add)
    # ordering and limit
    if asked.order is not None:
        if got.order is None:
            score -= 1.5
            add("ordering", -1.5, f"The question asks for an ordering ({asked.order}); the "
                "query has none.")
        elif got.order != asked.order:
            score -= 2.0
            add("ordering", -2.0, f"The question asks {asked.order}; the query orders "
                f"{got.order}.")
        else:
            score += 0.6
            add("ordering", 0.6, "The ordering direction matches.")
    if asked.limit is not None:
        if got.limit == asked.limit:
            score += 0.8
            add("limit", 0.8, f"LIMIT {asked.limit} as asked.")
        elif got.limit is None:
            score -= 1.5
            add("limit", -1.5, f"The question asks for {asked.limit} rows; no LIMIT.")
        else:
            score -= 2.0
            add("limit", -2.0, f"The question asks for {asked.limit} rows; LIMIT {got.limit}.")
    # time window
    if asked.window_days is not None:
        if got.window_days is None:
            score -= 2.0
            add("time_window", -2.0, f"The question limits time to {asked.window_days:g} "
                "days; the query has no such filter.")
        elif abs(got.window_days - asked.window_days) <= 0.1 * asked.window_days + 0.01:
            score += 0.8
            add("time_window", 0.8, "The time window matches.")
        else:
            score -= 2.0
            add("time_window", -2.0, f"The question's window is {asked.window_days:g} days; "
                f"the query's is {got.window_days:g}.")
        if got.window_columns and asked.window_columns and not (
            got.window_columns & asked.window_columns
        ):
            score -= 1.5
            add("time_window", -1.5, f"The window should apply to "
                f"{'/'.join(sorted(asked.window_columns))}, not "
                f"{'/'.join(sorted(got.window_columns))}.")
    elif got.window_days is not None:
        score -= 0.5
        add("time_window", -0.5, "The query limits time; the question does not.")
    # filters
    score += _filters(asked, got, add)
    # joins
    for left_table, left, right_table, right in got.joins:
        if not _join_plausible(left_table, left, right_table, right, catalog):
            score -= 2.5
            add("join", -2.5, f"Join condition {left_table}.{left} = {right_table}.{right} "
                "does not follow the model's keys.")
    # learned
    score += _learned(question, sql, memory, add)
    return Judgement(_logistic(score), reasons, asked, got)


def _table_of_key(column: str, catalog: Catalog) -> str | None:
    """The table a ``<singular>_id`` column names, if the catalog has it."""
    if not column.endswith("_id"):
        return None
    stem = column[:-3]
    for table in catalog.tables.values():
        if singular(table.name.lower()) == stem:
            return table.name.lower()
    return None


def _measures(asked: Intent, got: Intent, add: Any) -> float:
    score = 0.0
    wanted = set(asked.measures)
    if "distinct" in wanted:
        wanted.discard("count")
    for measure in sorted(wanted):
        if got.limit and ((measure == "max" and got.order == "desc")
                          or (measure == "min" and got.order == "asc")):
            ok = True
        elif measure == "rate":
            ok = "rate" in got.measures
        elif measure == "count":
            ok = bool({"count", "distinct"} & got.measures)
        else:
            ok = measure in got.measures
        if ok:
            score += 1.0
            add("measure", 1.0, f"The query computes the {measure} the question asks for.")
        else:
            score -= 2.5
            present = ", ".join(sorted(got.measures)) or "no aggregate"
            add("measure", -2.5, f"The question asks for {measure}; the query computes "
                f"{present}.")
    if "rate" in got.measures and "rate" not in wanted and wanted:
        score -= 1.0
        add("measure", -1.0, "The query computes a ratio the question does not ask for.")
    if not wanted and got.measures and not asked.group_columns and asked.order is None:
        score -= 0.3
        add("measure", -0.3, "The query aggregates though the question asks for rows.")
    return score


def _grouping(asked: Intent, got: Intent, add: Any) -> float:
    score = 0.0
    if asked.time_unit is not None:
        if got.time_unit == asked.time_unit:
            score += 1.0
            add("grouping", 1.0, f"Grouped by {asked.time_unit} as asked.")
        elif got.time_unit is None:
            score -= 2.0
            add("grouping", -2.0, f"The question asks per {asked.time_unit}; the query does "
                "not bucket time.")
        else:
            score -= 2.0
            add("grouping", -2.0, f"The question asks per {asked.time_unit}; the query "
                f"buckets per {got.time_unit}.")
    for candidates in asked.group_targets:
        names = set(candidates)
        label = candidates[0]
        matched = bool(names & got.group_columns) or any(
            names & name_words(column) for column in got.group_columns
        )
        if not matched and not got.group_columns and names & got.tables and (
            asked.measures & {"avg", "median", "p90", "p95", "p75", "rate"}
        ):
            continue  # "average X per pull request": a per-row average, not a grouping
        if matched:
            score += 1.0
            add("grouping", 1.0, f"Grouped by {label} as asked.")
        elif not got.group_columns:
            score -= 2.5
            add("grouping", -2.5, f"The question asks per {label}; the query has no GROUP BY.")
        else:
            score -= 2.0
            add("grouping", -2.0, f"The question asks per {label}; the query groups by "
                f"{', '.join(sorted(got.group_columns))}.")
    return score


def _filters(asked: Intent, got: Intent, add: Any) -> float:
    score = 0.0
    justified: set[str] = set()
    for word in sorted(asked.filters):
        values = FILTER_WORDS[word]
        justified |= set(values)
        if got.literals & set(values):
            score += 0.8
            add("filter", 0.8, f"The query filters on {word}.")
        else:
            score -= 2.0
            add("filter", -2.0, f"The question restricts to {word}; the query does not.")
    for word in sorted(asked.null_tests):
        columns = NULL_FILTERS[word]
        if got.null_tests & set(columns) or got.literals & set(columns) or (
            got.window_columns & set(columns)
        ):
            score += 0.6
            add("filter", 0.6, f"The query tests {word}.")
        else:
            score -= 1.5
            add("filter", -1.5, f"The question asks about {word} rows; the query does not "
                "test it.")
        justified |= set(columns)
    for literal in sorted(asked.literals):
        justified.add(literal)
        if literal in got.literals:
            score += 0.5
            add("filter", 0.5, f"The query uses {literal!r} from the question.")
        else:
            score -= 1.5
            add("filter", -1.5, f"The question names {literal!r}; the query does not.")
    for literal in sorted(got.literals):
        if literal in justified or _is_format(literal):
            continue
        if any(literal in values for values in FILTER_WORDS.values()):
            score -= 1.5
            add("filter", -1.5, f"The query filters on {literal!r}, which the question does "
                "not ask for.")
    return score


def _is_format(literal: str) -> bool:
    """Literals that are units or formats, not filter values (``'week'``, ``'YYYY-MM'``)."""
    return bool(re.fullmatch(r"[0-9 ]*(day|week|month|year|hour|quarter|minute|second)s?"
                             r"|[yYmMdDhH\-: /]+|epoch|utc", literal))


def sql_tokens(sql: str) -> set[str]:
    """The word tokens of a SQL text (lower-case), for similarity."""
    return set(re.findall(r"[a-z_][a-z0-9_]*|\d+", sql.lower()))


def jaccard(left: set[str], right: set[str]) -> float:
    """|A ∩ B| / |A ∪ B| (0 when both are empty)."""
    union = left | right
    return len(left & right) / len(union) if union else 0.0


def _learned(question: str, sql: str, memory: Sequence[dict[str, Any]], add: Any) -> float:
    score = 0.0
    tokens = sql_tokens(sql)
    asked = set(words(question))
    for record in memory:
        similar_question = jaccard(asked, set(words(record.get("question") or ""))) >= 0.6 \
            if record.get("question") else True
        if not similar_question:
            continue
        if record.get("failed_sql") and jaccard(tokens, sql_tokens(record["failed_sql"])) >= 0.95:
            score -= 2.0
            add("learned", -2.0, "A recorded correction says this query was wrong for a "
                "similar question.")
            break
        if record.get("corrected_sql") and record.get("outcome") == "fixed" and jaccard(
            tokens, sql_tokens(record["corrected_sql"])
        ) >= 0.95:
            score += 1.5
            add("learned", 1.5, "This is a recorded correction for a similar question.")
            break
    return score


def _logistic(score: float) -> float:
    return 1.0 / (1.0 + math.exp(-score))


def lexical_overlap(question: str, sql: str) -> float:
    """The baseline: Jaccard overlap of the question's words and the SQL's identifier words."""
    asked = {singular(w) for w in re.findall(r"[a-z0-9]+", question.lower()) if w not in STOP}
    try:
        tree = sqlglot.parse_one(sql, read="postgres")
        names = {part for node in tree.find_all(exp.Column, exp.Table)
                 for part in name_words(node.name) if node.name}
    except (ParseError, TokenError):
        names = set()
    return jaccard(asked, names)
