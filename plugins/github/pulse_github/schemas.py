"""Response models of the GitHub analytics endpoints (``/openapi.json`` describes them)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class GithubPerson(BaseModel):
    """A person: the merged identities of the ETL model."""

    id: str
    name: str | None = None
    email: str | None = None


class GithubRepository(BaseModel):
    """A repository."""

    id: str
    name: str | None = None


class GithubWindow(BaseModel):
    """The window an answer covers (end exclusive, UTC)."""

    start: datetime
    end: datetime


class GithubStats(BaseModel):
    """A distribution in seconds (or rounds): median, p75, p90 (``percentile_cont``),
    mean, and the number of samples."""

    median: float | None
    p75: float | None
    p90: float | None
    mean: float | None
    sample_size: int


class GithubContributor(BaseModel):
    """One person's activity in the window."""

    person: GithubPerson
    commits: int = Field(description="Commits authored in the window, merges included.")
    non_merge_commits: int
    additions: int = Field(description="Lines added by the non-merge commits.")
    deletions: int
    prs_opened: int
    prs_merged: int = Field(description="Pull requests they opened that were merged.")
    reviews: int = Field(description="Reviews they submitted.")
    active_days: int = Field(description="Days (in tz) with a commit, opened PR or review.")


class GithubContributors(BaseModel):
    """``contributors``."""

    window: GithubWindow
    items: list[GithubContributor]
    total_commits: int
    next_cursor: str | None


class GithubCommitPatterns(BaseModel):
    """``commit-patterns``: 7 rows (Monday first) of 24 hourly counts, in each author's
    own UTC offset."""

    window: GithubWindow
    heatmap: list[list[int]]
    total: int


class GithubHotspot(BaseModel):
    """A file and the non-merge commits that changed it in the window."""

    repository: GithubRepository
    path: str
    commits: int
    authors: int
    additions: int
    deletions: int


class GithubHotspots(BaseModel):
    """``hotspots``."""

    window: GithubWindow
    items: list[GithubHotspot]
    next_cursor: str | None


class GithubWeightedPerson(BaseModel):
    """A person of the absence factor and their weight."""

    person: GithubPerson
    commits: int
    weight: int = Field(description="Commits, or added + deleted lines with by=lines.")


class GithubAbsenceFactor(BaseModel):
    """``contributor-absence-factor``."""

    window: GithubWindow
    by: str
    value: int = Field(description="The fewest people making at least half of the weight.")
    people: list[GithubWeightedPerson] = Field(
        description="Those people (empty when the caller's role sees aggregates only).")
    people_hidden: bool
    commits: int = Field(description="Non-merge commits in the window.")
    total_weight: int


class GithubCoupling(BaseModel):
    """Two files of one repository that change together."""

    repository: GithubRepository
    path: str
    coupled_path: str
    degree: float = Field(description="shared_commits / mean(commits, coupled_commits).")
    shared_commits: int
    commits: int
    coupled_commits: int


class GithubChangeCoupling(BaseModel):
    """``change-coupling``."""

    window: GithubWindow
    items: list[GithubCoupling]
    next_cursor: str | None
    min_revs: int
    min_shared_revs: int
    min_degree: float
    max_changeset_size: int


class GithubPhaseStats(BaseModel):
    """The four phases of merged pull requests."""

    coding: GithubStats
    pickup: GithubStats
    review: GithubStats
    deploy: GithubStats


class GithubCyclePoint(BaseModel):
    """Cycle time of the pull requests merged in one bucket."""

    start: datetime
    end: datetime
    merged: int
    cycle_time: GithubStats
    time_to_merge: GithubStats
    phases: GithubPhaseStats


class GithubCycleTime(BaseModel):
    """``pull-requests/cycle-time``."""

    window: GithubWindow
    interval: str
    series: list[GithubCyclePoint]


class GithubFirstReviewPoint(BaseModel):
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


class GithubRoundsPoint(BaseModel):
    """Review rounds of the pull requests merged in one bucket."""

    start: datetime
    end: datetime
    merged: int
    median: float | None
    p75: float | None
    p90: float | None
    mean: float | None
    sample_size: int


class GithubReviewTimes(BaseModel):
    """``pull-requests/reviews``."""

    window: GithubWindow
    interval: str
    time_to_first_review: list[GithubFirstReviewPoint]
    review_rounds: list[GithubRoundsPoint]


class GithubLineBucket(BaseModel):
    """Merged pull requests of a size by changed lines."""

    bucket: str
    max_lines: int | None
    count: int


class GithubFileBucket(BaseModel):
    """Merged pull requests of a size by changed files."""

    bucket: str
    max_files: int | None
    count: int


class GithubSizeTime(BaseModel):
    """Time to merge and cycle time of one line bucket."""

    bucket: str
    time_to_merge: GithubStats
    cycle_time: GithubStats


class GithubSizes(BaseModel):
    """``pull-requests/size``."""

    window: GithubWindow
    merged: int
    unsized: int = Field(description="Merged pull requests whose source gave no line counts.")
    lines: list[GithubLineBucket]
    files: list[GithubFileBucket]
    size_vs_time: list[GithubSizeTime]


class GithubOutcomePoint(BaseModel):
    """Merged and closed pull requests of one bucket."""

    start: datetime
    end: datetime
    merged: int
    closed_unmerged: int
    merge_rate: float | None
    merged_without_review: int
    merged_without_review_rate: float | None


class GithubOutcomes(BaseModel):
    """``pull-requests/outcomes``."""

    window: GithubWindow
    interval: str
    series: list[GithubOutcomePoint]


class GithubAgeBucket(BaseModel):
    """Open pull requests of an age."""

    bucket: str
    count: int


class GithubOpenPullRequest(BaseModel):
    """An open pull request and its age at the window's end (seconds)."""

    id: str
    repository_id: str
    number: int
    title: str | None
    opened_at: datetime | None
    age: float


class GithubOpenAging(BaseModel):
    """``pull-requests/open-aging``."""

    window: GithubWindow
    open: int
    median_age: float | None
    buckets: list[GithubAgeBucket]
    items: list[GithubOpenPullRequest]
    next_cursor: str | None


class GithubLoadItem(BaseModel):
    """One reviewer's load."""

    person: GithubPerson | None
    reviews_given: int
    pull_requests_reviewed: int
    reviews_received: int


class GithubReviewLoad(BaseModel):
    """``reviews/load``."""

    window: GithubWindow
    items: list[GithubLoadItem]
    next_cursor: str | None


class GithubGraphNode(BaseModel):
    """A person of the review graph."""

    person: GithubPerson | None
    given: int
    received: int


class GithubGraphEdge(BaseModel):
    """Reviews one person gave on another's pull requests."""

    reviewer: str
    author: str
    weight: int


class GithubReviewGraph(BaseModel):
    """``reviews/graph``."""

    window: GithubWindow
    nodes: list[GithubGraphNode]
    edges: list[GithubGraphEdge]
    total_edges: int
    truncated: bool


class GithubSilo(BaseModel):
    """A file or directory whose recent changes come from one person."""

    repository: GithubRepository
    path: str
    kind: str
    commits: int
    person: GithubPerson | None = Field(description="Null when the caller sees aggregates only.")


class GithubSilos(BaseModel):
    """``knowledge-silos``."""

    window: GithubWindow
    items: list[GithubSilo]
    next_cursor: str | None


class GithubMainDeveloper(BaseModel):
    """The main developer of a file: the most added lines in the window."""

    repository: GithubRepository
    path: str
    main_developer: GithubPerson | None
    added: int
    total_added: int
    ownership: float | None
    authors: int


class GithubMainDevelopers(BaseModel):
    """``main-developers``."""

    window: GithubWindow
    items: list[GithubMainDeveloper]
    next_cursor: str | None


class GithubActivityPoint(BaseModel):
    """One person's activity in one bucket."""

    start: datetime
    end: datetime
    commits: int
    prs_opened: int
    prs_merged: int
    reviews: int
    active_days: int


class GithubPersonActivity(BaseModel):
    """One person's series."""

    person: GithubPerson
    series: list[GithubActivityPoint]


class GithubActivity(BaseModel):
    """``contributors/activity``."""

    window: GithubWindow
    interval: str
    items: list[GithubPersonActivity]
    next_cursor: str | None


class GithubPeopleCount(BaseModel):
    """How many people, and who (null when the caller sees aggregates only)."""

    count: int
    people: list[GithubPerson] | None


class GithubContributorChanges(BaseModel):
    """``contributors/changes``."""

    window: GithubWindow
    previous_window: GithubWindow
    new: GithubPeopleCount
    departed: GithubPeopleCount


class GithubReleasePoint(BaseModel):
    """Releases of one bucket."""

    start: datetime
    end: datetime
    releases: int


class GithubRepositoryReleases(BaseModel):
    """One repository's releases in the window."""

    repository: GithubRepository
    releases: int
    last_release_at: datetime | None
    median_seconds_between: float | None


class GithubReleaseCadence(BaseModel):
    """``repositories/release-cadence``."""

    window: GithubWindow
    interval: str
    series: list[GithubReleasePoint]
    repositories: list[GithubRepositoryReleases]


class GithubLifetimePoint(BaseModel):
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


class GithubBranchLifetime(BaseModel):
    """``repositories/branch-lifetime``."""

    window: GithubWindow
    interval: str
    series: list[GithubLifetimePoint]


class GithubChurnPoint(BaseModel):
    """Non-merge commits and lines of one bucket."""

    start: datetime
    end: datetime
    commits: int
    additions: int
    deletions: int
    files_changed: int


class GithubChurn(BaseModel):
    """``repositories/churn``."""

    window: GithubWindow
    interval: str
    series: list[GithubChurnPoint]
