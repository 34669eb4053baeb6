"""Work-item flow of a scope (a project, a team, the tenant) from pulse-etl's stored rows.

Read by table name through SQL (the unified model is a contract; no plugin is imported).
A team's work items are those of its project (``teams.project_id``), as a team's
repositories are its project's for the DORA metrics.

Definitions (``docs/portfolio.md`` has them with examples):

* an item **starts** at its first status change to a status that is not a to-do status
  (else, without history, when it was created) and **finishes** at ``resolved_at``;
* **cycle time**: finish - start, for items finished in the window;
* **throughput**: items finished per day (per week);
* **WIP** at a moment: items started and not finished then; **aging**: WIP items whose
  age (moment - start) exceeds the tenant's threshold;
* **flow efficiency** of finished items with status history: time in active statuses
  divided by the whole time from start to finish, where active means neither a wait
  state of the tenant nor a to-do or done status;
* **velocity**: per sprint (ended in the window), the points and items of its items that
  finished by the sprint's end; its stability is the coefficient of variation;
* **planned / unplanned**: an item in a sprint is planned when created before the sprint
  started; an item in no sprint is unplanned when its type is one of the tenant's
  unplanned types;
* **work type**: the tenant's type mapping (feature, bug, debt, incident), debt labels
  first.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from pulse_engine import Problem, invalid_field
from pulse_portfolio.config import PortfolioConfig

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

#: The most work items one flow read loads.
MAX_ITEMS = 200_000


@dataclass(frozen=True)
class Item:
    """One work item with what the flow measures need."""

    id: str
    key: str | None
    type: str
    status: str
    points: float | None
    sprint_id: str | None
    labels: tuple[str, ...]
    created: datetime | None
    resolved: datetime | None
    project_id: str | None
    changes: tuple[tuple[datetime, str], ...]  # (changed_at, to_status), in time order

    def start(self, config: PortfolioConfig) -> datetime | None:
        """When work started (first change out of the to-do statuses, else creation)."""
        for moment, status in self.changes:
            if status.lower() not in config.todo_statuses:
                return moment
        if self.changes and self.resolved is None:
            return None  # only ever moved between to-do statuses: not started
        return self.created


async def resolve_scope(session: AsyncSession, scope: str | None, ident: str | None,
                        field: str = "scope") -> list[str] | None:
    """The project ids of ``project:<id|key|name>`` or ``team:<id|name>`` (None: tenant)."""
    if scope is None or scope == "tenant":
        return None
    if ident is None:
        raise invalid_field(field, "give the project or team id, key or name")
    if scope == "project":
        rows = (await session.execute(text(
            "SELECT CAST(id AS text) FROM projects WHERE CAST(id AS text) = :v OR key = :v "
            "OR name = :v"), {"v": ident})).scalars().all()
    else:
        rows = (await session.execute(text(
            "SELECT CAST(project_id AS text) FROM teams WHERE (CAST(id AS text) = :v OR name = :v) "
            "AND project_id IS NOT NULL"), {"v": ident})).scalars().all()
    if not rows:
        raise invalid_field(field, f"no {scope} {ident!r}", type="unknown_scope")
    return sorted(set(rows))


def _project_clause(projects: list[str] | None, alias: str = "w") -> str:
    return "" if projects is None else f" AND {alias}.project_id = ANY(CAST(:projects AS uuid[]))"


async def load_items(session: AsyncSession, projects: list[str] | None, start: datetime,
                     end: datetime) -> list[Item]:
    """Items of the scope finished in ``[start, end)`` or open at ``end`` (with history)."""
    params: dict[str, Any] = {"start": start, "end": end, "projects": projects or [],
                              "limit": MAX_ITEMS + 1}
    where = ("w.created_at_source < :end AND (w.resolved_at IS NULL OR w.resolved_at >= :start)"
             + _project_clause(projects))
    rows = (await session.execute(text(
        "SELECT CAST(w.id AS text) AS id, w.key, w.type, w.status, w.points, "
        "CAST(w.sprint_id AS text) AS sprint_id, w.labels, w.created_at_source, w.resolved_at, "
        f"CAST(w.project_id AS text) AS project_id FROM work_items w WHERE {where} "
        "ORDER BY w.id LIMIT :limit"), params)).mappings().all()
    if len(rows) > MAX_ITEMS:
        raise Problem(422, "too-many-work-items",
                      f"More than {MAX_ITEMS} work items in the window; narrow the scope or "
                      "the window.", limit=MAX_ITEMS)
    changes: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    history = (await session.execute(text(
        "SELECT CAST(c.work_item_id AS text) AS item, c.changed_at, c.to_status "
        "FROM work_item_status_changes c JOIN work_items w ON w.tenant_id = c.tenant_id "
        f"AND w.id = c.work_item_id WHERE {where} ORDER BY c.work_item_id, c.changed_at, c.id"),
        params)).mappings()
    for row in history:
        changes[row["item"]].append((row["changed_at"], row["to_status"]))
    return [
        Item(id=r["id"], key=r["key"], type=r["type"], status=r["status"],
             points=r["points"], sprint_id=r["sprint_id"], labels=tuple(r["labels"] or ()),
             created=r["created_at_source"], resolved=r["resolved_at"],
             project_id=r["project_id"], changes=tuple(changes.get(r["id"], ())))
        for r in rows
    ]


def daily_throughput(items: list[Item], start_day: date, days: int, tz: str) -> list[int]:
    """Items finished on each local day from ``start_day`` (``days`` days)."""
    zone = ZoneInfo(tz)
    counts = [0] * days
    for item in items:
        if item.resolved is None:
            continue
        offset = (item.resolved.astimezone(zone).date() - start_day).days
        if 0 <= offset < days:
            counts[offset] += 1
    return counts


async def throughput_history(session: AsyncSession, projects: list[str] | None,
                             first: date, days: int, tz: str) -> list[int]:
    """Work items finished per local day, ``days`` days from ``first`` (one grouped scan)."""
    rows = (await session.execute(text(
        "SELECT CAST(w.resolved_at AT TIME ZONE :tz AS date) AS day, count(*) AS n "
        "FROM work_items w WHERE w.resolved_at >= CAST(:lo AS timestamp) AT TIME ZONE :tz "
        "AND w.resolved_at < CAST(:hi AS timestamp) AT TIME ZONE :tz" + _project_clause(projects)
        + " GROUP BY 1"), {"tz": tz, "lo": datetime.combine(first, datetime.min.time()),
                           "hi": datetime.combine(first + timedelta(days=days),
                                                  datetime.min.time()),
                           "projects": projects or []})).mappings()
    counts = [0] * days
    for row in rows:
        offset = (row["day"] - first).days
        if 0 <= offset < days:
            counts[offset] += int(row["n"])
    return counts


def work_type(item: Item, config: PortfolioConfig) -> str:
    """feature, bug, debt or incident."""
    if any(label.lower() in config.debt_labels for label in item.labels):
        return "debt"
    return config.work_types.get(item.type.strip().lower(), "feature")


def flow_efficiency(item: Item, config: PortfolioConfig) -> tuple[float, float] | None:
    """(active seconds, total seconds) from start to finish, from the status history."""
    started = item.start(config)
    if item.resolved is None or started is None or not item.changes:
        return None
    total = (item.resolved - started).total_seconds()
    if total <= 0:
        return None
    active = 0.0
    timeline = [c for c in item.changes if c[0] < item.resolved]
    for index, (moment, status) in enumerate(timeline):
        if moment < started:
            continue
        until = timeline[index + 1][0] if index + 1 < len(timeline) else item.resolved
        name = status.lower()
        if name not in config.wait_states and name not in config.todo_statuses \
                and name not in config.done_statuses:
            active += (until - moment).total_seconds()
    return active, total


def flow(items: list[Item], config: PortfolioConfig, start: datetime, end: datetime,
         tz: str) -> dict[str, Any]:
    """Cycle time, throughput per week, WIP, aging, flow efficiency and work types."""
    finished = [i for i in items if i.resolved is not None and start <= i.resolved < end]
    cycles = []
    for item in finished:
        began = item.start(config)
        if began is not None and item.resolved is not None and item.resolved >= began:
            cycles.append((item.resolved - began).total_seconds())
    wip = []
    for item in items:
        began = item.start(config)
        if began is not None and began < end and (item.resolved is None or item.resolved >= end):
            wip.append((item, (end - began).total_seconds() / 86400))
    threshold = config.aging_threshold_days
    efficiencies = [e for e in (flow_efficiency(i, config) for i in finished) if e is not None]
    active = sum(a for a, _ in efficiencies)
    total = sum(t for _, t in efficiencies)
    zone = ZoneInfo(tz)
    weeks: dict[date, int] = {}
    first_day = start.astimezone(zone).date()
    week0 = first_day - timedelta(days=first_day.weekday())
    last_day = (end - timedelta(microseconds=1)).astimezone(zone).date()
    week = week0
    while week <= last_day:
        weeks[week] = 0
        week += timedelta(days=7)
    for item in finished:
        assert item.resolved is not None
        day = item.resolved.astimezone(zone).date()
        weeks[day - timedelta(days=day.weekday())] += 1
    types: dict[str, dict[str, float]] = {t: {"items": 0, "points": 0.0}
                                          for t in ("feature", "bug", "debt", "incident")}
    for item in finished:
        bucket = types[work_type(item, config)]
        bucket["items"] += 1
        bucket["points"] += item.points or 0.0
    all_items = sum(b["items"] for b in types.values())
    all_points = sum(b["points"] for b in types.values())
    return {
        "finished": len(finished),
        "cycle_time": distribution(cycles),
        "throughput_per_week": [{"week": w, "items": n} for w, n in weeks.items()],
        "wip": len(wip),
        "aging": {
            "threshold_days": threshold,
            "count": sum(1 for _, age in wip if age > threshold),
            "items": [{"id": i.id, "key": i.key, "status": i.status, "age_days": age}
                      for i, age in sorted(wip, key=lambda pair: -pair[1]) if age > threshold
                      ][:50],
        },
        "flow_efficiency": {
            "value": active / total if total else None,
            "items": len(efficiencies), "active_seconds": active, "total_seconds": total,
            "wait_states": config.wait_states,
        },
        "effort_by_work_type": {
            name: {"items": int(b["items"]), "points": b["points"],
                   "share_items": b["items"] / all_items if all_items else None,
                   "share_points": b["points"] / all_points if all_points else None}
            for name, b in types.items()},
    }


def distribution(values: list[float]) -> dict[str, Any]:
    """Median, p75, p90 (linear interpolation), mean and count."""
    if not values:
        return {"count": 0, "median": None, "p75": None, "p90": None, "mean": None}
    ordered = sorted(values)

    def at(fraction: float) -> float:
        position = fraction * (len(ordered) - 1)
        low = math.floor(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    return {"count": len(values), "median": at(0.5), "p75": at(0.75), "p90": at(0.9),
            "mean": sum(values) / len(values)}


async def sprints(session: AsyncSession, projects: list[str] | None, start: datetime,
                  end: datetime, config: PortfolioConfig) -> dict[str, Any]:
    """Velocity (points and items done by each sprint's end), its stability, and planned
    against unplanned work per sprint, for sprints that ended in the window."""
    params = {"start": start, "end": end, "projects": projects or []}
    rows = (await session.execute(text(
        "SELECT CAST(s.id AS text) AS id, s.name, s.started_at, "
        "coalesce(s.completed_at, s.ended_at) AS ended_at, "
        "w.points, w.type, w.created_at_source, w.resolved_at, w.id AS item "
        "FROM sprints s LEFT JOIN work_items w ON w.tenant_id = s.tenant_id "
        "AND w.sprint_id = s.id "
        "WHERE coalesce(s.completed_at, s.ended_at) >= :start "
        "AND coalesce(s.completed_at, s.ended_at) < :end" + _project_clause(projects, "s")
        + " ORDER BY coalesce(s.completed_at, s.ended_at), s.id LIMIT 200000"), params)).mappings()
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        sprint = out.setdefault(row["id"], {
            "id": row["id"], "name": row["name"], "started_at": row["started_at"],
            "ended_at": row["ended_at"], "points_done": 0.0, "items_done": 0,
            "planned": 0, "unplanned": 0, "committed_items": 0})
        if row["item"] is None:
            continue
        sprint["committed_items"] += 1
        if row["resolved_at"] is not None and row["resolved_at"] <= row["ended_at"]:
            sprint["points_done"] += row["points"] or 0.0
            sprint["items_done"] += 1
        started = row["started_at"]
        created = row["created_at_source"]
        if started is not None and created is not None and created > started:
            sprint["unplanned"] += 1
        else:
            sprint["planned"] += 1
    listed = list(out.values())
    points = [s["points_done"] for s in listed]
    mean = statistics.fmean(points) if points else None
    spread = statistics.pstdev(points) if len(points) > 1 else None
    unsprinted = (await session.execute(text(
        "SELECT count(*) FILTER (WHERE lower(w.type) = ANY(CAST(:unplanned AS text[]))) AS u, "
        "count(*) AS n FROM work_items w WHERE w.sprint_id IS NULL AND w.resolved_at >= :start "
        "AND w.resolved_at < :end" + _project_clause(projects)),
        {**params, "unplanned": config.unplanned_types})).mappings().one()
    return {
        "sprints": listed,
        "velocity": {
            "mean_points": mean,
            "stdev_points": spread,
            "coefficient_of_variation": spread / mean if mean and spread is not None else None,
            "mean_items": statistics.fmean([s["items_done"] for s in listed]) if listed else None,
        },
        "planned": sum(s["planned"] for s in listed) + int(unsprinted["n"]) - int(unsprinted["u"]),
        "unplanned": sum(s["unplanned"] for s in listed) + int(unsprinted["u"]),
    }
