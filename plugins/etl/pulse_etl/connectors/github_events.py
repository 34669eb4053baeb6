"""The shapes of the GitHub webhook events the receiver handles, as pydantic models.

A signed delivery is checked against its event's model before anything is mapped or
stored, so a payload of the right event but the wrong shape (``"pull_request": "str"``,
``"deployment": null``) is a 422 naming the field, not a server error. The models type
only what :mod:`pulse_etl.connectors.github_mapping` reads; GitHub's other fields are
allowed and ignored, so every documented variant of an event (organisation, installation,
enterprise) is accepted.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

GithubId = int | str


class GithubObject(BaseModel):
    """A GitHub object: the typed fields below, anything else allowed."""

    model_config = ConfigDict(extra="allow")


class Account(GithubObject):
    """A user or bot account."""

    id: GithubId | None = None
    login: str | None = None
    name: str | None = None
    email: str | None = None


class Repository(GithubObject):
    """The repository an event is about."""

    id: GithubId | None = None
    name: str
    full_name: str | None = None
    html_url: str | None = None
    default_branch: str | None = None
    master_branch: str | None = None


class BranchRef(GithubObject):
    """A pull request's head or base."""

    ref: str | None = None
    sha: str | None = None


class PullRequest(GithubObject):
    """A pull request."""

    id: GithubId
    number: int
    title: str | None = None
    state: str | None = None
    user: Account | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    merged_at: datetime | None = None
    closed_at: datetime | None = None
    head: BranchRef | None = None
    base: BranchRef | None = None
    html_url: str | None = None
    merge_commit_sha: str | None = None
    additions: int | None = None
    deletions: int | None = None
    changed_files: int | None = None


class Review(GithubObject):
    """A pull request review."""

    id: GithubId
    user: Account | None = None
    state: str | None = None
    submitted_at: datetime | None = None


class ReviewComment(GithubObject):
    """A comment on a line of a pull request's diff."""

    id: GithubId
    user: Account | None = None
    pull_request_review_id: GithubId | None = None
    created_at: datetime | None = None
    path: str | None = None
    body: str | None = None


class Deployment(GithubObject):
    """A deployment."""

    id: GithubId
    environment: str | None = None
    task: str | None = None
    sha: str | None = None
    ref: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class DeploymentStatus(GithubObject):
    """A deployment's status."""

    state: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Release(GithubObject):
    """A release."""

    id: GithubId
    draft: bool | None = None
    tag_name: str | None = None
    name: str | None = None
    created_at: datetime | None = None
    published_at: datetime | None = None


class Label(GithubObject):
    """An issue label."""

    name: str | None = None


class Issue(GithubObject):
    """An issue (or the issue side of a pull request)."""

    id: GithubId
    number: int
    title: str | None = None
    state: str | None = None
    body: str | None = None
    html_url: str | None = None
    assignee: Account | None = None
    labels: list[Label] | None = None
    pull_request: dict[str, object] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    closed_at: datetime | None = None


class CommitAuthor(GithubObject):
    """The git author of a pushed commit."""

    name: str | None = None
    email: str | None = None
    username: str | None = None


class PushedCommit(GithubObject):
    """A commit of a push."""

    id: str
    message: str | None = None
    timestamp: datetime | None = None
    author: CommitAuthor | None = None


class RepositoryEvent(GithubObject):
    """What every handled event carries."""

    action: str | None = None
    repository: Repository


class PushEvent(RepositoryEvent):
    """``push``."""

    ref: str | None = None
    commits: list[PushedCommit] | None = None


class PullRequestEvent(RepositoryEvent):
    """``pull_request``."""

    pull_request: PullRequest


class PullRequestReviewEvent(PullRequestEvent):
    """``pull_request_review``."""

    review: Review


class PullRequestReviewCommentEvent(PullRequestEvent):
    """``pull_request_review_comment``."""

    comment: ReviewComment


class DeploymentEvent(RepositoryEvent):
    """``deployment``."""

    deployment: Deployment


class DeploymentStatusEvent(DeploymentEvent):
    """``deployment_status``."""

    deployment_status: DeploymentStatus


class ReleaseEvent(RepositoryEvent):
    """``release``."""

    release: Release


class IssuesEvent(RepositoryEvent):
    """``issues``."""

    issue: Issue


#: The model of each handled event, by ``X-GitHub-Event``.
EVENT_MODELS: dict[str, type[RepositoryEvent]] = {
    "push": PushEvent,
    "pull_request": PullRequestEvent,
    "pull_request_review": PullRequestReviewEvent,
    "pull_request_review_comment": PullRequestReviewCommentEvent,
    "deployment": DeploymentEvent,
    "deployment_status": DeploymentStatusEvent,
    "release": ReleaseEvent,
    "issues": IssuesEvent,
}
