"""pulse-github's derived tables: per pull request, the times its flow analytics read; per
non-merge commit and file, what the file analytics read.

They are recomputed by :mod:`pulse_github.refresh` after ETL loads (and in full after a
configuration change) from pulse-etl's tables and the tenant's configuration, so that a
window of pull-request flow is one range scan of one index instead of per-request lookups
of commits, reviews, review comments and shipped deployments:

* ``github_pull_requests``: one row per pull request of the tenant with its times
  (opened, merged, closed), sizes, head branch, its author's merged person and whether the
  author is a bot (the tenant's ``bot_patterns``), and the derived phase ends: ``started_at``
  (its first own commit, else its opening), ``first_review_at`` (the first review or review
  comment by someone else who is not a bot), ``reviewed_before_merge``, ``review_rounds``
  and ``deployed_at`` (the first successful deployment to one of the tenant's
  ``production_environments`` that shipped its merge commit);
* ``github_file_changes``: one row per file of a non-merge commit with an author identity
  (pulse-etl's ``commit_files`` joined to ``commits``): its author time, repository, the
  path it left the file at (a rename's new path) and that path's directory as ids of
  ``github_paths``, the author's merged person, the commit, the commit's number of files
  (``changeset``) and the lines added and deleted; in author-time order, so that a window
  of hotspots, change coupling, knowledge silos and main developers is one range of one
  index over narrow rows instead of a join of the window's commits to their files;
* ``github_file_pairs``: one row per pair of files of such a commit that changes at most
  :data:`PAIRED_MAX_CHANGESET` files (code-maat's default for change coupling): the two
  path ids (the smaller first) with the commit, its author time, repository, person and
  changeset, so that a window's change coupling counts the pairs of one index range
  instead of joining the window's file rows to each other per request;
* ``github_paths``: the tenant's dictionary of file and directory paths per repository
  (ids that the file analytics group by; the texts are looked up for the rows answered);
* (when a tenant's facts were last recomputed is the engine's ``facts_refresh_state``,
  facts ``github``).

All are tenant tables: the engine's migration runner forces row-level security on them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from pulse_engine import timestamp_column, uuid_column

metadata = MetaData()

github_pull_requests = Table(
    "github_pull_requests",
    metadata,
    uuid_column("tenant_id", nullable=False),
    uuid_column("pull_request_id", nullable=False),
    uuid_column("repository_id", nullable=False),
    Column("number", Integer, nullable=False),
    Column("state", String(20), nullable=False),
    Column("head_ref", String(255)),
    timestamp_column("opened_at"),
    timestamp_column("merged_at"),
    timestamp_column("closed_at"),
    Column("additions", Integer),
    Column("deletions", Integer),
    Column("changed_files", Integer),
    uuid_column("author_person_id"),
    Column(
        "author_is_bot",
        Boolean,
        nullable=False,
        server_default=text("false"),
        comment="the author's login or name matches the tenant's bot_patterns",
    ),
    timestamp_column(
        "started_at", comment="earliest author time of its own commits and head commit, else opened"
    ),
    timestamp_column(
        "first_review_at", comment="first review or review comment by someone else who is not a bot"
    ),
    Column("reviewed_before_merge", Boolean, nullable=False, server_default=text("false")),
    Column(
        "review_rounds",
        SmallInteger,
        nullable=False,
        server_default=text("0"),
        comment="1 + reviews requesting changes when reviewed by someone else, else 0",
    ),
    timestamp_column(
        "deployed_at",
        comment="first successful production deployment shipping the merge "
        "commit (the tenant's production_environments at the refresh)",
    ),
    PrimaryKeyConstraint("tenant_id", "pull_request_id"),
    Index("ix_github_pull_requests_opened", "tenant_id", "repository_id", "opened_at"),
    Index("ix_github_pull_requests_merged", "tenant_id", "repository_id", "merged_at"),
    Index("ix_github_pull_requests_closed", "tenant_id", "repository_id", "closed_at"),
    Index("ix_github_pull_requests_deployed", "tenant_id", "deployed_at"),
)

github_paths = Table(
    "github_paths",
    metadata,
    uuid_column("tenant_id", nullable=False),
    Column("id", BigInteger, Identity(), nullable=False),
    uuid_column("repository_id", nullable=False),
    Column("is_directory", Boolean, nullable=False),
    Column("path", Text, nullable=False, comment="a directory without its last slash; '' the root"),
    PrimaryKeyConstraint("tenant_id", "id"),
    UniqueConstraint("tenant_id", "repository_id", "is_directory", "path",
                     name="uq_github_paths_path"),
)

github_file_changes = Table(
    "github_file_changes",
    metadata,
    uuid_column("tenant_id", nullable=False),
    timestamp_column("authored_at", nullable=False),
    uuid_column("repository_id", nullable=False),
    Column("path_id", BigInteger, nullable=False,
           comment="github_paths: the path after the commit"),
    Column("directory_id", BigInteger, nullable=False, comment="github_paths: its directory"),
    uuid_column("person_id", nullable=False),
    uuid_column("commit_id", nullable=False),
    Column("changeset", Integer, nullable=False, comment="the commit's files (commit_files rows)"),
    Column("additions", Integer, comment="null for a binary file"),
    Column("deletions", Integer, comment="null for a binary file"),
    Index("ix_github_file_changes_authored", "tenant_id", "authored_at"),
)

#: The most files a commit may change for its pairs of files to be kept in
#: ``github_file_pairs`` (code-maat's default largest changeset for change coupling; the
#: coupling of a larger limit pairs the larger commits' files per request).
PAIRED_MAX_CHANGESET = 30

github_file_pairs = Table(
    "github_file_pairs",
    metadata,
    uuid_column("tenant_id", nullable=False),
    timestamp_column("authored_at", nullable=False),
    uuid_column("repository_id", nullable=False),
    uuid_column("person_id", nullable=False),
    uuid_column("commit_id", nullable=False),
    Column("changeset", Integer, nullable=False, comment="the commit's files (2 or more)"),
    Column("first_path_id", BigInteger, nullable=False, comment="github_paths: the smaller id"),
    Column("second_path_id", BigInteger, nullable=False, comment="github_paths: the larger id"),
    Index("ix_github_file_pairs_authored", "tenant_id", "authored_at"),
)

TABLES = (github_pull_requests, github_paths, github_file_changes, github_file_pairs)
