"""A local HTTP server that replays recorded API responses in the source's wire format.

A recording (``recordings/<source>/<name>.json``) is ``{"exchanges": [...]}``; an exchange
is ``{"request": {"method", "path", "query"}, "response": {"status", "headers", "body"}}``
with optional ``"times"`` (answer that many requests, then step aside) and
``"filter_since": "dotted.field"`` (with a ``since`` query parameter, only the list items
whose field is at or after it are returned, as GitHub does). ``query`` values must equal
the request's; ``"*"`` only requires the parameter, ``"~text"`` requires it to contain
``text``. The first matching exchange answers,
so specific exchanges come before general ones. ``{base}`` in headers and bodies becomes
the server's URL. Every request is kept in :attr:`ReplayServer.requests`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart, Response, request

RECORDINGS = Path(__file__).parent / "recordings"


def load_recording(source: str, name: str) -> list[dict[str, Any]]:
    """The exchanges of ``recordings/<source>/<name>.json``."""
    document = json.loads((RECORDINGS / source / f"{name}.json").read_text())
    return list(document["exchanges"])


@dataclass
class Seen:
    """A request the server received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)


def _field(item: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        item = item.get(part) if isinstance(item, Mapping) else None
    return item


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None


class ReplayServer:
    """Serves exchanges on a free loopback port while used as an async context manager."""

    def __init__(self, exchanges: list[dict[str, Any]]) -> None:
        """Serve ``exchanges`` (see the module docstring)."""
        self.exchanges = [copy.deepcopy(exchange) for exchange in exchanges]
        self.requests: list[Seen] = []
        self.url = ""
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def prepend(self, *exchanges: dict[str, Any]) -> None:
        """Answer with ``exchanges`` before the recorded ones (one-shot failures)."""
        self.exchanges[:0] = [copy.deepcopy(exchange) for exchange in exchanges]

    def paths(self, prefix: str = "") -> list[str]:
        """Paths requested so far (starting with ``prefix``)."""
        return [seen.path for seen in self.requests if seen.path.startswith(prefix)]

    def _match(self, method: str, path: str, query: Mapping[str, str]) -> dict[str, Any] | None:
        for exchange in self.exchanges:
            wanted = exchange["request"]
            if wanted.get("method", "GET") != method or wanted["path"] != path:
                continue
            if exchange.get("times", 1) <= 0:
                continue
            if all(
                key in query
                and (
                    value in ("*", query[key])
                    or (value.startswith("~") and value[1:] in query[key])
                )
                for key, value in wanted.get("query", {}).items()
            ):
                if "times" in exchange:
                    exchange["times"] -= 1
                return exchange
        return None

    def _app(self) -> Quart:
        app = Quart(__name__)

        @app.route("/<path:path>", methods=["GET", "POST"])
        async def answer(path: str) -> Response:
            query = {key: request.args[key] for key in request.args}
            self.requests.append(
                Seen(
                    request.method,
                    f"/{path}",
                    query,
                    {k.lower(): v for k, v in request.headers.items()},
                )
            )
            exchange = self._match(request.method, f"/{path}", query)
            if exchange is None:
                return Response(
                    json.dumps({"message": "Not Found"}),
                    status=404,
                    content_type="application/json",
                )
            answer = exchange["response"]
            body = copy.deepcopy(answer.get("body"))
            since = _time(query.get("since"))
            if exchange.get("filter_since") and since is not None and isinstance(body, list):
                body = [
                    item
                    for item in body
                    if (_time(_field(item, exchange["filter_since"])) or since) >= since
                ]
            headers = {
                key: value.replace("{base}", self.url)
                for key, value in answer.get("headers", {}).items()
            }
            text = answer["text"] if "text" in answer else json.dumps(body)
            headers.setdefault("content-type", "application/json; charset=utf-8")
            return Response(
                text.replace("{base}", self.url), status=answer.get("status", 200), headers=headers
            )

        return app

    async def __aenter__(self) -> ReplayServer:
        """Bind a free loopback port and start serving."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        config = Config()
        config.bind = [f"fd://{listener.detach()}"]  # hypercorn owns and closes the socket
        config.errorlog = None
        config.accesslog = None
        self._task = asyncio.create_task(
            serve(self._app(), config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]
        )
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop serving and close the port."""
        self._stop.set()
        if self._task is not None:
            await self._task


#: The fake clock's start: 2025-06-15, after every recorded object.
NOW = 1_750_000_000.0


class FakeTime:
    """A connector's clock and sleep: sleeping records the wait and advances the clock."""

    def __init__(self) -> None:
        self.now = NOW
        self.waits: list[float] = []

    def clock(self) -> float:
        """The fake current time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Record the wait and move the clock on, without waiting."""
        self.waits.append(seconds)
        self.now += seconds


def install_fake_time(connector: Any, monkeypatch: Any) -> FakeTime:
    """Give a connector instance a fake clock and sleep for one test."""
    fake = FakeTime()
    monkeypatch.setattr(connector, "sleep", fake.sleep)
    monkeypatch.setattr(connector, "clock", fake.clock)
    return fake
