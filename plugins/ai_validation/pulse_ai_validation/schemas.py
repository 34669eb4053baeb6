"""Request and answer models of the ``/api/v1/ai`` routes (quart-schema validates both)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_SQL = 20000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Location(BaseModel):
    """A 1-based line and column in the SQL."""

    line: int
    column: int


class FindingModel(BaseModel):
    """One finding of a rule."""

    rule_id: str = Field(description="The rule that found it (e.g. readonly.statement).")
    severity: Literal["error", "warning", "info"]
    message: str
    location: Location | None = Field(default=None, description="Where in the SQL, if known.")
    details: dict[str, Any] = Field(default_factory=dict,
                                    description="Machine-readable details (names, suggestions).")


class SqlRequest(_Strict):
    """``{"sql": ...}``."""

    sql: str = Field(min_length=1, max_length=MAX_SQL, description="One PostgreSQL query.")


class SyntaxAnswer(BaseModel):
    """Whether the SQL may run, why, and the rewritten SQL that would run."""

    valid: bool
    findings: list[FindingModel]
    sql: str | None = Field(description="The normalised SQL with the tenant scope and LIMIT "
                            "(null when not valid).")
    limit: int | None = Field(default=None, description="The LIMIT the rewritten SQL has.")


class ColumnModel(BaseModel):
    """A column of the assistant's schema."""

    name: str
    type: str
    nullable: bool
    description: str


class TableModel(BaseModel):
    """A table of the assistant's schema."""

    name: str
    description: str
    columns: list[ColumnModel]


class RuleModel(BaseModel):
    """A registered validation rule."""

    rule_id: str
    severity: Literal["error", "warning", "info"]
    effective_severity: Literal["error", "warning", "info", "off"]
    stage: str
    security: bool
    description: str


class SchemaAnswer(BaseModel):
    """What an assistant may query for the caller's tenant, and under which rules."""

    dialect: str
    tables: list[TableModel]
    rules: list[RuleModel]
    allowed_functions: list[str]
    default_limit: int
    max_limit: int


class ExternalColumn(_Strict):
    """A column of a caller-given schema (type names are free-form)."""

    name: str = Field(min_length=1, max_length=128)
    type: str | None = Field(default=None, max_length=64,
                             description="Free-form type name (text, number, timestamp...); "
                             "absent: not checked.")


class ExternalTable(_Strict):
    """A table of a caller-given schema."""

    name: str = Field(min_length=1, max_length=128)
    columns: list[ExternalColumn] = Field(max_length=500)


class ExternalSchema(_Strict):
    """``{"tables": [{"name", "columns": [{"name", "type"}]}]}``."""

    tables: list[ExternalTable] = Field(min_length=1, max_length=200)


class SemanticsRequest(_Strict):
    """A question and the SQL written for it."""

    question: str = Field(min_length=1, max_length=2000)
    sql: str = Field(min_length=1, max_length=MAX_SQL)
    schema_: ExternalSchema | None = Field(
        default=None, alias="schema",
        description="Validate against this schema instead of the tenant's.")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Reason(BaseModel):
    """One thing that moved the confidence."""

    aspect: str = Field(description="entity, measure, grouping, ordering, limit, time_window, "
                        "filter, join, learned or syntax.")
    effect: float = Field(description="How much it moved the score (log-odds).")
    message: str


class SemanticsAnswer(BaseModel):
    """How confident the validator is that the SQL answers the question."""

    confidence: float = Field(ge=0, le=1)
    answers_question: bool = Field(description="confidence >= 0.5.")
    reasons: list[Reason]
    question_intent: dict[str, Any]
    sql_intent: dict[str, Any]


class DataStructureRequest(_Strict):
    """A result set and the name of the schema it should follow."""

    schema_name: str = Field(alias="schema", min_length=1, max_length=100)
    columns: list[ExternalColumn] = Field(min_length=1, max_length=200)
    rows: list[list[Any] | dict[str, Any]] = Field(max_length=10000)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StructureError(BaseModel):
    """One problem of the result set."""

    row: int | None
    column: str | None
    message: str


class DataStructureAnswer(BaseModel):
    """Whether the result set follows the schema."""

    valid: bool
    schema_name: str = Field(description="The schema checked against.")
    rows_checked: int
    missing_columns: list[str]
    extra_columns: list[str]
    errors: list[StructureError]


class ResultSchemaModel(BaseModel):
    """A registered result-set schema."""

    name: str
    plugin: str
    json_schema: dict[str, Any]


class ResultSchemaList(BaseModel):
    """Every registered result-set schema."""

    items: list[ResultSchemaModel]


class FeedbackRequest(_Strict):
    """A failure, its correction and the outcome."""

    question: str | None = Field(default=None, max_length=2000)
    failed_sql: str = Field(min_length=1, max_length=MAX_SQL)
    error: str | None = Field(default=None, max_length=2000)
    error_kind: str | None = Field(default=None, max_length=100,
                                   pattern=r"^[a-z][a-z0-9_.]*$")
    corrected_sql: str | None = Field(default=None, min_length=1, max_length=MAX_SQL)
    outcome: Literal["fixed", "not_fixed", "partial"]


class FeedbackAnswer(BaseModel):
    """Where the feedback was stored."""

    id: str
    stored_by: str = Field(description="The plugin whose store took it (ml_monitor when "
                           "installed, else ai_validation).")


class HealingRequest(_Strict):
    """A failing query, with the error and question when known."""

    sql: str = Field(min_length=1, max_length=MAX_SQL)
    error: str | None = Field(default=None, max_length=2000)
    question: str | None = Field(default=None, max_length=2000)


class Suggestion(BaseModel):
    """One validated fix."""

    sql: str = Field(description="The fixed SQL (as the caller would send it).")
    kind: str = Field(description="nearest_name, transpile, add_group_by, add_limit, "
                      "time_function or learned.")
    explanation: str
    score: float = Field(ge=0, le=1)
    valid: bool = Field(description="Always true: every suggestion passed validation.")
    findings: list[FindingModel]


class HealingAnswer(BaseModel):
    """Ranked, validated fixes."""

    original_findings: list[FindingModel]
    suggestions: list[Suggestion]


class QueryColumn(BaseModel):
    """A result column."""

    name: str
    type: str


class QueryAnswer(BaseModel):
    """The rows of an executed query with their schema."""

    sql: str = Field(description="The SQL that ran (rewritten by the validator).")
    columns: list[QueryColumn]
    rows: list[list[Any]]
    row_count: int
    truncated: bool = Field(description="Whether the row cap cut the result.")
    elapsed_ms: float
    findings: list[FindingModel]
