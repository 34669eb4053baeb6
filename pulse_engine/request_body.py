"""Strict JSON request bodies: every route reads its JSON through one checked parser.

Quart decodes a JSON body with ``bytes.decode()`` and ``json.loads`` outside its own error
handling, so a body that is not UTF-8 raised ``UnicodeDecodeError`` and a deeply nested
one ``RecursionError`` (500s). Valid JSON can also carry what PostgreSQL cannot store: a
NUL character (``\\u0000``) or a lone surrogate (``\\ud800``). :class:`StrictJSONRequest`
replaces ``get_json`` (which quart-schema's ``validate_request`` calls) with
:func:`parse_json_body`, which refuses all of these before any view runs:

* not UTF-8, not JSON, or nested deeper than :data:`MAX_JSON_DEPTH`: 400 ``malformed-json``;
* a string (or an object key) with a NUL or a lone surrogate: 422 ``validation-error``
  naming the field.
"""

from __future__ import annotations

import json
from typing import Any

from quart import Quart, Request
from quart.wrappers.request import Body
from werkzeug.exceptions import RequestEntityTooLarge

from pulse_engine.problems import Problem, validation_problem

#: Arrays and objects nested deeper than this are refused (no Pulse body needs more).
MAX_JSON_DEPTH = 64


def malformed_json(detail: str) -> Problem:
    """The 400 ``malformed-json`` problem."""
    return Problem(400, "malformed-json", detail)


def unstorable_text_reason(text: str) -> str | None:
    """Why a string cannot be stored as PostgreSQL text, or None when it can."""
    if "\x00" in text:
        return "Must not contain NUL characters."
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "Must not contain lone surrogates (invalid Unicode)."
    return None


def parse_json_body(raw: bytes) -> Any:
    """Decode and parse a JSON body, refusing what no route can accept (see module doc).

    :raises Problem: 400 for a body that is not UTF-8 JSON or is nested too deeply, 422
        naming each string field that holds a NUL character or a lone surrogate.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed_json("The request body is not valid UTF-8.") from None
    try:
        document = json.loads(text)
    except RecursionError:
        raise malformed_json(
            f"The request body is nested more than {MAX_JSON_DEPTH} levels deep."
        ) from None
    except ValueError:
        raise malformed_json("The request body is not valid JSON.") from None
    errors = _unstorable_strings(document)
    if errors:
        raise validation_problem(errors, "The request body holds text that cannot be stored.")
    return document


def _unstorable_strings(document: Any) -> list[dict[str, Any]]:
    """Every string of ``document`` that cannot be stored, walked without recursion."""
    errors: list[dict[str, Any]] = []
    pending: list[tuple[Any, str, int]] = [(document, "", 0)]
    while pending:
        value, path, depth = pending.pop()
        if isinstance(value, str):
            reason = unstorable_text_reason(value)
            if reason is not None:
                errors.append({"field": path, "message": reason, "type": "string_unstorable"})
            continue
        if not isinstance(value, dict | list):
            continue
        if depth >= MAX_JSON_DEPTH:
            raise malformed_json(
                f"The request body is nested more than {MAX_JSON_DEPTH} levels deep."
            )
        if isinstance(value, list):
            items: list[tuple[str, Any]] = [(str(index), item) for index, item in enumerate(value)]
        else:
            items = list(value.items())
            for key in value:
                reason = unstorable_text_reason(key)
                if reason is not None:
                    errors.append(
                        {"field": path, "message": f"A key: {reason}", "type": "key_unstorable"}
                    )
        for name, item in items:
            child_path = f"{path}.{name}" if path else name
            pending.append((item, child_path, depth + 1))
    return sorted(errors, key=lambda error: error["field"])


class RouteLimitedBody(Body):
    """Quart's request body whose size limit can change once the request is routed.

    Quart fixes the limit when the request object is made, before the route is known; the
    host makes it with the largest limit any view declares and lowers (or keeps) it to the
    routed view's own with :meth:`limit_to`.
    """

    def limit_to(self, max_bytes: int, expected_length: int | None) -> None:
        """Refuse (413 when the body is awaited) a body larger than ``max_bytes``."""
        self._max_content_length = max_bytes
        too_large = (expected_length is not None and expected_length > max_bytes) or len(
            self._data
        ) > max_bytes
        if too_large and self._must_raise is None:
            self._must_raise = RequestEntityTooLarge()
            self.set_complete()


def apply_body_limit(request: Request, max_bytes: int) -> None:
    """Apply a routed view's body limit to ``request`` (see :class:`RouteLimitedBody`)."""
    request.max_content_length = max_bytes
    body = request.body
    if isinstance(body, RouteLimitedBody):
        body.limit_to(max_bytes, request.content_length)


class StrictJSONRequest(Request):
    """Quart's request whose ``get_json`` parses with :func:`parse_json_body`, and whose
    body limit follows the routed view (:class:`RouteLimitedBody`)."""

    body_class = RouteLimitedBody

    async def get_json(
        self, force: bool = False, silent: bool = False, cache: bool = True
    ) -> Any:
        """The body parsed as JSON (None when it is not JSON and ``force`` is False).

        A body that cannot be accepted raises a 400/422 :class:`Problem`, or gives None
        with ``silent``.
        """
        if cache and self._cached_json[silent] is not Ellipsis:
            return self._cached_json[silent]
        if not (force or self.is_json):
            return None
        raw = await self.get_data(cache=cache, as_text=False, parse_form_data=False)
        try:
            result = parse_json_body(raw)
        except Problem:
            if not silent:
                raise
            result = None
        if cache:
            self._cached_json[silent] = result
        return result


def install_strict_json(app: Quart) -> None:
    """Make every request of ``app`` parse its JSON body with :func:`parse_json_body`."""
    app.request_class = StrictJSONRequest
