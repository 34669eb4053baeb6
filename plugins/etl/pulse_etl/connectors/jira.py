"""The ``jira`` connector: issues as work items (type, status history, story points, sprint),
sprints, projects, and issues of incident types as incidents, over Jira Cloud's REST API v3
or, with ``deployment="data_center"``, Jira Data Center / Server's REST API v2.

Issues come from Jira Cloud's enhanced search, ``GET /rest/api/3/search/jql`` with
``expand=changelog`` (the offset-paged ``/rest/api/3/search`` it replaced answers 410 Gone
since 2025), paginated by ``nextPageToken`` and ordered by ``updated``; the JQL is
``project in (...) AND (jql) AND updated >= "-<N>m"``. The bound is relative (minutes
before now) because absolute JQL dates are read in the Jira user's time zone. Each page is
committed with the newest ``updated`` it held as the cursor, so a killed worker resumes from
the last committed page. An issue whose embedded changelog was truncated has its history
read from ``/rest/api/3/issue/{id}/changelog``. On Data Center the search is
``GET /rest/api/2/search`` paginated by ``startAt``/``maxResults``/``total`` (progress from
the total), and a truncated changelog is read with the issue itself
(``/rest/api/2/issue/{id}?expand=changelog``). Sprints come from the sprint custom field
(Jira Cloud objects, or the ``...Sprint@...[id=..,name=..]`` strings older servers send).
HTTP (retries, rate limits, pages) is :mod:`pulse_etl.connectors.http`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pulse_etl.connector import ConfigError, OutboundHosts, SourceError, SyncRun
from pulse_etl.connectors.common import (
    Fragment,
    Row,
    account_rows,
    merge,
    parse_time,
    sha_reference,
)
from pulse_etl.connectors.http import ApiClient, Clock, HttpPolicy, Sleep, url_endpoint
from pulse_etl.model import stable_id
from pulse_etl.settings import EtlSettings

log = logging.getLogger(__name__)

SOURCE = "jira"
SEARCH_PATH = "/rest/api/3/search/jql"
COUNT_PATH = "/rest/api/3/search/approximate-count"
DC_SEARCH_PATH = "/rest/api/2/search"
DC_ISSUE_PATH = "/rest/api/2/issue"
CURSOR_STREAM = "issues"
OVERLAP = timedelta(minutes=5)
PROJECT_KEY = re.compile(r"^[A-Z][A-Z0-9_]{0,49}$")
FIELD_ID = re.compile(r"^(customfield_\d+|[a-z][A-Za-z]*)$")
ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)
LEGACY_SPRINT = re.compile(r"(\w+)=([^,\]]*)")
STATUS_CATEGORIES = {"new": "todo", "indeterminate": "in_progress", "done": "done"}
BASE_FIELDS = ("summary", "issuetype", "status", "created", "updated", "resolutiondate",
               "assignee", "labels", "project", "priority", "description")


class JiraConfig(BaseModel):
    """Configuration of the jira connector (``api_token`` is secret)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(max_length=500, description="https://your-domain.atlassian.net")
    email: str | None = Field(default=None, max_length=320,
                              description="Account email (Jira Cloud basic auth).")
    api_token: str | None = Field(default=None, max_length=1000,
                                  description="API token (with email), or a bearer token "
                                  "(Data Center personal access token, OAuth).")
    projects: list[str] = Field(default_factory=list, max_length=200)
    jql: str | None = Field(default=None, max_length=2000, description="Extra JQL filter.")
    since: datetime | None = Field(default=None, description="Start of the first sync.")
    story_points_field: str = Field(default="customfield_10016", max_length=100)
    sprint_field: str = Field(default="customfield_10020", max_length=100)
    service_field: str = Field(
        default="components", max_length=100,
        description="Field naming an incident's service (default: its first component; "
        "the project key when empty).",
    )
    incident_issue_types: list[str] = Field(default_factory=lambda: ["Incident"],
                                            max_length=50)
    page_size: int = Field(default=100, ge=1, le=100)
    deployment: Literal["cloud", "data_center"] = Field(
        default="cloud",
        description="Jira Cloud (REST API v3, enhanced search) or Jira Data Center / Server "
        "(REST API v2, offset-paged search; use a personal access token without email).",
    )

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("projects")
    @classmethod
    def _projects(cls, value: list[str]) -> list[str]:
        for key in value:
            if not PROJECT_KEY.match(key):
                raise ValueError(f"{key!r} is not a project key")
        return value

    @field_validator("story_points_field", "sprint_field", "service_field")
    @classmethod
    def _field_id(cls, value: str) -> str:
        if not FIELD_ID.match(value):
            raise ValueError("not a Jira field id (customfield_10016, components...)")
        return value


def jira_client(config: JiraConfig, token: str | None, policy: HttpPolicy) -> ApiClient:
    """An :class:`ApiClient` for ``base_url``: basic auth with an email, else a bearer token."""
    headers = {"Accept": "application/json", "User-Agent": "pulse-etl"}
    auth: tuple[str, str] | None = None
    if token and config.email:
        auth = (config.email, token)
    elif token:
        headers["Authorization"] = f"Bearer {token}"
    return ApiClient("Jira", config.base_url, policy, headers=headers, auth=auth)


class JiraConnector:
    """Syncs issues, sprints and incidents from Jira (see the module docstring).

    :param sleep: awaited for rate-limit and backoff waits (tests pass a fake).
    :param clock: epoch time, for rate-limit resets and the relative ``updated`` bound.
    """

    name = "jira"
    description = "Work items, status history, story points, sprints and incidents from Jira."
    config_model = JiraConfig
    secret_fields = frozenset({"api_token"})

    def __init__(self, sleep: Sleep = asyncio.sleep, clock: Clock = time.time) -> None:
        """Create the connector."""
        self.sleep = sleep
        self.clock = clock

    def check(self, config: JiraConfig, settings: EtlSettings) -> None:
        """Require projects or JQL; the JQL may not order (the connector orders by update)."""
        if not config.projects and not (config.jql or "").strip():
            raise ConfigError("projects", "give project keys or a jql filter")
        if config.jql and ORDER_BY.search(config.jql):
            raise ConfigError("jql", "may not contain ORDER BY")

    def outbound(self, config: JiraConfig) -> OutboundHosts:
        """The Jira host."""
        return {"base_url": url_endpoint(config.base_url)}

    async def run(self, run: SyncRun) -> None:
        """Read the issues updated since the cursor, a committed page at a time."""
        config: JiraConfig = run.config
        policy = HttpPolicy.from_settings(run.settings, run.outbound, sleep=self.sleep,
                                          clock=self.clock)
        client = jira_client(config, run.secrets.get("api_token"), policy)
        saved = await run.cursor(CURSOR_STREAM) or {}
        since = parse_time(saved.get("since")) or config.since
        fields = [*BASE_FIELDS, config.story_points_field, config.sprint_field]
        if config.service_field not in fields:
            fields.append(config.service_field)
        jql = self.jql(config, since)
        params = {"jql": jql, "fields": ",".join(fields), "expand": "changelog"}
        try:
            async for issues, progress in self._search(client, config, params):
                fragments = []
                for issue in issues:
                    histories = await self._histories(client, config, issue)
                    fragments.append(issue_rows(issue, histories, config))
                updated = [t for t in (parse_time(_fields(i).get("updated")) for i in issues)
                           if t is not None]
                cursors = {CURSOR_STREAM: {"since": max(updated).isoformat()}} if updated \
                    else None
                await run.commit(merge(*fragments), cursors=cursors, progress=progress)
        finally:
            await client.aclose()

    async def _search(self, client: ApiClient, config: JiraConfig, params: dict[str, Any]
                      ) -> AsyncIterator[tuple[list[Any], float | None]]:
        """Pages of issues with the progress after each: Cloud's enhanced search (token
        pages, progress from the approximate count) or Data Center's offset-paged search."""
        if config.deployment == "data_center":
            async for offset_page in client.offset_pages(
                    DC_SEARCH_PATH, params, items_key="issues", page_size=config.page_size):
                done = offset_page.start + len(offset_page.items)
                total = offset_page.total
                yield offset_page.items, done / total if total else None
            return
        expected = await self._approximate_count(client, str(params["jql"]))
        done = 0
        async for page in client.token_pages(SEARCH_PATH, params, items_key="issues",
                                             page_size=config.page_size):
            done += len(page.items)
            yield page.items, min(done / expected, 0.99) if expected else None

    def jql(self, config: JiraConfig, since: datetime | None) -> str:
        """The search's JQL: projects, the extra filter, the relative ``updated`` bound."""
        clauses = []
        if config.projects:
            clauses.append("project in (" + ", ".join(f'"{k}"' for k in config.projects) + ")")
        if config.jql and config.jql.strip():
            clauses.append(f"({config.jql.strip()})")
        if since is not None:
            minutes = math.ceil((self.clock() - (since - OVERLAP).timestamp()) / 60)
            clauses.append(f'updated >= "-{max(minutes, 1)}m"')
        return " AND ".join(clauses) + " ORDER BY updated ASC, key ASC"

    @staticmethod
    async def _approximate_count(client: ApiClient, jql: str) -> int | None:
        """Jira's estimate of the issues the search will return (for progress), or None.

        The enhanced search reports no total; the estimate is a separate request whose
        failure only costs the progress figure, never the sync.
        """
        try:
            response = await client.request(
                "POST", COUNT_PATH, json={"jql": ORDER_BY.split(jql)[0].strip()})
            count = response.json().get("count")
        except (SourceError, ValueError, AttributeError):
            log.info("jira gave no approximate count; progress is reported at the end")
            return None
        return count if isinstance(count, int) and count > 0 else None

    @staticmethod
    async def _histories(client: ApiClient, config: JiraConfig, issue: Mapping[str, Any]
                         ) -> list[Mapping[str, Any]]:
        """The issue's whole changelog: embedded, or read again when truncated (Cloud's
        changelog pages; on Data Center the issue itself with its whole changelog)."""
        changelog = issue.get("changelog") or {}
        histories = list(changelog.get("histories") or [])
        total = changelog.get("total")
        if not isinstance(total, int) or total <= len(histories):
            return histories
        if config.deployment == "data_center":
            whole = await client.get_json(f"{DC_ISSUE_PATH}/{issue['id']}",
                                          {"expand": "changelog", "fields": "updated"})
            logged = whole.get("changelog") if isinstance(whole, Mapping) else None
            return list((logged or {}).get("histories") or [])
        histories = []
        async for page in client.offset_pages(f"/rest/api/3/issue/{issue['id']}/changelog", {},
                                              items_key="values", page_size=config.page_size):
            histories.extend(page.items)
        return histories


def _fields(issue: Mapping[str, Any]) -> Mapping[str, Any]:
    fields = issue.get("fields")
    return fields if isinstance(fields, Mapping) else {}


def _name(value: Any) -> str | None:
    """The display name of a field value: a string, an option, or the first of a list."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, Mapping):
        value = value.get("name") or value.get("value")
    return str(value) if value not in (None, "") else None


def adf_text(node: Any) -> Iterator[str]:
    """The text of an Atlassian Document Format node (v3 descriptions), or of a string."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        if isinstance(node.get("text"), str):
            yield node["text"]
        for child in node.get("content") or []:
            yield from adf_text(child)


def sprint_rows(value: Any, project_id: str | None) -> list[Row]:
    """Sprints of a sprint field value, oldest first (the last one is the issue's sprint)."""
    rows: list[Row] = []
    for item in value if isinstance(value, list) else []:
        sprint = item if isinstance(item, Mapping) else {
            key: value for key, value in LEGACY_SPRINT.findall(str(item)) if value != "<null>"}
        if not sprint.get("id") or not sprint.get("name"):
            continue
        external_id = str(sprint["id"])
        rows.append({
            "id": stable_id("sprints", SOURCE, external_id), "source": SOURCE,
            "external_id": external_id, "project_id": project_id, "name": str(sprint["name"]),
            "state": str(sprint.get("state") or "").lower() or None,
            "started_at": parse_time(sprint.get("startDate") or None),
            "ended_at": parse_time(sprint.get("endDate") or None),
            "completed_at": parse_time(sprint.get("completeDate") or None),
            "goal": sprint.get("goal") or None,
        })
    return rows


def status_changes(histories: list[Mapping[str, Any]], work_item_id: str) -> list[Row]:
    """The status transitions of a changelog."""
    rows: list[Row] = []
    for history in histories:
        changed = parse_time(history.get("created"))
        for position, item in enumerate(history.get("items") or []):
            if item.get("fieldId", item.get("field")) != "status" or changed is None:
                continue
            external_id = f"{history['id']}:{position}"
            rows.append({
                "id": stable_id("work_item_status_changes", SOURCE, external_id),
                "source": SOURCE, "external_id": external_id, "work_item_id": work_item_id,
                "changed_at": changed, "from_status": item.get("fromString"),
                "to_status": str(item.get("toString") or ""),
            })
    return rows


def issue_rows(issue: Mapping[str, Any], histories: list[Mapping[str, Any]],
               config: JiraConfig) -> Fragment:
    """One issue: its project, assignee, sprints, work item, status changes and incident."""
    fields = _fields(issue)
    issue_id = str(issue["id"])
    fragments: list[Fragment] = []
    project = fields.get("project") or {}
    project_id = None
    if project.get("id"):
        project_id = stable_id("projects", SOURCE, str(project["id"]))
        fragments.append({"projects": [{
            "id": project_id, "source": SOURCE, "external_id": str(project["id"]),
            "key": project.get("key"), "name": project.get("name") or project.get("key"),
        }]})
    assignee = fields.get("assignee")
    assignee_id = None
    if isinstance(assignee, Mapping) and (assignee.get("accountId") or assignee.get("key")):
        assignee_id, people = account_rows(
            SOURCE, str(assignee.get("accountId") or assignee.get("key")),
            email=assignee.get("emailAddress"), name=assignee.get("displayName"),
            username=assignee.get("name"))
        fragments.append(people)
    sprints = sprint_rows(fields.get(config.sprint_field), project_id)
    if sprints:
        fragments.append({"sprints": sprints})
    status = fields.get("status") or {}
    category = (status.get("statusCategory") or {}).get("key")
    issue_type = str((fields.get("issuetype") or {}).get("name") or "issue")
    points = fields.get(config.story_points_field)
    work_item_id = stable_id("work_items", SOURCE, issue_id)
    created = parse_time(fields.get("created"))
    resolved = parse_time(fields.get("resolutiondate"))
    updated = parse_time(fields.get("updated"))
    fragments.append({
        "work_items": [{
            "id": work_item_id, "source": SOURCE, "external_id": issue_id,
            "key": issue.get("key"), "title": fields.get("summary"),
            "type": issue_type.lower(), "status": str(status.get("name") or "unknown"),
            "status_category": STATUS_CATEGORIES.get(str(category)),
            "points": float(points) if isinstance(points, int | float) else None,
            "sprint_id": sprints[-1]["id"] if sprints else None,
            "assignee_identity_id": assignee_id,
            "labels": [str(label) for label in fields.get("labels") or []],
            "created_at_source": created, "resolved_at": resolved,
            "source_updated_at": updated, "project_id": project_id,
        }],
        "work_item_status_changes": status_changes(histories, work_item_id),
    })
    incident_types = {name.lower() for name in config.incident_issue_types}
    if issue_type.lower() in incident_types and created is not None:
        fragments.append({"incidents": [{
            "id": stable_id("incidents", SOURCE, issue_id), "source": SOURCE,
            "external_id": issue_id, "title": fields.get("summary"),
            "service": _name(fields.get(config.service_field)) or project.get("key"),
            "severity": _name(fields.get("priority")),
            "created_at_source": created, "resolved_at": resolved,
            "deployment_ref": sha_reference(adf_text(fields.get("description"))),
            "url": f"{config.base_url}/browse/{issue.get('key')}",
            "source_updated_at": updated,
        }]})
    return merge(*fragments)
