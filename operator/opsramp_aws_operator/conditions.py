"""Pure functions from one reconcile pass's result to the status conditions and the Events worth posting.

Conditions follow metav1.Condition: `lastTransitionTime` moves only when `status` flips, every condition is
stamped with the generation it was computed for, and the full list is always written (a merge patch replaces
lists). `Reconciling` and `Stalled` follow kstatus: True only while they apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from .errors import NeedsAttention, OperatorError, TransientError

if TYPE_CHECKING:
    from .fleet import FleetResult

READY = "Ready"
ROLE_READY = "RoleReady"
INTEGRATION_READY = "IntegrationReady"
# OpsRamp's own view: the integration enabled, its discovery profile in place, and OpsRamp's verdict on the role.
MONITORING = "Monitoring"
# Many accounts (spec.accounts / spec.organization): how many of the selected accounts are Ready.
ACCOUNTS_READY = "AccountsReady"
RECONCILING = "Reconciling"
STALLED = "Stalled"
ORDER = (READY, ROLE_READY, INTEGRATION_READY, MONITORING, ACCOUNTS_READY, RECONCILING, STALLED)

Step = Literal["role", "integration", "monitoring"]
StepState = Literal["pending", "done", "failed", "disabled"]


@dataclass(frozen=True)
class ConditionUpdate:
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""


@dataclass
class PassResult:
    """What one reconcile pass achieved, filled step by step by the service."""

    role: StepState = "pending"
    integration: StepState = "pending"
    role_arn: str | None = None
    role_message: str = ""
    integration_id: str | None = None
    integration_message: str = ""
    account_id: str | None = None
    external_id_secret_name: str | None = None
    policy_digest: str | None = None
    attached_policy_arns: list[str] | None = None
    monitoring: StepState = "pending"
    monitoring_reason: str = ""
    monitoring_message: str = ""
    discovery_profile_id: int | None = None
    credentials_applied_time: str | None = None
    applied_integration: dict[str, Any] | None = None
    failed_step: Step | None = None
    error: OperatorError | None = None
    suspended: bool = False
    changes: list[str] = field(default_factory=list)
    # Warning Events this pass owes besides condition transitions (e.g. the integration was disabled by hand).
    warnings: list[tuple[str, str]] = field(default_factory=list)
    # Normal Events worth a record (an adoption, a completed External ID rotation).
    notices: list[tuple[str, str]] = field(default_factory=list)
    # External ID: the digest of the one OpsRamp now has; the rotation's status form; the annotation value acted on.
    external_id_digest: str | None = None
    rotation: dict[str, Any] | None = None
    handled_rotation_request: str | None = None
    # What this pass took over (spec.adopt): (role ARN, "none" | "restore"), the integration's id.
    adopted_role: tuple[str, str] | None = None
    adopted_integration: str | None = None
    # managementPolicy Observe: every difference, and the three side conditions (type, status, reason, message).
    observing: bool = False
    differences: list[str] | None = None
    observed_conditions: list[tuple[str, str, str, str]] | None = None
    # Many accounts: every account's row (fleet.py); None for a one-account resource.
    fleet: FleetResult | None = None


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _step_condition(
    ctype: str, state: StepState, step: Step, result: PassResult, done_reason: str, done_message: str
) -> ConditionUpdate:
    if state == "done":
        return ConditionUpdate(ctype, "True", done_reason, done_message)
    if result.failed_step == step and result.error is not None:
        return ConditionUpdate(ctype, "False", result.error.reason, result.error.message)
    waiting_for = {"integration": "the IAM role", "monitoring": "the OpsRamp integration"}.get(step, "earlier steps")
    return ConditionUpdate(ctype, "Unknown", "Pending", f"Waiting for {waiting_for}.")


def _monitoring_condition(result: PassResult) -> ConditionUpdate:
    if result.monitoring == "done":
        return ConditionUpdate(MONITORING, "True", result.monitoring_reason or "Monitoring", result.monitoring_message)
    if result.monitoring == "disabled":
        return ConditionUpdate(MONITORING, "False", "Disabled", result.monitoring_message)
    error = result.error
    if result.failed_step == "monitoring" and isinstance(error, TransientError):
        # Not known yet (OpsRamp has not given its verdict, or a read failed): neither True nor False.
        return ConditionUpdate(MONITORING, "Unknown", error.reason, error.message)
    return _step_condition(MONITORING, result.monitoring, "monitoring", result, "Monitoring", "")


def desired_updates(result: PassResult) -> list[ConditionUpdate]:
    """The six conditions for this pass, in a fixed order."""
    if result.suspended:
        return [
            ConditionUpdate(READY, "False", "Suspended", "spec.suspend is true: the operator does not act."),
            ConditionUpdate(RECONCILING, "False", "Suspended", ""),
            ConditionUpdate(STALLED, "False", "Suspended", ""),
        ]
    if result.observing and result.observed_conditions is not None and result.error is None:
        return _observed_updates(result)
    if result.fleet is not None:
        return _fleet_updates(result, result.fleet)
    role = _step_condition(
        ROLE_READY,
        result.role,
        "role",
        result,
        "RoleReconciled",
        result.role_message or f"IAM role {result.role_arn} matches the spec.",
    )
    integration = _step_condition(
        INTEGRATION_READY,
        result.integration,
        "integration",
        result,
        "IntegrationReconciled",
        f"OpsRamp integration {result.integration_id} matches the spec.",
    )
    monitoring = _monitoring_condition(result)
    error = result.error
    disabled = error is None and result.monitoring == "disabled"
    if error is None and role.status == integration.status == monitoring.status == "True":
        ready = ConditionUpdate(
            READY,
            "True",
            "Reconciled",
            "The IAM role and the OpsRamp integration match the spec, and OpsRamp monitors through it.",
        )
    elif error is not None:
        ready = ConditionUpdate(READY, "False", error.reason, error.message)
    elif disabled:
        ready = ConditionUpdate(READY, "False", "MonitoringDisabled", result.monitoring_message)
    else:
        ready = ConditionUpdate(READY, "False", "Reconciling", "Reconciliation is in progress.")
    transient = isinstance(error, TransientError)
    attention = isinstance(error, NeedsAttention)
    reconciling = (
        ConditionUpdate(RECONCILING, "True", error.reason if error else "Progressing", error.message if error else "")
        if transient or (error is None and ready.status != "True" and not disabled)
        else ConditionUpdate(RECONCILING, "False", "Idle", "")
    )
    stalled = (
        ConditionUpdate(STALLED, "True", error.reason, error.message)
        if attention and error is not None
        else ConditionUpdate(STALLED, "False", "Progressing" if error else "Idle", "")
    )
    # An unexpected error (neither kind) is reported like a transient one: retried, not stalled.
    return [ready, role, integration, monitoring, reconciling, stalled]


def _fleet_updates(result: PassResult, fleet: FleetResult) -> list[ConditionUpdate]:
    """Many accounts: AccountsReady with counts; Ready only when every selected account is (and none is left over)."""
    error = result.error
    total = len(fleet.members)
    ready_count = fleet.ready
    all_ready = error is None and ready_count == total and not fleet.removing
    disabled = error is None and not all_ready and bool(fleet.disabled) and not fleet.pending and not fleet.failed
    roles = sum(1 for m in fleet.members.values() if m.role_arn and m.state in ("Ready", "Installed", "Disabled"))
    installed = fleet.installed
    awaiting = sum(1 for m in fleet.members.values() if m.state == "Installed")
    if all_ready:
        monitoring = ConditionUpdate(
            MONITORING,
            "True",
            "AllAccountsMonitored",
            f"OpsRamp monitors all {total} accounts (its verdict on each role, or no failure reported).",
        )
    elif disabled:
        monitoring = ConditionUpdate(MONITORING, "False", "Disabled", result.monitoring_message)
    else:
        monitoring = ConditionUpdate(
            MONITORING,
            "Unknown",
            "AwaitingOpsRampVerdict" if awaiting else "Pending",
            f"OpsRamp monitors {ready_count}/{total} accounts; {awaiting} installed, awaiting its verdict on the role.",
        )
    if all_ready:
        accounts = ConditionUpdate(ACCOUNTS_READY, "True", "AllAccountsReady", f"{ready_count}/{total} accounts Ready.")
        role = ConditionUpdate(
            ROLE_READY, "True", "RoleReconciled", f"The IAM role matches the spec in {roles} accounts."
        )
        integration = ConditionUpdate(
            INTEGRATION_READY, "True", "IntegrationReconciled", f"{total} OpsRamp integrations match the spec."
        )
        ready = ConditionUpdate(
            READY,
            "True",
            "Reconciled",
            f"The IAM role and the OpsRamp integration match the spec in all {total} accounts.",
        )
    else:
        reason = error.reason if error is not None else "MonitoringDisabled" if disabled else "Reconciling"
        message = (
            error.message
            if error is not None
            else result.monitoring_message
            if disabled
            else "Reconciliation is in progress."
        )
        accounts = ConditionUpdate(ACCOUNTS_READY, "False", reason, f"{ready_count}/{total} accounts Ready. {message}")
        if result.failed_step == "role" and error is not None and not fleet.members:
            role = ConditionUpdate(ROLE_READY, "False", error.reason, error.message)
        else:
            role = ConditionUpdate(
                ROLE_READY, "Unknown", "Pending", f"The IAM role matches the spec in {roles} accounts."
            )
        integration = ConditionUpdate(
            INTEGRATION_READY, "Unknown", "Pending", f"{installed}/{total} OpsRamp integrations match the spec."
        )
        ready = ConditionUpdate(READY, "False", reason, message)
        if disabled:
            integration = ConditionUpdate(
                INTEGRATION_READY, "True", "IntegrationReconciled", f"{total} OpsRamp integrations match the spec."
            )
            ready = ConditionUpdate(READY, "False", "MonitoringDisabled", result.monitoring_message)
    transient = isinstance(error, TransientError)
    attention = isinstance(error, NeedsAttention)
    reconciling = (
        ConditionUpdate(RECONCILING, "True", error.reason if error else "Progressing", error.message if error else "")
        if transient or (error is None and not all_ready and not disabled)
        else ConditionUpdate(RECONCILING, "False", "Idle", "")
    )
    stalled = (
        ConditionUpdate(STALLED, "True", error.reason, error.message)
        if attention and error is not None
        else ConditionUpdate(STALLED, "False", "Progressing" if error else "Idle", "")
    )
    return [ready, role, integration, monitoring, accounts, reconciling, stalled]


def _observed_updates(result: PassResult) -> list[ConditionUpdate]:
    """managementPolicy Observe: the sides as observed; Ready says whether everything matches; never Stalled."""
    sides = [ConditionUpdate(t, s, r, m) for t, s, r, m in result.observed_conditions or ()]  # type: ignore[arg-type]
    differences = result.differences or []
    if differences:
        listed = "; ".join(differences[:10]) + (f"; and {len(differences) - 10} more" if len(differences) > 10 else "")
        ready = ConditionUpdate(
            READY,
            "False",
            "DriftDetected",
            f"Observe: {len(differences)} difference(s) from the spec (status.differences; nothing is written): "
            + listed,
        )
    else:
        ready = ConditionUpdate(
            READY, "True", "Observed", "Observe: AWS and OpsRamp match the spec (the operator writes nothing)."
        )
    return [
        ready,
        *sides,
        ConditionUpdate(RECONCILING, "False", "Observing", ""),
        ConditionUpdate(STALLED, "False", "Observing", ""),
    ]


def merge_conditions(
    previous: Sequence[Mapping[str, Any]] | None,
    updates: Sequence[ConditionUpdate],
    generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """Apply updates to the previous list: keep lastTransitionTime unless status flips; keep unknown types."""
    old = {c.get("type"): c for c in previous or ()}
    stamp = format_time(now)
    merged: dict[str, dict[str, Any]] = {}
    for update in updates:
        before = old.get(update.type)
        transition = before.get("lastTransitionTime") if before and before.get("status") == update.status else None
        condition: dict[str, Any] = {
            "type": update.type,
            "status": update.status,
            "reason": update.reason,
            "message": update.message,
            "lastTransitionTime": transition or stamp,
        }
        if generation is not None:
            condition["observedGeneration"] = generation
        merged[update.type] = condition
    for ctype, kept in old.items():
        if ctype not in merged and ctype is not None:
            merged[ctype] = dict(kept)
    rank = {t: i for i, t in enumerate(ORDER)}
    return sorted(merged.values(), key=lambda c: (rank.get(c["type"], len(ORDER)), c["type"]))


@dataclass(frozen=True)
class EventToPost:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def events_for(previous: Sequence[Mapping[str, Any]] | None, current: Sequence[Mapping[str, Any]]) -> list[EventToPost]:
    """Events on transitions only: Ready's status or reason changed since the last written status."""
    before = next((c for c in previous or () if c.get("type") == READY), None)
    after = next((c for c in current if c.get("type") == READY), None)
    if after is None:
        return []
    was_stalled = any(c.get("type") == STALLED and c.get("status") == "True" for c in previous or ())
    is_stalled = any(c.get("type") == STALLED and c.get("status") == "True" for c in current)
    # A transition: Ready's status or reason changed, or the same reason went from retrying to needing a person.
    if (
        before is not None
        and (before.get("status"), before.get("reason")) == (after["status"], after["reason"])
        and was_stalled == is_stalled
    ):
        return []
    if after["status"] == "True":
        return [EventToPost("Normal", "Ready", after["message"])]
    stalled = next((c for c in current if c.get("type") == STALLED), None)
    if stalled is not None and stalled.get("status") == "True":
        return [EventToPost("Warning", after["reason"], after["message"])]
    if after["reason"] == "DriftDetected":
        return [EventToPost("Warning", after["reason"], after["message"])]
    if after["reason"] in ("Suspended", "MonitoringDisabled", "Observed"):
        return [EventToPost("Normal", after["reason"], after["message"])]
    return []


def build_status(
    result: PassResult,
    previous_status: Mapping[str, Any] | None,
    generation: int | None,
    now: datetime,
) -> tuple[dict[str, Any], list[EventToPost]]:
    """The status patch for this pass and the Events its transitions deserve."""
    previous_conditions = (previous_status or {}).get("conditions") or []
    conditions = merge_conditions(previous_conditions, desired_updates(result), generation, now)
    patch: dict[str, Any] = {"conditions": conditions}
    if not result.suspended:
        patch["observedGeneration"] = generation
    for key, value in (
        ("roleArn", result.role_arn),
        ("integrationId", result.integration_id),
        ("accountId", result.account_id),
        ("externalIdSecretName", result.external_id_secret_name),
        ("policyDigest", result.policy_digest),
        ("attachedPolicyArns", result.attached_policy_arns),
        ("discoveryProfileId", result.discovery_profile_id),
        ("credentialsAppliedTime", result.credentials_applied_time),
        ("appliedIntegration", result.applied_integration),
        ("externalIdDigest", result.external_id_digest),
        ("externalIdRotation", result.rotation),
        ("handledRotationRequest", result.handled_rotation_request),
    ):
        if value is not None:
            patch[key] = value
    previous = previous_status or {}
    adopted = _adopted(result, previous.get("adopted"), now)
    if adopted is not None:
        patch["adopted"] = adopted
    if result.fleet is not None:
        patch.update(result.fleet.status_fields())
    if result.observing and result.differences is not None:
        patch["differences"] = result.differences
    elif previous.get("differences") is not None and not result.suspended:
        patch["differences"] = None  # back to Manage: the list described an Observe pass
    ready = next(c for c in conditions if c["type"] == READY)
    was_ready = any(c.get("type") == READY and c.get("status") == "True" for c in previous_conditions)
    # Stamped when a pass made things match (it changed something, or Ready became True), not by every resync
    # that finds nothing to do: an unchanged fleet then costs the API server no status writes at all.
    if ready["status"] == "True" and (
        result.changes or not was_ready or not (previous_status or {}).get("lastSyncTime")
    ):
        patch["lastSyncTime"] = format_time(now)
    events = events_for(previous_conditions, conditions)
    # Observe: an Event whenever the set of differences changes (Ready's reason may stay DriftDetected).
    if (
        result.observing
        and result.differences
        and result.differences != previous.get("differences")
        and not any(e.reason == "DriftDetected" for e in events)
    ):
        events.append(EventToPost("Warning", "DriftDetected", ready["message"]))
    events.extend(EventToPost("Warning", reason, message) for reason, message in result.warnings)
    events.extend(EventToPost("Normal", reason, message) for reason, message in result.notices)
    return patch, events


def _adopted(result: PassResult, previous: Any, now: datetime) -> dict[str, Any] | None:
    """status.adopted with what this pass took over (earlier adoptions kept); None when nothing new."""
    if result.adopted_role is None and result.adopted_integration is None:
        return None
    adopted = dict(previous) if isinstance(previous, Mapping) else {}
    stamp = format_time(now)
    if result.adopted_role is not None:
        arn, previous_owner = result.adopted_role
        adopted["role"] = {"name": arn, "time": stamp, "previousOwner": previous_owner}
    if result.adopted_integration is not None:
        adopted["integration"] = {"name": result.adopted_integration, "time": stamp, "previousOwner": "integration"}
    return adopted


def changed_only(patch: Mapping[str, Any], current: Mapping[str, Any] | None) -> dict[str, Any]:
    """The entries of a status patch whose value differs from the current status (empty: nothing to write)."""
    current = current or {}
    return {key: value for key, value in patch.items() if current.get(key) != value}
