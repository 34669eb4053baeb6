"""Response models of the GitHub analytics endpoints (``/openapi.json`` describes them)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Person(BaseModel):
    """A person: the merged identities of the ETL model."""

    id: str
    name: str | None = None
    email: str | None = None


class Repository(BaseModel):
    """A repository."""

    id: str
    name: str | None = None


class Window(BaseModel):
    """The window an answer covers (end exclusive, UTC)."""

    start: datetime
    end: datetime


class Stats(BaseModel):
    """A distribution in seconds (or rounds): median, p75, p90 (``percentile_cont``),
    mean, and the number of samples."""

    median: float | None
    p75: float | None
    p90: float | None
    mean: float | None
    sample_size: int


class Contributor(BaseModel):
    """One person's activity in the window."""

    person: Person
    commits: int = Field(description="Commits authored in the window, merges included.")
    non_merge_commits: int
    additions: int = Field(description="Lines added by the non-merge commits.")
    deletions: int
    prs_opened: int
    prs_merged: int = Field(description="Pull requests they opened that were merged.")
    reviews: int = Field(description="Reviews they submitted.")
    active_days: int = Field(description="Days (in tz) with a commit, opened PR or review.")


class Contributors(BaseModel):
    """``contributors``."""

    window: Window
    items: list[Contributor]
    total_commits: int
    next_cursor: str | None


class CommitPatterns(BaseModel):
    """``commit-patterns``: 7 rows (Monday first) of 24 hourly counts, in each author's
    own UTC offset."""

    window: Window
    heatmap: list[list[int]]
    total: int


class Hotspot(BaseModel):
    """A file and the non-merge commits that changed it in the window."""

    repository: Repository
    path: str
    commits: int
    authors: int
    additions: int
    deletions: int


class Hotspots(BaseModel):
    """``hotspots``."""

    window: Window
    items: list[Hotspot]
    next_cursor: str | None


class WeightedPerson(BaseModel):
    """A person of the absence factor and their weight."""

    person: Person
    commits: int
    weight: int = Field(description="Commits, or added + deleted lines with by=lines.")


class AbsenceFactor(BaseModel):
    """``contributor-absence-factor``."""

    window: Window
    by: str
    value: int = Field(description="The fewest people making at least half of the weight.")
    people: list[WeightedPerson] = Field(
        description="Those people (empty when the caller's role sees aggregates only).")
    people_hidden: bool
    commits: int = Field(description="Non-merge commits in the window.")
    total_weight: int


class Coupling(BaseModel):
    """Two files of one repository that change together."""

    repository: Repository
    path: str
    coupled_path: str
    degree: float = Field(description="shared_commits / mean(commits, coupled_commits).")
    shared_commits: int
    commits: int
    coupled_commits: int


class ChangeCoupling(BaseModel):
    """``change-coupling``."""

    window: Window
    items: list[Coupling]
    next_cursor: str | None
    min_revs: int
    min_shared_revs: int
    min_degree: float
    max_changeset_size: int


class PhaseStats(BaseModel):
    """The four phases of merged pull requests."""

    coding: Stats
    pickup: Stats
    review: Stats
    deploy: Stats


class CyclePoint(BaseModel):
    """Cycle time of the pull requests merged in one bucket."""

    start: datetime
    end: datetime
    merged: int
    cycle_time: Stats
    time_to_merge: Stats
    phases: PhaseStats


class CycleTime(BaseModel):
    """``pull-requests/cycle-time``."""

    window: Window
    interval: str
    series: list[CyclePoint]


class FirstReviewPoint(BaseModel):
    """Time to first review of the pull requests opened in one bucket."""

    start: datetime
    end: datetime
    opened: int
    without_review: int
    median: float | None
    p75: float | None
    p90: float | None
    mean: float | None
    sample_size: int


class RoundsPoint(BaseModel):
    """Review rounds of the pull requests merged in one bucket."""

    start: datetime
    end: datetime
    merged: int
    median: float | None
    p75: float | None
    p90: float | None
    mean: float | None
    sample_size: int


class ReviewTimes(BaseModel):
    """``pull-requests/reviews``."""

    window: Window
    interval: str
    time_to_first_review: list[FirstReviewPoint]
    review_rounds: list[RoundsPoint]


class LineBucket(BaseModel):
    """Merged pull requests of a size by changed lines."""

    bucket: str
    max_lines: int | None
    count: int


class FileBucket(BaseModel):
    """Merged pull requests of a size by changed files."""

    bucket: str
    max_files: int | None
    count: int


class SizeTime(BaseModel):
    """Time to merge and cycle time of one line bucket."""

    bucket: str
    time_to_merge: Stats
    cycle_time: Stats


class Sizes(BaseModel):
    """``pull-requests/size``."""

    window: Window
    merged: int
    unsized: int = Field(description="Merged pull requests whose source gave no line counts.")
    lines: list[LineBucket]
    files: list[FileBucket]
    size_vs_time: list[SizeTime]


class OutcomePoint(BaseModel):
    """Merged and closed pull requests of one bucket."""

    start: datetime
    end: datetime
    merged: int
    closed_unmerged: int
    merge_rate: float | None
    merged_without_review: int
    merged_without_review_rate: float | None


class Outcomes(BaseModel):
    """``pull-requests/outcomes``."""

    window: Window
    interval: str
    series: list[OutcomePoint]


class AgeBucket(BaseModel):
    """Open pull requests of an age."""

    bucket: str
    count: int


class OpenPullRequest(BaseModel):
    """An open pull request and its age at the window's end (seconds)."""

    id: str
    repository_id: str
    number: int
    title: str | None
    opened_at: datetime | None
    age: float


class OpenAging(BaseModel):
    """``pull-requests/open-aging``."""

    window: Window
    open: int
    median_age: float | None
    buckets: list[AgeBucket]
    items: list[OpenPullRequest]
    next_cursor: str | None


class LoadItem(BaseModel):
    """One reviewer's load."""

    person: Person | None
    reviews_given: int
    pull_requests_reviewed: int
    reviews_received: int


class ReviewLoad(BaseModel):
    """``reviews/load``."""

    window: Window
    items: list[LoadItem]
    next_cursor: str | None


class GraphNode(BaseModel):
    """A person of the review graph."""

    person: Person | None
    given: int
    received: int


class GraphEdge(BaseModel):
    """Reviews one person gave on another's pull requests."""

    reviewer: str
    author: str
    weight: int


class ReviewGraph(BaseModel):
    """``reviews/graph``."""

    window: Window
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    total_edges: int
    truncated: bool


class Silo(BaseModel):
    """A file or directory whose recent changes come from one person."""

    repository: Repository
    path: str
    kind: str
    commits: int
    person: Person | None = Field(description="Null when the caller sees aggregates only.")


class Silos(BaseModel):
    """``knowledge-silos``."""

    window: Window
    items: list[Silo]
    next_cursor: str | None


class MainDeveloper(BaseModel):
    """The main developer of a file: the most added lines in the window."""

    repository: Repository
    path: str
    main_developer: Person | None
    added: int
    total_added: int
    ownership: float | None
    authors: int


class MainDevelopers(BaseModel):
    """``main-developers``."""

    window: Window
    items: list[MainDeveloper]
    next_cursor: str | None


class ActivityPoint(BaseModel):
    """One person's activity in one bucket."""

    start: datetime
    end: datetime
    commits: int
    prs_opened: int
    prs_merged: int
    reviews: int
    active_days: int


class PersonActivity(BaseModel):
    """One person's series."""

    person: Person
    series: list[ActivityPoint]


class Activity(BaseModel):
    """``contributors/activity``."""

    window: Window
    interval: str
    items: list[PersonActivity]
    next_cursor: str | None


class PeopleCount(BaseModel):
    """How many people, and who (null when the caller sees aggregates only)."""

    count: int
    people: list[Person] | None


class ContributorChanges(BaseModel):
    """``contributors/changes``."""

    window: Window
    previous_window: Window
    new: PeopleCount
    departed: PeopleCount


class ReleasePoint(BaseModel):
    """Releases of one bucket."""

    start: datetime
    end: datetime
    releases: int


class RepositoryReleases(BaseModel):
    """One repository's releases in the window."""

    repository: Repository
    releases: int
    last_release_at: datetime | None
    median_seconds_between: float | None


class ReleaseCadence(BaseModel):
    """``repositories/release-cadence``."""

    window: Window
    interval: str
    series: list[ReleasePoint]
    repositories: list[RepositoryReleases]


class LifetimePoint(BaseModel):
    """Head branches whose last pull request ended in one bucket."""

    start: datetime
    end: datetime
    branches: int
    merged: int
    median: float | None
    p75: float | None
    p90: float | None
    mean: float | None
    sample_size: int


class BranchLifetime(BaseModel):
    """``repositories/branch-lifetime``."""

    window: Window
    interval: str
    series: list[LifetimePoint]


class ChurnPoint(BaseModel):
    """Non-merge commits and lines of one bucket."""

    start: datetime
    end: datetime
    commits: int
    additions: int
    deletions: int
    files_changed: int


class Churn(BaseModel):
    """``repositories/churn``."""

    window: Window
    interval: str
    series: list[ChurnPoint]
