"""``file_response``: a view's file answer is declared with its media types, not as JSON."""

from __future__ import annotations

import pytest
from quart_schema.validation import QUART_SCHEMA_RESPONSE_ATTRIBUTE

from pulse_engine import file_response
from pulse_engine.openapi import FileAnswer, _correct_media_type


def test_the_declared_types_replace_json() -> None:
    @file_response("image/png", "image/svg+xml")
    async def chart() -> None:
        """A chart."""

    model = getattr(chart, QUART_SCHEMA_RESPONSE_ATTRIBUTE)[200][0]
    assert issubclass(model, FileAnswer) and model.content_types == ("image/png", "image/svg+xml")
    response = {"content": {"application/json": {"schema": {"$ref": "#/x"}}}}
    _correct_media_type(response, model)
    assert response["content"] == {
        kind: {"schema": {"type": "string", "format": "binary"}}
        for kind in ("image/png", "image/svg+xml")}
    _correct_media_type(response, model)  # idempotent: operations share response objects
    assert set(response["content"]) == {"image/png", "image/svg+xml"}
    # each declaration has its own types
    @file_response("text/csv")
    async def export() -> None:
        """A CSV."""

    assert getattr(export, QUART_SCHEMA_RESPONSE_ATTRIBUTE)[200][0].content_types == (
        "text/csv",)
    assert FileAnswer.content_types == ()


def test_a_file_response_needs_a_type() -> None:
    with pytest.raises(ValueError):
        file_response()
