"""Settings from the environment (and an optional ``.env`` file), via pydantic-settings.

The variable names of the service Pulse replaces stay valid (``POSTGRES_*``,
``REDIS_URL``, ``JWT_*``, ``CORS_ORIGINS``, ``API_V1_PREFIX``) beside the single URLs
``DATABASE_URL`` and ``AMQP_URL``. Nothing secret has a built-in value: with no
``JWT_SECRET_KEY``, the embedded default generates one in ``PULSE_DATA_DIR``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import platformdirs
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("pulse", appauthor=False))


class Settings(BaseSettings):
    """Every setting of the host; plugins read their own with their own prefix."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # database: DATABASE_URL wins; else POSTGRES_HOST builds one; else the embedded default
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    postgres_host: str | None = Field(default=None, alias="POSTGRES_HOST")
    postgres_port: int = Field(default=5432, alias="POSTGRES_PORT")
    postgres_user: str = Field(default="postgres", alias="POSTGRES_USER")
    postgres_password: str = Field(default="", alias="POSTGRES_PASSWORD")
    postgres_database: str = Field(default="pulse", alias="POSTGRES_DATABASE")
    database_app_role: str = Field(default="pulse_app", alias="PULSE_DB_APP_ROLE")
    database_app_password: str | None = Field(default=None, alias="PULSE_DB_APP_PASSWORD")
    database_pool_size: int = Field(default=10, alias="PULSE_DB_POOL_SIZE", ge=1)
    database_max_overflow: int = Field(default=10, alias="PULSE_DB_MAX_OVERFLOW", ge=0)
    #: every request's transactions: the longest one statement may run (seconds)
    statement_timeout_seconds: float = Field(default=30.0, alias="PULSE_STATEMENT_TIMEOUT", gt=0)
    #: every request's transactions: the most temporary-file space PostgreSQL may use (MB)
    temp_file_limit_mb: int = Field(default=1024, alias="PULSE_TEMP_FILE_LIMIT_MB", ge=1)
    data_dir: Path = Field(default_factory=_default_data_dir, alias="PULSE_DATA_DIR")

    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    amqp_url: str | None = Field(default=None, alias="AMQP_URL")
    messaging_start_wait_seconds: float = Field(
        default=10.0, alias="PULSE_MESSAGING_START_WAIT", ge=0
    )
    amqp_quorum_queues: bool = Field(default=False, alias="PULSE_AMQP_QUORUM_QUEUES")

    plugins: Annotated[list[str] | None, NoDecode] = Field(default=None, alias="PULSE_PLUGINS")

    jwt_secret_key: str | None = Field(default=None, alias="JWT_SECRET_KEY")
    jwt_algorithm: str = Field(default="HS256", alias="JWT_ALGORITHM")
    jwt_private_key: str | None = Field(default=None, alias="JWT_PRIVATE_KEY")
    jwt_public_key: str | None = Field(default=None, alias="JWT_PUBLIC_KEY")
    jwt_issuer: str = Field(default="pulse", alias="JWT_ISSUER")
    jwt_audience: str = Field(default="pulse-api", alias="JWT_AUDIENCE")
    jwt_access_token_expire_minutes: int = Field(
        default=30, alias="JWT_ACCESS_TOKEN_EXPIRE_MINUTES", ge=1
    )
    jwt_refresh_token_expire_days: int = Field(
        default=14, alias="JWT_REFRESH_TOKEN_EXPIRE_DAYS", ge=1
    )
    login_attempts_per_account: int = Field(default=5, alias="PULSE_LOGIN_ATTEMPTS_PER_ACCOUNT")
    login_attempts_per_address: int = Field(default=20, alias="PULSE_LOGIN_ATTEMPTS_PER_ADDRESS")
    login_window_seconds: int = Field(default=300, alias="PULSE_LOGIN_WINDOW_SECONDS")

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list, alias="CORS_ORIGINS")
    outbound_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="PULSE_OUTBOUND_ALLOW",
        description="Internal networks and host names connectors may reach (comma-separated).",
    )
    api_v1_prefix: str = Field(default="/api/v1", alias="API_V1_PREFIX")
    max_request_bytes: int = Field(default=1_048_576, alias="PULSE_MAX_REQUEST_BYTES", ge=1024)
    health_timeout_seconds: float = Field(default=3.0, alias="PULSE_HEALTH_TIMEOUT", gt=0)
    cache_max_entries: int = Field(default=10_000, alias="PULSE_CACHE_MAX_ENTRIES", ge=1)
    log_level: str = Field(default="INFO", alias="PULSE_LOG_LEVEL")
    #: JSON log lines; unset: JSON unless stderr is a terminal (then human-readable lines)
    log_json: bool | None = Field(default=None, alias="PULSE_LOG_JSON")
    #: log every hook call through pluggy's tracing
    trace_plugins: bool = Field(default=False, alias="PULSE_TRACE_PLUGINS")
    run_consumers_in_server: bool | None = Field(default=None, alias="PULSE_RUN_CONSUMERS")
    auto_migrate: bool | None = Field(default=None, alias="PULSE_AUTO_MIGRATE")

    @field_validator("plugins", "outbound_allow", mode="before")
    @classmethod
    def _split_plugins(cls, value: Any) -> Any:
        if isinstance(value, str):
            names = [name.strip() for name in value.split(",") if name.strip()]
            return names
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                import json

                return json.loads(value)
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @property
    def embedded(self) -> bool:
        """True when no external database is configured: the server starts its own."""
        return self.database_url is None and self.postgres_host is None

    def configured_database_url(self) -> str | None:
        """The libpq URL of the configured external database, or None on the embedded default."""
        if self.database_url:
            return self.database_url
        if self.postgres_host:
            password = f":{quote(self.postgres_password)}" if self.postgres_password else ""
            return (
                f"postgresql://{quote(self.postgres_user)}{password}@{self.postgres_host}:"
                f"{self.postgres_port}/{self.postgres_database}"
            )
        return None

    @property
    def consumers_in_server(self) -> bool:
        """Whether ``pulse serve`` runs queue consumers itself (default: only without AMQP)."""
        if self.run_consumers_in_server is not None:
            return self.run_consumers_in_server
        return self.amqp_url is None

    @property
    def migrate_at_start(self) -> bool:
        """Whether the server applies migrations when it starts (default: embedded only)."""
        if self.auto_migrate is not None:
            return self.auto_migrate
        return self.embedded
