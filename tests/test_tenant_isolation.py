"""Row-level security as the second wall: a plugin query that forgets its tenant filter.

A probe plugin brings its own table (and Alembic branch), so it runs on a database of its
own. Its route reads the table WITHOUT a ``tenant_id`` filter inside ``tenant_session()``;
PostgreSQL must still return only the caller's rows and refuse writes of other tenants'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fixtures.plugin_harness import fresh_database
from quart import Blueprint, request
from sqlalchemy import BigInteger, Column, MetaData, String, Table, insert, select, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.exc import DBAPIError

from pulse_engine import hookimpl
from pulse_engine.tenancy import tenant_session
from pulse_engine.testing import make_settings, make_tenant, running_app

MIGRATIONS = Path(__file__).parent / "fixtures" / "isolation_probe" / "migrations"


class IsolationProbe:
    """A careless plugin: its queries never mention the tenant."""

    notes: Table

    @hookimpl
    def register_tables(self, metadata: MetaData) -> None:
        """The probe's notes table."""
        self.notes = Table(
            "isolation_notes",
            metadata,
            Column("tenant_id", UUID(as_uuid=False), primary_key=True),
            Column("id", BigInteger, primary_key=True),
            Column("body", String(200), nullable=False),
        )

    @hookimpl
    def register_migrations(self) -> Path:
        """The probe's Alembic branch."""
        return MIGRATIONS

    @hookimpl
    def register_routes(self) -> Blueprint:
        """Read every note, or write one with a tenant id taken from the body."""
        blueprint = Blueprint("isolation_probe", __name__, url_prefix="/api/v1/isolation")

        @blueprint.get("/notes")
        async def all_notes() -> dict[str, Any]:
            async with tenant_session() as session:
                rows = (await session.execute(select(self.notes))).all()
            return {"notes": [{"tenant_id": row.tenant_id, "body": row.body} for row in rows]}

        @blueprint.post("/notes")
        async def write_note() -> tuple[dict[str, Any], int]:
            body = await request.get_json()
            try:
                async with tenant_session() as session:
                    await session.execute(
                        insert(self.notes).values(
                            tenant_id=body["tenant_id"], id=body["id"], body="smuggled"
                        )
                    )
            except DBAPIError as error:
                return {"refused": "row-level security" in str(error.orig)}, 403
            return {"refused": False}, 201

        return blueprint


async def test_rls_filters_reads_and_refuses_foreign_writes(pulse_database_url: str,
                                                            tmp_path: Path) -> None:
    async with fresh_database(pulse_database_url) as database_url:
        settings = make_settings(database_url, tmp_path)
        async with running_app(settings, plugins={"isolation_probe": IsolationProbe()}) as app:
            engine = app.extensions["pulse"]
            a, b = await make_tenant(app), await make_tenant(app)
            notes = engine.metadata.tables["isolation_notes"]
            async with engine.db.system_session() as session:
                await session.execute(
                    insert(notes),
                    [
                        {"tenant_id": a.id, "id": 1, "body": "a1"},
                        {"tenant_id": a.id, "id": 2, "body": "a2"},
                        {"tenant_id": b.id, "id": 1, "body": "b1"},
                    ],
                )

            seen_by_a = await (await a.viewer_client.get("/api/v1/isolation/notes")).get_json()
            assert sorted(n["body"] for n in seen_by_a["notes"]) == ["a1", "a2"]
            seen_by_b = await (await b.viewer_client.get("/api/v1/isolation/notes")).get_json()
            assert [n["body"] for n in seen_by_b["notes"]] == ["b1"]

            foreign = await a.viewer_client.post(
                "/api/v1/isolation/notes", json={"tenant_id": b.id, "id": 9}
            )
            assert foreign.status_code == 403 and (await foreign.get_json())["refused"] is True
            own = await a.viewer_client.post(
                "/api/v1/isolation/notes", json={"tenant_id": a.id, "id": 9}
            )
            assert own.status_code == 201

            async with engine.db.tenant_session(b.id) as session:
                assert (await session.execute(select(notes))).all() == [(b.id, 1, "b1")]
                changed = await session.execute(
                    text("UPDATE isolation_notes SET body = 'x' WHERE tenant_id = :a"),
                    {"a": a.id},
                )
                assert changed.rowcount == 0  # type: ignore[attr-defined]
            with pytest.raises(DBAPIError, match="row-level security"):
                async with engine.db.tenant_session(b.id) as session:
                    await session.execute(
                        insert(notes).values(tenant_id=a.id, id=10, body="smuggled")
                    )
            async with engine.db.system_session() as session:
                bodies = (await session.execute(select(notes.c.body))).scalars().all()
            assert sorted(bodies) == ["a1", "a2", "b1", "smuggled"]


async def test_app_role_cannot_read_credentials(pulse_app: Any) -> None:
    engine = pulse_app.extensions["pulse"]
    tenant = await make_tenant(pulse_app)
    for table in ("users", "api_keys", "refresh_tokens", "revoked_access_tokens"):
        with pytest.raises(DBAPIError, match="permission denied"):
            async with engine.db.tenant_session(tenant.id) as session:
                await session.execute(text(f"SELECT * FROM {table}"))
