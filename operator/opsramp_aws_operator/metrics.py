"""Prometheus metrics of the operator: one registry, imported by adapters and handlers alike."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "opsramp_operator_reconciles_total",
    "Reconcile passes by result (ok, transient, needs_attention, error).",
    ["result"],
)
RECONCILES_IN_PROGRESS = Gauge(
    "opsramp_operator_reconciles_in_progress",
    "Reconcile passes running now (each is counted in reconciles_total when it ends).",
)
RECONCILE_SECONDS = Histogram(
    "opsramp_operator_reconcile_duration_seconds",
    "Duration of reconcile passes by result.",
    ["result"],
)
API_CALLS = Counter(
    "opsramp_operator_api_calls_total",
    "Calls to external APIs by service (iam, sts, opsramp) and operation.",
    ["service", "operation"],
)
API_ERRORS = Counter(
    "opsramp_operator_api_errors_total",
    "Failed calls to external APIs by service, operation and error code (HTTP status or AWS code).",
    ["service", "operation", "code"],
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "opsramp_operator_rate_limit_wait_seconds_total",
    "Seconds spent waiting in the client-side rate limiters, by service and category.",
    ["service", "category"],
)
RESOURCES = Gauge(
    "opsramp_operator_resources",
    "AWSIntegration resources by Ready condition status (True, False, Unknown).",
    ["ready"],
)
AWS_SESSIONS = Gauge(
    "opsramp_operator_aws_sessions",
    "Assumed-role sessions (one per spec.aws.assumeRoleArn) held; bounded by OPERATOR_AWS_SESSION_CACHE_SIZE.",
)
RECONCILE_ERRORS = Counter(
    "opsramp_operator_reconcile_errors_total",
    "Reconcile passes that ended in an error, by the condition reason they reported (e.g. OpsRampThrottled) and kind "
    "(transient: retried with backoff; needs_attention: Stalled until a person fixes it).",
    ["reason", "kind"],
)
STALLED = Gauge(
    "opsramp_operator_resources_stalled",
    "AWSIntegration resources whose Stalled condition is True, by its reason (what a person must fix).",
    ["reason"],
)
OLDEST_NOT_READY_SECONDS = Gauge(
    "opsramp_operator_oldest_not_ready_seconds",
    "Seconds since the longest-waiting resource's Ready condition left True (0 when every resource is Ready; "
    "suspended and monitoring-disabled resources do not count).",
)
RESYNC_DUE = Gauge(
    "opsramp_operator_resync_backlog",
    "Resync passes due and waiting for a free slot of the scheduler (a lasting backlog: passes outpace the budgets).",
)
