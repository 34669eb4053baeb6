"""Integrations: a tenant's saved connector configurations, their secrets and webhook routes.

Secrets (a connector's ``secret_fields``) are stored encrypted and reported by name only;
changing a configuration without a secret field keeps its stored value.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pulse_engine import Page, Problem, fetch_page
from pulse_etl import model
from pulse_etl.configs import validate_config
from pulse_etl.values import is_uuid, iso

if TYPE_CHECKING:
    from pulse_etl.service import EtlService

def integration_document(row: Any) -> dict[str, Any]:
    """The public JSON of an integration row: secrets are reported by name only."""
    return {
        "id": str(row.id),
        "connector": row.connector,
        "name": row.name,
        "config": row.config,
        "has_secrets": bool(row.secrets),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


class Integrations:
    """Integration CRUD for one engine."""

    def __init__(self, service: EtlService) -> None:
        """Work with ``service``'s engine, connectors and secrets box."""
        self.service = service

    async def create(self, tenant_id: str, body: Mapping[str, Any], created_by: str | None
                     ) -> dict[str, Any]:
        """Create an integration from ``{"connector", "name", "config"}`` (validated by
        :class:`pulse_etl.schemas.IntegrationCreate`)."""
        service = self.service
        connector = service.connectors.get(body.get("connector"))
        name = body["name"]
        public, secret_values = await validate_config(connector, body.get("config", {}),
                                                      service.settings, service.outbound)
        integration_id = str(uuid.uuid4())
        table = model.integrations
        async with service.engine.db.tenant_session(tenant_id) as session:
            exists = await session.scalar(select(table.c.id).where(table.c.name == name))
            if exists is not None:
                raise Problem(409, "conflict", "An integration with this name exists.",
                              errors=[{"field": "name", "message": "already used",
                                       "type": "unique"}])
            row = (
                await session.execute(
                    insert(table)
                    .values(
                        tenant_id=tenant_id, id=integration_id, connector=connector.name,
                        name=name, config=public, secrets=service.box.encrypt(secret_values),
                        created_by=created_by,
                    )
                    .returning(table)
                )
            ).one()
            await session.execute(
                insert(model.webhook_routes).values(
                    integration_id=integration_id, owner_tenant_id=tenant_id,
                    connector=connector.name,
                )
            )
        return integration_document(row)

    async def update(self, tenant_id: str, integration_id: str, body: Mapping[str, Any]
                     ) -> dict[str, Any]:
        """Replace an integration's name and/or config; omitted secrets are kept."""
        service = self.service
        table = model.integrations
        async with service.engine.db.tenant_session(tenant_id) as session:
            row = await self.row(session, integration_id)
            connector = service.connectors.get(row.connector)
            values: dict[str, Any] = {"updated_at": func.now()}
            if "name" in body:
                values["name"] = body["name"]
            if "config" in body:
                old_secrets = service.box.decrypt(row.secrets)
                raw = body["config"]
                if isinstance(raw, Mapping):
                    raw = {**{k: v for k, v in old_secrets.items() if k not in raw}, **raw}
                public, secret_values = await validate_config(connector, raw, service.settings,
                                                             service.outbound)
                values["config"] = public
                values["secrets"] = service.box.encrypt(secret_values)
            updated = (
                await session.execute(
                    update(table).where(table.c.id == integration_id).values(**values)
                    .returning(table)
                )
            ).one()
        return integration_document(updated)

    async def delete(self, tenant_id: str, integration_id: str) -> None:
        """Delete an integration, its webhook route and its cursors (data stays)."""
        async with self.service.engine.db.tenant_session(tenant_id) as session:
            await self.row(session, integration_id)
            await session.execute(
                delete(model.integrations).where(model.integrations.c.id == integration_id)
            )
            await session.execute(
                delete(model.sync_cursors).where(model.sync_cursors.c.scope == integration_id)
            )
            await session.execute(
                delete(model.webhook_routes).where(
                    model.webhook_routes.c.integration_id == integration_id,
                    model.webhook_routes.c.owner_tenant_id == tenant_id,
                )
            )

    async def get(self, tenant_id: str, integration_id: str) -> dict[str, Any]:
        """One integration (404 when the tenant has none with this id)."""
        async with self.service.engine.db.tenant_session(tenant_id) as session:
            return integration_document(await self.row(session, integration_id))

    async def page(self, tenant_id: str, limit: int, cursor: str | None) -> Page:
        """The tenant's integrations ordered by name."""
        table = model.integrations
        async with self.service.engine.db.tenant_session(tenant_id) as session:
            return await fetch_page(
                session, select(table), table.c.name, kind=str, limit=limit, cursor=cursor,
                to_item=integration_document,
            )

    @staticmethod
    async def row(session: AsyncSession, integration_id: Any) -> Any:
        """The integration row (inside a tenant session), or a 404 problem."""
        table = model.integrations
        row = None
        if is_uuid(integration_id):
            row = (
                await session.execute(select(table).where(table.c.id == str(integration_id)))
            ).first()
        if row is None:
            raise Problem(404, "not-found", "No such integration.")
        return row

    async def with_secrets(self, session: AsyncSession, integration_id: str
                           ) -> tuple[Any, dict[str, Any]]:
        """An integration row and its decrypted secrets (inside a tenant session)."""
        row = await self.row(session, integration_id)
        return row, self.service.box.decrypt(row.secrets)
