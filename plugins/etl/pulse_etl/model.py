"""The unified engineering data model: the tables every connector fills and metrics read.

Import the tables from here (``from pulse_etl.model import commits, deployments``); they
live on this module's own :data:`metadata` and are copied onto the engine's metadata by the
plugin's ``register_tables`` hook, so queries built from them work in any plugin.

Conventions (see the package README for the full reference):

* ``tenant_id`` is the first column of every primary key and every index; row-level
  security is forced on every table that has it.
* Entities from sources have a stable natural key, unique per tenant, and a deterministic
  ``id`` derived from it with :func:`stable_id`, so a connector can reference a row it
  has not written yet and re-running a job updates rows instead of duplicating them.
* Times are ``timestamptz`` (stored in UTC); the author's UTC offset of a commit is kept
  separately in minutes, for "hour of the week in the author's time zone" analytics.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from pulse_engine import BULK_COPY_FLAG

#: Namespace of the deterministic ids (uuid5) of source entities.
ID_NAMESPACE = uuid.UUID("6f1c5a52-3f0e-4d8e-9d0b-4b1b2f7c9a11")

#: Cache tags invalidated for a tenant whenever ETL data lands. Metric plugins tag their
#: cache policies with these so that their cached answers are dropped after each load.
DATA_CACHE_TAGS: tuple[str, ...] = ("etl.data",)

#: Results a deployment may have.
DEPLOYMENT_RESULTS = ("success", "failure", "cancelled")

#: Statuses of an ETL job.
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
#: The statuses a job ends in.
FINAL_JOB_STATUSES = frozenset({"succeeded", "failed", "cancelled"})

metadata = MetaData()


def stable_id(kind: str, *parts: object) -> str:
    """The deterministic id of an entity: uuid5 of its kind and natural-key parts.

    :param kind: the entity kind (table name), so equal keys of two kinds never collide.
    :param parts: the natural-key values, e.g. ``(source, external_id)``.
    """
    name = "\x1f".join([kind, *(str(part) for part in parts)])
    return str(uuid.uuid5(ID_NAMESPACE, name))


def person_id_for(email: str | None, source: str, external_id: str) -> str:
    """The person an identity belongs to by default: one person per email address.

    Identities with the same (case-insensitive) email address, from any source, map to the
    same person; an identity without an email is a person of its own until an explicit
    mapping (``person_id`` set with ``mapped_explicitly``) moves it.
    """
    if email:
        return stable_id("people", "email", email.strip().lower())
    return stable_id("people", source, external_id)


def _tenant() -> Column[Any]:
    return Column("tenant_id", UUID(as_uuid=False), nullable=False)


def _id() -> Column[Any]:
    return Column("id", UUID(as_uuid=False), nullable=False)


def _ref(name: str, nullable: bool = True) -> Column[Any]:
    return Column(name, UUID(as_uuid=False), nullable=nullable)


def _tz(name: str, nullable: bool = True) -> Column[Any]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


def _stamps() -> list[Column[Any]]:
    return [
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ]


def _source_entity(name: str, *columns: Any) -> Table:
    """A table of source entities: tenant, id, (source, external_id) unique, timestamps."""
    return Table(
        name,
        metadata,
        _tenant(),
        _id(),
        Column("source", String(40), nullable=False),
        Column("external_id", String(500), nullable=False),
        *columns,
        *_stamps(),
        PrimaryKeyConstraint("tenant_id", "id"),
        UniqueConstraint("tenant_id", "source", "external_id", name=f"uq_{name}_natural_key"),
    )


projects = _source_entity(
    "projects",
    Column("key", String(100)),
    Column("name", String(300), nullable=False),
)

repositories = _source_entity(
    "repositories",
    _ref("project_id"),
    Column("name", String(300), nullable=False),
    Column("url", Text),
    Column("default_branch", String(255)),
    Column("service", String(300), nullable=False),
    Index("ix_repositories_project", "tenant_id", "project_id"),
)

teams = _source_entity(
    "teams",
    _ref("project_id"),
    Column("name", String(300), nullable=False),
)

people = _source_entity(
    "people",
    Column("display_name", String(300)),
    Column("email", String(320)),
)

person_identities = _source_entity(
    "person_identities",
    _ref("person_id", nullable=False),
    Column("email", String(320)),
    Column("name", String(300)),
    Column("username", String(300)),
    Column("mapped_explicitly", Boolean, nullable=False, server_default=text("false")),
    Index("ix_person_identities_person", "tenant_id", "person_id"),
    Index("ix_person_identities_email", "tenant_id", "email"),
)

team_memberships = Table(
    "team_memberships",
    metadata,
    _tenant(),
    _ref("team_id", nullable=False),
    _ref("person_id", nullable=False),
    Column("role", String(100)),
    *_stamps(),
    PrimaryKeyConstraint("tenant_id", "team_id", "person_id"),
    Index("ix_team_memberships_person", "tenant_id", "person_id"),
)

def is_revert(message: str = "message") -> str:
    """SQL: whether a commit message is a revert's (the partial index's predicate)."""
    return f"{message} LIKE '%This reverts commit %'"


def reverted_sha(message: str = "message") -> str:
    """SQL: the SHA a revert's commit message names (the partial index's expression)."""
    return f"substring({message} from 'This reverts commit ([0-9a-f]{{40}})')"


commits = Table(
    "commits",
    metadata,
    _tenant(),
    _id(),
    _ref("repository_id", nullable=False),
    Column("sha", String(64), nullable=False),
    _ref("author_identity_id"),
    _ref("committer_identity_id"),
    Column("author_name", String(300)),
    Column("author_email", String(320)),
    _tz("authored_at"),
    Column("author_tz_offset", SmallInteger, comment="author's UTC offset in minutes"),
    _tz("committed_at"),
    Column("committer_tz_offset", SmallInteger),
    Column("message", Text),
    Column("additions", Integer),
    Column("deletions", Integer),
    Column("files_changed", Integer),
    Column("is_merge", Boolean, nullable=False, server_default=text("false")),
    Column("pull_request_number", Integer),
    Column("source", String(40), nullable=False),
    *_stamps(),
    PrimaryKeyConstraint("tenant_id", "id"),
    UniqueConstraint("tenant_id", "repository_id", "sha", name="uq_commits_natural_key"),
    # a window's commits with what the activity analytics read, from the index alone
    # (etl_0007; as the four below)
    Index("ix_commits_repository_authored", "tenant_id", "repository_id", "authored_at",
          postgresql_include=["author_identity_id", "is_merge", "author_tz_offset",
                              "additions", "deletions", "files_changed"]),
    Index("ix_commits_author", "tenant_id", "author_identity_id", "authored_at",
          postgresql_include=["repository_id"]),
    # a pull request's own commits (squash and merge subjects, demo and webhook commits)
    Index("ix_commits_pull_request", "tenant_id", "repository_id", "pull_request_number",
          postgresql_where=text("pull_request_number IS NOT NULL")),
    # the commit a revert names (``git revert`` writes "This reverts commit <sha>."), so a
    # reverted commit arriving after its revert finds it (see pulse_etl.derive)
    Index("ix_commits_reverted", "tenant_id", "repository_id", text(reverted_sha()),
          postgresql_where=text(is_revert())),
)

commit_parents = Table(
    "commit_parents",
    metadata,
    _tenant(),
    _ref("repository_id", nullable=False),
    Column("sha", String(64), nullable=False),
    Column("position", SmallInteger, nullable=False),
    Column("parent_sha", String(64), nullable=False),
    PrimaryKeyConstraint("tenant_id", "repository_id", "sha", "position"),
    Index("ix_commit_parents_parent", "tenant_id", "repository_id", "parent_sha"),
)

#: The longest path ``commit_files`` keeps (a btree key holds about 2,700 bytes); a file
#: with a longer path is left out of ``commit_files`` (still counted in ``commits``).
MAX_PATH_LENGTH = 1024

commit_files = Table(
    "commit_files",
    metadata,
    _tenant(),
    _ref("repository_id", nullable=False),
    Column("sha", String(64), nullable=False),
    _ref("commit_id", nullable=False),
    Column("path", Text, nullable=False, comment="the path after the commit (a rename's new path)"),
    Column("previous_path", Text, comment="the path before a rename; null otherwise"),
    Column("additions", Integer, comment="null for a binary file"),
    Column("deletions", Integer, comment="null for a binary file"),
    Column("is_binary", Boolean, nullable=False, server_default=text("false")),
    _ref("pull_request_id", nullable=True),
    PrimaryKeyConstraint("tenant_id", "repository_id", "sha", "path"),
    Index("ix_commit_files_path", "tenant_id", "repository_id", "path"),
)

pull_requests = _source_entity(
    "pull_requests",
    _tz("source_updated_at"),
    _ref("repository_id", nullable=False),
    Column("number", Integer, nullable=False),
    Column("title", Text),
    Column("state", String(20), nullable=False),
    _ref("author_identity_id"),
    _tz("created_at_source"),
    _tz("merged_at"),
    _tz("closed_at"),
    Column("head_ref", String(255)),
    Column("base_ref", String(255)),
    Column("head_sha", String(64)),
    Column("merge_commit_sha", String(64)),
    Column("additions", Integer),
    Column("deletions", Integer),
    Column("changed_files", Integer),
    Column("url", Text),
    Index("ix_pull_requests_repository_number", "tenant_id", "repository_id", "number"),
    Index("ix_pull_requests_merge_commit", "tenant_id", "repository_id", "merge_commit_sha"),
    Index("ix_pull_requests_repository_created", "tenant_id", "repository_id",
          "created_at_source", postgresql_include=["author_identity_id"]),
    Index("ix_pull_requests_repository_merged", "tenant_id", "repository_id", "merged_at",
          postgresql_include=["author_identity_id"]),
)

reviews = _source_entity(
    "reviews",
    _ref("pull_request_id", nullable=False),
    _ref("reviewer_identity_id"),
    Column("state", String(40), nullable=False),
    _tz("submitted_at"),
    Index("ix_reviews_pull_request", "tenant_id", "pull_request_id"),
    Index("ix_reviews_submitted", "tenant_id", "submitted_at",
          postgresql_include=["pull_request_id", "reviewer_identity_id", "state"]),
)

review_comments = _source_entity(
    "review_comments",
    _ref("pull_request_id", nullable=False),
    _ref("review_id"),
    _ref("author_identity_id"),
    _tz("created_at_source"),
    Column("path", Text),
    Column("body", Text),
    Index("ix_review_comments_pull_request", "tenant_id", "pull_request_id"),
)

deployments = _source_entity(
    "deployments",
    _tz("source_updated_at"),
    _ref("repository_id"),
    Column("service", String(300), nullable=False),
    Column("environment", String(200), nullable=False),
    Column("result", String(20)),
    _tz("started_at"),
    _tz("finished_at"),
    Column("sha", String(64)),
    Column("ref", String(255)),
    Column("name", String(300)),
    Index("ix_deployments_service_env", "tenant_id", "service", "environment", "finished_at"),
    Index("ix_deployments_repository_sha", "tenant_id", "repository_id", "sha"),
)

deployment_commits = Table(
    "deployment_commits",
    metadata,
    _tenant(),
    _ref("deployment_id", nullable=False),
    _ref("repository_id", nullable=False),
    Column("environment", String(200), nullable=False),
    Column("sha", String(64), nullable=False),
    PrimaryKeyConstraint("tenant_id", "deployment_id", "sha"),
    Index(
        "ix_deployment_commits_shipped", "tenant_id", "repository_id", "environment", "sha"
    ),
)

incidents = _source_entity(
    "incidents",
    _tz("source_updated_at"),
    Column("title", Text),
    Column("service", String(300)),
    _ref("repository_id"),
    Column("severity", String(40)),
    _tz("created_at_source", nullable=False),
    _tz("resolved_at"),
    _ref("deployment_id"),
    Column("deployment_ref", String(200), comment="explicit deployment id or SHA from source"),
    Column("link_reason", String(40)),
    Column("url", Text),
    Index("ix_incidents_created", "tenant_id", "created_at_source"),
    Index("ix_incidents_deployment", "tenant_id", "deployment_id"),
)

sprints = _source_entity(
    "sprints",
    _ref("project_id"),
    Column("name", String(300), nullable=False),
    Column("state", String(40)),
    _tz("started_at"),
    _tz("ended_at"),
    _tz("completed_at"),
    Column("goal", Text),
)

work_items = _source_entity(
    "work_items",
    _tz("source_updated_at"),
    _ref("project_id"),
    Column("key", String(100)),
    Column("title", Text),
    Column("type", String(100), nullable=False),
    Column("status", String(100), nullable=False),
    Column("status_category", String(40)),
    Column("points", Float),
    _ref("sprint_id"),
    _ref("assignee_identity_id"),
    Column("labels", ARRAY(String(200)), nullable=False, server_default="{}"),
    _tz("created_at_source"),
    _tz("resolved_at"),
    Index("ix_work_items_sprint", "tenant_id", "sprint_id"),
    Index("ix_work_items_project", "tenant_id", "project_id", "created_at_source"),
    # items finished in a window, and the newest resolution (etl_0005)
    Index("ix_work_items_resolved", "tenant_id", "resolved_at",
          postgresql_where=text("resolved_at IS NOT NULL")),
)

work_item_status_changes = _source_entity(
    "work_item_status_changes",
    _ref("work_item_id", nullable=False),
    _tz("changed_at", nullable=False),
    Column("from_status", String(100)),
    Column("to_status", String(100), nullable=False),
    # an item's changes in order, with their status read from the index alone (etl_0006)
    Index("ix_work_item_status_changes_item", "tenant_id", "work_item_id", "changed_at",
          postgresql_include=["to_status"]),
)

#: The entities the loader writes (in load order: referenced entities first). Each may be
#: bulk-copied by the engine's bulk-writer role (``pulse_engine.bulk``).
ENTITY_TABLES: tuple[Table, ...] = (
    projects, repositories, teams, people, person_identities, team_memberships, commits,
    commit_parents, commit_files, pull_requests, reviews, review_comments, deployments,
    deployment_commits, incidents, sprints, work_items, work_item_status_changes,
)
for _table in ENTITY_TABLES:
    _table.info[BULK_COPY_FLAG] = True

integrations = Table(
    "integrations",
    metadata,
    _tenant(),
    _id(),
    Column("connector", String(100), nullable=False),
    Column("name", String(200), nullable=False),
    Column("config", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("secrets", Text, comment="Fernet token of a JSON object; never returned"),
    Column("created_by", String(64)),
    *_stamps(),
    PrimaryKeyConstraint("tenant_id", "id"),
    UniqueConstraint("tenant_id", "name", name="uq_integrations_name"),
)

#: A reference table (no ``tenant_id``, so no row-level security): maps the random id in
#: a webhook URL to its tenant, which a public webhook request has no token to tell.
webhook_routes = Table(
    "etl_webhook_routes",
    metadata,
    Column("integration_id", UUID(as_uuid=False), primary_key=True),
    Column("owner_tenant_id", UUID(as_uuid=False), nullable=False),
    Column("connector", String(100), nullable=False),
)

sync_cursors = Table(
    "sync_cursors",
    metadata,
    _tenant(),
    Column("scope", String(200), nullable=False, comment="integration id or config digest"),
    Column("stream", String(100), nullable=False),
    Column("connector", String(100), nullable=False),
    Column("cursor", JSONB, nullable=False),
    *_stamps(),
    PrimaryKeyConstraint("tenant_id", "scope", "stream"),
)

etl_jobs = Table(
    "etl_jobs",
    metadata,
    _tenant(),
    _id(),
    Column("connector", String(100), nullable=False),
    _ref("integration_id"),
    Column("config", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("secrets", Text, comment="Fernet token of an ad-hoc job's secret settings"),
    Column("status", String(20), nullable=False),
    Column("progress", Float, nullable=False, server_default=text("0")),
    Column("stats", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("cancel_requested", Boolean, nullable=False, server_default=text("false")),
    Column("lease_owner", String(64)),
    _tz("heartbeat_at"),
    _tz("started_at"),
    _tz("finished_at"),
    Column("created_by", String(64)),
    *_stamps(),
    PrimaryKeyConstraint("tenant_id", "id"),
    Index("ix_etl_jobs_created", "tenant_id", "created_at", "id"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    _tenant(),
    Column("delivery_id", String(100), nullable=False),
    _ref("integration_id", nullable=False),
    Column("event", String(100), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("tenant_id", "integration_id", "delivery_id"),
)
