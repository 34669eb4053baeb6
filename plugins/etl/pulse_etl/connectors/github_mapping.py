"""GitHub objects (REST responses and webhook payloads share their shapes) as model rows.

Every mapper returns a batch fragment (entity name to rows) and leaves out the columns the
object does not carry (a review payload's pull request has no line counts, for example),
so a partial object never erases what a fuller one stored. ``merge`` and ``Fragment`` are
re-exported from :mod:`pulse_etl.connectors.common`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pulse_etl.connectors.common import (
    Fragment,
    Row,
    account_rows,
    check_patterns,
    identity_rows,
    matches_any,
    merge,
    parse_time,
    repository_row,
    sha_reference,
)
from pulse_etl.connectors.git import pr_number
from pulse_etl.model import stable_id

__all__ = ["Fragment", "GithubOptions", "merge"]

SOURCE = "github"
DEPLOYMENT_RESULTS = {"success": "success", "failure": "failure", "error": "failure"}
PENDING_STATES = frozenset({"pending", "queued", "in_progress"})



class GithubOptions(BaseModel):
    """How GitHub objects are interpreted (part of the github connector's config)."""

    model_config = ConfigDict(extra="forbid")

    incident_labels: list[str] = Field(default_factory=lambda: ["incident"])
    bug_labels: list[str] = Field(default_factory=lambda: ["bug"])
    releases_as_deployments: bool = False
    release_environment: str = "production"
    deployment_name_patterns: list[str] = Field(
        default_factory=list, max_length=50,
        description="Regular expressions of deployment tasks that count as deployments "
        "(re.search, case-insensitive); empty: every deployment.",
    )

    _patterns = field_validator("deployment_name_patterns")(check_patterns)


def repository(repo: Mapping[str, Any]) -> tuple[str, Fragment]:
    """A repository object: its id and rows."""
    full_name = str(repo.get("full_name") or repo.get("name"))
    row = repository_row(
        SOURCE, full_name, name=full_name, url=repo.get("html_url"),
        default_branch=repo.get("default_branch") or repo.get("master_branch"),
    )
    return row["id"], {"repositories": [row]}


def user(account: Mapping[str, Any] | None) -> tuple[str | None, Fragment]:
    """A user object (``login``, ``id``): its identity id and rows."""
    if not account or account.get("id") is None:
        return None, {}
    return account_rows(SOURCE, str(account["id"]), email=account.get("email"),
                        name=account.get("name"), username=account.get("login"))


def _put(row: Row, obj: Mapping[str, Any], column: str, key: str | None = None) -> None:
    key = key or column
    if key in obj:
        row[column] = obj[key]


def pull_request_id(pr: Mapping[str, Any]) -> str:
    """The model id of a pull request object."""
    return stable_id("pull_requests", SOURCE, str(pr["id"]))


def pull_request(pr: Mapping[str, Any], repository_id: str) -> Fragment:
    """A pull request object."""
    author_id, people = user(pr.get("user"))
    state = "merged" if pr.get("merged_at") else str(pr.get("state", "open"))
    row: Row = {
        "id": pull_request_id(pr), "source": SOURCE, "external_id": str(pr["id"]),
        "repository_id": repository_id, "number": int(pr["number"]), "title": pr.get("title"),
        "state": state, "author_identity_id": author_id,
        "created_at_source": parse_time(pr.get("created_at")),
        "merged_at": parse_time(pr.get("merged_at")),
        "closed_at": parse_time(pr.get("closed_at")),
        "head_ref": (pr.get("head") or {}).get("ref"),
        "base_ref": (pr.get("base") or {}).get("ref"),
        "head_sha": (pr.get("head") or {}).get("sha"),
        "url": pr.get("html_url"), "source_updated_at": parse_time(pr.get("updated_at")),
    }
    if pr.get("merged_at") or "additions" in pr:
        row["merge_commit_sha"] = pr.get("merge_commit_sha")
    for column in ("additions", "deletions", "changed_files"):
        _put(row, pr, column)
    return merge(people, {"pull_requests": [row]})


#: The most files GitHub lists for one pull request (``GET .../pulls/{number}/files``):
#: a larger pull request's files are cut at this many, in GitHub's order.
PULL_REQUEST_FILES_CAP = 3000
#: Statuses of a listed file whose zero counts without a ``patch`` mean "no text diff"
#: (a binary file, or one whose diff GitHub left out) rather than "no lines changed".
_UNCOUNTED_STATUSES = frozenset({"added", "modified", "removed", "changed"})


def pull_request_files(items: Iterable[Mapping[str, Any]], pr: Mapping[str, Any],
                       repository_id: str) -> Fragment:
    """A merged pull request's listed files as ``commit_files`` of its merge commit.

    The rows are keyed by the merge commit's SHA (a squash merge's commit has exactly the
    pull request's diff; a merge commit's diff against its first parent is the same), and
    carry the pull request. A file GitHub lists with zero counts and no ``patch`` (binary,
    or a diff too large to show) leaves its counts out, so a count the git connector
    stored is kept and a new row says "unknown" (null). GitHub does not say which files
    are binary, so ``is_binary`` is left to the git connector as well.
    """
    sha = pr.get("merge_commit_sha")
    if not pr.get("merged_at") or not sha:
        return {}
    rows: list[Row] = []
    for item in items:
        path = item.get("filename")
        if not isinstance(item, Mapping) or not isinstance(path, str) or not path:
            continue
        row: Row = {
            "repository_id": repository_id, "sha": str(sha),
            "commit_id": stable_id("commits", repository_id, str(sha)), "path": path,
            "previous_path": item.get("previous_filename"),
            "pull_request_id": pull_request_id(pr),
        }
        additions, deletions = item.get("additions"), item.get("deletions")
        uncounted = (not additions and not deletions and "patch" not in item
                     and item.get("status") in _UNCOUNTED_STATUSES)
        if not uncounted and isinstance(additions, int) and isinstance(deletions, int):
            row["additions"] = additions
            row["deletions"] = deletions
        rows.append(row)
    return {"commit_files": rows}


def review(item: Mapping[str, Any], pr: Mapping[str, Any]) -> Fragment:
    """A pull request review object."""
    reviewer_id, people = user(item.get("user"))
    row: Row = {
        "id": stable_id("reviews", SOURCE, str(item["id"])), "source": SOURCE,
        "external_id": str(item["id"]), "pull_request_id": pull_request_id(pr),
        "reviewer_identity_id": reviewer_id, "state": str(item.get("state", "")).lower(),
        "submitted_at": parse_time(item.get("submitted_at")),
    }
    return merge(people, {"reviews": [row]})


def review_comment(item: Mapping[str, Any], pr: Mapping[str, Any]) -> Fragment:
    """A pull request review comment object (a comment on a line of the diff)."""
    author_id, people = user(item.get("user"))
    review_id = item.get("pull_request_review_id")
    row: Row = {
        "id": stable_id("review_comments", SOURCE, str(item["id"])), "source": SOURCE,
        "external_id": str(item["id"]), "pull_request_id": pull_request_id(pr),
        "review_id": stable_id("reviews", SOURCE, str(review_id)) if review_id else None,
        "author_identity_id": author_id,
        "created_at_source": parse_time(item.get("created_at")),
        "path": item.get("path"), "body": item.get("body"),
    }
    return merge(people, {"review_comments": [row]})


def deployment(item: Mapping[str, Any], repository_id: str, service: str,
               status: Mapping[str, Any] | None = None) -> Fragment:
    """A deployment object, with its latest status when known."""
    row: Row = {
        "id": stable_id("deployments", SOURCE, str(item["id"])), "source": SOURCE,
        "external_id": str(item["id"]), "repository_id": repository_id, "service": service,
        "environment": str(item.get("environment") or "production"),
        "started_at": parse_time(item.get("created_at")), "sha": item.get("sha"),
        "ref": item.get("ref"), "name": item.get("task") or "deploy",
        "source_updated_at": parse_time((status or item).get("updated_at")),
    }
    if status is not None:
        state = str(status.get("state", ""))
        if state in DEPLOYMENT_RESULTS:
            row["result"] = DEPLOYMENT_RESULTS[state]
            row["finished_at"] = parse_time(status.get("created_at"))
        elif state in PENDING_STATES:
            row["result"] = None
            row["finished_at"] = None
    return {"deployments": [row]}


def is_deployment(item: Mapping[str, Any], options: GithubOptions) -> bool:
    """Whether a deployment object counts, by its ``task`` and the name patterns."""
    return matches_any(options.deployment_name_patterns, str(item.get("task") or "deploy"))


def latest_status(statuses: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The newest status that tells the outcome (statuses come newest first).

    ``inactive`` only says a later deployment replaced this one, so the status before it
    holds the result.
    """
    return next((status for status in statuses
                 if isinstance(status, Mapping) and status.get("state") != "inactive"), None)


def release(item: Mapping[str, Any], repository_id: str, service: str,
            options: GithubOptions) -> Fragment:
    """A published release, as a deployment when the options say releases are deployments."""
    if not options.releases_as_deployments or item.get("draft"):
        return {}
    published = parse_time(item.get("published_at") or item.get("created_at"))
    external_id = f"release:{item['id']}"
    return {"deployments": [{
        "id": stable_id("deployments", SOURCE, external_id), "source": SOURCE,
        "external_id": external_id, "repository_id": repository_id, "service": service,
        "environment": options.release_environment, "result": "success",
        "started_at": published, "finished_at": published, "ref": item.get("tag_name"),
        "name": item.get("name") or item.get("tag_name"),
    }]}


def _labels(issue: Mapping[str, Any]) -> list[str]:
    return [str(label.get("name")) for label in issue.get("labels") or []
            if isinstance(label, Mapping) and label.get("name")]


def issue(item: Mapping[str, Any], repository_id: str, service: str,
          options: GithubOptions) -> Fragment:
    """An issue: a work item, and an incident when it carries an incident label."""
    if item.get("pull_request"):
        return {}
    labels = _labels(item)
    lowered = {label.lower() for label in labels}
    assignee_id, people = user(item.get("assignee"))
    full_name = service
    closed = parse_time(item.get("closed_at"))
    is_bug = bool(lowered & {label.lower() for label in options.bug_labels})
    work_item: Row = {
        "id": stable_id("work_items", SOURCE, str(item["id"])), "source": SOURCE,
        "external_id": str(item["id"]), "key": f"{full_name}#{item['number']}",
        "title": item.get("title"), "type": "bug" if is_bug else "issue",
        "status": str(item.get("state", "open")),
        "status_category": "done" if item.get("state") == "closed" else "todo",
        "assignee_identity_id": assignee_id, "labels": labels,
        "created_at_source": parse_time(item.get("created_at")), "resolved_at": closed,
        "source_updated_at": parse_time(item.get("updated_at")),
    }
    fragment = merge(people, {"work_items": [work_item]})
    if lowered & {label.lower() for label in options.incident_labels}:
        fragment = merge(fragment, {"incidents": [{
            "id": stable_id("incidents", SOURCE, str(item["id"])), "source": SOURCE,
            "external_id": str(item["id"]), "title": item.get("title"), "service": service,
            "repository_id": repository_id,
            "created_at_source": parse_time(item.get("created_at")), "resolved_at": closed,
            "deployment_ref": sha_reference([item.get("body")]),
            "url": item.get("html_url"), "source_updated_at": parse_time(item.get("updated_at")),
        }]})
    return fragment


def commit(item: Mapping[str, Any], repository_id: str) -> Fragment:
    """A commit object of the REST commits list: the commit, its parents and its author.

    The git identity (by email) is the commit's author; the GitHub account, when GitHub
    matched one, is loaded with the same email so both resolve to one person. The list
    carries no line counts or time-zone offsets, so those columns are left out.
    """
    sha = str(item["sha"])
    details = item.get("commit") or {}
    author = details.get("author") or {}
    committer = details.get("committer") or {}
    fragments: list[Fragment] = []

    def git_identity(person: Mapping[str, Any]) -> str:
        email = str(person.get("email") or "")
        identity_id, identity, people = identity_rows(
            "git", email.lower() or f"name:{person.get('name')}", email=email or None,
            name=person.get("name"),
        )
        fragments.append({"person_identities": [identity], "people": [people]})
        return identity_id

    account = item.get("author")
    if isinstance(account, Mapping) and author.get("email"):
        fragments.append(user({**account, "email": author.get("email")})[1])
    message = str(details.get("message") or "")
    parents = [p.get("sha") for p in item.get("parents") or [] if isinstance(p, Mapping)]
    row: Row = {
        "id": stable_id("commits", repository_id, sha), "repository_id": repository_id,
        "sha": sha, "author_identity_id": git_identity(author),
        "committer_identity_id": git_identity(committer), "author_name": author.get("name"),
        "author_email": str(author.get("email") or "").lower() or None,
        "authored_at": parse_time(author.get("date")),
        "committed_at": parse_time(committer.get("date")), "message": message,
        "is_merge": len(parents) > 1, "pull_request_number": pr_number(message),
        "source": SOURCE,
    }
    parent_rows = [{"repository_id": repository_id, "sha": sha, "position": position,
                    "parent_sha": parent} for position, parent in enumerate(parents) if parent]
    return merge(*fragments, {"commits": [row], "commit_parents": parent_rows})


def push_commits(payload: Mapping[str, Any], repository_id: str) -> Fragment:
    """The commits of a branch push (no line counts or parents: the git connector adds them)."""
    rows: list[Row] = []
    fragments: list[Fragment] = []
    for commit in _distinct(payload.get("commits") or []):
        author = commit.get("author") or {}
        email = str(author.get("email") or "")
        external = email.lower() or f"name:{author.get('name')}"
        identity_id, identity, person = identity_rows(
            "git", external, email=email or None, name=author.get("name"),
            username=author.get("username"),
        )
        fragments.append({"person_identities": [identity], "people": [person]})
        authored = parse_time(commit.get("timestamp"))
        offset = authored.utcoffset() if authored else None
        message = str(commit.get("message") or "")
        rows.append({
            "id": stable_id("commits", repository_id, commit["id"]),
            "repository_id": repository_id, "sha": commit["id"],
            "author_identity_id": identity_id, "author_name": author.get("name"),
            "author_email": email.lower() or None, "authored_at": authored,
            "author_tz_offset": int(offset.total_seconds() // 60) if offset else 0,
            "message": message, "source": SOURCE,
        })
    return merge(*fragments, {"commits": rows})


def _distinct(commits: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [c for c in commits if isinstance(c, Mapping) and c.get("id")]
