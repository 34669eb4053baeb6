"""The hooks pulse-ai-validation adds for other plugins (added through ``add_hookspecs``).

Implement them with ``@pulse_engine.hookimpl``. Call arguments are keywords; an
implementation accepts any subset of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pulse_engine import hookspec

if TYPE_CHECKING:
    from pulse_engine import Engine


@hookspec
def register_validation_rules(engine: Engine) -> Any:
    """Return SQL validation rules: objects following
    :class:`pulse_ai_validation.rules.ValidationRule` (a ``rule_id``, a default
    ``severity``, a ``description`` and ``check(context) -> Iterable[Finding]``).

    Called once per engine, synchronously, the first time the validator is built. A rule
    id registered twice is taken from the plugin called first (``tryfirst`` wins).

    :param engine: the running engine.
    :returns: a rule or a list of rules.
    """


@hookspec(firstresult=True)
def ai_learning_record_feedback(engine: Engine, tenant_id: str, feedback: dict[str, Any]) -> Any:
    """Store one learning-feedback record of ``tenant_id``; return its id (``str``).

    ``feedback`` holds ``question`` (str | None), ``failed_sql`` (str), ``error``
    (str | None), ``error_kind`` (str | None: a rule id such as ``schema.unknown_column``),
    ``corrected_sql`` (str | None), ``outcome`` (``"fixed"``, ``"not_fixed"`` or
    ``"partial"``) and ``recorded_by`` (user id str | None). Write it in a
    ``engine.db.tenant_session(tenant_id)``. The first implementation that answers wins
    (pulse-ml-monitor's ``ai_learning_memory``); pulse-ai-validation's own ``trylast``
    implementation writes ``ai_validation_feedback`` when no other plugin answers.
    May be ``async``.
    """


@hookspec(firstresult=True)
def ai_learning_find_feedback(
    engine: Engine, tenant_id: str, error_kind: str | None, limit: int
) -> Any:
    """Return up to ``limit`` (<= 500) feedback records of ``tenant_id``, newest first, as
    a list of dicts with the keys of :func:`ai_learning_record_feedback`'s ``feedback``
    plus ``id`` (str) and ``recorded_at`` (ISO-8601 str); only those of ``error_kind``
    when it is not None. pulse-ai-validation ranks them by similarity itself.
    Read in a ``engine.db.tenant_session(tenant_id)``. May be ``async``.
    """


@hookspec
def register_result_schemas(engine: Engine) -> Any:
    """Return ``{name: pydantic model class}``: result-set schemas that
    ``POST /api/v1/ai/validate/data-structure`` validates rows against (each row is
    validated as one model instance: field types, nullability, ``Field`` ranges, model
    validators). Called once per engine, synchronously. A name registered twice is taken
    from the plugin called first.
    """
