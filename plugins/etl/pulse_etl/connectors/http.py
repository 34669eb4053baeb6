"""HTTP machinery shared by the API connectors (GitHub, Jira): retries, rate limits, pages.

:class:`ApiClient` wraps one ``httpx.AsyncClient`` per job run:

* every connection, redirects included, goes to an address the operator's outbound policy
  allows (:class:`pulse_engine.GuardedTransport`); errors name the status and the path,
  never the source's response body (job errors are visible to viewers);
* network errors and 5xx answers are retried with exponential backoff and jitter, at most
  ``max_retries`` times;
* rate-limited answers (429, or 403 carrying ``retry-after`` or ``x-ratelimit-remaining: 0``)
  are waited out: ``retry-after`` (seconds or an HTTP date), else ``x-ratelimit-reset``
  (epoch seconds as GitHub sends it, or an ISO time as Jira Cloud does), else a minute; a
  wait longer than ``max_wait`` fails the job with :class:`RateLimited` instead;
* :meth:`ApiClient.link_pages` follows ``Link: <...>; rel="next"`` (GitHub),
  :meth:`ApiClient.token_pages` follows ``nextPageToken`` (Jira's enhanced search) and
  :meth:`ApiClient.offset_pages` follows ``startAt``/``maxResults``/``total`` (Jira's
  changelogs).

Waiting goes through the policy's ``sleep`` and ``clock``, so tests replace both and never
really wait.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from pulse_engine import GuardedTransport, OutboundPolicy, OutboundRefused
from pulse_etl.connector import SourceError
from pulse_etl.connectors.common import parse_time
from pulse_etl.settings import EtlSettings

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
RATE_LIMITED_STATUSES = frozenset({403, 429})
DEFAULT_RATE_LIMIT_WAIT = 60.0
MAX_BACKOFF = 60.0
#: Redirects followed per request (each to an address the outbound policy allows).
MAX_REDIRECTS = 5


class RateLimited(SourceError):
    """The source asked to wait longer than the configured maximum."""


@dataclass(frozen=True)
class HttpPolicy:
    """How an :class:`ApiClient` times out, retries and waits.

    :param timeout: seconds per request.
    :param max_retries: retries of a request after a network error or a 5xx answer.
    :param max_wait: the longest rate-limit wait accepted, in seconds.
    :param sleep: awaited to wait (``asyncio.sleep``).
    :param clock: the current epoch time (``time.time``), to compute reset waits.
    :param outbound: which addresses may be connected to (by default: public ones only).
    """

    timeout: float = 30.0
    max_retries: int = 5
    max_wait: float = 900.0
    sleep: Sleep = asyncio.sleep
    clock: Clock = time.time
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)

    @classmethod
    def from_settings(cls, settings: EtlSettings, outbound: OutboundPolicy, *,
                      sleep: Sleep = asyncio.sleep, clock: Clock = time.time) -> HttpPolicy:
        """The policy of the operator's ``PULSE_ETL_HTTP_*`` settings and outbound policy."""
        return cls(timeout=settings.http_timeout, max_retries=settings.http_max_retries,
                   max_wait=settings.rate_limit_max_wait, sleep=sleep, clock=clock,
                   outbound=outbound)


def url_endpoint(url: str) -> tuple[str, int]:
    """The host and port a URL connects to (a connector's ``outbound`` entry)."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def backoff(attempt: int) -> float:
    """Seconds before retry number ``attempt`` (1-based): 0.5s doubling, jittered, capped."""
    return float(min(MAX_BACKOFF, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2))


def _seconds_until(value: str, now: float) -> float | None:
    """Seconds from ``now`` until ``value``: epoch seconds, an ISO time or an HTTP date."""
    value = value.strip()
    if not value:
        return None
    try:
        if value.isdigit():
            return float(value) - now
        moment = parse_time(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    return moment.timestamp() - now if moment is not None else None


def rate_limit_wait(response: httpx.Response, now: float) -> float | None:
    """Seconds to wait before repeating a rate-limited request; None when it is not one."""
    if response.status_code not in RATE_LIMITED_STATUSES:
        return None
    retry_after = response.headers.get("retry-after")
    if retry_after is not None:
        if retry_after.strip().isdigit():
            return max(1.0, float(retry_after))
        until = _seconds_until(retry_after, now)
        if until is not None:
            return max(1.0, until)
    limited = response.status_code == 429 or response.headers.get("x-ratelimit-remaining") == "0"
    if not limited:
        return None
    until = _seconds_until(response.headers.get("x-ratelimit-reset", ""), now)
    return max(1.0, until + 1.0) if until is not None else DEFAULT_RATE_LIMIT_WAIT


@dataclass
class OffsetPage:
    """One page of an offset-paginated list (``startAt``/``maxResults``/``total``)."""

    items: list[Any]
    start: int
    total: int | None
    body: dict[str, Any]


@dataclass
class TokenPage:
    """One page of a token-paginated list (``nextPageToken``, as Jira's enhanced search)."""

    items: list[Any]
    number: int
    body: dict[str, Any]


class ApiClient:
    """A JSON API client with retries, rate-limit waits and pagination.

    :param source: the source's name in error messages (``"GitHub"``).
    :param base_url: prefix of relative URLs; absolute ``next`` links must share its origin,
        so credentials never travel to another host.
    """

    def __init__(self, source: str, base_url: str, policy: HttpPolicy, *,
                 headers: Mapping[str, str] | None = None,
                 auth: httpx.Auth | tuple[str, str] | None = None) -> None:
        """Create a client; close it with :meth:`aclose`."""
        self.source = source
        self.policy = policy
        self._origin = urlsplit(base_url)[:2]
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=dict(headers or {}), auth=auth, timeout=policy.timeout,
            transport=GuardedTransport(policy.outbound), trust_env=False,
            follow_redirects=True, max_redirects=MAX_REDIRECTS)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def request(self, method: str, url: str, *, params: Mapping[str, Any] | None = None,
                      json: Any = None) -> httpx.Response:
        """Send a request, retrying and waiting as the module docstring says.

        :raises SourceError: when retries are exhausted or the answer is another 4xx.
        :raises RateLimited: when the source asks to wait longer than ``max_wait``.
        """
        attempt = 0
        while True:
            try:
                response = await self._http.request(method, url, params=params, json=json)
            except OutboundRefused as refused:
                raise SourceError(f"{self.source}: {refused.host}: {refused.reason}") from None
            except httpx.TooManyRedirects:
                raise SourceError(f"{self.source}: more than {MAX_REDIRECTS} redirects") from None
            except httpx.TransportError as error:
                attempt += 1
                if attempt > self.policy.max_retries:
                    raise SourceError(f"{self.source} unreachable: "
                                      f"{type(error).__name__}") from error
                await self.policy.sleep(backoff(attempt))
                continue
            wait = rate_limit_wait(response, self.policy.clock())
            if wait is not None:
                if wait > self.policy.max_wait:
                    raise RateLimited(f"{self.source} rate limit: retry in {wait:.0f}s")
                await self.policy.sleep(wait)
                continue
            if response.status_code >= 500:
                attempt += 1
                if attempt > self.policy.max_retries:
                    raise SourceError(f"{self.source} answered {response.status_code} for "
                                      f"{response.request.url.path}")
                await self.policy.sleep(backoff(attempt))
                continue
            if response.status_code >= 400:
                raise SourceError(f"{self.source} answered {response.status_code} "
                                  f"{response.reason_phrase} for {response.request.url.path}")
            return response

    async def get_json(self, url: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``url`` and decode its JSON body."""
        return self._decode(await self.request("GET", url, params=params))

    def _decode(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise SourceError(f"{self.source} answered non-JSON for "
                              f"{response.request.url.path}") from None

    def _same_origin(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme and parts[:2] != self._origin:
            raise SourceError(f"{self.source} sent a next link to another host: {parts.netloc}")
        return url

    async def link_pages(self, url: str, params: Mapping[str, Any] | None = None
                         ) -> AsyncIterator[list[Any]]:
        """Yield each page of a JSON-array endpoint, following ``rel="next"`` links.

        The next link carries the whole query, so ``params`` go with the first request only.
        """
        next_url: str | None = url
        query: Mapping[str, Any] | None = params
        while next_url is not None:
            response = await self.request("GET", self._same_origin(next_url), params=query)
            body = self._decode(response)
            if not isinstance(body, list):
                raise SourceError(f"{self.source} answered a non-list for "
                                  f"{response.request.url.path}")
            yield body
            match = NEXT_LINK.search(response.headers.get("link", ""))
            next_url, query = (match.group(1), None) if match else (None, None)

    async def token_pages(self, url: str, params: Mapping[str, Any], *, items_key: str,
                          page_size: int, token_key: str = "nextPageToken"
                          ) -> AsyncIterator[TokenPage]:
        """Yield pages of a list continued by an opaque token until none or ``isLast``.

        The first request carries no token; each next one sends the token the previous
        page returned, in the query parameter of the same name. A token seen twice is a
        source error (it would loop forever).
        """
        seen: set[str] = set()
        token: str | None = None
        number = 0
        while True:
            query = {**params, "maxResults": page_size}
            if token is not None:
                query[token_key] = token
            body = await self.get_json(url, query)
            items = body.get(items_key) if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise SourceError(f"{self.source} answered without a {items_key!r} list "
                                  f"for {url}")
            yield TokenPage(items=items, number=number, body=body)
            number += 1
            following = body.get(token_key)
            if body.get("isLast") is True or not isinstance(following, str) or not following:
                return
            if following in seen:
                raise SourceError(f"{self.source} repeated a page token for {url}")
            seen.add(following)
            token = following

    async def offset_pages(self, url: str, params: Mapping[str, Any], *, items_key: str,
                           page_size: int, start: int = 0) -> AsyncIterator[OffsetPage]:
        """Yield pages of a ``startAt``/``maxResults`` list until ``total`` or ``isLast``.

        The next ``startAt`` advances by the items received, since a server may return
        fewer than ``maxResults`` (Jira caps it per request).
        """
        while True:
            body = await self.get_json(url, {**params, "startAt": start, "maxResults": page_size})
            items = body.get(items_key) if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise SourceError(f"{self.source} answered without a {items_key!r} list "
                                  f"for {url}")
            total = body.get("total")
            total = total if isinstance(total, int) else None
            yield OffsetPage(items=items, start=start, total=total, body=body)
            start += len(items)
            if not items or body.get("isLast") is True or (total is not None and start >= total):
                return
