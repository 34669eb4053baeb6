"""Incidents keep only the deployment their source names; pulse-dora owns every other link.

Until this revision pulse-etl also linked incidents by fixed defaults (a 7-day window, the
environments ``production`` and ``prod``, a SHA resolved with that production set), while
pulse-dora linked them by each tenant's settings, so ``incidents.deployment_id`` and
DORA's link could disagree. Now ``deployment_id`` (``link_reason = 'explicit'``) is set
only when ``deployment_ref`` names a deployment by id or external id
(:func:`pulse_etl.derive.link_incidents`); this revision applies that rule to the stored
rows. The downgrade recomputes the links of the previous rule.

Revision ID: etl_0003
Revises: etl_0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "etl_0003"
down_revision: str | Sequence[str] | None = "etl_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the statements of both rules as of this revision, over every tenant at once
_UUID = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

_STATED = f"""
WITH named AS (
    SELECT DISTINCT ON (named.tenant_id, named.incident_id)
           named.tenant_id, named.incident_id, named.deployment_id
    FROM (
        SELECT i.tenant_id, i.id AS incident_id, d.id AS deployment_id, 0 AS rank,
               d.finished_at
        FROM incidents i
        JOIN deployments d ON d.tenant_id = i.tenant_id
         AND d.id = CAST(substring(i.deployment_ref FROM '{_UUID}') AS uuid)
        WHERE i.deployment_ref ~ '{_UUID}'
        UNION ALL
        SELECT i.tenant_id, i.id, d.id, 1, d.finished_at
        FROM incidents i
        JOIN deployments d ON d.tenant_id = i.tenant_id AND d.external_id = i.deployment_ref
        WHERE i.deployment_ref IS NOT NULL
    ) named
    ORDER BY named.tenant_id, named.incident_id, named.rank,
             named.finished_at DESC NULLS LAST, named.deployment_id
),
stated AS (
    SELECT s.tenant_id, s.id, n.deployment_id,
           CASE WHEN n.deployment_id IS NULL THEN NULL ELSE 'explicit' END AS link_reason
    FROM incidents s
    LEFT JOIN named n ON n.tenant_id = s.tenant_id AND n.incident_id = s.id
    WHERE s.deployment_id IS NOT NULL OR n.deployment_id IS NOT NULL
)
UPDATE incidents i SET deployment_id = stated.deployment_id,
    link_reason = stated.link_reason, updated_at = now()
FROM stated
WHERE i.tenant_id = stated.tenant_id AND i.id = stated.id
  AND (i.deployment_id IS DISTINCT FROM stated.deployment_id
       OR i.link_reason IS DISTINCT FROM stated.link_reason)
"""

_PRODUCTION = "ARRAY['production', 'prod']"

_OLD_EXPLICIT = f"""
WITH referenced AS (
    SELECT i.tenant_id, i.id, (
        SELECT d.id FROM deployments d
        WHERE d.tenant_id = i.tenant_id AND (d.id::text = i.deployment_ref
              OR d.external_id = i.deployment_ref OR d.sha = i.deployment_ref)
        ORDER BY (d.id::text = i.deployment_ref OR d.external_id = i.deployment_ref) DESC,
                 (d.result = 'success' AND d.environment = ANY({_PRODUCTION})) DESC,
                 d.finished_at DESC NULLS LAST, d.id
        LIMIT 1) AS deployment_id
    FROM incidents i WHERE i.deployment_ref IS NOT NULL
)
UPDATE incidents i SET deployment_id = r.deployment_id, link_reason = 'explicit',
    updated_at = now()
FROM referenced r
WHERE i.tenant_id = r.tenant_id AND i.id = r.id AND r.deployment_id IS NOT NULL
  AND (i.deployment_id IS DISTINCT FROM r.deployment_id
       OR i.link_reason IS DISTINCT FROM 'explicit')
"""

_OLD_IMPLICIT = f"""
WITH candidates AS (
    SELECT i.tenant_id, i.id, (
        SELECT d.id FROM deployments d
        WHERE d.tenant_id = i.tenant_id AND d.result = 'success'
          AND d.environment = ANY({_PRODUCTION})
          AND (d.service = i.service OR d.repository_id = i.repository_id)
          AND d.finished_at <= i.created_at_source
          AND d.finished_at > i.created_at_source - interval '7 days'
        ORDER BY d.finished_at DESC, d.id LIMIT 1) AS deployment_id
    FROM incidents i WHERE i.link_reason IS DISTINCT FROM 'explicit'
)
UPDATE incidents i SET deployment_id = c.deployment_id,
    link_reason = CASE WHEN c.deployment_id IS NULL THEN NULL ELSE 'latest_deployment' END,
    updated_at = now()
FROM candidates c
WHERE i.tenant_id = c.tenant_id AND i.id = c.id
  AND i.deployment_id IS DISTINCT FROM c.deployment_id
"""


def upgrade() -> None:
    """Keep only the links the incidents' sources state."""
    op.execute(_STATED)


def downgrade() -> None:
    """Recompute the links of the previous rule (fixed window and production set)."""
    op.execute(_OLD_EXPLICIT)
    op.execute(_OLD_IMPLICIT)
