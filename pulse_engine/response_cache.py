"""Cached GET responses: the slow path inside Quart, and the fast path in front of it.

For every endpoint with a :class:`~pulse_engine.cache.CachePolicy`, the view is wrapped so
that a miss computes the response once (single flight), stores successful answers and
says ``X-Cache: miss``. In front of Quart, an ASGI fast path answers hits without a full
dispatch: it matches the path against the cached routes only, runs the same authorization
decision as the request gate (:func:`pulse_engine.authorization.authorize`) with lookups
from memory only, and sends the stored bytes with ``X-Cache: hit``. Anything it cannot
decide from memory (an API key not verified recently, uncached switches) and every refusal
falls through to the full pipeline, which then gives the proper answer; so the fast path
can only ever serve what the full pipeline would have served.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from quart import Quart, Response, g, request
from werkzeug.exceptions import NotFound
from werkzeug.routing import Map, Rule

from pulse_engine.authorization import AccessRequest, MemoryLookups, Undecided, authorize
from pulse_engine.cache import Cache, CachePolicy
from pulse_engine.middleware import request_id_from
from pulse_engine.problems import Problem

if TYPE_CHECKING:
    from pulse_engine.app import PulseEngine

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class _Uncacheable(Exception):
    """Carries a response that must not be cached (not a 200) out of the single flight."""

    def __init__(self, response: Response) -> None:
        super().__init__("uncacheable response")
        self.response = response


def cache_key(
    tenant_id: str,
    endpoint: str,
    policy: CachePolicy,
    view_args: Mapping[str, Any],
    query: Iterable[tuple[str, str]],
    role: str,
) -> str:
    """The key of one cached response: tenant, endpoint, path arguments, chosen query params."""
    parts = [(f"path.{name}", str(value)) for name, value in sorted(view_args.items())]
    wanted = None if policy.key_params is None else set(policy.key_params)
    parts += sorted(
        (f"q.{name}", value) for name, value in query if wanted is None or name in wanted
    )
    if policy.vary_role:
        parts.append(("role", role))
    return Cache.build_key(tenant_id, endpoint, parts)


def encode_entry(response_body: bytes, content_type: str) -> bytes:
    """Stored form: a one-line JSON header, a newline, then the body."""
    return json.dumps({"ct": content_type}).encode() + b"\n" + response_body


def decode_entry(entry: bytes) -> tuple[str, bytes]:
    """Split a stored entry into content type and body."""
    header, _, body = entry.partition(b"\n")
    return json.loads(header)["ct"], body


class ResponseCache:
    """Holds the cache policies, wraps cached views, and builds the ASGI fast path."""

    def __init__(self, engine: PulseEngine) -> None:
        self.engine = engine
        self.policies: dict[str, CachePolicy] = {}
        self._routes = Map().bind("")
        self._views: dict[str, Any] = {}
        self._lookups = MemoryLookups(engine)
        self._ready = False
        #: answer hits in front of Quart (benchmarks and tests turn it off to compare)
        self.fast_path_enabled = True

    def add_policy(self, policy: CachePolicy) -> None:
        """Register a policy (the endpoint must be a GET route)."""
        self.policies[policy.endpoint] = policy

    def build(self, app: Quart) -> None:
        """Wrap every cached view and compile the fast path's route map."""
        rules = []
        for rule in app.url_map.iter_rules():
            policy = self.policies.get(rule.endpoint)
            if policy is None or "GET" not in (rule.methods or ()):
                continue
            view = app.view_functions[rule.endpoint]
            self._views[rule.endpoint] = view
            app.view_functions[rule.endpoint] = self._wrap(rule.endpoint, policy, view)
            rules.append(Rule(rule.rule, endpoint=rule.endpoint, methods=["GET"]))
        self._routes = Map(rules).bind("")
        self._ready = bool(rules)

    def _wrap(self, endpoint: str, policy: CachePolicy, view: Any) -> Any:
        engine = self.engine

        @functools.wraps(view)
        async def cached_view(**view_args: Any) -> Response:
            principal = getattr(g, "principal", None)
            if principal is None or principal.tenant_id is None:
                return await engine_response(view, view_args)
            key = cache_key(
                principal.tenant_id,
                endpoint,
                policy,
                view_args,
                request.args.items(multi=True),
                principal.role,
            )

            async def compute() -> bytes:
                response = await engine_response(view, view_args)
                if response.status_code != 200:
                    raise _Uncacheable(response)
                body = await response.get_data()
                assert isinstance(body, bytes)
                return encode_entry(body, response.content_type or "application/json")

            try:
                entry, hit = await engine.cache.get_or_compute(
                    key, compute, policy.ttl, tags=policy.tags
                )
            except _Uncacheable as uncacheable:
                return uncacheable.response
            content_type, body = decode_entry(entry)
            response = Response(body, content_type=content_type)
            response.headers["X-Cache"] = "hit" if hit else "miss"
            return response

        return cached_view

    # --- the ASGI fast path ------------------------------------------------------------

    def fast_path(self, app: ASGIApp) -> ASGIApp:
        """Wrap the Quart ASGI app with the cache-hit fast path."""

        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if (
                self._ready
                and self.fast_path_enabled
                and scope["type"] == "http"
                and scope["method"] == "GET"
                and await self._try_hit(scope, send)
            ):
                return
            await app(scope, receive, send)

        return asgi

    async def _try_hit(self, scope: dict[str, Any], send: Any) -> bool:
        try:
            endpoint, view_args = self._routes.match(scope["path"], method="GET")
        except NotFound:
            return False
        except Exception:
            return False
        headers = dict(scope["headers"])
        if b"origin" in headers and self.engine.settings.cors_origins:
            return False  # let the CORS layer answer browsers
        authorization = headers.get(b"authorization")
        access = AccessRequest(
            method="GET",
            endpoint=endpoint,
            path=scope["path"],
            authorization=authorization.decode("latin-1") if authorization else None,
            view=self._views[endpoint],
            view_args=view_args,
        )
        try:
            principal = await authorize(self.engine, access, self._lookups)
        except (Undecided, Problem):
            return False  # the full pipeline decides again and answers
        if principal is None or principal.tenant_id is None:
            return False  # only tenant-scoped answers are cached
        engine = self.engine
        policy = self.policies[endpoint]
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        key = cache_key(principal.tenant_id, endpoint, policy, view_args, query, principal.role)
        entry = await engine.cache.get(key)
        if entry is None:
            return False
        content_type, body = decode_entry(entry)
        request_id = (
            request_id_from(headers.get(b"x-request-id", b"").decode("latin-1") or None)
            or uuid.uuid4().hex
        )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-cache", b"hit"),
                    (b"x-request-id", request_id.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return True


async def engine_response(view: Any, view_args: dict[str, Any]) -> Response:
    """Call a view and turn whatever it returns into a Response."""
    from quart import current_app

    result = await current_app.ensure_async(view)(**view_args)
    response = await current_app.make_response(result)
    assert isinstance(response, Response)
    return response
