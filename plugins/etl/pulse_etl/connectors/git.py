"""The ``git`` connector: commits, parents, merge PR numbers and deploy tags from a repository.

Config: ``{"path": local path or clone URL, "branch": "HEAD", "deploy_tags": regex,
"repository": name, "environment": "production"}``. Local paths must lie under one of the
operator's roots (``PULSE_ETL_GIT_ROOTS``; real paths are compared, so a symlink cannot
escape); ``https://`` and ``ssh://`` (or ``user@host:path``) URLs are cloned into a cache
under the data folder, their host checked against the operator's outbound policy (when the
configuration is saved, and again before each clone or fetch, git then pinned to the
checked address); ``file://`` URLs only inside the roots (a local use, governed by the
roots rather than the outbound policy).

One ``git log --topo-order --reverse --numstat -z -M`` pass reads every commit not loaded
yet (parents before children) with its files (``commit_files``: renames detected, the new
path kept with the old one; binary files without line counts), in batches committed with
a cursor holding the loaded tips, so an interrupted run resumes where it stopped and a
re-run reads nothing (a cursor of a version before ``commit_files`` makes one full read,
which adds the files and leaves the stored commits alone). Tags matching ``deploy_tags``
(``re.search``) become successful deployments at the tagger date (the commit date for
lightweight tags); the commits they reach are loaded too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NamedTuple, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pulse_engine import OutboundPolicy, OutboundRefused
from pulse_etl.connector import ConfigError, OutboundHosts, SourceError, SyncRun
from pulse_etl.connectors.common import Row, identity_rows, repository_row
from pulse_etl.model import ID_NAMESPACE, MAX_PATH_LENGTH, stable_id
from pulse_etl.settings import EtlSettings

SOURCE = "git"
CURSOR_STREAM = "commits"
#: The version of the cursor: 2 since the connector fills ``commit_files``.
CURSOR_VERSION = 2
RECORD = b"\x1e"
FIELD = "\x00"
LOG_FORMAT = "%x1e%H%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B%x00"
MERGE_PR = re.compile(r"^Merge pull request #(\d+)")
SQUASH_PR = re.compile(r"\(#(\d+)\)\s*$")
SAFE_REF = re.compile(r"^[A-Za-z0-9._/@{}^~+-]+$")
SCP_URL = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!//)")

_T = TypeVar("_T")


class GitConfig(BaseModel):
    """Configuration of the git connector."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, max_length=2000, description="Local path or clone URL.")
    branch: str = Field(default="HEAD", max_length=255, description="Branch or ref to read.")
    deploy_tags: str | None = Field(
        default=None, max_length=500, description="Regex of tags that are deployments."
    )
    repository: str | None = Field(
        default=None, max_length=300, description="Repository name (default: from path)."
    )
    environment: str = Field(default="production", max_length=200)

    @field_validator("branch")
    @classmethod
    def _safe_branch(cls, value: str) -> str:
        if value.startswith("-") or not SAFE_REF.match(value):
            raise ValueError("not a valid ref name")
        return value

    @field_validator("deploy_tags")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(f"not a valid regular expression: {error}") from None
        return value


class FileChange(NamedTuple):
    """One file of a commit's ``--numstat``: the path after the commit, the path before a
    rename (else None), added and deleted lines (None for a binary file), binary or not."""

    path: str
    previous_path: str | None
    additions: int | None
    deletions: int | None
    binary: bool


@dataclass
class GitCommit:
    """One parsed commit of ``git log``."""

    sha: str
    parents: list[str]
    author_name: str
    author_email: str
    authored_at: datetime
    committer_name: str
    committer_email: str
    committed_at: datetime
    message: str
    additions: int = 0
    deletions: int = 0
    files: int = 0
    changes: list[FileChange] = field(default_factory=list)


def _under(path: str, roots: list[Path]) -> bool:
    real = os.path.realpath(path)
    for root in roots:
        with contextlib.suppress(ValueError):
            if os.path.commonpath([real, str(root)]) == str(root):
                return True
    return False


def remote_endpoint(path: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of a clone URL (``https``, ``ssh``, scp-like ``ssh``), or
    None for local paths and ``file://`` URLs."""
    if SCP_URL.match(path):
        host = path.split("@", 1)[1].split(":", 1)[0]
        return "ssh", host, 22
    parts = urlsplit(path) if "://" in path else None
    if parts is None or parts.scheme not in ("https", "ssh") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 22)


async def pinned_remote(path: str, policy: OutboundPolicy) -> Remote:
    """Check a clone URL's host against the outbound policy now, and pin git to the
    addresses checked: ``http.curloptResolve`` for https (redirects are not followed), the
    ssh command's ``HostName`` for ssh (host keys are still checked for the name)."""
    endpoint = remote_endpoint(path)
    if endpoint is None:
        return Remote()
    scheme, host, port = endpoint
    try:
        addresses = await policy.resolve(host, port)
    except OutboundRefused as refused:
        raise SourceError(f"git remote {refused.host}: {refused.reason}") from None
    except OSError:
        raise SourceError(f"git remote {host} does not resolve") from None
    address = str(addresses[0])
    if scheme == "https":
        pinned = f"[{address}]" if ":" in address else address
        return Remote(options=(f"http.curloptResolve={host}:{port}:{pinned}",
                               "http.followRedirects=false"))
    command = f"ssh -o HostName={address} -o HostKeyAlias={host}"
    return Remote(env=(("GIT_SSH_COMMAND", command),))


def is_url(path: str) -> bool:
    """True for ``scheme://`` and scp-like ``user@host:path`` locations."""
    return "://" in path or bool(SCP_URL.match(path))


def repository_name(config: GitConfig) -> str:
    """The repository's name: configured, else the last path component without ``.git``."""
    if config.repository:
        return config.repository
    location = config.path.rstrip("/")
    if is_url(location) and "://" not in location:
        location = location.split(":", 1)[1]
    elif is_url(location):
        location = urlsplit(location).path.rstrip("/")
    name = location.rsplit("/", 1)[-1]
    return name[:-4] if name.endswith(".git") else name or "repository"


def _offset_minutes(moment: datetime) -> int:
    offset = moment.utcoffset()
    return int(offset.total_seconds() // 60) if offset is not None else 0


def pr_number(message: str) -> int | None:
    """The pull request a commit message names: a merge commit, or a squash ``(#N)``."""
    merged = MERGE_PR.match(message)
    if merged:
        return int(merged.group(1))
    subject = message.split("\n", 1)[0]
    squashed = SQUASH_PR.search(subject)
    return int(squashed.group(1)) if squashed else None


def parse_record(record: bytes) -> GitCommit:
    """Parse one ``LOG_FORMAT`` record followed by its ``--numstat -z`` entries.

    With ``-z`` every entry ends in NUL and paths are written as they are (no quoting):
    ``added TAB deleted TAB path NUL``, or for a rename ``added TAB deleted TAB NUL old NUL
    new NUL``; a binary file has ``-`` for both counts.
    """
    text = record.decode("utf-8", "replace")
    parts = text.split(FIELD, 9)
    if len(parts) < 10:
        raise SourceError("unexpected git log output")
    sha, parents, an, ae, ad, cn, ce, cd, message, stats = parts
    commit = GitCommit(
        sha=sha,
        parents=parents.split() if parents else [],
        author_name=an,
        author_email=ae,
        authored_at=datetime.fromisoformat(ad),
        committer_name=cn,
        committer_email=ce,
        committed_at=datetime.fromisoformat(cd),
        message=message.rstrip("\n"),
    )
    # the format line ends in NUL (``-z``), then a newline separates it from the entries
    tokens = iter(stats.lstrip("\x00\n").split(FIELD))
    changes = commit.changes
    additions = deletions = 0
    for token in tokens:
        if not token:
            continue
        added, deleted, path = (token.split("\t", 2) + ["", ""])[:3]
        previous: str | None = None
        if not path:  # a rename or copy: the old and the new path follow
            previous = next(tokens, "")
            path = next(tokens, "")
        binary = not added.isdigit()
        plus = None if binary else int(added)
        minus = int(deleted) if deleted.isdigit() else None
        additions += plus or 0
        deletions += minus or 0
        changes.append(FileChange(path, previous, plus, minus, binary))
    commit.files = len(changes)
    commit.additions = additions
    commit.deletions = deletions
    return commit


def git_error(command: str, stderr: bytes) -> SourceError:
    """A failed git command's error: git's own message, without what the remote said
    (``remote:`` lines: job errors are visible to viewers)."""
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines()
             if line.strip() and not line.startswith("remote:")]
    return SourceError(f"git {command} failed: {' '.join(lines)[:300]}")


@dataclass(frozen=True)
class Remote:
    """How to reach a clone URL's host: git options that pin the connection to checked
    addresses, and the environment of the git process."""

    options: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


async def _git(repo: str, *args: str, stdin: bytes | None = None,
               remote: Remote = Remote()) -> bytes:
    options = [item for option in remote.options for item in ("-c", option)]
    process = await asyncio.create_subprocess_exec(
        "git", "-C", repo, *options, *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **dict(remote.env)},
    )
    out, err = await process.communicate(stdin)
    if process.returncode != 0:
        raise git_error(args[0], err)
    return out


async def stream_log(repo: str, revisions: list[str]) -> AsyncGenerator[GitCommit]:
    """Yield the commits of ``revisions`` (``^sha`` excludes), parents before children."""
    process = await asyncio.create_subprocess_exec(
        "git", "-C", repo, "log", "--stdin", "--topo-order", "--reverse", "--numstat", "-z",
        "-M", f"--format={LOG_FORMAT}",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
        limit=1 << 20,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(("\n".join(revisions) + "\n").encode())
    await process.stdin.drain()
    process.stdin.close()
    pending = b""
    try:
        while True:
            chunk = await process.stdout.read(1 << 18)
            if not chunk:
                break
            pending += chunk
            records = pending.split(RECORD)
            pending = records.pop()
            for record in records:
                if record:
                    yield parse_record(record)
        if pending:
            yield parse_record(pending)
        assert process.stderr is not None
        err = await process.stderr.read()
        if await process.wait() != 0:
            raise git_error("log", err)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@dataclass
class Tag:
    """A deploy tag: its name, the commit it points to and its date."""

    name: str
    sha: str
    at: datetime


async def deploy_tags(repo: str, pattern: str) -> list[Tag]:
    """Tags matching ``pattern`` with their commit and tagger (or commit) date."""
    out = await _git(
        repo, "for-each-ref", "refs/tags",
        "--format=%(refname:short)%00%(objecttype)%00%(objectname)%00%(*objectname)"
        "%00%(*objecttype)%00%(creatordate:iso-strict)",
    )
    regex = re.compile(pattern)
    tags = []
    for line in out.decode("utf-8", "replace").splitlines():
        name, kind, target, peeled, peeled_kind, created = (line.split("\x00") + [""] * 6)[:6]
        if not regex.search(name):
            continue
        if kind == "commit":
            sha = target
        elif kind == "tag" and peeled_kind == "commit":
            sha = peeled
        else:
            continue
        tags.append(Tag(name=name, sha=sha, at=datetime.fromisoformat(created)))
    return tags


class GitConnector:
    """Reads a git repository (see the module docstring)."""

    name = "git"
    description = "Commits, merges and deploy tags from a local or cloned git repository."
    config_model = GitConfig
    secret_fields: frozenset[str] = frozenset()

    def check(self, config: GitConfig, settings: EtlSettings) -> None:
        """Refuse paths outside the operator's roots and unsupported URL schemes."""
        path = config.path
        roots = settings.roots()
        if SCP_URL.match(path):
            return
        if "://" in path:
            parts = urlsplit(path)
            if parts.scheme in ("https", "ssh"):
                if not parts.hostname:
                    raise ConfigError("path", "the URL has no host")
                return
            if parts.scheme == "file":
                if not _under(parts.path, roots) or not Path(parts.path).exists():
                    raise ConfigError("path", "file:// URLs must point inside the git roots")
                return
            raise ConfigError("path", f"the URL scheme {parts.scheme!r} is not allowed")
        if not os.path.isabs(path):
            raise ConfigError("path", "must be an absolute path or a clone URL")
        if not roots or not _under(path, roots):
            raise ConfigError("path", "is outside the allowed git roots (PULSE_ETL_GIT_ROOTS)")
        if not Path(os.path.realpath(path)).is_dir():
            raise ConfigError("path", "does not exist")

    def outbound(self, config: GitConfig) -> OutboundHosts:
        """The remote's host, for https, ssh and scp-like URLs (local paths and
        ``file://`` URLs are governed by the git roots instead)."""
        endpoint = remote_endpoint(config.path)
        return {"path": endpoint[1:]} if endpoint is not None else {}

    async def _checkout(self, config: GitConfig, run: SyncRun) -> str:
        if not is_url(config.path):
            return await asyncio.to_thread(os.path.realpath, config.path)
        remote = await pinned_remote(config.path, run.outbound)
        base = run.settings.cache_dir or (run.engine.settings.data_dir / "etl" / "git")
        digest = hashlib.sha256(f"{run.tenant_id}\x00{config.path}".encode()).hexdigest()[:24]
        target = Path(base) / f"{digest}.git"
        target.parent.mkdir(parents=True, exist_ok=True)
        if (target / "HEAD").exists():
            await _git(str(target), "fetch", "--prune", "--force", "origin",
                       "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*", remote=remote)
        else:
            await _git(str(target.parent), "clone", "--mirror", "--", config.path, str(target),
                       remote=remote)
        return str(target)

    async def run(self, run: SyncRun) -> None:
        """Load commits not loaded yet, then the deploy tags as deployments."""
        config: GitConfig = run.config
        repo = await self._checkout(config, run)
        head = (await _git(repo, "rev-parse", "--verify", "--end-of-options",
                           f"{config.branch}^{{commit}}")).decode().strip()
        tags = await deploy_tags(repo, config.deploy_tags) if config.deploy_tags else []
        name = repository_name(config)
        repository = repository_row(
            SOURCE, name, name=name, url=config.path,
            default_branch=None if config.branch == "HEAD" else config.branch,
        )
        repository_id = repository["id"]
        saved = await run.cursor(CURSOR_STREAM) or {}
        # a cursor of a version before commit_files says nothing of the files: read the
        # whole history once more (stored commits are left unchanged, files are added)
        known = saved.get("tips", []) if saved.get("version") == CURSOR_VERSION else []
        tips = await self._existing(repo, [str(sha) for sha in known])
        revisions = [head, *sorted({tag.sha for tag in tags}), *(f"^{sha}" for sha in tips)]
        total = int((await _git(repo, "rev-list", "--count", "--stdin",
                                stdin=("\n".join(revisions) + "\n").encode())).strip() or 0)
        builder = RowBuilder(repository_id)

        async def batches() -> AsyncGenerator[tuple[dict[str, list[Row]], list[str], int, bool]]:
            first = True
            async for commits, cursor_tips, last in _batches(
                stream_log(repo, revisions), tips, run.settings.batch_size
            ):
                rows = builder.rows(commits, repository if first or last else None)
                if last:
                    rows["deployments"] = [self._deployment(tag, name, repository_id, config)
                                           for tag in tags]
                yield rows, cursor_tips, len(commits), last
                first = False

        done = 0
        async for rows, cursor_tips, count, last in _prefetch(batches()):
            done += count
            await run.commit(
                rows, cursors={CURSOR_STREAM: {"tips": cursor_tips, "version": CURSOR_VERSION}},
                progress=1.0 if last else done / max(total, 1) * 0.95,
            )

    @staticmethod
    async def _existing(repo: str, shas: list[str]) -> list[str]:
        """The saved tips that still exist (history may have been rewritten)."""
        if not shas:
            return []
        out = await _git(repo, "cat-file", "--batch-check", stdin=("\n".join(shas) + "\n").encode())
        return [line.split()[0] for line in out.decode().splitlines()
                if line and not line.endswith("missing")]

    @staticmethod
    def _deployment(tag: Tag, service: str, repository_id: str, config: GitConfig) -> Row:
        external_id = f"{service}@{tag.name}"
        return {
            "id": stable_id("deployments", SOURCE, external_id),
            "source": SOURCE,
            "external_id": external_id,
            "repository_id": repository_id,
            "service": service,
            "environment": config.environment,
            "result": "success",
            "started_at": tag.at,
            "finished_at": tag.at,
            "sha": tag.sha,
            "ref": tag.name,
            "name": tag.name,
        }



async def _batches(commits: AsyncGenerator[GitCommit], tips: list[str], size: int
                   ) -> AsyncGenerator[tuple[list[GitCommit], list[str], bool]]:
    """Group ``commits`` into batches of ``size`` with the tips loaded once each is in.

    Yields ``(commits, tips, last)``; the last batch (possibly empty) has ``last`` set.
    """
    tip_set = set(tips)
    batch: list[GitCommit] = []
    async with contextlib.aclosing(commits):
        async for commit in commits:
            batch.append(commit)
            tip_set.difference_update(commit.parents)
            tip_set.add(commit.sha)
            if len(batch) >= size:
                yield batch, sorted(tip_set), False
                batch = []
    yield batch, sorted(tip_set), True


@dataclass
class _End:
    """The end of a prefetched iteration, with the producer's error if it failed."""

    error: Exception | None = None


async def _prefetch(items: AsyncGenerator[_T]) -> AsyncGenerator[_T]:
    """Iterate ``items`` one item ahead, in a task: the next batch is read from git and
    turned into rows while the consumer waits for the database to write the current one.
    Closing the iteration early cancels the producer and closes ``items``."""
    queue: asyncio.Queue[_T | _End] = asyncio.Queue(maxsize=1)

    async def produce() -> None:
        try:
            async with contextlib.aclosing(items):
                async for item in items:
                    await queue.put(item)
        except Exception as error:  # handed over: the consumer raises it
            await queue.put(_End(error))
        else:
            await queue.put(_End())

    producer = asyncio.create_task(produce())
    try:
        while True:
            item = await queue.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer


class RowBuilder:
    """Builds the model rows of parsed commits of one repository.

    The ids of identities and people (uuid5 hashes) are computed once per distinct author
    or committer and reused for every commit and batch of the run, and their rows go into
    the first batch that needs them only (batches are committed in order, and a run that
    fails starts again with a new builder); commit ids are hashed from a SHA-1 state
    primed with the constant part of their name.

    :param repository_id: the repository the commits belong to.
    """

    def __init__(self, repository_id: str) -> None:
        """Create a builder for the commits of ``repository_id``."""
        self.repository_id = repository_id
        self._commit_hash = hashlib.sha1(  # noqa: S324 - uuid5 is SHA-1 by definition
            ID_NAMESPACE.bytes + f"commits\x1f{repository_id}\x1f".encode()
        )
        self._identities: dict[tuple[str, str], tuple[str, Row, Row]] = {}
        #: identities (and their people) already in an earlier batch of this run
        self._written: set[str] = set()

    def commit_id(self, sha: str) -> str:
        """``stable_id("commits", repository_id, sha)``, from the primed hash state."""
        digest = self._commit_hash.copy()
        digest.update(sha.encode())
        raw = bytearray(digest.digest()[:16])
        raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        value = raw.hex()
        return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"

    def identity(self, name: str, email: str) -> tuple[str, Row, Row]:
        """The identity id, identity row and person row of an author or committer."""
        key = (name, email)
        found = self._identities.get(key)
        if found is None:
            external = email.strip().lower() or f"name:{name}"
            found = self._identities[key] = identity_rows(
                SOURCE, external, email=email or None, name=name or None
            )
        return found

    def rows(self, commits: list[GitCommit], repository: Row | None) -> dict[str, list[Row]]:
        """The batch of ``commits``: people, identities, commits, parents, files (and the
        ``repository`` row when given)."""
        repository_id = self.repository_id
        people: dict[str, Row] = {}
        identities: dict[str, Row] = {}
        commit_rows: list[Row] = []
        written = self._written
        parents: list[Row] = []
        files: list[Row] = []
        offsets: dict[object, int] = {}
        identity = self.identity
        for commit in commits:
            author_id, author_row, author_person = identity(
                commit.author_name, commit.author_email)
            committer_id, committer_row, committer_person = identity(
                commit.committer_name, commit.committer_email)
            if author_id not in written:
                identities[author_id] = author_row
                people[author_person["id"]] = author_person
            if committer_id not in written:
                identities[committer_id] = committer_row
                people[committer_person["id"]] = committer_person
            authored_at, committed_at = commit.authored_at, commit.committed_at
            author_tz = authored_at.tzinfo
            if author_tz not in offsets:
                offsets[author_tz] = _offset_minutes(authored_at)
            committer_tz = committed_at.tzinfo
            if committer_tz not in offsets:
                offsets[committer_tz] = _offset_minutes(committed_at)
            sha = commit.sha
            commit_id = self.commit_id(sha)
            commit_rows.append({
                "id": commit_id,
                "repository_id": repository_id,
                "sha": sha,
                "author_identity_id": author_id,
                "committer_identity_id": committer_id,
                "author_name": commit.author_name,
                "author_email": commit.author_email.lower() or None,
                "authored_at": authored_at,
                "author_tz_offset": offsets[author_tz],
                "committed_at": committed_at,
                "committer_tz_offset": offsets[committer_tz],
                "message": commit.message,
                "additions": commit.additions,
                "deletions": commit.deletions,
                "files_changed": commit.files,
                "is_merge": len(commit.parents) > 1,
                "pull_request_number": pr_number(commit.message),
                "source": SOURCE,
            })
            for position, parent in enumerate(commit.parents):
                parents.append({"repository_id": repository_id, "sha": sha,
                                "position": position, "parent_sha": parent})
            for change in commit.changes:
                if len(change.path) > MAX_PATH_LENGTH:
                    continue
                files.append({"repository_id": repository_id, "sha": sha,
                              "commit_id": commit_id, "path": change.path,
                              "previous_path": change.previous_path,
                              "additions": change.additions, "deletions": change.deletions,
                              "is_binary": change.binary})
        written.update(identities)
        rows: dict[str, list[Row]] = {
            "people": list(people.values()),
            "person_identities": list(identities.values()),
            "commits": commit_rows,
            "commit_parents": parents,
            "commit_files": files,
        }
        if repository is not None:
            rows["repositories"] = [repository]
        return rows
