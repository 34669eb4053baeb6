"""pulse-etl's own settings, read from the environment with the ``PULSE_ETL_`` prefix."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class EtlSettings(BaseSettings):
    """Operator settings of the ETL plugin.

    ``PULSE_ETL_GIT_ROOTS`` lists the folders (``os.pathsep``-separated) under which the
    git connector may read local repositories; with none set, no local path is allowed.
    """

    model_config = SettingsConfigDict(env_prefix="PULSE_ETL_", env_file=".env", extra="ignore")

    url_prefix: str = Field(
        default="/app/etl", pattern=r"^/app(/[A-Za-z0-9_-]+)+$",
        description="Where the ETL routes are served: under /app/, whose routes the host "
                    "authenticates.")
    git_roots: str = Field(default="", description="os.pathsep-separated allowed roots.")
    secret_key: str | None = Field(default=None, description="Key material for secrets.")
    cache_dir: Path | None = Field(default=None, description="Clone cache (default: data dir).")
    batch_size: int = Field(default=2000, ge=1, description="Rows per committed batch.")
    lease_seconds: float = Field(default=60.0, gt=0, description="A job's lease without heartbeat.")
    heartbeat_seconds: float = Field(default=5.0, gt=0, description="Heartbeat interval.")
    sweep_seconds: float = Field(
        default=30.0, gt=0, description="How often jobs whose lease lapsed are queued again.")
    webhook_max_bytes: int = Field(default=1_048_576, ge=1024, description="Webhook body cap.")
    copy_threshold: int = Field(default=1000, ge=1, description="Rows from which COPY is used.")
    http_timeout: float = Field(default=30.0, gt=0, description="Source API request timeout.")
    http_max_retries: int = Field(default=5, ge=0, description="Retries of a source API call.")
    rate_limit_max_wait: float = Field(
        default=900.0, ge=0, description="Longest wait for a source API rate-limit reset."
    )

    def roots(self) -> list[Path]:
        """The allowed git roots, resolved (symlinks followed)."""
        return [
            Path(os.path.realpath(part)) for part in self.git_roots.split(os.pathsep) if part
        ]
