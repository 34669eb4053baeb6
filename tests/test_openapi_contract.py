"""The spec walk (issue 10 item 4): ``/openapi.json`` describes every route of every plugin.

The app runs with every installed plugin (pulse-etl, pulse-dora, the hello example and the
engine's built-ins). For each operation of the route table:

* it is in the document, with a 2xx answer that has a schema (a 204 has no body);
* every 4xx it declares is a problem document (``application/problem+json``);
* every query parameter its view reads is declared. This part is dynamic: the test app
  replaces ``request.args`` with a mapping that records which keys a view's own code reads
  (reads by quart-schema's ``validate_querystring`` are the declared model's, by
  construction), then each GET route is called with typical parameters.

The operations are taken from the route table before the app starts (building the app
needs no database), so each is its own test case.
"""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fixtures.openapi_document import openapi_path, resolve
from pydantic import BaseModel
from quart import Blueprint, Quart, request
from quart_schema import validate_querystring, validate_response
from werkzeug.datastructures import ImmutableMultiDict

from pulse_engine import hookimpl
from pulse_engine.app import create_app
from pulse_engine.auth import view_role
from pulse_engine.problems import PROBLEM_CONTENT_TYPE, ProblemDocument
from pulse_engine.testing import (
    ApiClient,
    TenantFixture,
    create_user,
    make_settings,
    make_tenant,
    running_app,
    token_for,
)

#: Plugins the walk must cover: a missing one would make it pass vacuously.
REQUIRED_PLUGINS = {"etl", "dora", "hello"}
READ_METHODS = ("get", "getlist", "__getitem__", "__contains__", "pop", "setdefault")


@dataclass(frozen=True)
class Operation:
    """One method of one rule of the route table, as ``/openapi.json`` names it."""

    method: str
    path: str
    endpoint: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def route_table(app: Quart) -> list[Operation]:
    """Every HTTP operation a plugin registered (the docs pages and static files are the
    engine's own, not a plugin's, and are left out of the document on purpose)."""
    owners = app.extensions["pulse"].route_owners
    operations = []
    for rule in app.url_map.iter_rules():
        if rule.websocket or rule.endpoint not in owners:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operations.append(Operation(method, openapi_path(rule.rule), rule.endpoint))
    return sorted(operations, key=lambda op: (op.path, op.method))


def _collect_operations() -> list[Operation]:
    """The route table of an app with every installed plugin, built without a database."""
    settings = make_settings(
        "postgresql://unused@127.0.0.1:1/unused", Path(tempfile.mkdtemp()), log_level="ERROR"
    )
    app = create_app(settings)
    asyncio.run(app.extensions["pulse"].setup(app))
    return route_table(app)


OPERATIONS = _collect_operations()
GET_OPERATIONS = [operation for operation in OPERATIONS if operation.method == "GET"]


def operation_cases(operations: list[Operation]) -> list[Any]:
    """Parameters for ``operations``."""
    return [pytest.param(operation, id=str(operation)) for operation in operations]


# --- what the document must say ---------------------------------------------------------


def success_problems(spec: dict[str, Any], operation: Operation) -> list[str]:
    """What is wrong with an operation's documented 2xx answers (empty: nothing)."""
    documented = spec["paths"].get(operation.path, {}).get(operation.method.lower())
    if documented is None:
        return [f"{operation} is not in /openapi.json"]
    successes = {
        status: answer
        for status, answer in documented.get("responses", {}).items()
        if str(status).startswith("2")
    }
    if not successes:
        return [f"{operation} declares no 2xx answer"]
    problems = []
    for status, answer in successes.items():
        content = answer.get("content")
        if str(status) == "204":
            if content:
                problems.append(f"{operation}: a 204 must not have a body")
            continue
        if not content:
            problems.append(f"{operation}: {status} has no content")
            continue
        for media_type, media in content.items():
            if not resolve(spec, media.get("schema", {})):
                problems.append(f"{operation}: {status} {media_type} has no schema")
    return problems


PROBLEM_REQUIRED = set(ProblemDocument.model_json_schema()["required"])


def error_problems(spec: dict[str, Any], operation: Operation) -> list[str]:
    """What is wrong with an operation's documented 4xx answers (empty: nothing)."""
    documented = spec["paths"].get(operation.path, {}).get(operation.method.lower(), {})
    problems = []
    for status, answer in documented.get("responses", {}).items():
        if not str(status).startswith("4"):
            continue
        content = answer.get("content", {})
        if set(content) != {PROBLEM_CONTENT_TYPE}:
            problems.append(f"{operation}: {status} is {sorted(content)}, not problem+json")
            continue
        schema = resolve(spec, content[PROBLEM_CONTENT_TYPE].get("schema", {}))
        if schema.get("title") != ProblemDocument.__name__ or set(
            schema.get("required", ())
        ) != PROBLEM_REQUIRED:
            problems.append(f"{operation}: {status} is not the problem document schema")
    return problems


def declared_query_parameters(spec: dict[str, Any], operation: Operation) -> set[str]:
    """The names of an operation's documented query parameters."""
    documented = spec["paths"].get(operation.path, {}).get(operation.method.lower(), {})
    return {
        parameter["name"]
        for parameter in documented.get("parameters", [])
        if parameter.get("in") == "query"
    }


# --- recording what views read ------------------------------------------------------------


class RecordingArgs(ImmutableMultiDict[str, str]):
    """Query arguments that note each key read by a view's own code, per endpoint.

    Reads made by quart-schema (``validate_querystring`` walks the arguments into the
    declared model) are not noted: those parameters are declared by construction.
    """

    reads: dict[str, set[str]]
    endpoint: str
    reading = False


def _recording(method_name: str) -> Any:
    method = getattr(ImmutableMultiDict, method_name)

    def read(self: RecordingArgs, key: str, *args: Any, **kwargs: Any) -> Any:
        if self.reading:  # a read inside a read (``get`` uses ``[]``): the outer one counts
            return method(self, key, *args, **kwargs)
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if not caller.startswith("quart_schema"):
            self.reads.setdefault(self.endpoint, set()).add(key)
        self.reading = True
        try:
            return method(self, key, *args, **kwargs)
        finally:
            self.reading = False

    return read


for _name in READ_METHODS:
    setattr(RecordingArgs, _name, _recording(_name))


class QueryRecorder:
    """A test plugin that swaps each request's ``args`` for :class:`RecordingArgs`."""

    def __init__(self) -> None:
        self.reads: dict[str, set[str]] = {}

    @hookimpl
    def register_routes(self) -> Blueprint:
        blueprint = Blueprint("query_recorder", __name__)

        @blueprint.before_app_request
        async def record_reads() -> None:
            recorded = RecordingArgs(request.args.items(multi=True))
            recorded.reads = self.reads
            recorded.endpoint = request.endpoint or ""
            request.args = recorded  # type: ignore[misc]

        return blueprint


#: Typical values of query parameters, by name (others come from their schema).
TYPICAL_QUERY_VALUES = {
    "start": "2024-01-01",
    "end": "2024-03-01",
    "start_date": "2024-01-01",
    "end_date": "2024-03-01",
    "tz": "UTC",
    "limit": "10",
}


def typical_value(schema: dict[str, Any]) -> str | None:
    """A value the view accepts for a parameter of this schema (None: leave it out)."""
    for variant in schema.get("anyOf", []):
        if variant.get("type") != "null":
            return typical_value(variant)
    if "enum" in schema:
        return str(schema["enum"][0])
    if "default" in schema and schema["default"] is not None:
        default = schema["default"]
        return ",".join(default) if isinstance(default, list) else str(default).lower()
    kind = schema.get("type")
    if kind == "array":
        return typical_value(schema.get("items", {}))
    if kind == "integer":
        return str(schema.get("minimum", 1))
    if kind == "boolean":
        return "true"
    if schema.get("format") == "uuid":
        return None
    if kind == "string" and schema.get("format") in ("date", "date-time"):
        return "2024-01-01"
    return None  # free text (a team, a repository...): an unknown value would be refused


def typical_query(spec: dict[str, Any], operation: Operation) -> dict[str, str]:
    """Typical values for every declared query parameter of an operation."""
    documented = spec["paths"][operation.path][operation.method.lower()]
    query = {}
    for parameter in documented.get("parameters", []):
        if parameter.get("in") != "query" or parameter["name"] == "cursor":
            continue
        name = parameter["name"]
        value = TYPICAL_QUERY_VALUES.get(name, typical_value(parameter.get("schema", {})))
        if value is not None:
            query[name] = value
    return query


@dataclass
class Contract:
    """The started app, its document, the recorder and callers of each kind."""

    app: Quart
    spec: dict[str, Any]
    recorder: QueryRecorder
    tenant: TenantFixture
    superadmin: ApiClient

    def path_values(self) -> dict[str, str]:
        """Real values for the path parameters of the route table."""
        metric_names = self.app.extensions["pulse"].metrics.names()
        values = {
            "tenant_id": self.tenant.id,
            "user_id": self.tenant.viewer.id,
            "plugin": "dora",
            "metric": "deployment_frequency",
        }
        if metric_names:
            values["name"] = metric_names[0]
        return values

    def client_for(self, operation: Operation) -> ApiClient:
        """A caller allowed to reach the view: the superadmin where it needs one."""
        view = self.app.view_functions[operation.endpoint]
        if view_role(view) == "superadmin":
            return self.superadmin
        return self.tenant.admin_client


@pytest.fixture(scope="module")
async def contract(
    pulse_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Contract]:
    """An app with every installed plugin and the query recorder."""
    settings = make_settings(pulse_database_url, tmp_path_factory.mktemp("contract"))
    recorder = QueryRecorder()
    async with running_app(settings, plugins={"query_recorder": recorder}) as app:
        records = app.extensions["pulse"].plugins.records
        loaded = {name for name, record in records.items() if not record.failed}
        assert loaded >= REQUIRED_PLUGINS, {name: records[name].errors for name in records}
        spec = await (await app.test_client().get("/openapi.json")).get_json()
        tenant = await make_tenant(app)
        engine = app.extensions["pulse"]
        root = await create_user(engine, None, "superadmin")
        yield Contract(app, spec, recorder, tenant, ApiClient(app, token_for(engine, root)))


def test_the_route_table_holds_every_plugin() -> None:
    owners = {operation.endpoint.split(".")[0] for operation in OPERATIONS}
    assert len(OPERATIONS) > 40, owners
    assert {str(op) for op in OPERATIONS} >= {
        "GET /app/etl/jobs", "GET /api/v1/metrics/dora/summary", "GET /api/v1/hello/greetings"
    }


async def test_operation_ids_are_unique(contract: Contract) -> None:
    """A generated client names its functions and types after them."""
    seen: dict[str, str] = {}
    for path, operations in contract.spec["paths"].items():
        for method, operation in operations.items():
            operation_id = operation["operationId"]
            assert operation_id not in seen, (operation_id, seen[operation_id], method, path)
            seen[operation_id] = f"{method} {path}"


@pytest.mark.parametrize("operation", operation_cases(OPERATIONS))
async def test_every_operation_declares_a_2xx_with_a_schema(
    contract: Contract, operation: Operation
) -> None:
    assert success_problems(contract.spec, operation) == []


@pytest.mark.parametrize("operation", operation_cases(OPERATIONS))
async def test_every_declared_4xx_is_a_problem_document(
    contract: Contract, operation: Operation
) -> None:
    assert error_problems(contract.spec, operation) == []


async def read_query_keys(contract: Contract, operation: Operation) -> tuple[set[str], Any]:
    """Call a GET operation with typical parameters; the keys its view read, and the answer."""
    path = operation.path
    for name, value in contract.path_values().items():
        path = path.replace("{" + name + "}", value)
    path = re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)
    contract.recorder.reads.pop(operation.endpoint, None)
    response = await contract.client_for(operation).get(
        path, query_string=typical_query(contract.spec, operation)
    )
    return contract.recorder.reads.get(operation.endpoint, set()), response


@pytest.mark.parametrize("operation", operation_cases(GET_OPERATIONS))
async def test_every_query_parameter_a_view_reads_is_declared(
    contract: Contract, operation: Operation
) -> None:
    read, response = await read_query_keys(contract, operation)
    body = await response.get_data(as_text=True)
    assert response.status_code < 500, body[:500]
    undeclared = read - declared_query_parameters(contract.spec, operation)
    assert not undeclared, f"{operation} reads undeclared query parameters {sorted(undeclared)}"


# --- the walk can fail: a probe plugin breaks each rule once ----------------------------


class Shown(BaseModel):
    """A declared answer."""

    value: str


class Declared(BaseModel):
    """A declared query parameter."""

    shown: str = "x"


class ContractBreaker:
    """A plugin whose routes break each rule of the walk."""

    @hookimpl
    def register_routes(self) -> Blueprint:
        blueprint = Blueprint("contract_breaker", __name__, url_prefix="/api/v1/breaker")

        @blueprint.get("/undocumented")
        async def undocumented() -> dict[str, str]:
            return {"value": "no declared answer"}

        @blueprint.get("/hidden-parameter")
        @validate_querystring(Declared)
        @validate_response(Shown)
        @validate_response(Shown, 404)
        async def hidden_parameter(query_args: Declared) -> dict[str, str]:
            return {"value": request.args.get("hidden", query_args.shown)}

        return blueprint


@pytest.fixture
async def breaker_contract(pulse_settings: Any) -> AsyncIterator[Contract]:
    """An app with only the built-ins, the breaker and the recorder."""
    recorder = QueryRecorder()
    plugins = {"breaker": ContractBreaker(), "query_recorder": recorder}
    async with running_app(pulse_settings, plugins=plugins, load_entry_points=False) as app:
        spec = await (await app.test_client().get("/openapi.json")).get_json()
        tenant = await make_tenant(app)
        yield Contract(app, spec, recorder, tenant, tenant.admin_client)


def breaker_operation(app: Quart, path: str) -> Operation:
    """The breaker's operation at ``path``."""
    return next(op for op in route_table(app) if op.path == path)


async def test_the_walk_sees_each_broken_rule(breaker_contract: Contract) -> None:
    app, spec = breaker_contract.app, breaker_contract.spec
    undocumented = breaker_operation(app, "/api/v1/breaker/undocumented")
    assert success_problems(spec, undocumented) == [f"{undocumented} declares no 2xx answer"]
    hidden = breaker_operation(app, "/api/v1/breaker/hidden-parameter")
    assert success_problems(spec, hidden) == []
    assert error_problems(spec, hidden) == [f"{hidden}: 404 is ['application/json'], not "
                                            "problem+json"]
    read, response = await read_query_keys(breaker_contract, hidden)
    assert response.status_code == 200
    assert read == {"hidden"}
    assert declared_query_parameters(spec, hidden) == {"shown"}


def test_recording_args_still_answer_like_the_original() -> None:
    recorded = RecordingArgs([("a", "1"), ("a", "2"), ("b", "3")])
    recorded.reads, recorded.endpoint = {}, "probe"
    assert (recorded.get("a"), recorded.getlist("a"), recorded["b"], "c" in recorded) == (
        "1", ["1", "2"], "3", False,
    )
    assert recorded.reads == {"probe": {"a", "b", "c"}}
