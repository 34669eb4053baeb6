"""The plugin loads from its entry point, migrates, and reports its version."""

from __future__ import annotations

from importlib.metadata import version

from pulse_etl import __version__, model
from sqlalchemy import text

from pulse_engine.app import PulseEngine
from pulse_engine.testing import TenantFixture


async def test_plugin_is_listed_with_its_version(etl_tenant: TenantFixture) -> None:
    response = await etl_tenant.viewer_client.get("/api/v1/plugins")
    plugins = {p["name"]: p for p in (await response.get_json())["plugins"]}
    assert plugins["etl"]["status"] == "loaded", plugins["etl"]
    assert plugins["etl"]["version"] == version("pulse-etl") == __version__
    assert plugins["etl"]["distribution"] == "pulse-etl"


async def test_tables_have_forced_rls_and_tenant_first(etl_engine: PulseEngine) -> None:
    assert etl_engine.db.owner_engine is not None
    async with etl_engine.db.owner_engine.connect() as connection:
        rows = (await connection.execute(text(
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
            "WHERE relname = ANY(:names)"), {"names": list(model.metadata.tables)})).all()
    secured = {name: (enabled, forced) for name, enabled, forced in rows}
    for table in model.metadata.tables.values():
        assert table.name in secured
        if "tenant_id" not in table.c:
            continue
        assert secured[table.name] == (True, True), table.name
        assert table.primary_key.columns.keys()[0] == "tenant_id", table.name
        for index in table.indexes:
            assert index.columns.keys()[0] == "tenant_id", (table.name, index.name)
        for constraint in table.constraints:
            keys = [c.name for c in getattr(constraint, "columns", [])]
            if keys:
                assert keys[0] == "tenant_id" or constraint.__class__.__name__ == "CheckConstraint"
