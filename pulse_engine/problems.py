"""RFC 9457 problem details: the only error format Pulse answers with.

Raise :class:`Problem` anywhere in a request; the handlers installed by
:func:`install_problem_handlers` turn it, any HTTP error, a request-validation error and
any unhandled exception into ``application/problem+json``. An unhandled exception is
logged with the request id and answered with a generic 500 that reveals no internals.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from quart import Quart, Response, g
from quart_schema import RequestSchemaValidationError, validate_response
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from pulse_engine.queue import QueueUnavailable

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://pulse.dev/problems/"

#: PostgreSQL errors a request's limits cause, answered 503 rather than 500.
DATABASE_LIMIT_PROBLEMS = {
    "57014": (
        "statement-timeout",
        "The query ran longer than this route allows; narrow the window or the filters.",
    ),
    "53400": (
        "temp-file-limit",
        "The query needed more temporary space than a request may use; narrow the window.",
    ),
}

F = TypeVar("F", bound=Callable[..., Any])


class FieldError(BaseModel):
    """One offending field of a ``validation-error`` problem."""

    field: str = Field(description="Dotted path of the field or query parameter.")
    message: str = Field(description="What is wrong with it.")
    type: str = Field(description="A machine-readable kind (pydantic's error type).")


def _absent_not_null(schema: dict[str, Any]) -> None:
    """Optional members are left out of a problem, not sent as null: drop their default,
    so that generated clients (openapi-typescript) type them as optional."""
    for member in schema.get("properties", {}).values():
        member.pop("default", None)


class ProblemDocument(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``), as Pulse sends it."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_absent_not_null)

    type: str = Field(description="A stable URI naming the kind of problem.")
    title: str = Field(description="The HTTP status phrase.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="A human explanation of this occurrence.")
    instance: str | None = Field(default=None, description="The request id, as a URN.")
    errors: list[FieldError] | None = Field(
        default=None, description="Validation: offending fields."
    )
    plugin: str | None = Field(default=None, description="The plugin a 404 or 503 is about.")


#: The 4xx answers every authenticated route can give, declared by :func:`problem_responses`.
COMMON_PROBLEM_STATUSES = (400, 401, 403, 404, 422)


def problem_responses(*statuses: int) -> Callable[[F], F]:
    """Declare the problem+json answers of a view in ``/openapi.json``.

    With no arguments, :data:`COMMON_PROBLEM_STATUSES` are declared; pass the statuses a
    view can answer beyond them (409, 429, 503...). Put it next to quart-schema's own
    ``validate_response`` for the 2xx answer.
    """
    chosen = sorted(set(COMMON_PROBLEM_STATUSES) | set(statuses))

    def decorate(view: F) -> F:
        for status in chosen:
            view = validate_response(ProblemDocument, status)(view)
        return view

    return decorate


class Problem(Exception):
    """An error a client caused or may act on, rendered as problem+json.

    :param status: the HTTP status code.
    :param slug: a stable, machine-readable kind, made into the ``type`` URI.
    :param detail: a human explanation of this occurrence.
    :param extra: extension members (``errors``, ``plugin``...), merged into the body.
    """

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The problem document as a dict."""
        document: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        document.update(self.extra)
        return document


def problem_response(problem: Problem) -> Response:
    """Render a :class:`Problem` as a Quart response."""
    body = problem.body()
    request_id = getattr(g, "request_id", None) if g else None
    if request_id:
        body.setdefault("instance", f"urn:pulse:request:{request_id}")
    response = Response(json.dumps(body), status=problem.status, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response


def _slug_for_status(status: int) -> str:
    return HTTPStatus(status).phrase.lower().replace(" ", "-").replace("'", "")


def field_errors(validation: Exception, prefix: str = "") -> list[dict[str, Any]]:
    """The offending fields of a (pydantic) validation error, without the rejected input.

    :param prefix: prepended to each field path, for a model validated inside a larger body.
    """
    if hasattr(validation, "errors"):
        errors = []
        for item in validation.errors():
            path = ".".join(str(part) for part in item.get("loc", ()))
            errors.append(
                {
                    "field": prefix + path if path else prefix.rstrip("."),
                    "message": item.get("msg", ""),
                    "type": item.get("type", ""),
                }
            )
        return errors
    return [{"field": prefix.rstrip("."), "message": str(validation), "type": "invalid"}]


def validation_problem(
    errors: list[dict[str, Any]], detail: str = "The request did not match the expected schema."
) -> Problem:
    """The 422 ``validation-error`` problem for a list of :class:`FieldError`-shaped dicts."""
    return Problem(422, "validation-error", detail, errors=errors)


def invalid_field(
    field: str, message: str, *, type: str = "value_error", detail: str | None = None
) -> Problem:
    """The 422 ``validation-error`` problem naming one field or query parameter.

    :param detail: the problem's human explanation (default: ``Invalid '<field>': <message>``).
    """
    return validation_problem(
        [{"field": field, "message": message, "type": type}],
        detail or f"Invalid '{field}': {message}",
    )


def _validation_errors(error: RequestSchemaValidationError) -> list[dict[str, Any]]:
    return field_errors(error.validation_error)


def install_problem_handlers(app: Quart) -> None:
    """Make every error the app can produce answer as problem+json."""

    @app.errorhandler(Problem)
    async def _problem(error: Problem) -> Response:
        return problem_response(error)

    @app.errorhandler(RequestSchemaValidationError)
    async def _invalid(error: RequestSchemaValidationError) -> Response:
        return problem_response(validation_problem(_validation_errors(error)))

    @app.errorhandler(QueueUnavailable)
    async def _queue_down(error: QueueUnavailable) -> Response:
        log.error("queue unavailable: %s", error)
        return problem_response(
            Problem(
                503,
                "queue-unavailable",
                "The message broker is unavailable; nothing was queued. Try again shortly.",
                headers={"Retry-After": "5"},
            )
        )

    @app.errorhandler(HTTPException)
    async def _http(error: HTTPException) -> Response:
        status = error.code or 500
        detail = error.description or HTTPStatus(status).description
        headers = {}
        if status == 405 and hasattr(error, "valid_methods") and error.valid_methods:
            headers["Allow"] = ", ".join(sorted(error.valid_methods))
        return problem_response(Problem(status, _slug_for_status(status), detail, headers=headers))

    @app.errorhandler(Exception)
    async def _unhandled(error: Exception) -> Response:
        log.exception("unhandled error", extra={"request_id": getattr(g, "request_id", None)})
        return problem_response(
            Problem(500, "internal-error", "An internal error occurred; it has been logged.")
        )

    @app.errorhandler(DBAPIError)
    async def _database(error: DBAPIError) -> Response:
        sqlstate = getattr(error.orig, "sqlstate", None)
        limit = DATABASE_LIMIT_PROBLEMS.get(sqlstate or "")
        if limit is None:
            return await _unhandled(error)
        log.warning("request stopped by a database limit: %s", sqlstate)
        return problem_response(Problem(503, limit[0], limit[1], headers={"Retry-After": "5"}))
