"""No request can make the database work without bound: statement timeout, temp-file limit,
and a client that goes away cancels its query on the server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from quart import Blueprint
from sqlalchemy import text

from pulse_engine import hookimpl, tenant_session
from pulse_engine.request_limits import statement_timeout
from pulse_engine.testing import make_settings, make_tenant, running_app, token_for

SLEEP_MARK = "limits-probe-sleep"


class LimitsProbe:
    """Routes that would run for long or spill to disk without the limits."""

    @hookimpl
    def register_routes(self) -> Blueprint:
        blueprint = Blueprint("limitsprobe", __name__, url_prefix="/api/v1/limitsprobe")

        @blueprint.get("/sleep")
        async def sleep() -> dict[str, Any]:
            async with tenant_session() as session:
                await session.execute(text(f"SELECT pg_sleep(30) /* {SLEEP_MARK} */"))
            return {"slept": True}

        @blueprint.get("/short")
        @statement_timeout(0.3)
        async def short() -> dict[str, Any]:
            async with tenant_session() as session:
                await session.execute(text("SELECT pg_sleep(3)"))
            return {"slept": True}

        @blueprint.get("/spill")
        async def spill() -> dict[str, Any]:
            async with tenant_session() as session:
                await session.execute(text("SET LOCAL work_mem = '64kB'"))
                count = await session.scalar(
                    text(
                        "SELECT count(*) FROM (SELECT md5(g::text) AS h "
                        "FROM generate_series(1, 400000) g ORDER BY h) s"
                    )
                )
            return {"rows": count}

        @blueprint.get("/settings")
        async def settings() -> dict[str, Any]:
            async with tenant_session() as session:
                timeout = await session.scalar(text("SHOW statement_timeout"))
                temp = await session.scalar(text("SHOW temp_file_limit"))
            return {"statement_timeout": timeout, "temp_file_limit": temp}

        return blueprint


def probe_app(pulse_database_url: str, tmp_path: Path, **overrides: Any) -> Any:
    settings = make_settings(pulse_database_url, tmp_path, **overrides)
    return running_app(settings, plugins={"limitsprobe": LimitsProbe()}, load_entry_points=False)


async def test_requests_run_under_the_configured_limits(
    pulse_database_url: str, tmp_path: Path
) -> None:
    async with probe_app(
        pulse_database_url, tmp_path, statement_timeout_seconds=7, temp_file_limit_mb=3
    ) as app:
        tenant = await make_tenant(app)
        body = await (await tenant.viewer_client.get("/api/v1/limitsprobe/settings")).get_json()
        assert body == {"statement_timeout": "7s", "temp_file_limit": "3MB"}
        # background work (no request) keeps PostgreSQL's own horizon
        engine = app.extensions["pulse"]
        async with engine.db.tenant_session(tenant.id) as session:
            assert await session.scalar(text("SHOW statement_timeout")) == "0"


async def test_a_long_statement_is_stopped_with_a_503(
    pulse_database_url: str, tmp_path: Path
) -> None:
    async with probe_app(pulse_database_url, tmp_path, statement_timeout_seconds=0.5) as app:
        tenant = await make_tenant(app)
        started = time.monotonic()
        response = await tenant.viewer_client.get("/api/v1/limitsprobe/sleep")
        assert time.monotonic() - started < 5
        assert response.status_code == 503
        body = await response.get_json()
        assert body["type"].endswith("/statement-timeout")
        # a route may ask for a shorter (or longer) horizon than the setting
        short = await tenant.viewer_client.get("/api/v1/limitsprobe/short")
        assert short.status_code == 503


async def test_a_query_spilling_past_the_temp_file_limit_is_stopped(
    pulse_database_url: str, tmp_path: Path
) -> None:
    async with probe_app(pulse_database_url, tmp_path, temp_file_limit_mb=1) as app:
        tenant = await make_tenant(app)
        response = await tenant.viewer_client.get("/api/v1/limitsprobe/spill")
        assert response.status_code == 503, await response.get_data()
        assert (await response.get_json())["type"].endswith("/temp-file-limit")
    async with probe_app(pulse_database_url, tmp_path, temp_file_limit_mb=200) as app:
        tenant = await make_tenant(app)
        allowed = await tenant.viewer_client.get("/api/v1/limitsprobe/spill")
        assert (await allowed.get_json()) == {"rows": 400000}


async def test_a_client_that_goes_away_cancels_its_query(
    pulse_database_url: str, tmp_path: Path
) -> None:
    async with probe_app(pulse_database_url, tmp_path) as app:
        tenant = await make_tenant(app)
        engine = app.extensions["pulse"]
        token = token_for(engine, tenant.viewer)
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": "/api/v1/limitsprobe/sleep",
            "raw_path": b"/api/v1/limitsprobe/sleep", "query_string": b"", "root_path": "",
            "headers": [(b"host", b"localhost"), (b"authorization", f"Bearer {token}".encode())],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 3001),
        }
        messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await messages.put({"type": "http.request", "body": b"", "more_body": False})
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def running_sleeps() -> int:
            async with engine.db.system_session() as session:
                return int(await session.scalar(
                    text("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                         "AND query LIKE :mark AND pid <> pg_backend_pid()"),
                    {"mark": f"%{SLEEP_MARK}%"},
                ))

        call = asyncio.create_task(app.asgi_app(scope, messages.get, send))
        for _ in range(50):
            if await running_sleeps():
                break
            await asyncio.sleep(0.1)
        assert await running_sleeps() == 1
        await messages.put({"type": "http.disconnect"})
        await asyncio.wait_for(call, 10)
        for _ in range(50):
            if not await running_sleeps():
                break
            await asyncio.sleep(0.1)
        assert await running_sleeps() == 0
        assert not any(m.get("status") == 200 for m in sent)
