"""The hello plugin: a tenant table, a cached listing, a validated create, a metric and a
health check, on the public plugin API only (``from pulse_engine import ...``)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import UUID

from pulse_engine import (
    CachePolicy,
    Freshness,
    MetricComputation,
    MetricDefinition,
    MetricQuery,
    MetricValue,
    PageQuery,
    current_tenant_id,
    fetch_page,
    hookimpl,
    problem_responses,
    require_role,
    tenant_session,
)

if TYPE_CHECKING:
    from pulse_engine import Engine

GREETINGS_TAG = "hello.greetings"

# The plugin's own MetaData holds the table it queries; register_tables copies it onto
# the engine's MetaData, which every app builds afresh.
plugin_metadata = MetaData()
greetings = Table(
    "hello_greetings",
    plugin_metadata,
    Column("tenant_id", UUID(as_uuid=False), nullable=False),
    Column("id", BigInteger, Identity(), nullable=False),
    Column("message", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("tenant_id", "id"),
)


class NewGreeting(BaseModel):
    """The body of ``POST /api/v1/hello/greetings``."""

    message: str = Field(min_length=1, max_length=200)


class Greeting(BaseModel):
    """One greeting."""

    id: int
    message: str
    created_at: datetime


class GreetingPage(BaseModel):
    """A page of greetings, oldest first; ``next_cursor`` is null on the last page."""

    items: list[Greeting]
    next_cursor: str | None


@hookimpl
def register_tables(metadata: MetaData) -> None:
    """Put the greetings table on the engine's MetaData."""
    greetings.to_metadata(metadata)


@hookimpl
def register_migrations() -> Path:
    """The folder of the ``hello`` migrations (the plugin's own Alembic history)."""
    return Path(__file__).parent / "migrations"


@hookimpl
def register_routes(engine: Engine) -> Blueprint:
    """``GET`` and ``POST /api/v1/hello/greetings``."""
    blueprint = Blueprint("hello", __name__, url_prefix=f"{engine.settings.api_v1_prefix}/hello")

    @blueprint.get("/greetings")
    @validate_querystring(PageQuery)
    @validate_response(GreetingPage)
    @problem_responses()
    async def list_greetings(query_args: PageQuery) -> dict[str, Any]:
        """The caller's tenant's greetings, oldest first, one page at a time."""
        async with tenant_session() as session:
            page = await fetch_page(
                session,
                select(greetings),
                greetings.c.id,
                kind=int,
                limit=query_args.capped_limit,
                cursor=query_args.cursor,
                to_item=lambda row: {
                    "id": row.id,
                    "message": row.message,
                    "created_at": row.created_at,
                },
            )
        return page.as_dict()

    @blueprint.post("/greetings")
    @require_role("analyst")
    @validate_request(NewGreeting)
    @validate_response(Greeting, 201)
    @problem_responses()
    async def add_greeting(data: NewGreeting) -> tuple[Greeting, int]:
        """Store a greeting for the caller's tenant."""
        tenant_id = current_tenant_id()
        async with tenant_session() as session:
            row = (
                await session.execute(
                    insert(greetings)
                    .values(tenant_id=tenant_id, message=data.message)
                    .returning(greetings.c.id, greetings.c.message, greetings.c.created_at)
                )
            ).one()
        await engine.cache.invalidate_tags(tenant_id, [GREETINGS_TAG])
        return Greeting(id=row.id, message=row.message, created_at=row.created_at), 201

    return blueprint


@hookimpl
def register_cache_policies() -> list[CachePolicy]:
    """Cache the listing for a minute; a new greeting invalidates it."""
    return [
        CachePolicy(
            endpoint="hello.list_greetings",
            ttl=60,
            key_params=("limit", "cursor"),
            tags=(GREETINGS_TAG,),
        )
    ]


#: Greetings per bucket of the window: every bucket of ``interval`` (in ``tz``) that
#: overlaps [start, end), empty ones included, cut to the window at both ends.
GREETINGS_PER_BUCKET = text("""
WITH bounds AS (
    SELECT CAST(:start AS timestamptz) AS w_start, CAST(:end AS timestamptz) AS w_end,
           CAST(CAST(:step AS text) AS interval) AS step
), buckets AS (
    SELECT greatest(local_start AT TIME ZONE :tz, w_start) AS b_start,
           least((local_start + step) AT TIME ZONE :tz, w_end) AS b_end
    FROM bounds, generate_series(
        date_trunc(:unit, w_start AT TIME ZONE :tz),
        w_end AT TIME ZONE :tz - interval '1 microsecond',
        step) AS local_start
)
SELECT b_start, b_end, count(g.id) AS greetings
FROM buckets LEFT JOIN hello_greetings g
  ON g.created_at >= b_start AND g.created_at < b_end
GROUP BY b_start, b_end ORDER BY b_start
""")


async def count_greetings(engine: Engine, query: MetricQuery) -> MetricComputation:
    """The ``hello.greetings`` metric: greetings created in the window, and per bucket."""
    unit, step = {"all": ("millennium", "1000 years"), "day": ("day", "1 day"),
                  "week": ("week", "7 days"), "month": ("month", "1 month")}[query.interval]
    async with engine.db.tenant_session(query.tenant_id) as session:
        rows = (await session.execute(GREETINGS_PER_BUCKET, {
            "start": query.start, "end": query.end, "tz": query.tz, "unit": unit, "step": step,
        })).all()
        newest = await session.scalar(select(func.max(greetings.c.created_at)))
    series = [
        MetricValue(start=row.b_start, end=row.b_end, value=row.greetings,
                    sample_size=row.greetings)
        for row in rows
    ]
    total = sum(row.greetings for row in rows)
    value = MetricValue(start=query.start, end=query.end, value=total, sample_size=total)
    if query.interval == "all":
        series = [value]
    # greetings are counted as they are read: the answer is never behind its data
    return MetricComputation(value, series, Freshness(data_until=newest, refresh_pending=False))


@hookimpl
def register_metrics() -> list[MetricDefinition]:
    """``hello.greetings``, readable at ``GET /api/v1/metrics/hello.greetings``."""
    return [
        MetricDefinition(
            name="hello.greetings",
            unit="count",
            kind="count",
            description="Greetings created in the window.",
            higher_is_better=True,
            compute=count_greetings,
            cache_tags=(GREETINGS_TAG,),
        )
    ]


@hookimpl
def register_health_checks(engine: Engine) -> dict[str, Any]:
    """One check: the greetings table exists and the app role can reach it."""

    async def greetings_table() -> dict[str, Any]:
        if engine.db.app_engine is None:
            return {"status": "unhealthy", "table": "database not connected"}
        async with engine.db.app_engine.connect() as connection:
            found = await connection.scalar(text("SELECT to_regclass('public.hello_greetings')"))
        if found is None:
            return {"status": "unhealthy", "table": "missing: run pulse db upgrade"}
        return {"status": "healthy", "table": "hello_greetings"}

    return {"greetings_table": greetings_table}
