"""Built-in plugin: the contract every route shares, installed on the app it is mounted in.

Request bodies are parsed strictly (:mod:`pulse_engine.request_body`: not UTF-8, too deep,
NUL characters and lone surrogates are 400/422 problems, never 500s), and
``/openapi.json`` describes problem answers as ``application/problem+json`` and 204s as
body-less (:mod:`pulse_engine.openapi`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from flask.sansio.blueprints import BlueprintSetupState
from quart import Blueprint, Quart

from pulse_engine import hookimpl
from pulse_engine.openapi import install_openapi_provider
from pulse_engine.request_body import install_strict_json

if TYPE_CHECKING:
    from pulse_engine.engine_api import Engine


def _install(state: BlueprintSetupState) -> None:
    app = cast(Quart, state.app)
    install_strict_json(app)
    install_openapi_provider(app)


@hookimpl
def register_routes(engine: Engine) -> Blueprint:
    """A route-less blueprint whose registration installs the contract on the app."""
    blueprint = Blueprint("api_contract", __name__)
    blueprint.record_once(_install)
    return blueprint
