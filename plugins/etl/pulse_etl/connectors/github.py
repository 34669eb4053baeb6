"""The ``github`` connector: pull requests, reviews, issues, deployments and releases over
GitHub's REST API, and the payloads of its webhooks (same object shapes).

The REST client follows ``Link: <...>; rel="next"`` pagination, waits out rate limits
(403/429 with ``x-ratelimit-remaining: 0`` until ``x-ratelimit-reset``, or
``retry-after``), and retries network errors and 5xx answers with exponential backoff.
Syncs are incremental: per repository, the cursor keeps the start time of the last
complete sync, and issues are read with ``since``, pull requests and deployments until the
first one older than it.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import Field, field_validator

from pulse_etl.connector import SourceError, SyncRun
from pulse_etl.connectors import github_mapping as gm
from pulse_etl.connectors.common import parse_time
from pulse_etl.settings import EtlSettings

REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
NEXT_LINK = re.compile(r'<([^>]+)>;\s*rel="next"')
OVERLAP = timedelta(minutes=5)
PER_PAGE = 100

Sleep = Callable[[float], Awaitable[None]]


class GithubConfig(gm.GithubOptions):
    """Configuration of the github connector (``token`` and ``webhook_secret`` are secret)."""

    repositories: list[str] = Field(default_factory=list, max_length=500)
    token: str | None = Field(default=None, max_length=500)
    webhook_secret: str | None = Field(default=None, max_length=500)
    api_url: str = Field(default="https://api.github.com", max_length=500)
    since: datetime | None = Field(default=None, description="Start of the first sync.")

    @field_validator("repositories")
    @classmethod
    def _repositories(cls, value: list[str]) -> list[str]:
        for name in value:
            if not REPOSITORY.match(name):
                raise ValueError(f"{name!r} is not owner/name")
        return value

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")


class RateLimited(SourceError):
    """The API asked to wait longer than the configured maximum."""


class GithubClient:
    """A small GitHub REST client: pagination, rate limits, retries."""

    def __init__(self, base_url: str, token: str | None, *, timeout: float = 30.0,
                 max_retries: int = 5, max_wait: float = 900.0, sleep: Sleep = asyncio.sleep
                 ) -> None:
        """Create a client for ``base_url`` authenticating with ``token`` (if any)."""
        headers = {"Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "pulse-etl"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout)
        self.max_retries = max_retries
        self.max_wait = max_wait
        self._sleep = sleep

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def get(self, url: str, params: dict[str, Any] | None = None) -> httpx.Response:
        """GET with rate-limit waits and retries; raises :class:`SourceError` on failure."""
        attempt = 0
        while True:
            try:
                response = await self._http.get(url, params=params)
            except httpx.TransportError as error:
                attempt += 1
                if attempt > self.max_retries:
                    raise SourceError(f"GitHub unreachable: {error}") from error
                await self._sleep(self._backoff(attempt))
                continue
            wait = self._rate_limit_wait(response)
            if wait is not None:
                if wait > self.max_wait:
                    raise RateLimited(f"GitHub rate limit: retry in {wait:.0f}s")
                await self._sleep(wait)
                continue
            if response.status_code >= 500:
                attempt += 1
                if attempt > self.max_retries:
                    raise SourceError(f"GitHub answered {response.status_code} for {url}")
                await self._sleep(self._backoff(attempt))
                continue
            if response.status_code >= 400:
                raise SourceError(f"GitHub answered {response.status_code} for {url}: "
                                  f"{response.text[:200]}")
            return response

    @staticmethod
    def _backoff(attempt: int) -> float:
        return float(min(60.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2))

    @staticmethod
    def _rate_limit_wait(response: httpx.Response) -> float | None:
        if response.status_code not in (403, 429):
            return None
        retry_after = response.headers.get("retry-after")
        if retry_after is not None and retry_after.isdigit():
            return float(retry_after)
        if response.headers.get("x-ratelimit-remaining") == "0":
            reset = response.headers.get("x-ratelimit-reset", "")
            if reset.isdigit():
                return max(1.0, float(reset) - time.time() + 1.0)
        if response.status_code == 429:
            return 60.0
        return None

    async def pages(self, url: str, params: dict[str, Any] | None = None
                    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield each page of a list endpoint, following ``rel="next"`` links."""
        next_url: str | None = url
        query: dict[str, Any] | None = {"per_page": PER_PAGE, **(params or {})}
        while next_url:
            response = await self.get(next_url, query)
            body = response.json()
            if not isinstance(body, list):
                raise SourceError(f"GitHub answered a non-list for {next_url}")
            yield body
            match = NEXT_LINK.search(response.headers.get("link", ""))
            next_url, query = (match.group(1), None) if match else (None, None)


class GithubConnector:
    """Syncs repositories from GitHub's REST API (see the module docstring)."""

    name = "github"
    description = "Pull requests, reviews, issues, deployments and releases from GitHub."
    config_model = GithubConfig
    secret_fields = frozenset({"token", "webhook_secret"})

    def check(self, config: GithubConfig, settings: EtlSettings) -> None:
        """Nothing beyond the model's validation."""

    async def run(self, run: SyncRun) -> None:
        """Sync every configured repository, one committed cursor per repository."""
        config: GithubConfig = run.config
        client = GithubClient(
            config.api_url, run.secrets.get("token"), timeout=run.settings.http_timeout,
            max_retries=run.settings.http_max_retries,
            max_wait=run.settings.rate_limit_max_wait,
        )
        try:
            for index, full_name in enumerate(config.repositories):
                await self._sync_repository(run, client, config, full_name,
                                            index, len(config.repositories))
        finally:
            await client.aclose()

    async def _sync_repository(self, run: SyncRun, client: GithubClient, config: GithubConfig,
                               full_name: str, index: int, total: int) -> None:
        started = datetime.now(UTC)
        saved = await run.cursor(full_name) or {}
        since = parse_time(saved.get("synced_at")) or config.since
        if since is not None:
            since -= OVERLAP
        base = f"/repos/{full_name}"
        repository_id, repo_rows = gm.repository((await client.get(base)).json())
        batch = repo_rows

        async for page in client.pages(f"{base}/pulls", {"state": "all", "sort": "updated",
                                                        "direction": "desc"}):
            fresh = [pr for pr in page
                     if since is None or (parse_time(pr.get("updated_at")) or started) >= since]
            for pr in fresh:
                batch = gm.merge(batch, gm.pull_request(pr, repository_id))
                async for reviews in client.pages(f"{base}/pulls/{pr['number']}/reviews"):
                    batch = gm.merge(batch, *(gm.review(item, pr) for item in reviews))
            await run.commit(batch)
            batch = {}
            if len(fresh) < len(page):
                break

        params = {"state": "all", "sort": "updated", "direction": "asc"}
        if since is not None:
            params["since"] = since.isoformat()
        async for page in client.pages(f"{base}/issues", params):
            await run.commit(gm.merge(*(gm.issue(item, repository_id, full_name, config)
                                        for item in page)))

        async for page in client.pages(f"{base}/deployments"):
            fragments = []
            older = False
            for item in page:
                created = parse_time(item.get("created_at")) or started
                if since is not None and created < since - timedelta(days=1):
                    older = True
                    continue
                statuses = (await client.get(f"{base}/deployments/{item['id']}/statuses",
                                             {"per_page": 1})).json()
                latest = statuses[0] if isinstance(statuses, list) and statuses else None
                fragments.append(gm.deployment(item, repository_id, full_name, latest))
            await run.commit(gm.merge(*fragments))
            if older:
                break

        if config.releases_as_deployments:
            async for page in client.pages(f"{base}/releases"):
                await run.commit(gm.merge(*(gm.release(item, repository_id, full_name, config)
                                            for item in page)))
        await run.commit({}, cursors={full_name: {"synced_at": started.isoformat()}},
                         progress=(index + 1) / total)
