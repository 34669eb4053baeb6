"""The GitHub analytics endpoints under ``{api_v1_prefix}/analytics/github/``.

Every view reads its query string through a model of :mod:`pulse_github.params`, resolves
the scope (window, filters, privacy) with :func:`pulse_github.params.open_scope` and reads
its answer in one tenant-bound transaction (:func:`pulse_engine.tenant_session`: the
request's statement timeout applies). Lists are keyset-paginated with opaque cursors.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from quart import Blueprint
from quart_schema import validate_querystring, validate_response

from pulse_engine import (
    current_tenant_id,
    decode_cursor,
    encode_cursor,
    invalid_cursor,
    problem_responses,
    require_role,
    tenant_session,
)
from pulse_github import flow, queries
from pulse_github.config import GithubSettings
from pulse_github.params import (
    AbsenceQuery,
    CouplingQuery,
    GraphQuery,
    IntervalListQuery,
    IntervalQuery,
    ListQuery,
    Scope,
    ScopeQuery,
    SiloQuery,
    open_scope,
)
from pulse_github.schemas import (
    GithubAbsenceFactor,
    GithubActivity,
    GithubBranchLifetime,
    GithubChangeCoupling,
    GithubChurn,
    GithubCommitPatterns,
    GithubContributorChanges,
    GithubContributors,
    GithubCycleTime,
    GithubHotspots,
    GithubMainDevelopers,
    GithubOpenAging,
    GithubOutcomes,
    GithubReleaseCadence,
    GithubReviewGraph,
    GithubReviewLoad,
    GithubReviewTimes,
    GithubSilos,
    GithubSizes,
)

if TYPE_CHECKING:
    from pulse_engine import Engine

#: Every endpoint name (``github.<view>``), for the cache policies.
ENDPOINTS = (
    "contributors", "commit_patterns", "hotspots", "contributor_absence_factor",
    "change_coupling", "cycle_time", "review_times", "sizes", "outcomes", "open_aging",
    "review_load", "review_graph", "knowledge_silos", "main_developers", "activity",
    "contributor_changes", "release_cadence", "branch_lifetime", "churn",
)


def pack(*values: object) -> str:
    """The opaque cursor of a composite sort key."""
    return encode_cursor(json.dumps(list(values), default=str))


def unpack(cursor: str | None, *kinds: type) -> list[Any] | None:
    """The values of a composite cursor of ``kinds`` (``uuid.UUID`` for ids, ``datetime``
    for times); 400 for anything else."""
    raw = decode_cursor(cursor, str)
    if raw is None:
        return None
    try:
        values = json.loads(raw)
    except ValueError:
        raise invalid_cursor() from None
    if not isinstance(values, list) or len(values) != len(kinds):
        raise invalid_cursor()
    parsed: list[Any] = []
    for value, kind in zip(values, kinds, strict=True):
        try:
            if kind is uuid.UUID and isinstance(value, str):
                parsed.append(str(uuid.UUID(value)))
            elif kind is datetime and isinstance(value, str):
                parsed.append(datetime.fromisoformat(value).isoformat())
            elif kind is float and isinstance(value, int | float) and not isinstance(value, bool):
                parsed.append(float(value))
            elif (kind is int and type(value) is int and -(2**63) <= value < 2**63) or (
                    kind is str and isinstance(value, str) and "\x00" not in value
                    and value.encode("utf-8") is not None):
                parsed.append(value)
            else:
                raise ValueError(value)
        except ValueError:
            raise invalid_cursor() from None
    return parsed


def _window(scope: Scope) -> dict[str, Any]:
    return {"start": scope.start, "end": scope.end}


def build_blueprint(engine: Engine, settings: GithubSettings) -> Blueprint:
    """The blueprint (endpoint names ``github.<view>``)."""
    blueprint = Blueprint(
        "github", __name__, url_prefix=f"{engine.settings.api_v1_prefix}/analytics/github")

    async def scoped(query: ScopeQuery, *, interval: str = "all",
                     people: bool = False) -> Scope:
        return await open_scope(engine, settings, current_tenant_id(), query,
                                interval=interval, needs_people=people)

    @blueprint.get("/contributors")
    @require_role("viewer")
    @validate_querystring(ListQuery)
    @validate_response(GithubContributors)
    @problem_responses(403, 503)
    async def contributors(query_args: ListQuery) -> dict[str, Any]:
        """Every person active in the window, by commits (merges counted as git does)."""
        scope = await scoped(query_args, people=True)
        after = unpack(query_args.cursor, int, uuid.UUID)
        limit = query_args.capped_limit
        async with tenant_session() as session:
            items, total = await queries.contributors(
                session, scope, limit + 1,
                queries.PersonKey(after[0], after[1]) if after else None)
        more = len(items) > limit
        items = items[:limit]
        return {"window": _window(scope), "items": items, "total_commits": total,
                "next_cursor": pack(items[-1]["commits"], items[-1]["person"]["id"])
                if more else None}

    @blueprint.get("/commit-patterns")
    @require_role("viewer")
    @validate_querystring(ScopeQuery)
    @validate_response(GithubCommitPatterns)
    @problem_responses(403, 503)
    async def commit_patterns(query_args: ScopeQuery) -> dict[str, Any]:
        """Commits per hour of the week, in each author's own time zone."""
        scope = await scoped(query_args)
        async with tenant_session() as session:
            grid = await queries.commit_patterns(session, scope)
        return {"window": _window(scope), "heatmap": grid,
                "total": sum(sum(row) for row in grid)}

    @blueprint.get("/hotspots")
    @require_role("viewer")
    @validate_querystring(ListQuery)
    @validate_response(GithubHotspots)
    @problem_responses(403, 503)
    async def hotspots(query_args: ListQuery) -> dict[str, Any]:
        """Files by the non-merge commits that changed them, with authors and churn."""
        scope = await scoped(query_args)
        after = unpack(query_args.cursor, int, uuid.UUID, str)
        limit = query_args.capped_limit
        async with tenant_session() as session:
            items = await queries.hotspots(
                session, scope, limit + 1, queries.PathKey(*after) if after else None)
        return _path_page(scope, items, limit)

    def _path_page(scope: Scope, items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
        more = len(items) > limit
        items = items[:limit]
        last = items[-1] if items else None
        return {"window": _window(scope), "items": items,
                "next_cursor": pack(last["commits"], last["repository"]["id"], last["path"])
                if more and last else None}

    @blueprint.get("/contributor-absence-factor")
    @require_role("viewer")
    @validate_querystring(AbsenceQuery)
    @validate_response(GithubAbsenceFactor)
    @problem_responses(403, 503)
    async def contributor_absence_factor(query_args: AbsenceQuery) -> dict[str, Any]:
        """The fewest people who made at least half of the non-merge commits (or lines)."""
        scope = await scoped(query_args)
        async with tenant_session() as session:
            found = await queries.absence_factor(session, scope, query_args.by)
        if not scope.people_visible:
            found["people"] = []
        return {"window": _window(scope), "by": query_args.by,
                "people_hidden": not scope.people_visible, **found}

    @blueprint.get("/change-coupling")
    @require_role("viewer")
    @validate_querystring(CouplingQuery)
    @validate_response(GithubChangeCoupling)
    @problem_responses(403, 503)
    async def change_coupling(query_args: CouplingQuery) -> dict[str, Any]:
        """Pairs of files that change together (code-maat's rules and defaults)."""
        scope = await scoped(query_args)
        after = unpack(query_args.cursor, float, int, uuid.UUID, str, str)
        rules = queries.CouplingRules(query_args.min_revs, query_args.min_shared_revs,
                                      query_args.min_degree, query_args.max_changeset_size)
        limit = query_args.capped_limit
        async with tenant_session() as session:
            items = await queries.change_coupling(
                session, scope, rules, limit + 1,
                queries.CouplingKey(*after) if after else None)
        more = len(items) > limit
        items = items[:limit]
        last = items[-1] if items else None
        return {"window": _window(scope), "items": items,
                "next_cursor": pack(last["degree"], last["shared_commits"],
                                    last["repository"]["id"], last["path"],
                                    last["coupled_path"]) if more and last else None,
                "min_revs": rules.min_revs, "min_shared_revs": rules.min_shared,
                "min_degree": rules.min_degree, "max_changeset_size": rules.max_changeset}

    @blueprint.get("/pull-requests/cycle-time")
    @require_role("viewer")
    @validate_querystring(IntervalQuery)
    @validate_response(GithubCycleTime)
    @problem_responses(403, 503)
    async def cycle_time(query_args: IntervalQuery) -> dict[str, Any]:
        """Cycle time, time to merge and the four phases of merged pull requests."""
        scope = await scoped(query_args, interval=query_args.interval)
        async with tenant_session() as session:
            series = await flow.cycle_time(session, scope)
        return {"window": _window(scope), "interval": scope.interval, "series": series}

    @blueprint.get("/pull-requests/reviews")
    @require_role("viewer")
    @validate_querystring(IntervalQuery)
    @validate_response(GithubReviewTimes)
    @problem_responses(403, 503)
    async def review_times(query_args: IntervalQuery) -> dict[str, Any]:
        """Time to first review and review rounds."""
        scope = await scoped(query_args, interval=query_args.interval)
        async with tenant_session() as session:
            found = await flow.review_times(session, scope)
        return {"window": _window(scope), "interval": scope.interval, **found}

    @blueprint.get("/pull-requests/size")
    @require_role("viewer")
    @validate_querystring(ScopeQuery)
    @validate_response(GithubSizes)
    @problem_responses(403, 503)
    async def sizes(query_args: ScopeQuery) -> dict[str, Any]:
        """Merged pull requests by size, and size against time to merge and cycle time."""
        scope = await scoped(query_args)
        async with tenant_session() as session:
            found = await flow.sizes(session, scope)
        return {"window": _window(scope), **found}

    @blueprint.get("/pull-requests/outcomes")
    @require_role("viewer")
    @validate_querystring(IntervalQuery)
    @validate_response(GithubOutcomes)
    @problem_responses(403, 503)
    async def outcomes(query_args: IntervalQuery) -> dict[str, Any]:
        """Merged against closed unmerged, and merged without review."""
        scope = await scoped(query_args, interval=query_args.interval)
        async with tenant_session() as session:
            series = await flow.outcomes(session, scope)
        return {"window": _window(scope), "interval": scope.interval, "series": series}

    @blueprint.get("/pull-requests/open-aging")
    @require_role("viewer")
    @validate_querystring(ListQuery)
    @validate_response(GithubOpenAging)
    @problem_responses(403, 503)
    async def open_aging(query_args: ListQuery) -> dict[str, Any]:
        """Pull requests open at the window's end, by age, oldest first."""
        scope = await scoped(query_args)
        after = unpack(query_args.cursor, datetime, uuid.UUID)
        limit = query_args.capped_limit
        async with tenant_session() as session:
            found = await flow.open_aging(session, scope, limit + 1,
                                          (after[0], after[1]) if after else None)
        items = found["items"]
        more = len(items) > limit
        found["items"] = items[:limit]
        last = found["items"][-1] if found["items"] else None
        return {"window": _window(scope), **found,
                "next_cursor": pack(last["opened_at"].isoformat(), last["id"])
                if more and last else None}

    @blueprint.get("/reviews/load")
    @require_role("viewer")
    @validate_querystring(ListQuery)
    @validate_response(GithubReviewLoad)
    @problem_responses(403, 503)
    async def review_load(query_args: ListQuery) -> dict[str, Any]:
        """Reviews given against reviews received, per person."""
        scope = await scoped(query_args, people=True)
        after = unpack(query_args.cursor, int, uuid.UUID)
        limit = query_args.capped_limit
        async with tenant_session() as session:
            items = await flow.review_load(session, scope, limit + 1,
                                           (after[0], after[1]) if after else None)
        more = len(items) > limit
        items = items[:limit]
        last = items[-1] if items else None
        return {"window": _window(scope), "items": items,
                "next_cursor": pack(last["reviews_given"], last["person"]["id"])
                if more and last else None}

    @blueprint.get("/reviews/graph")
    @require_role("viewer")
    @validate_querystring(GraphQuery)
    @validate_response(GithubReviewGraph)
    @problem_responses(403, 503)
    async def review_graph(query_args: GraphQuery) -> dict[str, Any]:
        """Who reviews whom: people and weighted edges."""
        scope = await scoped(query_args, people=True)
        async with tenant_session() as session:
            found = await flow.review_graph(session, scope, query_args.limit)
        return {"window": _window(scope), **found}

    @blueprint.get("/knowledge-silos")
    @require_role("viewer")
    @validate_querystring(SiloQuery)
    @validate_response(GithubSilos)
    @problem_responses(403, 503)
    async def knowledge_silos(query_args: SiloQuery) -> dict[str, Any]:
        """Files or directories whose non-merge commits in the window come from one person."""
        scope = await scoped(query_args)
        after = unpack(query_args.cursor, int, uuid.UUID, str)
        limit = query_args.capped_limit
        async with tenant_session() as session:
            items = await queries.silos(session, scope, query_args.kind,
                                        query_args.min_commits, limit + 1,
                                        queries.PathKey(*after) if after else None)
        return _path_page(scope, items, limit)

    @blueprint.get("/main-developers")
    @require_role("viewer")
    @validate_querystring(ListQuery)
    @validate_response(GithubMainDevelopers)
    @problem_responses(403, 503)
    async def main_developers(query_args: ListQuery) -> dict[str, Any]:
        """The main developer (most added lines) of each file changed in the window."""
        scope = await scoped(query_args, people=True)
        after = unpack(query_args.cursor, uuid.UUID, str)
        limit = query_args.capped_limit
        async with tenant_session() as session:
            items = await queries.main_developers(session, scope, limit + 1,
                                                  (after[0], after[1]) if after else None)
        more = len(items) > limit
        items = items[:limit]
        last = items[-1] if items else None
        return {"window": _window(scope), "items": items,
                "next_cursor": pack(last["repository"]["id"], last["path"])
                if more and last else None}

    @blueprint.get("/contributors/activity")
    @require_role("viewer")
    @validate_querystring(IntervalListQuery)
    @validate_response(GithubActivity)
    @problem_responses(403, 503)
    async def activity(query_args: IntervalListQuery) -> dict[str, Any]:
        """Per person and bucket: commits, pull requests opened and merged, reviews,
        active days."""
        scope = await scoped(query_args, interval=query_args.interval, people=True)
        after = unpack(query_args.cursor, uuid.UUID)
        limit = query_args.capped_limit
        async with tenant_session() as session:
            items = await queries.activity(session, scope, limit + 1,
                                           after[0] if after else None)
        more = len(items) > limit
        items = items[:limit]
        return {"window": _window(scope), "interval": scope.interval, "items": items,
                "next_cursor": pack(items[-1]["person"]["id"]) if more else None}

    @blueprint.get("/contributors/changes")
    @require_role("viewer")
    @validate_querystring(ListQuery)
    @validate_response(GithubContributorChanges)
    @problem_responses(403, 503)
    async def contributor_changes(query_args: ListQuery) -> dict[str, Any]:
        """New contributors (first commit in the window) and departed ones (committed in
        the previous window of the same length, not in this one)."""
        scope = await scoped(query_args)
        unpack(query_args.cursor, uuid.UUID)  # no pages: a cursor is refused if malformed
        async with tenant_session() as session:
            found = await queries.contributor_changes(session, scope,
                                                      query_args.capped_limit)
        return {"window": _window(scope), **found}

    @blueprint.get("/repositories/release-cadence")
    @require_role("viewer")
    @validate_querystring(IntervalQuery)
    @validate_response(GithubReleaseCadence)
    @problem_responses(403, 503)
    async def release_cadence(query_args: IntervalQuery) -> dict[str, Any]:
        """Releases (successful production deployments: deploy tags, releases,
        deployments) per bucket and per repository."""
        scope = await scoped(query_args, interval=query_args.interval)
        async with tenant_session() as session:
            found = await flow.release_cadence(session, scope)
        return {"window": _window(scope), "interval": scope.interval, **found}

    @blueprint.get("/repositories/branch-lifetime")
    @require_role("viewer")
    @validate_querystring(IntervalQuery)
    @validate_response(GithubBranchLifetime)
    @problem_responses(403, 503)
    async def branch_lifetime(query_args: IntervalQuery) -> dict[str, Any]:
        """Lifetime of pull-request head branches."""
        scope = await scoped(query_args, interval=query_args.interval)
        async with tenant_session() as session:
            found = await flow.branch_lifetime(session, scope)
        return {"window": _window(scope), "interval": scope.interval, **found}

    @blueprint.get("/repositories/churn")
    @require_role("viewer")
    @validate_querystring(IntervalQuery)
    @validate_response(GithubChurn)
    @problem_responses(403, 503)
    async def churn(query_args: IntervalQuery) -> dict[str, Any]:
        """Non-merge commits and changed lines per bucket."""
        scope = await scoped(query_args, interval=query_args.interval)
        async with tenant_session() as session:
            found = await queries.churn(session, scope)
        series = []
        for start, end in scope.bucket_bounds:
            lower, upper = queries.clip(scope, start, end)
            point = found.get(queries.bucket_key(start), {
                "commits": 0, "additions": 0, "deletions": 0, "files_changed": 0})
            series.append({"start": lower, "end": upper, **point})
        return {"window": _window(scope), "interval": scope.interval, "series": series}

    return blueprint
