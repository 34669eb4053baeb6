"""The ``github`` connector: commits, pull requests, reviews and review comments, issues,
deployments and releases over GitHub's REST API, and the payloads of its webhooks (same
object shapes).

HTTP (``Link`` pagination, rate-limit waits, retries) is :mod:`pulse_etl.connectors.http`.
The repositories are the configured ones and those the configured organisations list at
the start of each run (without archived repositories and forks unless asked). Per
repository the streams are read in order (commits of the default branch, pull requests
with their details, reviews and review comments, issues, deployments with their statuses,
releases), each with its own cursor ``<stream>:<repository id>``:

* commits and issues are read with ``since`` (issues oldest update first, so the cursor
  advances with every committed page and a killed worker resumes mid-stream);
* a merged pull request's files (``GET .../pulls/{number}/files``, paged; GitHub lists at
  most 3,000) become the ``commit_files`` of its merge commit;
* pull requests, deployments and releases have no ``since``: they are read newest first
  until the first one older than the cursor (deployments keep a day of slack, as a late
  status changes an old deployment).

A stream's cursor is the start time of the run that completed it, minus a few minutes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from pydantic import Field, field_validator

from pulse_etl.connector import OutboundHosts, SourceError, SyncRun
from pulse_etl.connectors import github_mapping as gm
from pulse_etl.connectors.common import parse_time
from pulse_etl.connectors.http import ApiClient, Clock, HttpPolicy, Sleep, url_endpoint
from pulse_etl.settings import EtlSettings

log = logging.getLogger(__name__)

REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
ORGANIZATION = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
OVERLAP = timedelta(minutes=5)
DEPLOYMENT_SLACK = timedelta(days=1)
PER_PAGE = 100


class GithubConfig(gm.GithubOptions):
    """Configuration of the github connector (``token`` and ``webhook_secret`` are secret)."""

    repositories: list[str] = Field(default_factory=list, max_length=500)
    organizations: list[str] = Field(
        default_factory=list, max_length=50,
        description="Organisations whose repositories are synced too (listed at each run).",
    )
    include_archived: bool = Field(
        default=False, description="Also sync an organisation's archived repositories.")
    include_forks: bool = Field(
        default=False, description="Also sync an organisation's forks of other repositories.")
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

    @field_validator("organizations")
    @classmethod
    def _organizations(cls, value: list[str]) -> list[str]:
        for login in value:
            if not ORGANIZATION.match(login):
                raise ValueError(f"{login!r} is not an organisation login")
        return value

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")


def github_client(config: GithubConfig, token: str | None, policy: HttpPolicy) -> ApiClient:
    """An :class:`ApiClient` for GitHub's REST API v3 (``api_url``), with the token if any."""
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
               "User-Agent": "pulse-etl"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return ApiClient("GitHub", config.api_url, policy, headers=headers)


class GithubConnector:
    """Syncs repositories from GitHub's REST API (see the module docstring).

    :param sleep: awaited for rate-limit and backoff waits (tests pass a fake).
    :param clock: epoch time, to turn ``x-ratelimit-reset`` into a wait.
    """

    name = "github"
    description = ("Commits, pull requests, reviews, review comments, issues, deployments and "
                   "releases from GitHub repositories and organisations.")
    config_model = GithubConfig
    secret_fields = frozenset({"token", "webhook_secret"})

    def __init__(self, sleep: Sleep = asyncio.sleep, clock: Clock = time.time) -> None:
        """Create the connector."""
        self.sleep = sleep
        self.clock = clock

    def check(self, config: GithubConfig, settings: EtlSettings) -> None:
        """Nothing beyond the model's validation (an empty config fails the job, not the
        request: an integration may be saved before its repositories are chosen)."""

    def outbound(self, config: GithubConfig) -> OutboundHosts:
        """The API host."""
        return {"api_url": url_endpoint(config.api_url)}

    async def run(self, run: SyncRun) -> None:
        """Sync every configured repository, stream by stream (see the module docstring)."""
        config: GithubConfig = run.config
        if not config.repositories and not config.organizations:
            raise SourceError("no repositories or organizations configured")
        policy = HttpPolicy.from_settings(run.settings, run.outbound, sleep=self.sleep,
                                          clock=self.clock)
        client = github_client(config, run.secrets.get("token"), policy)
        try:
            names = list(dict.fromkeys(
                [*config.repositories, *await self._organization_repositories(client, config)]))
            for index, full_name in enumerate(names):
                sync = RepositorySync(run, client, config, full_name)
                await sync.sync(index, len(names))
        finally:
            await client.aclose()

    @staticmethod
    async def _organization_repositories(client: ApiClient, config: GithubConfig) -> list[str]:
        """The repositories of the configured organisations, as listed now (archived ones
        and forks only when asked for)."""
        names: list[str] = []
        for login in config.organizations:
            async for page in client.link_pages(f"/orgs/{login}/repos",
                                                {"type": "all", "per_page": PER_PAGE}):
                names.extend(
                    str(repo["full_name"]) for repo in page
                    if isinstance(repo, Mapping) and repo.get("full_name")
                    and (config.include_archived or not repo.get("archived"))
                    and (config.include_forks or not repo.get("fork"))
                )
        return names


class RepositorySync:
    """The sync of one repository within a run."""

    def __init__(self, run: SyncRun, client: ApiClient, config: GithubConfig,
                 full_name: str) -> None:
        """Prepare the sync of ``full_name``."""
        self.job = run
        self.client = client
        self.config = config
        self.full_name = full_name
        self.base = f"/repos/{full_name}"
        self.started = datetime.fromtimestamp(client.policy.clock(), UTC)
        self.repository_id = ""
        self.github_id = ""

    async def sync(self, index: int, total: int) -> None:
        """Read every stream; progress advances per stream."""
        repo = await self.client.get_json(self.base)
        if not isinstance(repo, Mapping) or "id" not in repo:
            raise SourceError(f"GitHub answered no repository for {self.full_name}")
        self.repository_id, rows = gm.repository(repo)
        self.github_id = str(repo["id"])
        await self.job.commit(rows)
        branch = str(repo.get("default_branch") or "main")
        readers: list[Callable[[], Awaitable[None]]] = [
            partial(self._commits, branch), self._pulls, self._issues, self._deployments]
        if self.config.releases_as_deployments:
            readers.append(self._releases)
        for position, read in enumerate(readers):
            await read()
            await self.job.report((index + (position + 1) / len(readers)) / total)

    def _stream(self, name: str) -> str:
        return f"{name}:{self.github_id}"

    async def _since(self, stream: str) -> datetime | None:
        saved = await self.job.cursor(self._stream(stream)) or {}
        since = parse_time(saved.get("since")) or self.config.since
        return since - OVERLAP if since is not None else None

    def _done(self, stream: str) -> dict[str, dict[str, Any]]:
        return {self._stream(stream): {"since": _iso(self.started)}}

    async def _commits(self, branch: str) -> None:
        params: dict[str, Any] = {"sha": branch, "per_page": PER_PAGE}
        since = await self._since("commits")
        if since is not None:
            params["since"] = _iso(since)
        async for page in self.client.link_pages(f"{self.base}/commits", params):
            await self.job.commit(gm.merge(*(gm.commit(item, self.repository_id)
                                             for item in page)))
        await self.job.commit({}, cursors=self._done("commits"))

    async def _pulls(self) -> None:
        since = await self._since("pulls")
        params = {"state": "all", "sort": "updated", "direction": "desc", "per_page": PER_PAGE}
        async for page in self.client.link_pages(f"{self.base}/pulls", params):
            fresh = [pr for pr in page if _newer(pr.get("updated_at"), since)]
            fragments = []
            for listed in fresh:
                number = listed["number"]
                pr = await self.client.get_json(f"{self.base}/pulls/{number}")
                fragments.append(gm.pull_request(pr, self.repository_id))
                async for reviews in self.client.link_pages(
                        f"{self.base}/pulls/{number}/reviews", {"per_page": PER_PAGE}):
                    fragments.extend(gm.review(item, pr) for item in reviews)
                async for comments in self.client.link_pages(
                        f"{self.base}/pulls/{number}/comments", {"per_page": PER_PAGE}):
                    fragments.extend(gm.review_comment(item, pr) for item in comments)
                if pr.get("merged_at") and pr.get("merge_commit_sha"):
                    fragments.append(await self._files(number, pr))
            await self.job.commit(gm.merge(*fragments))
            if len(fresh) < len(page):
                break
        await self.job.commit({}, cursors=self._done("pulls"))

    async def _files(self, number: int, pr: Mapping[str, Any]) -> gm.Fragment:
        """A merged pull request's files (every page; GitHub lists at most
        :data:`~pulse_etl.connectors.github_mapping.PULL_REQUEST_FILES_CAP` of them, so a
        larger pull request is logged and its first files kept)."""
        listed: list[Mapping[str, Any]] = []
        async for page in self.client.link_pages(f"{self.base}/pulls/{number}/files",
                                                 {"per_page": PER_PAGE}):
            listed.extend(item for item in page if isinstance(item, Mapping))
        changed = pr.get("changed_files")
        if isinstance(changed, int) and changed > len(listed):
            log.info("GitHub listed %d of the %d files of %s#%d (its cap is %d files)",
                     len(listed), changed, self.full_name, number, gm.PULL_REQUEST_FILES_CAP)
        return gm.pull_request_files(listed, pr, self.repository_id)

    async def _issues(self) -> None:
        since = await self._since("issues")
        params: dict[str, Any] = {"state": "all", "sort": "updated", "direction": "asc",
                                  "per_page": PER_PAGE}
        if since is not None:
            params["since"] = _iso(since)
        async for page in self.client.link_pages(f"{self.base}/issues", params):
            batch = gm.merge(*(gm.issue(item, self.repository_id, self.full_name, self.config)
                               for item in page))
            updated = [t for t in (parse_time(item.get("updated_at")) for item in page) if t]
            cursors = {self._stream("issues"): {"since": _iso(max(updated))}} if updated \
                else None
            await self.job.commit(batch, cursors=cursors)
        await self.job.commit({}, cursors=self._done("issues"))

    async def _deployments(self) -> None:
        since = await self._since("deployments")
        horizon = since - DEPLOYMENT_SLACK if since is not None else None
        async for page in self.client.link_pages(f"{self.base}/deployments",
                                                 {"per_page": PER_PAGE}):
            fresh = [item for item in page if _newer(item.get("created_at"), horizon)]
            fragments = []
            for item in fresh:
                if not gm.is_deployment(item, self.config):
                    continue
                statuses = await self.client.get_json(
                    f"{self.base}/deployments/{item['id']}/statuses", {"per_page": PER_PAGE})
                latest = gm.latest_status(statuses if isinstance(statuses, list) else [])
                fragments.append(gm.deployment(item, self.repository_id, self.full_name, latest))
            await self.job.commit(gm.merge(*fragments))
            if len(fresh) < len(page):
                break
        await self.job.commit({}, cursors=self._done("deployments"))

    async def _releases(self) -> None:
        since = await self._since("releases")
        async for page in self.client.link_pages(f"{self.base}/releases",
                                                 {"per_page": PER_PAGE}):
            fresh = [item for item in page
                     if _newer(item.get("published_at") or item.get("created_at"), since)]
            await self.job.commit(gm.merge(*(
                gm.release(item, self.repository_id, self.full_name, self.config)
                for item in fresh)))
            if len(fresh) < len(page):
                break
        await self.job.commit({}, cursors=self._done("releases"))


def _iso(moment: datetime) -> str:
    """A time as GitHub writes them: ``YYYY-MM-DDTHH:MM:SSZ``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _newer(value: Any, since: datetime | None) -> bool:
    """Whether a listed object's time is at or after ``since`` (always without one)."""
    if since is None:
        return True
    moment = parse_time(value)
    return moment is None or moment >= since
