"""Health checks: the analytics catalog the validator enforces, and the execution role."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from pulse_ai_validation.catalog import ANALYTICS_CATALOG

if TYPE_CHECKING:
    from pulse_ai_validation.service import AiValidationService


def health_checks(service: AiValidationService) -> dict[str, Callable[[], Awaitable[Any]]]:
    """``catalog`` and ``execution_role`` checks for ``/health/ai_validation``."""

    async def catalog() -> dict[str, Any]:
        """Degraded when tables of the allow-list are missing from the database."""
        live = set(service.catalog.tables)
        missing = sorted(set(ANALYTICS_CATALOG.tables) - live)
        return {"status": "degraded" if missing else "healthy", "tables": len(live),
                "missing_tables": missing}

    async def execution_role() -> dict[str, Any]:
        """Unhealthy when the role is missing or privileged (then no query may run)."""
        async with service.engine.db.system_session() as session:
            row = (await session.execute(text(
                "SELECT rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb, "
                "(SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid) "
                "FROM pg_roles r WHERE rolname = :role"), {"role": service.settings.db_role}
            )).first()
        if row is None:
            return {"status": "unhealthy", "detail": "the execution role does not exist"}
        privileged, memberships = bool(row[0]), int(row[1])
        healthy = not privileged and memberships == 0
        return {"status": "healthy" if healthy else "unhealthy", "privileged": privileged,
                "role_memberships": memberships}

    return {"catalog": catalog, "execution_role": execution_role}
