"""The public plugin API (version :data:`API_VERSION`): everything a plugin may use.

``pulse_engine`` re-exports every name here; plugins, first-party ones included, import
from ``pulse_engine`` and nothing deeper (an import-linter contract, run by the test
suite, enforces it). Each name is documented in ``docs/plugin-api.md``; a test fails when
one is not. The API is versioned semantically: plugins declare
``pulse-engine>=1.0,<2``. Everything else in the package is internal and may change.
"""

from __future__ import annotations

from pulse_engine.accounts import create_tenant, create_user, get_tenant
from pulse_engine.auth import public, require_role
from pulse_engine.background import BackgroundTask
from pulse_engine.bulk import (
    BULK_COPY_FLAG,
    analyze_tables,
    bulk_copy_available,
    copy_tenant_rows,
    session_tenant,
)
from pulse_engine.cache import CachePolicy
from pulse_engine.cli_accounts import run_with_engine
from pulse_engine.db import lock_role_changes, set_work_mem
from pulse_engine.embedded import load_or_create_secret
from pulse_engine.engine_api import Engine
from pulse_engine.events import CAPABILITY_CHANGED_EVENT, Event
from pulse_engine.facts import (
    FactsRefresh,
    RefreshResult,
    analyze_if_rewritten,
    full_refresh_request,
)
from pulse_engine.hookspecs import hookimpl, hookspec
from pulse_engine.metrics import (
    METRIC_FILTER_NAMES,
    Freshness,
    MetricComputation,
    MetricDefinition,
    MetricFilter,
    MetricInterval,
    MetricKind,
    MetricQuery,
    MetricSamples,
    MetricValue,
    percentile_cont,
)
from pulse_engine.openapi import file_response, no_content
from pulse_engine.outbound import GuardedTransport, OutboundPolicy, OutboundRefused
from pulse_engine.pagination import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Page,
    PageQuery,
    decode_cursor,
    encode_cursor,
    fetch_page,
    invalid_cursor,
)
from pulse_engine.plugin_tables import copy_tables, timestamp_column, uuid_column
from pulse_engine.problems import (
    FieldError,
    Problem,
    ProblemDocument,
    field_errors,
    invalid_field,
    problem_responses,
    validation_problem,
)
from pulse_engine.queryparams import (
    EARLIEST,
    LATEST,
    BoundedDatetime,
    QueryList,
    QueryText,
    TimeZoneName,
    calendar_buckets,
    check_time_zone,
    check_window,
)
from pulse_engine.queue import Consumer, Message
from pulse_engine.request_body import parse_json_body
from pulse_engine.request_limits import body_limit, statement_timeout
from pulse_engine.settings import Settings
from pulse_engine.stash import Stash, StashKey
from pulse_engine.tenancy import current_principal, current_tenant_id, tenant_session
from pulse_engine.tokens import Principal

#: The version of this API (not of the pulse-engine distribution).
API_VERSION = "1.0"

__all__ = [
    "API_VERSION",
    "BULK_COPY_FLAG",
    "BackgroundTask",
    "BoundedDatetime",
    "CAPABILITY_CHANGED_EVENT",
    "DEFAULT_LIMIT",
    "EARLIEST",
    "LATEST",
    "MAX_LIMIT",
    "METRIC_FILTER_NAMES",
    "CachePolicy",
    "Consumer",
    "Engine",
    "Event",
    "FactsRefresh",
    "FieldError",
    "GuardedTransport",
    "Freshness",
    "Message",
    "MetricComputation",
    "MetricDefinition",
    "MetricFilter",
    "MetricInterval",
    "MetricKind",
    "MetricQuery",
    "MetricSamples",
    "MetricValue",
    "OutboundPolicy",
    "OutboundRefused",
    "Page",
    "PageQuery",
    "Principal",
    "RefreshResult",
    "Problem",
    "QueryList",
    "QueryText",
    "ProblemDocument",
    "Stash",
    "Settings",
    "StashKey",
    "TimeZoneName",
    "analyze_if_rewritten",
    "analyze_tables",
    "body_limit",
    "bulk_copy_available",
    "calendar_buckets",
    "check_time_zone",
    "check_window",
    "copy_tables",
    "copy_tenant_rows",
    "create_tenant",
    "create_user",
    "current_principal",
    "current_tenant_id",
    "decode_cursor",
    "encode_cursor",
    "fetch_page",
    "field_errors",
    "file_response",
    "full_refresh_request",
    "get_tenant",
    "hookimpl",
    "hookspec",
    "invalid_cursor",
    "invalid_field",
    "load_or_create_secret",
    "lock_role_changes",
    "no_content",
    "parse_json_body",
    "percentile_cont",
    "problem_responses",
    "public",
    "require_role",
    "run_with_engine",
    "session_tenant",
    "set_work_mem",
    "statement_timeout",
    "tenant_session",
    "timestamp_column",
    "uuid_column",
    "validation_problem",
]
