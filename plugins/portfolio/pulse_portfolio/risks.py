"""Risk flags with their evidence (the numbers and the window), for people to act on.

* ``metric_worsening``: an executive KPI whose last full week is worse than the mean of
  the weeks before it by more than two standard deviations (its normal variation);
* ``throughput_down_failures_up``: a project whose work-item throughput fell against the
  previous window while its change failure rate rose (both metrics from the catalog);
* ``sole_contributor``: an active repository (commits in the window; the 50 most active)
  with a contributor absence factor of 1 (when a metric named ``*absence_factor`` with a
  ``repository`` filter is registered: pulse-github's ``github.contributor_absence_factor``);
* ``aging_work``: work in progress older than the tenant's threshold;
* ``forecast_past_due``: an objective whose open work is 85% likely done only after its
  due date (Monte Carlo over its projects' throughput).
"""

from __future__ import annotations

import asyncio
import statistics
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from pulse_engine import MetricQuery, Problem
from pulse_portfolio import forecast
from pulse_portfolio.config import PortfolioSettings, tenant_config
from pulse_portfolio.flow import flow, load_items, throughput_history

if TYPE_CHECKING:
    from pulse_engine import Engine

THROUGHPUT = "portfolio.throughput"
FAILURE_RATE = "dora.change_failure_rate"
#: The most active repositories checked for a contributor absence factor of 1.
ACTIVE_REPOSITORIES = 50


async def _read(engine: Engine, name: str, query: MetricQuery) -> Any:
    definition = engine.metrics.get(name)
    owner = engine.metrics.owner(name)
    if definition is None or owner is None or not await engine.capabilities.is_enabled(
            query.tenant_id, owner):
        return None
    try:
        return definition.check(await definition.compute(engine, query))
    except Problem:
        return None


async def risk_flags(engine: Engine, settings: PortfolioSettings, tenant_id: str,
                     start: datetime, end: datetime, tz: str) -> list[dict[str, Any]]:
    """Every flag of the tenant over ``[start, end)``."""
    from pulse_portfolio.routes import executive_document, open_linked

    flags: list[dict[str, Any]] = []
    config = await tenant_config(engine, tenant_id)
    window = {"start": start.isoformat(), "end": end.isoformat()}
    # a KPI worsening beyond its normal variation
    executive = await executive_document(engine, tenant_id, end, tz)
    for kpi in executive["kpis"]:
        weekly = [v for v in kpi["weekly"] if v is not None]  # whole weeks
        if len(weekly) < 5:
            continue
        *before, last = weekly
        mean, spread = statistics.fmean(before), statistics.pstdev(before)
        worse = last - mean if not kpi["higher_is_better"] else mean - last
        if spread > 0 and worse > 2 * spread:
            flags.append({"kind": "metric_worsening", "subject": kpi["metric"],
                          "message": f"{kpi['metric']} last week {last:.4g} is more than two "
                          f"standard deviations worse than its mean {mean:.4g}",
                          "evidence": {"last_week": last, "mean": mean, "stdev": spread,
                                       "weeks": len(before), **executive["window"]}})
    async with engine.db.tenant_session(tenant_id) as session:
        projects = (await session.execute(text(
            "SELECT CAST(id AS text) AS id, name FROM projects ORDER BY name LIMIT :n"),
            {"n": settings.max_projects})).mappings().all()
    previous = MetricQuery(tenant_id, start - (end - start), start, "all", tz)
    current = MetricQuery(tenant_id, start, end, "all", tz)
    for project in projects:
        scoped = {"project": (project["id"],)}
        now_t, before_t, now_f, before_f = await asyncio.gather(
            _read(engine, THROUGHPUT, MetricQuery(**{**current.__dict__, "filters": scoped})),
            _read(engine, THROUGHPUT, MetricQuery(**{**previous.__dict__, "filters": scoped})),
            _read(engine, FAILURE_RATE, MetricQuery(**{**current.__dict__, "filters": scoped})),
            _read(engine, FAILURE_RATE, MetricQuery(**{**previous.__dict__, "filters": scoped})))
        if None in (now_t, before_t, now_f, before_f):
            continue
        t1, t0 = now_t.value.value or 0, before_t.value.value or 0
        f1, f0 = now_f.value.value, before_f.value.value
        if f1 is not None and f0 is not None and t1 < t0 and f1 > f0:
            flags.append({"kind": "throughput_down_failures_up", "subject": project["name"],
                          "message": f"{project['name']}: throughput {t0:g} -> {t1:g} while "
                          f"the change failure rate rose {f0:.0%} -> {f1:.0%}",
                          "evidence": {"throughput": [t0, t1], "change_failure_rate": [f0, f1],
                                       "window": window,
                                       "previous_window": {"start": previous.start.isoformat(),
                                                           "end": previous.end.isoformat()}}})
    # a contributor absence factor of 1 on an active repository (a metric some plugin,
    # pulse-github, registers; found by name in the catalog)
    absence = [name for name in engine.metrics.names() if name.endswith("absence_factor")]
    for name in absence:
        definition = engine.metrics.get(name)
        if definition is None or "repository" not in {f.name for f in definition.filters}:
            continue
        async with engine.db.tenant_session(tenant_id) as session:
            active = (await session.execute(text(
                "SELECT CAST(r.id AS text) AS id, r.name, count(*) AS commits "
                "FROM repositories r JOIN commits c ON c.tenant_id = r.tenant_id "
                "AND c.repository_id = r.id WHERE c.authored_at >= :start "
                "AND c.authored_at < :end GROUP BY r.id, r.name "
                "ORDER BY count(*) DESC LIMIT :n"),
                {"start": start, "end": end, "n": ACTIVE_REPOSITORIES})).mappings().all()
        for repository in active:
            result = await _read(engine, name, MetricQuery(
                tenant_id, start, end, "all", tz, {"repository": (repository["id"],)}))
            if result is not None and result.value.value == 1:
                flags.append({
                    "kind": "sole_contributor", "subject": repository["name"],
                    "message": f"{repository['name']}: one person made at least half of its "
                    f"{repository['commits']} commits ({name} = 1)",
                    "evidence": {"metric": name, "value": 1, "repository": repository["id"],
                                 "commits": int(repository["commits"]), "window": window}})
    # aging work
    async with engine.db.tenant_session(tenant_id) as session:
        items = await load_items(session, None, start, end)
    body = flow(items, config, start, end, tz)
    if body["aging"]["count"]:
        flags.append({"kind": "aging_work", "subject": "tenant",
                      "message": f"{body['aging']['count']} items in progress for more than "
                      f"{config.aging_threshold_days:g} days",
                      "evidence": {**body["aging"], "window": window}})
    # objectives whose forecast is past their due date
    async with engine.db.tenant_session(tenant_id) as session:
        objectives = (await session.execute(text(
            "SELECT * FROM portfolio_objectives WHERE due_date IS NOT NULL "
            "ORDER BY due_date LIMIT 50"))).mappings().all()
        today = end.astimezone(UTC).date()
        for objective in objectives:
            remaining = await open_linked(session, objective)
            if not remaining:
                continue
            history = await throughput_history(
                session, [str(p) for p in objective["projects"]] or None,
                today - timedelta(days=settings.forecast_history_days),
                settings.forecast_history_days, tz)
            try:
                result = await asyncio.to_thread(forecast.forecast, history,
                                                 remaining=remaining, seed=0)
            except forecast.NotEnoughHistory:
                continue
            p85 = result.values[85]
            done = today + timedelta(days=p85) if p85 is not None else None
            if done is None or done > objective["due_date"]:
                flags.append({"kind": "forecast_past_due", "subject": objective["name"],
                              "message": f"{objective['name']}: {remaining} open items are 85% "
                              f"likely done by {done or 'beyond ten years'}, after the due date "
                              f"{objective['due_date']}",
                              "evidence": {"remaining": remaining, "p85": str(done),
                                           "due_date": str(objective["due_date"]),
                                           "history_days": len(history),
                                           "history_items": int(sum(history))}})
    return flags
