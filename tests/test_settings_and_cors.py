"""Settings from the environment (legacy names included) and CORS from settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulse_engine.settings import Settings
from pulse_engine.testing import make_settings, running_app


def test_legacy_postgres_variables_build_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_HOST", "db.internal")
    monkeypatch.setenv("POSTGRES_PORT", "6543")
    monkeypatch.setenv("POSTGRES_USER", "pulse")
    monkeypatch.setenv("POSTGRES_PASSWORD", "p@ss word")
    monkeypatch.setenv("POSTGRES_DATABASE", "analytics")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert not settings.embedded
    assert settings.configured_database_url() == (
        "postgresql://pulse:p%40ss%20word@db.internal:6543/analytics"
    )


def test_database_url_wins_and_lists_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://a@b/c")
    monkeypatch.setenv("POSTGRES_HOST", "ignored")
    monkeypatch.setenv("PULSE_PLUGINS", "dora, etl,,")
    monkeypatch.setenv("CORS_ORIGINS", '["https://a.example", "https://b.example"]')
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.configured_database_url() == "postgresql://a@b/c"
    assert settings.plugins == ["dora", "etl"]
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example,https://c.example")
    assert Settings(_env_file=None).cors_origins == [  # type: ignore[call-arg]
        "https://a.example",
        "https://c.example",
    ]


def test_nothing_configured_means_embedded_with_consumers_in_server() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.embedded
    assert settings.consumers_in_server
    assert settings.migrate_at_start
    assert Settings(_env_file=None, amqp_url="amqp://x").consumers_in_server is False  # type: ignore[call-arg]


async def test_cors_allows_configured_origins_only(pulse_database_url: str, tmp_path: Path) -> None:
    settings = make_settings(pulse_database_url, tmp_path, cors_origins=["https://app.example"])
    async with running_app(settings, load_entry_points=False) as app:
        client = app.test_client()
        allowed = await client.options(
            "/api/v1/plugins",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "Authorization",
            },
        )
        assert allowed.status_code == 200
        assert allowed.headers.get("Access-Control-Allow-Origin") == "https://app.example"
        refused = await client.get("/health/live", headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in refused.headers
