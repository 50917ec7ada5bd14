"""Operator settings from environment variables (the Helm chart sets them); one frozen object, read once."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .guardrails import Guardrails, GuardrailsError
from .models import ACCOUNT_ID_PATTERN


class SettingsError(ValueError):
    """An environment variable has a value the operator cannot use; the message names it."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


def _member_role(env: Mapping[str, str]) -> str:
    value = env.get("OPERATOR_MEMBER_ROLE_NAME", "").strip() or "OrganizationAccountAccessRole"
    if not re.match(r"^[A-Za-z0-9_+=,.@-]{1,64}$", value):
        raise SettingsError(f"OPERATOR_MEMBER_ROLE_NAME={value!r} is not an IAM role name")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything configurable about the operator. Environment names are in `from_env`."""

    namespaces: tuple[str, ...] = ()  # empty: every namespace
    default_opsramp_aws_account_id: str | None = None
    resync_interval_seconds: float = 600.0
    # How often each resource's timer wakes to see whether a resync is due or a Secret it reads changed.
    resync_tick_seconds: float = 5.0
    log_level: str = "INFO"
    log_format: str = "json"  # json | text
    health_port: int = 8080
    metrics_port: int = 9090  # 0 disables the metrics endpoint
    metrics_address: str = "0.0.0.0"  # noqa: S104 - scraped from the pod network; tests bind loopback
    peering_name: str | None = None  # None: standalone (one replica, no peering objects needed)
    # kopf freezes every replica when two share a priority, so each replica picks its own (random unless set).
    peering_priority: int | None = None
    peering_lifetime_seconds: int = 60
    # Shards: several operator Deployments, each handling the resources its label selector matches (the API server
    # filters the watch). The name tells a shard's own marks apart (its credentials finalizer on shared Secrets).
    shard_name: str | None = None
    shard_selector: str | None = None
    # Needs-attention errors are retried slowly, doubling from base to max, so a broken resource never hot-loops.
    attention_backoff_seconds: float = 30.0
    attention_backoff_max_seconds: float = 600.0
    # IAM is eventually consistent: a role younger than this is not handed to OpsRamp yet.
    role_settle_seconds: float = 10.0
    # OpsRamp failing to assume a role younger than this is taken for IAM propagation (retried); after it, for a
    # wrong account id or External ID (needs a person).
    assume_grace_seconds: float = 120.0
    # How long Monitoring waits for OpsRamp's verdict on the role after a credential write before it rests on "no
    # failure reported" (a tenant that checks later says so in integrations/activity; one that never does, never).
    monitoring_grace_seconds: float = 180.0
    # How often a settled Monitoring reads OpsRamp's verdict again (a paged GET, shared by a tenant's resources).
    monitoring_recheck_seconds: float = 3600.0
    # OpsRamp rate limits per tenant (documented: 500 GETs, 50 paged GETs, 50 writes a minute).
    opsramp_window_seconds: float = 60.0
    opsramp_gets_per_window: int = 500
    opsramp_paged_gets_per_window: int = 50
    opsramp_writes_per_window: int = 50
    iam_calls_per_second: int = 10
    # Secrets every pass reads are kept from the operator's Secret watch; this bounds how long an entry is trusted.
    secret_cache_seconds: float = 300.0
    # What a tenant may ask for (trusted OpsRamp accounts, extra policies, boundary, targets, OpsRamp hosts).
    guardrails: Guardrails = field(default_factory=Guardrails)
    # A server's Retry-After / X-RateLimit-Reset is honoured up to this many seconds: a longer one is a lie or an
    # attack, and would park the tenant's client (not the others') for that long.
    max_server_wait_seconds: float = 300.0
    # The longest a pass sleeps in a shared worker thread (rate-limit budget, a server's wait, a retry backoff);
    # a longer wait ends the pass with a temporary error and the resource is retried when the wait is over.
    max_wait_in_pass_seconds: float = 10.0
    # Assumed-role sessions (one per spec.aws.assumeRoleArn): at most this many, each for at most this long.
    aws_session_cache_size: int = 16
    aws_session_cache_seconds: float = 3600.0
    # Many accounts (docs/organizations.md): the role assumed in each member account unless the spec names one, how
    # often an organization is scanned for accounts that came or went, and how many rows status.accounts lists.
    member_role_name: str = "OrganizationAccountAccessRole"
    organization_scan_seconds: float = 300.0
    accounts_status_rows: int = 50
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        namespaces = tuple(ns.strip() for ns in env.get("OPERATOR_NAMESPACES", "").split(",") if ns.strip())
        account = env.get("OPERATOR_OPSRAMP_AWS_ACCOUNT_ID", "").strip() or None
        if account is not None and not re.match(ACCOUNT_ID_PATTERN, account):
            raise SettingsError(f"OPERATOR_OPSRAMP_AWS_ACCOUNT_ID={account!r} is not a 12-digit AWS account id")
        log_format = env.get("OPERATOR_LOG_FORMAT", "json").strip().lower() or "json"
        if log_format not in ("json", "text"):
            raise SettingsError(f"OPERATOR_LOG_FORMAT={log_format!r} must be 'json' or 'text'")
        log_level = env.get("OPERATOR_LOG_LEVEL", "INFO").strip().upper() or "INFO"
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(f"OPERATOR_LOG_LEVEL={log_level!r} must be DEBUG, INFO, WARNING or ERROR")
        shard_name = env.get("OPERATOR_SHARD_NAME", "").strip() or None
        shard_selector = env.get("OPERATOR_SHARD_SELECTOR", "").strip() or None
        if shard_name is not None and not re.match(r"^[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?$", shard_name):
            raise SettingsError(
                f"OPERATOR_SHARD_NAME={shard_name!r} must be 1 to 20 lowercase letters, digits and '-' (a label value "
                "and part of a finalizer name)"
            )
        if (shard_name is None) != (shard_selector is None):
            raise SettingsError("OPERATOR_SHARD_NAME and OPERATOR_SHARD_SELECTOR go together: set both or neither")
        try:
            guardrails = Guardrails.from_env(env)
        except GuardrailsError as exc:
            raise SettingsError(str(exc)) from None
        return cls(
            namespaces=namespaces,
            default_opsramp_aws_account_id=account,
            resync_interval_seconds=_float(env, "OPERATOR_RESYNC_INTERVAL_SECONDS", 600.0, minimum=1.0),
            resync_tick_seconds=_float(env, "OPERATOR_RESYNC_TICK_SECONDS", 5.0, minimum=0.5),
            log_level=log_level,
            log_format=log_format,
            health_port=_int(env, "OPERATOR_HEALTH_PORT", 8080),
            metrics_port=_int(env, "OPERATOR_METRICS_PORT", 9090),
            metrics_address=env.get("OPERATOR_METRICS_ADDRESS", "").strip() or "0.0.0.0",  # noqa: S104
            peering_name=env.get("OPERATOR_PEERING_NAME", "").strip() or None,
            peering_priority=_int(env, "OPERATOR_PEERING_PRIORITY", -1, minimum=-1)
            if env.get("OPERATOR_PEERING_PRIORITY", "").strip()
            else None,
            peering_lifetime_seconds=_int(env, "OPERATOR_PEERING_LIFETIME_SECONDS", 60, minimum=5),
            shard_name=shard_name,
            shard_selector=shard_selector,
            attention_backoff_seconds=_float(env, "OPERATOR_ATTENTION_BACKOFF_SECONDS", 30.0, minimum=0.1),
            attention_backoff_max_seconds=_float(env, "OPERATOR_ATTENTION_BACKOFF_MAX_SECONDS", 600.0, minimum=0.1),
            role_settle_seconds=_float(env, "OPERATOR_ROLE_SETTLE_SECONDS", 10.0),
            assume_grace_seconds=_float(env, "OPERATOR_ASSUME_GRACE_SECONDS", 120.0),
            monitoring_grace_seconds=_float(env, "OPERATOR_MONITORING_GRACE_SECONDS", 180.0),
            monitoring_recheck_seconds=_float(env, "OPERATOR_MONITORING_RECHECK_SECONDS", 3600.0, minimum=1.0),
            opsramp_window_seconds=_float(env, "OPERATOR_OPSRAMP_RATE_WINDOW_SECONDS", 60.0, minimum=0.1),
            opsramp_gets_per_window=_int(env, "OPERATOR_OPSRAMP_GETS_PER_WINDOW", 500, minimum=1),
            opsramp_paged_gets_per_window=_int(env, "OPERATOR_OPSRAMP_PAGED_GETS_PER_WINDOW", 50, minimum=1),
            opsramp_writes_per_window=_int(env, "OPERATOR_OPSRAMP_WRITES_PER_WINDOW", 50, minimum=1),
            iam_calls_per_second=_int(env, "OPERATOR_IAM_CALLS_PER_SECOND", 10, minimum=1),
            secret_cache_seconds=_float(env, "OPERATOR_SECRET_CACHE_SECONDS", 300.0),
            guardrails=guardrails,
            max_server_wait_seconds=_float(env, "OPERATOR_MAX_SERVER_WAIT_SECONDS", 300.0, minimum=1.0),
            max_wait_in_pass_seconds=_float(env, "OPERATOR_MAX_WAIT_IN_PASS_SECONDS", 10.0, minimum=0.0),
            aws_session_cache_size=_int(env, "OPERATOR_AWS_SESSION_CACHE_SIZE", 16, minimum=1),
            aws_session_cache_seconds=_float(env, "OPERATOR_AWS_SESSION_CACHE_SECONDS", 3600.0, minimum=60.0),
            member_role_name=_member_role(env),
            organization_scan_seconds=_float(env, "OPERATOR_ORGANIZATION_SCAN_SECONDS", 300.0, minimum=1.0),
            accounts_status_rows=_int(env, "OPERATOR_ACCOUNTS_STATUS_ROWS", 50, minimum=1),
        )
