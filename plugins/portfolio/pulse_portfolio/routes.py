"""The portfolio endpoints under ``{api_v1_prefix}/portfolio/``.

Reads need any tenant role; objectives are written by analysts and admins. Every input is
read through a model of :mod:`pulse_portfolio.schemas`; what needs the tenant's data (a
metric name, a project, a team) is checked against it and refused with a 422 naming the
parameter.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from quart import Blueprint, Response
from quart_schema import validate_querystring, validate_request, validate_response
from sqlalchemy import text

from pulse_engine import (
    MetricQuery,
    PageQuery,
    Problem,
    check_time_zone,
    check_window,
    current_tenant_id,
    decode_cursor,
    encode_cursor,
    file_response,
    invalid_cursor,
    invalid_field,
    no_content,
    problem_responses,
    require_role,
)
from pulse_portfolio import charts, forecast, trends
from pulse_portfolio.aggregate import aggregate, usable_metric
from pulse_portfolio.config import (
    DEFAULT_KPIS,
    KpiChoice,
    PortfolioConfig,
    PortfolioSettings,
    tenant_config,
)
from pulse_portfolio.flow import flow, load_items, resolve_scope, sprints, throughput_history
from pulse_portfolio.flow import work_type as item_work_type
from pulse_portfolio.schemas import (
    Aggregate,
    AggregateQuery,
    ChartQuery,
    Delivered,
    Delivery,
    DeliveryRequest,
    Executive,
    ExecutiveQuery,
    ExportQuery,
    Flow,
    FlowQuery,
    Objective,
    ObjectiveIn,
    ObjectivePage,
    ObjectivePatch,
    Risks,
    Sprints,
    TrendAnswer,
    TrendQuery,
    WindowQuery,
)

if TYPE_CHECKING:
    from pulse_engine import Engine

DEFAULT_WINDOW = timedelta(days=90)
#: KPIs read at once by the executive view (each is its own transaction).
KPI_CONCURRENCY = 6


def window_of(query: WindowQuery, settings: PortfolioSettings,
              default: timedelta = DEFAULT_WINDOW) -> tuple[datetime, datetime]:
    """The query's window, bounded (422 naming ``start`` when too long)."""
    end = query.end or datetime.now(UTC).replace(microsecond=0)
    start = query.start or end - default
    check_window(start, end, "day")
    if end - start > timedelta(days=settings.max_window_days):
        raise invalid_field("start", f"the window may be at most {settings.max_window_days} days")
    return start, end


def _csv(rows: list[dict[str, Any]], name: str) -> Response:
    buffer = io.StringIO()
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    writer = csv.DictWriter(buffer, fieldnames=columns or ["empty"], extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(value) for key, value in row.items()})
    response = Response(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    return response


def _cell(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ";".join(str(v) for v in value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value  # no formula injection into a spreadsheet
    return value


def _direction(slope: float | None, significant: bool, higher_is_better: bool) -> str:
    if slope is None:
        return "unknown"
    if not significant:
        return "flat"
    return "improving" if (slope > 0) == higher_is_better else "worsening"


def _level(value: float | None, target: float | None, higher_is_better: bool) -> str:
    if value is None:
        return "no_data"
    if target is None:
        return "no_target"
    met = value >= target if higher_is_better else value <= target
    if met:
        return "on_target"
    gap = abs(value - target) / abs(target) if target else math.inf
    return "near_target" if gap <= 0.1 else "off_target"


def build_blueprint(engine: Engine, settings: PortfolioSettings) -> Blueprint:
    """The portfolio blueprint (endpoint names ``portfolio.*``)."""
    blueprint = Blueprint("portfolio", __name__,
                          url_prefix=f"{engine.settings.api_v1_prefix}/portfolio")

    async def zone(tz: str) -> str:
        await check_time_zone(engine, tz)
        return tz

    @blueprint.get("/aggregate")
    @require_role("viewer")
    @validate_querystring(AggregateQuery)
    @validate_response(Aggregate)
    @problem_responses(503)
    async def aggregate_metric(query_args: AggregateQuery) -> dict[str, Any]:
        """Any catalog metric per project, per team and for the tenant."""
        tenant_id = current_tenant_id()
        definition = await usable_metric(engine, tenant_id, query_args.metric)
        start, end = window_of(query_args, settings)
        return await aggregate(engine, definition, tenant_id, start, end,
                               await zone(query_args.tz), settings.max_projects)

    @blueprint.post("/forecasts/delivery")
    @require_role("viewer")
    @validate_request(DeliveryRequest)
    @validate_response(Delivery)
    @problem_responses(503)
    async def delivery(data: DeliveryRequest) -> dict[str, Any]:
        """Monte Carlo: when will ``remaining`` items be done, or how many by ``by_date``."""
        return await delivery_forecast(engine, settings, current_tenant_id(), data)

    @blueprint.get("/executive")
    @require_role("viewer")
    @validate_querystring(ExecutiveQuery)
    @validate_response(Executive)
    @problem_responses(503)
    async def executive(query_args: ExecutiveQuery) -> dict[str, Any]:
        """The tenant's KPIs with target, value, weekly trend and level, in one answer."""
        return await executive_document(engine, current_tenant_id(), query_args.end,
                                        await zone(query_args.tz))

    @blueprint.get("/trends")
    @require_role("viewer")
    @validate_querystring(TrendQuery)
    @validate_response(TrendAnswer)
    @problem_responses(503)
    async def trend(query_args: TrendQuery) -> dict[str, Any]:
        """Any metric's series with its trend (slope, 95% interval) and a forecast band."""
        return await trend_document(engine, settings, query_args)

    @blueprint.get("/chart")
    @require_role("viewer")
    @validate_querystring(ChartQuery)
    @file_response("image/png", "image/svg+xml")
    @problem_responses(503)
    async def chart(query_args: ChartQuery) -> Response:
        """Any metric's series (with its forecast band) as a PNG or SVG chart."""
        document = await trend_document(engine, settings, query_args)
        body = await asyncio.to_thread(charts.render, document, query_args.format)
        kind = "image/png" if query_args.format == "png" else "image/svg+xml"
        return Response(body, content_type=kind)

    @blueprint.get("/flow")
    @require_role("viewer")
    @validate_querystring(FlowQuery)
    @validate_response(Flow)
    @problem_responses(503)
    async def work_flow(query_args: FlowQuery) -> dict[str, Any]:
        """Cycle time, weekly throughput, WIP, aging, flow efficiency and work types."""
        return await flow_document(engine, settings, query_args)

    @blueprint.get("/sprints")
    @require_role("viewer")
    @validate_querystring(FlowQuery)
    @validate_response(Sprints)
    @problem_responses(503)
    async def sprint_velocity(query_args: FlowQuery) -> dict[str, Any]:
        """Velocity per sprint and its stability; planned against unplanned work."""
        return await sprints_document(engine, settings, query_args)

    @blueprint.get("/objectives")
    @require_role("viewer")
    @validate_querystring(PageQuery)
    @validate_response(ObjectivePage)
    @problem_responses()
    async def list_objectives(query_args: PageQuery) -> dict[str, Any]:
        """The tenant's objectives, oldest first, paginated."""
        after = decode_cursor(query_args.cursor, str)
        limit = query_args.capped_limit
        tenant_id = current_tenant_id()
        if after is not None:
            try:
                moment, ident = after.rsplit("|", 1)
                bound: tuple[datetime, str] | None = (datetime.fromisoformat(moment),
                                                      str(uuid.UUID(ident)))
            except ValueError:
                raise invalid_cursor() from None
        else:
            bound = None
        async with engine.db.tenant_session(tenant_id) as session:
            rows = (await session.execute(text(
                "SELECT * FROM portfolio_objectives "
                + ("WHERE (created_at, id) > (:at, CAST(:id AS uuid)) " if bound else "")
                + "ORDER BY created_at, id LIMIT :limit"),
                {"limit": limit + 1, **({"at": bound[0], "id": bound[1]} if bound else {})}
            )).mappings().all()
        items = [_objective(row) for row in rows[:limit]]
        last = items[-1] if len(rows) > limit else None
        return {"items": items, "next_cursor": encode_cursor(
            f"{last['created_at'].isoformat()}|{last['id']}") if last else None}

    @blueprint.post("/objectives")
    @require_role("analyst")
    @validate_request(ObjectiveIn)
    @validate_response(Objective, 201)
    @problem_responses()
    async def create_objective(data: ObjectiveIn) -> tuple[dict[str, Any], int]:
        """Create an objective linked to projects, epics or labels."""
        tenant_id = current_tenant_id()
        async with engine.db.tenant_session(tenant_id) as session:
            projects = await _project_ids(session, data.projects)
            row = (await session.execute(text(
                "INSERT INTO portfolio_objectives (tenant_id, id, name, description, due_date, "
                "projects, epics, labels) VALUES (CAST(:tenant AS uuid), CAST(:id AS uuid), "
                ":name, :description, :due, CAST(:projects AS uuid[]), :epics, :labels) "
                "RETURNING *"), {
                    "tenant": tenant_id, "id": str(uuid.uuid4()), "name": data.name,
                    "description": data.description, "due": data.due_date,
                    "projects": projects, "epics": _clean(data.epics),
                    "labels": _clean(data.labels)})).mappings().one()
        return _objective(row), 201

    @blueprint.get("/objectives/<objective_id>")
    @require_role("viewer")
    @validate_response(Objective)
    @problem_responses()
    async def get_objective(objective_id: str) -> dict[str, Any]:
        """One objective."""
        async with engine.db.tenant_session(current_tenant_id()) as session:
            return _objective(await _load_objective(session, objective_id))

    @blueprint.patch("/objectives/<objective_id>")
    @require_role("analyst")
    @validate_request(ObjectivePatch)
    @validate_response(Objective)
    @problem_responses()
    async def update_objective(objective_id: str, data: ObjectivePatch) -> dict[str, Any]:
        """Change an objective (the fields given)."""
        async with engine.db.tenant_session(current_tenant_id()) as session:
            current = await _load_objective(session, objective_id, lock=True)
            given = data.model_dump(exclude_unset=True)
            if "name" in given and given["name"] is None:
                raise invalid_field("name", "an objective needs a name")
            values = {
                "name": given.get("name", current["name"]),
                "description": given.get("description", current["description"]),
                "due": given.get("due_date", current["due_date"]),
                "projects": await _project_ids(session, given["projects"] or [])
                if "projects" in given else list(current["projects"]),
                "epics": _clean(given.get("epics") or []) if "epics" in given
                else list(current["epics"]),
                "labels": _clean(given.get("labels") or []) if "labels" in given
                else list(current["labels"]),
            }
            row = (await session.execute(text(
                "UPDATE portfolio_objectives SET name = :name, description = :description, "
                "due_date = :due, projects = CAST(:projects AS uuid[]), epics = :epics, "
                "labels = :labels, updated_at = now() WHERE id = CAST(:id AS uuid) RETURNING *"),
                {**values, "id": current["id"]})).mappings().one()
        return _objective(row)

    @blueprint.delete("/objectives/<objective_id>")
    @require_role("analyst")
    @no_content
    @problem_responses()
    async def delete_objective(objective_id: str) -> tuple[str, int]:
        """Delete an objective."""
        async with engine.db.tenant_session(current_tenant_id()) as session:
            current = await _load_objective(session, objective_id)
            await session.execute(text("DELETE FROM portfolio_objectives WHERE id = "
                                       "CAST(:id AS uuid)"), {"id": current["id"]})
        return "", 204

    @blueprint.get("/objectives/<objective_id>/delivered")
    @require_role("viewer")
    @validate_querystring(WindowQuery)
    @validate_response(Delivered)
    @problem_responses()
    async def delivered(objective_id: str, query_args: WindowQuery) -> dict[str, Any]:
        """Work items finished in the window for an objective, by work type."""
        tenant_id = current_tenant_id()
        start, end = window_of(query_args, settings)
        config = await tenant_config(engine, tenant_id)
        async with engine.db.tenant_session(tenant_id) as session:
            objective = await _load_objective(session, objective_id)
            rows = await delivered_rows(session, objective, start, end)
            total = (await session.execute(text(
                "SELECT count(*) FROM work_items WHERE resolved_at >= :start "
                "AND resolved_at < :end"), {"start": start, "end": end})).scalar_one()
        by_type = {name: 0 for name in ("feature", "bug", "debt", "incident")}
        for row in rows:
            by_type[_row_work_type(row, config)] += 1
        return {
            "objective": _objective(objective),
            "window": {"start": start, "end": end, "tz": query_args.tz},
            "items": len(rows), "points": float(sum(r["points"] or 0 for r in rows)),
            "by_work_type": by_type,
            "share_of_all_items": len(rows) / total if total else None,
        }

    @blueprint.get("/risks")
    @require_role("viewer")
    @validate_querystring(WindowQuery)
    @validate_response(Risks)
    @problem_responses(503)
    async def risks(query_args: WindowQuery) -> dict[str, Any]:
        """Risk flags a human can act on, each with its evidence."""
        from pulse_portfolio.risks import risk_flags

        tenant_id = current_tenant_id()
        start, end = window_of(query_args, settings)
        return {"window": {"start": start, "end": end, "tz": await zone(query_args.tz)},
                "flags": await risk_flags(engine, settings, tenant_id, start, end,
                                          query_args.tz)}

    @blueprint.get("/export")
    @require_role("viewer")
    @validate_querystring(ExportQuery)
    @file_response("text/csv")
    @problem_responses(503)
    async def export(query_args: ExportQuery) -> Response:
        """A portfolio table as CSV."""
        return _csv(await export_rows(engine, settings, query_args), query_args.table)

    return blueprint


def _clean(values: list[str]) -> list[str]:
    out = []
    for value in values:
        value = value.strip()
        if not value or "\x00" in value:
            continue
        out.append(value[:200])
    return sorted(set(out))


async def _project_ids(session: Any, given: list[str]) -> list[str]:
    if not given:
        return []
    names = [g for g in (v.strip() for v in given) if g and "\x00" not in g]
    rows = (await session.execute(text(
        "SELECT CAST(id AS text) AS id, key, name FROM projects WHERE CAST(id AS text) = ANY(:v) "
        "OR key = ANY(:v) OR name = ANY(:v)"), {"v": names})).mappings().all()
    found = {row["id"] for row in rows}
    known = {value for row in rows for value in (row["id"], row["key"], row["name"])}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise invalid_field("projects", f"unknown projects: {', '.join(unknown[:10])}",
                            type="unknown_scope")
    return sorted(found)


async def _load_objective(session: Any, objective_id: str, lock: bool = False) -> Any:
    try:
        ident = str(uuid.UUID(objective_id))
    except ValueError:
        raise Problem(404, "objective-not-found", "No such objective.") from None
    row = (await session.execute(text(
        "SELECT * FROM portfolio_objectives WHERE id = CAST(:id AS uuid)"
        + (" FOR UPDATE" if lock else "")), {"id": ident})).mappings().one_or_none()
    if row is None:
        raise Problem(404, "objective-not-found", "No such objective.")
    return row


def _objective(row: Any) -> dict[str, Any]:
    return {"id": str(row["id"]), "name": row["name"], "description": row["description"],
            "due_date": row["due_date"], "projects": [str(p) for p in row["projects"]],
            "epics": list(row["epics"]), "labels": list(row["labels"]),
            "created_at": row["created_at"], "updated_at": row["updated_at"]}


def _linked_clause() -> str:
    """Work items linked to an objective: of its projects, its epics (the epic itself and
    items labelled with the epic key) or with one of its labels."""
    return (
        "(w.project_id = ANY(CAST(:projects AS uuid[])) OR w.key = ANY(CAST(:epics AS text[])) "
        "OR w.labels && CAST(:epics AS varchar[]) OR w.labels && CAST(:labels AS varchar[]))"
    )


async def delivered_rows(session: Any, objective: Any, start: datetime,
                         end: datetime) -> list[Any]:
    """The objective's work items finished in ``[start, end)``."""
    return list((await session.execute(text(
        "SELECT w.id, w.type, w.labels, w.points FROM work_items w WHERE "
        + _linked_clause() + " AND w.resolved_at >= :start AND w.resolved_at < :end "
        "LIMIT 200001"), {"projects": [str(p) for p in objective["projects"]],
                         "epics": list(objective["epics"]), "labels": list(objective["labels"]),
                         "start": start, "end": end})).mappings().all())


async def open_linked(session: Any, objective: Any) -> int:
    """The objective's work items not finished."""
    return int((await session.execute(text(
        "SELECT count(*) FROM work_items w WHERE " + _linked_clause()
        + " AND w.resolved_at IS NULL"),
        {"projects": [str(p) for p in objective["projects"]], "epics": list(objective["epics"]),
         "labels": list(objective["labels"])})).scalar_one())


def _row_work_type(row: Any, config: PortfolioConfig) -> str:
    from pulse_portfolio.flow import Item

    return item_work_type(Item(id="", key=None, type=row["type"], status="", points=None,
                               sprint_id=None, labels=tuple(row["labels"] or ()), created=None,
                               resolved=None, project_id=None, changes=()), config)


async def delivery_forecast(engine: Engine, settings: PortfolioSettings, tenant_id: str,
                            data: DeliveryRequest) -> dict[str, Any]:
    """The delivery forecast of a request (see :class:`DeliveryRequest`)."""
    await check_time_zone(engine, data.tz)
    if data.throughput is not None:
        history = list(data.throughput)
        assert data.start is not None
        start = data.start
        first = start - timedelta(days=len(history))
    else:
        start = data.start or datetime.now(ZoneInfo(data.tz)).date()
        days = data.history_days or settings.forecast_history_days
        first = start - timedelta(days=days)
        if first < date(1970, 1, 2):
            raise invalid_field("start", "too early for the history to read")
        async with engine.db.tenant_session(tenant_id) as session:
            projects = await resolve_scope(session, data.scope, data.id, "id")
            history = await throughput_history(session, projects, first, days, data.tz)
    if start.year > 2190:
        raise invalid_field("start", "must be before 2190")
    requested = sorted(set(data.percentiles or forecast.LEVELS))
    capped = [str(level) for level in requested if level > forecast.MAX_LEVEL]
    levels = sorted({min(level, forecast.MAX_LEVEL) for level in requested})
    model = forecast.ForecastModel(method=data.method)
    kwargs: dict[str, int] = {}
    if data.remaining is not None:
        kwargs["remaining"] = data.remaining
    else:
        assert data.by_date is not None
        span = (data.by_date - start).days + 1
        if span < 1:
            raise invalid_field("by_date", "must be on or after start")
        if span > forecast.MAX_HORIZON_DAYS:
            raise invalid_field("by_date", f"at most {forecast.MAX_HORIZON_DAYS} days after start")
        kwargs["days"] = span
    try:
        result = await asyncio.to_thread(
            forecast.forecast, history, model=model, levels=levels,
            minimum_days=data.minimum_days, seed=data.seed, **kwargs)
    except forecast.NotEnoughHistory as refused:
        raise Problem(
            422, "not-enough-history",
            f"Only {refused.days_with_completion} days with a completion in the last "
            f"{model.window} days of history; a forecast needs at least {refused.minimum}.",
            days_with_completion=refused.days_with_completion, minimum=refused.minimum,
        ) from None
    percentiles: dict[str, date | int | None] = {}
    for level in requested:
        value = result.values[min(level, forecast.MAX_LEVEL)]
        if result.kind == "when":
            percentiles[str(level)] = start + timedelta(days=value) if value is not None else None
        else:
            percentiles[str(level)] = value
    due = None
    if data.due_date is not None and result.kind == "when":
        chance = forecast.likelihood(result, (data.due_date - start).days)
        due = {"due_date": data.due_date, "likelihood": min(chance, forecast.MAX_LEVEL / 100),
               "capped": chance > forecast.MAX_LEVEL / 100}
    active = [i for i, count in enumerate(history) if count]
    return {
        "question": result.kind, "start": start, "remaining": data.remaining,
        "by_date": data.by_date, "percentiles": percentiles, "capped": capped,
        "trials": result.trials, "due": due,
        "history": {"days": len(history), "days_with_completion": len(active),
                    "items": int(sum(history)),
                    "first": first + timedelta(days=active[0]) if active else None,
                    "last": first + timedelta(days=active[-1]) if active else None},
        "method": {"name": result.method, "window_days": model.window,
                   "block_days": model.block_days, "half_life_days": model.half_life_days,
                   "calibration_backtests": result.calibration_backtests,
                   "effective_backtests": result.calibration_effective,
                   "levels_used": {str(k): v for k, v in result.levels_used.items()}},
    }


def whole_weeks(end: datetime, days: int, tz: str) -> tuple[datetime, datetime]:
    """The complete local weeks (Monday 00:00 in ``tz``) covering ``days`` days up to the
    week that contains ``end``: no partial bucket at either edge biases a weekly trend."""
    zone = ZoneInfo(tz)
    local = end.astimezone(zone)
    monday = (local - timedelta(days=local.weekday())).replace(
        hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    weeks = max(1, math.ceil(days / 7))
    first = monday - timedelta(days=7 * weeks)
    return first.replace(tzinfo=zone).astimezone(UTC), monday.replace(tzinfo=zone).astimezone(UTC)


async def kpi_choices(engine: Engine, tenant_id: str,
                      config: PortfolioConfig) -> tuple[list[KpiChoice], bool]:
    """The tenant's KPIs (its choice, else the registered defaults)."""
    if config.executive_kpis is not None:
        return config.executive_kpis, False
    return [KpiChoice(metric=name, target=target) for name, target in DEFAULT_KPIS
            if engine.metrics.get(name) is not None], True


async def executive_document(engine: Engine, tenant_id: str, end: datetime | None,
                             tz: str) -> dict[str, Any]:
    """The executive view: each KPI over the tenant's window, its weekly series and trend."""
    config = await tenant_config(engine, tenant_id)
    choices, default = await kpi_choices(engine, tenant_id, config)
    start, end = whole_weeks(end or datetime.now(UTC), config.executive_window_days, tz)
    gate = asyncio.Semaphore(KPI_CONCURRENCY)

    async def read(choice: KpiChoice) -> dict[str, Any] | None:
        definition = engine.metrics.get(choice.metric)
        owner = engine.metrics.owner(choice.metric)
        if definition is None or owner is None or not await engine.capabilities.is_enabled(
                tenant_id, owner):
            return None
        base = {"metric": definition.name, "plugin": owner, "kind": definition.kind,
                "unit": definition.unit, "higher_is_better": definition.higher_is_better,
                "description": definition.description, "target": choice.target}
        try:
            async with gate:
                computed = definition.check(await definition.compute(
                    engine, MetricQuery(tenant_id, start, end, "week", tz)))
        except Problem as problem:
            return {**base, "value": None, "sample_size": 0, "level": "no_data",
                    "weekly": [], "error": problem.detail,
                    "trend": {"slope": None, "low": None, "high": None, "significant": False,
                              "points": 0, "method": "none", "direction": "unknown"}}
        weekly = [v.value for v in computed.series]
        shape = await asyncio.to_thread(trends.trend, weekly)
        shape["direction"] = _direction(shape["slope"], shape["significant"],
                                        definition.higher_is_better)
        return {**base, "value": computed.value.value, "sample_size": computed.value.sample_size,
                "level": _level(computed.value.value, choice.target, definition.higher_is_better),
                "weekly": weekly, "trend": shape}

    kpis = [k for k in await asyncio.gather(*(read(choice) for choice in choices)) if k]
    return {"window": {"start": start, "end": end, "tz": tz}, "kpis": kpis,
            "default_set": default}


async def trend_document(engine: Engine, settings: PortfolioSettings,
                         query: TrendQuery) -> dict[str, Any]:
    """A metric's series over the window with its trend and forecast."""
    tenant_id = current_tenant_id()
    definition = await usable_metric(engine, tenant_id, query.metric)
    start, end = window_of(query, settings)
    check_window(start, end, query.interval)
    await check_time_zone(engine, query.tz)
    supported = {f.name for f in definition.filters}
    filters: dict[str, tuple[str, ...]] = {}
    for name in ("project", "team"):
        value = getattr(query, name)
        if value is None:
            continue
        if name not in supported:
            raise invalid_field(name, f"{definition.name} does not support this filter",
                                type="unsupported_filter")
        filters[name] = (value,)
    computed = definition.check(await definition.compute(
        engine, MetricQuery(tenant_id, start, end, query.interval, query.tz, filters)))
    values = [v.value for v in computed.series]
    shape = await asyncio.to_thread(trends.trend, values)
    shape["direction"] = _direction(shape["slope"], shape["significant"],
                                    definition.higher_is_better)
    return {
        "metric": definition.name, "unit": definition.unit, "interval": query.interval,
        "window": {"start": start, "end": end, "tz": query.tz},
        "series": [{"start": v.start, "end": v.end, "value": v.value,
                    "sample_size": v.sample_size} for v in computed.series],
        "trend": shape,
        "forecast": await asyncio.to_thread(trends.forecast, values, query.horizon),
    }


async def flow_document(engine: Engine, settings: PortfolioSettings,
                        query: FlowQuery) -> dict[str, Any]:
    """The flow of a scope over the window."""
    tenant_id = current_tenant_id()
    start, end = window_of(query, settings)
    await check_time_zone(engine, query.tz)
    config = await tenant_config(engine, tenant_id)
    async with engine.db.tenant_session(tenant_id) as session:
        projects = await resolve_scope(session, query.scope, query.id, "id")
        items = await load_items(session, projects, start, end)
    body = flow(items, config, start, end, query.tz)
    return {"window": {"start": start, "end": end, "tz": query.tz}, "scope": query.scope,
            "projects": projects, **body}


async def sprints_document(engine: Engine, settings: PortfolioSettings,
                           query: FlowQuery) -> dict[str, Any]:
    """Velocity and planned/unplanned work of a scope over the window."""
    tenant_id = current_tenant_id()
    start, end = window_of(query, settings)
    config = await tenant_config(engine, tenant_id)
    async with engine.db.tenant_session(tenant_id) as session:
        projects = await resolve_scope(session, query.scope, query.id, "id")
        body = await sprints(session, projects, start, end, config)
    return {"window": {"start": start, "end": end, "tz": query.tz}, "scope": query.scope, **body}


async def export_rows(engine: Engine, settings: PortfolioSettings,
                      query: ExportQuery) -> list[dict[str, Any]]:
    """The rows of one portfolio table."""
    tenant_id = current_tenant_id()
    if query.table == "aggregate":
        if not query.metric:
            raise invalid_field("metric", "table=aggregate needs a metric")
        definition = await usable_metric(engine, tenant_id, query.metric)
        start, end = window_of(query, settings)
        await check_time_zone(engine, query.tz)
        document = await aggregate(engine, definition, tenant_id, start, end, query.tz,
                                   settings.max_projects)
        rows = [{"level": "project", "id": p["id"], "name": p["name"],
                 **_value_columns(p["value"])} for p in document["projects"]]
        rows += [{"level": "team", "id": t["id"], "name": t["name"],
                  **_value_columns(t["value"])} for t in document["teams"]]
        rows.append({"level": "tenant", "id": tenant_id, "name": "combined",
                     **_value_columns(document["tenant"]["value"])})
        rows.append({"level": "tenant", "id": tenant_id, "name": "direct",
                     **_value_columns(document["tenant"]["direct"])})
        return rows
    if query.table in ("throughput", "aging"):
        document = await flow_document(engine, settings, query)
        if query.table == "throughput":
            return list(document["throughput_per_week"])
        return list(document["aging"]["items"])
    if query.table == "sprints":
        return list((await sprints_document(engine, settings, query))["sprints"])
    if query.table == "executive":
        document = await executive_document(engine, tenant_id, query.end, query.tz)
        return [{key: kpi[key] for key in ("metric", "unit", "value", "target", "level")}
                | {"trend_slope": kpi["trend"]["slope"], "trend": kpi["trend"]["direction"]}
                for kpi in document["kpis"]]
    if query.table == "risks":
        from pulse_portfolio.risks import risk_flags

        start, end = window_of(query, settings)
        return [{"kind": f["kind"], "subject": f["subject"], "message": f["message"]}
                for f in await risk_flags(engine, settings, tenant_id, start, end, query.tz)]
    async with engine.db.tenant_session(tenant_id) as session:
        stored = (await session.execute(text(
            "SELECT * FROM portfolio_objectives ORDER BY created_at, id LIMIT 10000"
        ))).mappings().all()
    return [_objective(row) for row in stored]


def _value_columns(value: Any) -> dict[str, Any]:
    if value is None:
        return {"value": None}
    out = {"value": value.value, "sample_size": value.sample_size,
           "numerator": value.numerator, "denominator": value.denominator}
    for key, number in (value.percentiles or {}).items():
        out[key] = number
    return out
