"""Result-set schemas (``POST /api/v1/ai/validate/data-structure``).

A result set (columns with their types, rows) is checked against a named pydantic model:
every required field is a column, column types agree with the fields', and each row
validates as one instance (nullability, ``Field`` ranges, cross-field rules). The three
built-in schemas describe what an assistant's analyses return; plugins add theirs through
``register_result_schemas``.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class TeamAnalysis(BaseModel):
    """One team's activity over a period."""

    model_config = ConfigDict(extra="ignore")

    team: str = Field(min_length=1, description="The team's name.")
    members: int = Field(ge=0, description="People in the team.")
    commits: int = Field(ge=0, description="Commits authored by members in the period.")
    pull_requests: int = Field(ge=0, description="Pull requests opened by members.")
    merged_pull_requests: int | None = Field(default=None, ge=0,
                                             description="Of those, merged.")
    avg_review_hours: float | None = Field(default=None, ge=0,
                                           description="Mean hours to first review.")

    @model_validator(mode="after")
    def _merged_at_most_opened(self) -> TeamAnalysis:
        if self.merged_pull_requests is not None and self.merged_pull_requests > self.pull_requests:
            raise ValueError("merged_pull_requests exceeds pull_requests")
        return self


class DoraMetrics(BaseModel):
    """The four DORA keys for one period (and optionally one service)."""

    model_config = ConfigDict(extra="ignore")

    period: dt.date = Field(description="The period's first day.")
    service: str | None = Field(default=None, description="The service, when per service.")
    deployment_frequency: float = Field(ge=0, description="Production deployments per day.")
    lead_time_hours: float | None = Field(default=None, ge=0,
                                          description="Median commit-to-production hours.")
    change_failure_rate: float | None = Field(default=None, ge=0, le=1,
                                              description="Failed deployments / deployments.")
    mttr_hours: float | None = Field(default=None, ge=0,
                                     description="Median hours to restore service.")


class ReworkAnalysis(BaseModel):
    """Rework of one repository over a period."""

    model_config = ConfigDict(extra="ignore")

    repository: str = Field(min_length=1, description="The repository's name.")
    period: dt.date = Field(description="The period's first day.")
    total_changes: int = Field(ge=0, description="Changes (commits or PRs) in the period.")
    rework_changes: int = Field(ge=0, description="Of those, rework.")
    rework_rate: float = Field(ge=0, le=1, description="rework_changes / total_changes.")

    @model_validator(mode="after")
    def _consistent(self) -> ReworkAnalysis:
        if self.rework_changes > self.total_changes:
            raise ValueError("rework_changes exceeds total_changes")
        expected = self.rework_changes / self.total_changes if self.total_changes else None
        if expected is not None and abs(self.rework_rate - expected) > 1e-6:
            raise ValueError("rework_rate is not rework_changes / total_changes")
        return self


BUILTIN_SCHEMAS: dict[str, type[BaseModel]] = {
    "TeamAnalysis": TeamAnalysis, "DoraMetrics": DoraMetrics, "ReworkAnalysis": ReworkAnalysis,
}

#: column type words per JSON-ish kind
_TYPE_KINDS = {
    "integer": {"int", "integer", "bigint", "smallint", "int2", "int4", "int8", "number",
                "numeric"},
    "number": {"int", "integer", "bigint", "smallint", "int2", "int4", "int8", "number",
               "numeric", "decimal", "float", "float4", "float8", "real", "double",
               "double precision"},
    "string": {"text", "varchar", "string", "char", "character varying", "name", "uuid"},
    "date": {"date", "timestamp", "timestamptz", "timestamp with time zone",
             "timestamp without time zone", "string", "text"},
    "boolean": {"bool", "boolean"},
}


def _kind(annotation: Any) -> tuple[str | None, bool]:
    """The kind of a field annotation and whether it admits None."""
    nullable = False
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(annotation))
        annotation = args[0] if len(args) == 1 else annotation
    mapping = {bool: "boolean", int: "integer", float: "number", str: "string",
               dt.date: "date", dt.datetime: "date"}
    return mapping.get(annotation), nullable


class ResultSchemas:
    """The named schemas: built-ins first, then those plugins registered."""

    def __init__(self) -> None:
        self.models: dict[str, type[BaseModel]] = dict(BUILTIN_SCHEMAS)
        self.owners: dict[str, str] = dict.fromkeys(BUILTIN_SCHEMAS, "ai_validation")

    def add(self, name: str, model: Any, plugin: str) -> None:
        """Register ``model`` under ``name`` (the first registration wins)."""
        if isinstance(model, type) and issubclass(model, BaseModel) and name not in self.models:
            self.models[name] = model
            self.owners[name] = plugin

    def describe(self) -> list[dict[str, Any]]:
        """Every schema with its owner and JSON schema."""
        return [{"name": name, "plugin": self.owners[name],
                 "json_schema": model.model_json_schema()}
                for name, model in sorted(self.models.items())]

    def validate(
        self, name: str, columns: list[dict[str, Any]], rows: list[Any], max_errors: int = 100
    ) -> dict[str, Any]:
        """Check a result set against schema ``name`` (which must exist)."""
        model = self.models[name]
        errors: list[dict[str, Any]] = []
        given = {str(c["name"]): str(c.get("type") or "").lower() for c in columns}
        order = [str(c["name"]) for c in columns]
        missing = [field for field, info in model.model_fields.items()
                   if info.is_required() and field not in given]
        for field in missing:
            errors.append({"row": None, "column": field, "message": "required column missing"})
        for field, info in model.model_fields.items():
            if field not in given or not given[field]:
                continue
            kind, _nullable = _kind(info.annotation)
            if kind is not None and given[field] not in _TYPE_KINDS[kind]:
                errors.append({"row": None, "column": field,
                               "message": f"column type {given[field]!r} is not {kind}"})
        checked = 0
        for index, row in enumerate(rows):
            if len(errors) >= max_errors:
                break
            if isinstance(row, dict):
                record = row
            elif isinstance(row, list):
                if len(row) != len(order):
                    errors.append({"row": index, "column": None,
                                   "message": f"row has {len(row)} values for "
                                   f"{len(order)} columns"})
                    continue
                record = dict(zip(order, row, strict=True))
            else:
                errors.append({"row": index, "column": None, "message": "row is not a list"})
                continue
            checked += 1
            try:
                model.model_validate(record)
            except ValidationError as error:
                for item in error.errors():
                    location = ".".join(str(part) for part in item["loc"]) or None
                    errors.append({"row": index, "column": location, "message": item["msg"]})
        return {
            "valid": not errors,
            "schema_name": name,
            "rows_checked": checked,
            "missing_columns": missing,
            "extra_columns": [c for c in order if c not in model.model_fields],
            "errors": errors[:max_errors],
        }
