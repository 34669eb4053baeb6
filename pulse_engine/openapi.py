"""How ``/openapi.json`` describes Pulse's answers beyond what quart-schema knows.

quart-schema documents every declared response as ``application/json`` with a body.
Three kinds of Pulse answer are not, and a client generated from the document (or a
schemathesis run checking content types) must see them as they are sent:

* problem documents (:class:`~pulse_engine.problems.ProblemDocument`, declared with
  ``problem_responses``) are ``application/problem+json``;
* :func:`no_content` answers (``204``) have no body at all;
* :func:`html_page` answers are ``text/html``.

Two more corrections make a generated client usable: a declared request body is
``required`` (``validate_request`` refuses a request without one) unless the view says
:func:`optional_json_body`; and operation ids come from the endpoint (``blueprint.view``,
unique in an app), not the view's bare name, which two plugins may share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel
from quart import Quart
from quart_schema import document_request, document_response
from quart_schema.openapi import QUART_SCHEMA_OPERATION_ID_ATTRIBUTE, OpenAPIProvider
from quart_schema.validation import QUART_SCHEMA_RESPONSE_ATTRIBUTE
from werkzeug.routing import Rule

from pulse_engine.problems import PROBLEM_CONTENT_TYPE, ProblemDocument

F = TypeVar("F", bound=Callable[..., Any])

JSON_CONTENT_TYPE = "application/json"
HTML_CONTENT_TYPE = "text/html"
OPTIONAL_BODY_ATTRIBUTE = "_pulse_optional_body"


class NoContent(BaseModel):
    """No Content: the request succeeded and the answer has no body."""


def no_content(view: F) -> F:
    """Declare a view's ``204 No Content`` answer in ``/openapi.json`` (the view returns
    ``"", 204``; there is no body for quart-schema to validate)."""
    return document_response(NoContent, 204)(view)


class HtmlPage(BaseModel):
    """An HTML page for people, not for programs."""


def html_page(view: F) -> F:
    """Declare a view's ``200`` answer as an HTML page in ``/openapi.json``."""
    return document_response(HtmlPage, 200)(view)


class FileAnswer(BaseModel):
    """A file (CSV, an image...): the body is the file itself, of one of ``content_types``."""

    content_types: ClassVar[tuple[str, ...]] = ()


def file_response(*content_types: str) -> Callable[[F], F]:
    """Declare a view's ``200`` answer as a file of one of ``content_types`` in
    ``/openapi.json`` (``text/csv``, ``image/png``, ``image/svg+xml``...): the view
    returns a ``Response`` of that type, not a model."""
    if not content_types:
        raise ValueError("file_response needs at least one content type")
    marker = type("FileAnswer", (FileAnswer,), {
        "__doc__": FileAnswer.__doc__, "content_types": tuple(content_types),
        "__annotations__": {}})

    def decorate(view: F) -> F:
        return document_response(marker, 200)(view)

    return decorate


def optional_json_body(model: type[BaseModel]) -> Callable[[F], F]:
    """Document a JSON body the view may also be called without (it parses it itself)."""

    def decorate(view: F) -> F:
        setattr(view, OPTIONAL_BODY_ATTRIBUTE, True)
        return document_request(model)(view)

    return decorate


PATH_CHOICES_ATTRIBUTE = "_pulse_path_choices"


def path_choices(parameter: str, choices: Callable[[], list[str]]) -> Callable[[F], F]:
    """Document the values a path parameter takes (``enum`` in ``/openapi.json``), read
    when the document is built: a generated client types them, and a fuzzer reaches past
    the 404 of an unknown value into the view itself."""

    def decorate(view: F) -> F:
        declared = dict(getattr(view, PATH_CHOICES_ATTRIBUTE, {}))
        declared[parameter] = choices
        setattr(view, PATH_CHOICES_ATTRIBUTE, declared)
        return view

    return decorate


class PulseOpenAPIProvider(OpenAPIProvider):
    """quart-schema's document, with problem+json, body-less and HTML answers as sent."""

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        """The path objects of ``rule``, corrected as the module says."""
        paths, components = super().build_paths(rule)
        view = self._app.view_functions[rule.endpoint]
        declared: dict[int, tuple[type[Any], Any]] = getattr(
            view, QUART_SCHEMA_RESPONSE_ATTRIBUTE, {}
        )
        explicit_id = hasattr(view, QUART_SCHEMA_OPERATION_ID_ATTRIBUTE)
        for operations in paths.values():
            for method, operation in operations.items():
                if not explicit_id:
                    operation["operationId"] = f"{method}_{rule.endpoint.replace('.', '_')}"
                body = operation.get("requestBody")
                if body is not None:
                    body["required"] = not getattr(view, OPTIONAL_BODY_ATTRIBUTE, False)
                for status, response in operation["responses"].items():
                    _correct_media_type(response, declared[status][0])
                _declare_path_choices(operation, getattr(view, PATH_CHOICES_ATTRIBUTE, {}))
        return paths, components


def _declare_path_choices(
    operation: dict[str, Any], choices: dict[str, Callable[[], list[str]]]
) -> None:
    for parameter in operation.get("parameters", []):
        values = choices.get(parameter["name"]) if parameter.get("in") == "path" else None
        if values is not None and (current := values()):
            parameter["schema"] = {**parameter.get("schema", {}), "enum": sorted(current)}


def _correct_media_type(response: dict[str, Any], model: type[Any]) -> None:
    """Move a problem schema to problem+json; drop the body of a no-content answer; make
    an HTML page's body a string of ``text/html``.

    Operations of one rule share their response objects, so this must be idempotent.
    """
    content = response.get("content")
    if content is None:
        return
    if model is NoContent:
        del response["content"]
    elif model is HtmlPage:
        response["content"] = {HTML_CONTENT_TYPE: {"schema": {"type": "string"}}}
    elif isinstance(model, type) and issubclass(model, FileAnswer):
        types = model.content_types
        response["content"] = {
            kind: {"schema": {"type": "string", "format": "binary"}} for kind in types}
    elif model is ProblemDocument and JSON_CONTENT_TYPE in content:
        content[PROBLEM_CONTENT_TYPE] = content.pop(JSON_CONTENT_TYPE)


def install_openapi_provider(app: Quart) -> None:
    """Build ``app``'s ``/openapi.json`` with :class:`PulseOpenAPIProvider`."""
    extension = app.extensions["QUART_SCHEMA"]
    extension.openapi_provider = PulseOpenAPIProvider(app, extension)
