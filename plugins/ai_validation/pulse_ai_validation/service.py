"""One service per engine: the validator, the reflected catalog, the executor, the schemas."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pulse_ai_validation import PLUGIN_NAME
from pulse_ai_validation.catalog import ANALYTICS_CATALOG, Catalog, reflect_catalog
from pulse_ai_validation.config import AiValidationConfig, AiValidationSettings, policy_for
from pulse_ai_validation.execution import Executor, ensure_role
from pulse_ai_validation.rules import ValidationPolicy, ValidationRule
from pulse_ai_validation.structures import ResultSchemas
from pulse_ai_validation.validator import Validator

if TYPE_CHECKING:
    from pulse_engine import Engine

log = logging.getLogger(__name__)


class AiValidationService:
    """The plugin's state for one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.settings = AiValidationSettings()
        self.catalog: Catalog = ANALYTICS_CATALOG
        self.executor = Executor(engine, self.settings)
        self._validator: Validator | None = None
        self._schemas: ResultSchemas | None = None

    @property
    def validator(self) -> Validator:
        """The validator over every rule registered through ``register_validation_rules``."""
        if self._validator is None:
            rules: list[Any] = []
            for plugin, contributed in self.engine.call_hook_sync(
                "register_validation_rules", engine=self.engine
            ):
                items = contributed if isinstance(contributed, (list, tuple)) else [contributed]
                for rule in items:
                    if rule is None:
                        continue
                    if not isinstance(rule, ValidationRule):
                        log.error("plugin %s registered a validation rule without rule_id, "
                                  "severity, description and check(): %r", plugin, rule)
                        continue
                    rules.append(rule)
            self._validator = Validator(_ordered(rules))
        return self._validator

    @property
    def schemas(self) -> ResultSchemas:
        """The result schemas (built-ins and those registered by ``register_result_schemas``)."""
        if self._schemas is None:
            schemas = ResultSchemas()
            for plugin, contributed in self.engine.call_hook_sync(
                "register_result_schemas", engine=self.engine
            ):
                if isinstance(contributed, dict):
                    for name, model in contributed.items():
                        schemas.add(str(name), model, plugin)
            self._schemas = schemas
        return self._schemas

    async def start(self) -> None:
        """Reflect the catalog from the database and set up the execution role."""
        async with self.engine.db.system_session() as session:
            self.catalog = await reflect_catalog(session)
        await ensure_role(self.engine, self.settings, self.catalog)

    async def policy(self, tenant_id: str) -> ValidationPolicy:
        """The tenant's validation policy (its config over the operator's settings)."""
        raw = await self.engine.capabilities.config(tenant_id, PLUGIN_NAME)
        return policy_for(self.settings, AiValidationConfig.model_validate(raw))


def _ordered(rules: list[Any]) -> list[Any]:
    """Statement-stage rules first, then the checks, then the rewrites, the tenant scope last."""
    def key(rule: Any) -> int:
        if getattr(rule, "stage", "tree") == "statements":
            return 0
        if rule.rule_id == "tenant.scope":
            return 3  # last: it scopes every table whatever another rewrite added
        if hasattr(rule, "rewrite"):
            return 2
        return 1

    return sorted(rules, key=key)
