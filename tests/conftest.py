"""Session-wide real services for the test suite: embedded PostgreSQL, Redis, RabbitMQ."""

from __future__ import annotations

import os

import pytest

REDIS_URL = os.environ.get("PULSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
AMQP_URL = os.environ.get("PULSE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the real Redis the tests use (database 15)."""
    return REDIS_URL


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """URL of the real RabbitMQ the tests use."""
    return AMQP_URL


@pytest.fixture(scope="session")
def pg_admin_url(pulse_database_url: str) -> str:
    """A superuser libpq URL of the session's embedded PostgreSQL (pgvector included)."""
    return pulse_database_url
