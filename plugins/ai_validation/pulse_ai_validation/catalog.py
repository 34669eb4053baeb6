"""The analytics model an assistant may query: allow-listed tables and columns.

The allow-list names the tables and columns of the unified ETL model (``projects``,
``commits``, ``deployments``...) with a type and a description each. It is both the
prompt context (``GET /api/v1/ai/schema``) and the contract the validator enforces.
At startup the plugin keeps only the columns the live database has
(:func:`reflect_catalog`), with their database types; ``tenant_id`` is never listed
(the validator adds the tenant filter itself), nor are e-mail addresses, secrets, job
state or anything outside the model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class CatalogColumn:
    """One column an assistant may read."""

    name: str
    type: str
    description: str = ""
    nullable: bool = True


@dataclass(frozen=True)
class CatalogTable:
    """One table an assistant may read, with its allow-listed columns."""

    name: str
    description: str
    columns: tuple[CatalogColumn, ...]
    #: whether rows carry ``tenant_id`` (every model table does; an external schema may not)
    tenant_scoped: bool = True

    def column(self, name: str) -> CatalogColumn | None:
        """The column called ``name`` (case-insensitive), or None."""
        lowered = name.lower()
        for column in self.columns:
            if column.name.lower() == lowered:
                return column
        return None

    @property
    def column_names(self) -> tuple[str, ...]:
        """The columns' names, in order."""
        return tuple(column.name for column in self.columns)


@dataclass(frozen=True)
class Catalog:
    """The allow-listed tables, by lower-cased name."""

    tables: Mapping[str, CatalogTable] = field(default_factory=dict)

    def table(self, name: str) -> CatalogTable | None:
        """The table called ``name`` (case-insensitive), or None."""
        return self.tables.get(name.lower())

    def all_columns(self) -> set[str]:
        """Every column name of every table (lower-cased)."""
        return {column.name.lower() for table in self.tables.values() for column in table.columns}

    def as_document(self) -> dict[str, Any]:
        """The catalog as the ``GET /api/v1/ai/schema`` answer."""
        return {
            "dialect": "postgres",
            "tables": [
                {
                    "name": table.name,
                    "description": table.description,
                    "columns": [
                        {"name": c.name, "type": c.type, "nullable": c.nullable,
                         "description": c.description}
                        for c in table.columns
                    ],
                }
                for table in sorted(self.tables.values(), key=lambda t: t.name)
            ],
        }

    @classmethod
    def of(cls, tables: Iterable[CatalogTable]) -> Catalog:
        """A catalog holding ``tables``."""
        return cls({table.name.lower(): table for table in tables})


_ID = "uuid"
_TS = "timestamp with time zone"
_TXT = "text"
_INT = "integer"


def _c(name: str, type_: str, description: str, nullable: bool = True) -> CatalogColumn:
    return CatalogColumn(name, type_, description, nullable)


def _source(*columns: CatalogColumn) -> tuple[CatalogColumn, ...]:
    """A source entity's columns: id, source, external id, the given ones, timestamps."""
    return (
        _c("id", _ID, "Stable identifier of the row.", False),
        _c("source", _TXT, "Where the row came from (github, gitlab, jira, git, generic).",
           False),
        _c("external_id", _TXT, "The row's identifier in its source.", False),
        *columns,
        _c("created_at", _TS, "When Pulse first stored the row (not the source's time).",
           False),
        _c("updated_at", _TS, "When Pulse last changed the row.", False),
    )


#: The analytics model the assistant may query (types as the ETL model declares them;
#: :func:`reflect_catalog` replaces them with the live database's).
ANALYTICS_TABLES: tuple[CatalogTable, ...] = (
    CatalogTable("projects", "Projects (Jira projects, GitHub organisations...).", _source(
        _c("key", _TXT, "The project's short key (e.g. PULSE)."),
        _c("name", _TXT, "The project's name.", False),
    )),
    CatalogTable("repositories", "Source repositories.", _source(
        _c("project_id", _ID, "The project the repository belongs to (projects.id)."),
        _c("name", _TXT, "The repository's name (owner/name).", False),
        _c("url", _TXT, "The repository's web address."),
        _c("default_branch", _TXT, "The default branch (main, master...)."),
        _c("service", _TXT, "The service the repository deploys.", False),
    )),
    CatalogTable("teams", "Teams of people.", _source(
        _c("project_id", _ID, "The team's project (projects.id)."),
        _c("name", _TXT, "The team's name.", False),
    )),
    CatalogTable("people", "People (developers, reviewers), one per person.", _source(
        _c("display_name", _TXT, "The person's name."),
    )),
    CatalogTable("person_identities", "A person's accounts in each source.", _source(
        _c("person_id", _ID, "The person (people.id).", False),
        _c("name", _TXT, "The name the account shows."),
        _c("username", _TXT, "The account's login."),
        _c("mapped_explicitly", "boolean", "Whether an admin mapped it to the person.", False),
    )),
    CatalogTable("team_memberships", "Which people are in which team.", (
        _c("team_id", _ID, "The team (teams.id).", False),
        _c("person_id", _ID, "The member (people.id).", False),
        _c("role", _TXT, "The member's role in the team."),
        _c("created_at", _TS, "When Pulse stored the membership.", False),
        _c("updated_at", _TS, "When Pulse last changed it.", False),
    )),
    CatalogTable("commits", "Git commits, one per repository and SHA.", (
        _c("id", _ID, "Stable identifier of the commit row.", False),
        _c("repository_id", _ID, "The repository (repositories.id).", False),
        _c("sha", _TXT, "The commit's SHA.", False),
        _c("author_identity_id", _ID, "The author's identity (person_identities.id)."),
        _c("committer_identity_id", _ID, "The committer's identity (person_identities.id)."),
        _c("author_name", _TXT, "The author's name as git recorded it."),
        _c("authored_at", _TS, "When the change was authored."),
        _c("author_tz_offset", "smallint", "The author's UTC offset in minutes."),
        _c("committed_at", _TS, "When the commit was made."),
        _c("committer_tz_offset", "smallint", "The committer's UTC offset in minutes."),
        _c("message", _TXT, "The commit message."),
        _c("additions", _INT, "Lines added."),
        _c("deletions", _INT, "Lines deleted."),
        _c("files_changed", _INT, "Files changed."),
        _c("is_merge", "boolean", "Whether the commit has several parents.", False),
        _c("pull_request_number", _INT, "The pull request the commit belongs to."),
        _c("source", _TXT, "Where the commit came from.", False),
        _c("created_at", _TS, "When Pulse stored the commit.", False),
        _c("updated_at", _TS, "When Pulse last changed it.", False),
    )),
    CatalogTable("commit_parents", "The parents of each commit.", (
        _c("repository_id", _ID, "The repository (repositories.id).", False),
        _c("sha", _TXT, "The commit's SHA.", False),
        _c("position", "smallint", "The parent's position (0 = first parent).", False),
        _c("parent_sha", _TXT, "The parent's SHA.", False),
    )),
    CatalogTable("pull_requests", "Pull (merge) requests.", _source(
        _c("source_updated_at", _TS, "When the source last changed the pull request."),
        _c("repository_id", _ID, "The repository (repositories.id).", False),
        _c("number", _INT, "The pull request's number in its repository.", False),
        _c("title", _TXT, "The title."),
        _c("state", _TXT, "open, closed or merged.", False),
        _c("author_identity_id", _ID, "The author's identity (person_identities.id)."),
        _c("created_at_source", _TS, "When the pull request was opened."),
        _c("merged_at", _TS, "When it was merged (null if not merged)."),
        _c("closed_at", _TS, "When it was closed."),
        _c("head_ref", _TXT, "The branch merged from."),
        _c("base_ref", _TXT, "The branch merged into."),
        _c("head_sha", _TXT, "The head commit's SHA."),
        _c("merge_commit_sha", _TXT, "The merge commit's SHA."),
        _c("additions", _INT, "Lines added."),
        _c("deletions", _INT, "Lines deleted."),
        _c("changed_files", _INT, "Files changed."),
        _c("url", _TXT, "The pull request's web address."),
    )),
    CatalogTable("reviews", "Reviews of pull requests.", _source(
        _c("pull_request_id", _ID, "The pull request (pull_requests.id).", False),
        _c("reviewer_identity_id", _ID, "The reviewer's identity (person_identities.id)."),
        _c("state", _TXT, "approved, changes_requested, commented...", False),
        _c("submitted_at", _TS, "When the review was submitted."),
    )),
    CatalogTable("review_comments", "Comments on pull requests' code.", _source(
        _c("pull_request_id", _ID, "The pull request (pull_requests.id).", False),
        _c("review_id", _ID, "The review (reviews.id)."),
        _c("author_identity_id", _ID, "The author's identity (person_identities.id)."),
        _c("created_at_source", _TS, "When the comment was written."),
        _c("path", _TXT, "The file commented on."),
        _c("body", _TXT, "The comment's text."),
    )),
    CatalogTable("deployments", "Deployments of services to environments.", _source(
        _c("source_updated_at", _TS, "When the source last changed the deployment."),
        _c("repository_id", _ID, "The repository deployed (repositories.id)."),
        _c("service", _TXT, "The service deployed.", False),
        _c("environment", _TXT, "The environment (production, staging...).", False),
        _c("result", _TXT, "success, failure, error or in_progress."),
        _c("started_at", _TS, "When the deployment started."),
        _c("finished_at", _TS, "When the deployment finished."),
        _c("sha", _TXT, "The commit deployed."),
        _c("ref", _TXT, "The ref deployed."),
        _c("name", _TXT, "The deployment's name."),
    )),
    CatalogTable("deployment_commits", "The commits each deployment shipped first.", (
        _c("deployment_id", _ID, "The deployment (deployments.id).", False),
        _c("repository_id", _ID, "The repository (repositories.id).", False),
        _c("environment", _TXT, "The deployment's environment.", False),
        _c("sha", _TXT, "The commit shipped.", False),
    )),
    CatalogTable("incidents", "Production incidents.", _source(
        _c("source_updated_at", _TS, "When the source last changed the incident."),
        _c("title", _TXT, "The incident's title."),
        _c("service", _TXT, "The service affected."),
        _c("repository_id", _ID, "The repository (repositories.id)."),
        _c("severity", _TXT, "The severity (sev1, high...)."),
        _c("created_at_source", _TS, "When the incident started.", False),
        _c("resolved_at", _TS, "When it was resolved (null while open)."),
        _c("deployment_id", _ID, "The deployment that caused it (deployments.id)."),
        _c("deployment_ref", _TXT, "The deployment id or SHA the source named."),
        _c("link_reason", _TXT, "How the incident was linked to its deployment."),
        _c("url", _TXT, "The incident's web address."),
    )),
    CatalogTable("sprints", "Sprints (iterations) of projects.", _source(
        _c("project_id", _ID, "The project (projects.id)."),
        _c("name", _TXT, "The sprint's name.", False),
        _c("state", _TXT, "future, active or closed."),
        _c("started_at", _TS, "When the sprint started."),
        _c("ended_at", _TS, "When the sprint was planned to end."),
        _c("completed_at", _TS, "When the sprint was completed."),
        _c("goal", _TXT, "The sprint's goal."),
    )),
    CatalogTable("work_items", "Issues, stories, bugs and tasks.", _source(
        _c("source_updated_at", _TS, "When the source last changed the item."),
        _c("project_id", _ID, "The project (projects.id)."),
        _c("key", _TXT, "The item's key (PULSE-12)."),
        _c("title", _TXT, "The item's title."),
        _c("type", _TXT, "story, bug, task, epic...", False),
        _c("status", _TXT, "The current status.", False),
        _c("status_category", _TXT, "todo, in_progress or done."),
        _c("points", "double precision", "Story points."),
        _c("sprint_id", _ID, "The sprint (sprints.id)."),
        _c("assignee_identity_id", _ID, "The assignee's identity (person_identities.id)."),
        _c("labels", "text[]", "The item's labels.", False),
        _c("created_at_source", _TS, "When the item was created."),
        _c("resolved_at", _TS, "When the item was resolved."),
    )),
    CatalogTable("work_item_status_changes", "Status transitions of work items.", _source(
        _c("work_item_id", _ID, "The item (work_items.id).", False),
        _c("changed_at", _TS, "When the status changed.", False),
        _c("from_status", _TXT, "The previous status."),
        _c("to_status", _TXT, "The new status.", False),
    )),
)

#: The static analytics catalog (used until the database is reflected, and by benches).
ANALYTICS_CATALOG = Catalog.of(ANALYTICS_TABLES)


async def reflect_catalog(session: AsyncSession, catalog: Catalog = ANALYTICS_CATALOG) -> Catalog:
    """``catalog`` restricted to the tables and columns the database has, with its types.

    A table without a ``tenant_id`` column is dropped: the tenant filter could not apply.
    """
    rows = (
        await session.execute(
            text(
                "SELECT table_name, column_name, format_type(a.atttypid, a.atttypmod), "
                "NOT a.attnotnull FROM information_schema.columns c "
                "JOIN pg_attribute a ON a.attrelid = ('public.' || quote_ident(c.table_name))"
                "::regclass AND a.attname = c.column_name "
                "WHERE c.table_schema = 'public' AND c.table_name = ANY(:names)"
            ),
            {"names": [table.name for table in catalog.tables.values()]},
        )
    ).all()
    live: dict[str, dict[str, tuple[str, bool]]] = {}
    for table_name, column_name, type_name, nullable in rows:
        live.setdefault(table_name, {})[column_name] = (_simple_type(type_name), bool(nullable))
    tables = []
    for table in catalog.tables.values():
        columns = live.get(table.name, {})
        if "tenant_id" not in columns:
            continue
        kept = tuple(
            CatalogColumn(c.name, columns[c.name][0], c.description, columns[c.name][1])
            for c in table.columns
            if c.name in columns
        )
        tables.append(CatalogTable(table.name, table.description, kept))
    return Catalog.of(tables)


def _simple_type(type_name: str) -> str:
    """A database type without its length (``character varying(300)`` is ``text``)."""
    base = re.sub(r"\(.*?\)", "", type_name).strip()
    if base.startswith("character varying"):
        return "text" + ("[]" if base.endswith("[]") else "")
    return base


def catalog_from_document(document: Mapping[str, Any]) -> Catalog:
    """A catalog from a caller's ``{"tables": [{"name", "columns": [{"name", "type"}]}]}``."""
    tables = []
    for table in document.get("tables", []):
        columns = tuple(
            CatalogColumn(str(c["name"]), str(c.get("type") or "text"),
                          str(c.get("description") or ""))
            for c in table.get("columns", [])
        )
        tables.append(CatalogTable(str(table["name"]), str(table.get("description") or ""),
                                   columns, tenant_scoped=False))
    return Catalog.of(tables)
