"""The monitoring reconciler: is OpsRamp monitoring through the integration, by OpsRamp's own account of it?

A 200 on the install proves little: OpsRamp may check the role later, or never (docs/opsramp-api-assumptions.md,
question 8). So `Monitoring` rests on what OpsRamp shows: the integration enabled (as the spec asks; one disabled
by hand is enabled again and reported), a discovery profile in place (created, or adopted after a lost answer),
and OpsRamp's verdict on the role since the credentials were last written (integrations/activity). With no
verdict, Monitoring waits a grace period, then rests on "no failure reported", and says so.

A resync of a settled resource reads the integration (done by the service) and its discovery profile; the
activity is read again only after a credential write or every `recheck_seconds`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import NeedsAttention, TransientError
from .models import MonitoringSpec
from .opsramp import DiscoveryRequest, InstalledIntegration, OpsRampClient, belongs_to, profile_differences
from .opsramp.wire import WireFormat

# OpsRamp's clock and ours may disagree a little; a verdict this much older than our write still counts.
CLOCK_SKEW_SECONDS = 2.0


@dataclass
class MonitoringOutcome:
    state: str  # "done" | "disabled"
    reason: str = ""
    message: str = ""
    profile_id: int | None = None
    enabled: bool = True
    enabled_applied: bool = False  # ensure_enabled went through (the integration is as spec.monitoring.enabled says)
    changes: list[str] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class MonitoringInputs:
    """What the service knows that the monitoring step needs."""

    display_name: str
    spec: MonitoringSpec
    recorded_profile_id: int | None
    applied_enabled: bool | None  # what the operator last set (None: nothing recorded)
    verdict_since: float | None  # OpsRamp's verdict must be newer than this (epoch seconds; None: any)
    credentials_since: float | None  # when the grace for a verdict started (None: unknown, an older resource)
    settled: tuple[str, str] | None  # (reason, message) of a Monitoring=True that still holds, else None
    now: float  # epoch seconds
    grace_seconds: float
    role_arn: str
    role_last_changed: datetime | None
    assume_grace_seconds: float
    generated_external_id: bool
    linked_accounts_requested: bool


def discovery_request(inputs: MonitoringInputs, integration_id: str) -> DiscoveryRequest:
    discovery = inputs.spec.discovery
    return DiscoveryRequest(
        name=f"{inputs.display_name} discovery",
        integration_id=integration_id,
        credential_set=inputs.display_name + WireFormat.CREDENTIAL_NAME_SUFFIX,
        resource_types=tuple(discovery.resource_types),
        tags=tuple(sorted(discovery.tags.items())),
        pattern_type=discovery.schedule.pattern_type,
        pattern=discovery.schedule.pattern,
        start_time=discovery.schedule.start_time,
        manage_devices=discovery.manage_devices,
    )


def ensure_enabled(
    client: OpsRampClient, integration: InstalledIntegration, inputs: MonitoringInputs
) -> MonitoringOutcome:
    """Enable or disable as the spec says; an integration disabled behind the operator's back is reported."""
    want = inputs.spec.enabled
    seen = integration.enabled
    outcome = MonitoringOutcome(state="done", enabled=want)
    current = seen if seen is not None else (inputs.applied_enabled if inputs.applied_enabled is not None else True)
    if current != want:
        client.set_enabled(integration.id, want)
        outcome.changes.append(f"{'enabled' if want else 'disabled'} integration")
        if want and seen is False and inputs.applied_enabled is not False:
            outcome.warnings.append(
                (
                    "IntegrationDisabledInOpsRamp",
                    f"OpsRamp integration {integration.id} was disabled in OpsRamp, not by the operator; it was "
                    "enabled again because spec.monitoring.enabled is true (set it to false to keep it disabled).",
                )
            )
    if not want:
        outcome.state = "disabled"
        outcome.message = (
            f"spec.monitoring.enabled is false: OpsRamp integration {integration.id} is disabled, so OpsRamp does "
            "not monitor through it."
        )
    return outcome


def ensure_discovery(
    client: OpsRampClient, integration: InstalledIntegration, inputs: MonitoringInputs
) -> tuple[int, list[str]]:
    """The integration's discovery profile, created or adopted and kept as the spec says: (its id, changes)."""
    request = discovery_request(inputs, integration.id)
    changes: list[str] = []
    profile: Mapping[str, Any] | None = None
    if inputs.recorded_profile_id is not None:
        profile = client.get_profile(inputs.recorded_profile_id)
        if profile is not None and not belongs_to(profile, request):
            # The profile of an integration this resource had before (reinstalled since): its own no more.
            client.delete_profile(inputs.recorded_profile_id)
            changes.append(f"deleted discovery profile {inputs.recorded_profile_id} of the replaced integration")
            profile = None
    if profile is None:
        found = [p for p in client.find_profiles(request.name) if belongs_to(p, request)]
        if found:
            profile = found[0]
            changes.append(f"adopted discovery profile {profile.get('id')}")
    if profile is None:
        created = client.create_profile(request)
        changes.append(f"created discovery profile {created.get('id')}")
        return int(created["id"]), changes
    profile_id = int(profile["id"])
    diffs = profile_differences(profile, request)
    if diffs:
        client.update_profile(profile_id, request)
        changes.append(f"updated discovery profile {', '.join(diffs)}")
    return profile_id, changes


def judge(
    client: OpsRampClient, integration: InstalledIntegration, inputs: MonitoringInputs, profile_id: int
) -> tuple[str, str]:
    """OpsRamp's verdict on the role as (reason, message) for Monitoring=True; raises when it is not (yet) True."""
    if inputs.linked_accounts_requested and integration.install_all_linked_accounts is not True:
        raise NeedsAttention(
            "LinkedAccountsUnconfirmed",
            f"spec.installAllLinkedAccounts is true but OpsRamp does not show credential."
            f"{WireFormat.LINKED_ACCOUNTS_KEY} set on integration {integration.id} (the key is a guess, "
            "docs/opsramp-api-assumptions.md question 3), so the operator cannot tell whether linked accounts are "
            "monitored. Check the integration in OpsRamp's console, or set installAllLinkedAccounts to false.",
        )
    if inputs.settled is not None:
        return inputs.settled
    since = (inputs.verdict_since or 0.0) - CLOCK_SKEW_SECONDS
    verdict = client.verdict(integration.id, since)
    detail = f"integration {integration.id} is enabled and discovery profile {profile_id} is in place"
    if verdict is not None and verdict.ok:
        return "RoleAssumed", f"OpsRamp reports it assumed role {inputs.role_arn}; {detail}."
    if verdict is not None:
        hint = (
            " With generateExternalId, OpsRamp must honour an External ID the client chose; if it does not, put the "
            "External ID from OpsRamp's console in a Secret and set spec.externalIdSecretRef instead."
            if inputs.generated_external_id
            else ""
        )
        age = None
        if inputs.role_last_changed is not None:
            age = inputs.now - inputs.role_last_changed.timestamp()
        if age is not None and age < inputs.assume_grace_seconds:
            # Likely IAM still propagating: ask OpsRamp to try again (a rescan) and look once the grace is over.
            client.rescan(profile_id)
            raise TransientError(
                "OpsRampCannotAssumeRole",
                f"OpsRamp reports it could not assume role {inputs.role_arn} ({verdict.message}); a new role can take "
                "a minute to propagate, so OpsRamp was asked to try again.",
                retry_after=min(20.0, max(1.0, inputs.assume_grace_seconds - age + 1.0)),
            )
        raise NeedsAttention(
            "OpsRampCannotAssumeRole",
            f"OpsRamp reports it could not assume role {inputs.role_arn} ({verdict.message}): check that "
            "spec.opsramp.awsAccountId is OpsRamp's AWS account and that OpsRamp uses this External ID." + hint,
        )
    waited = inputs.now - inputs.credentials_since if inputs.credentials_since is not None else None
    if waited is not None and waited < inputs.grace_seconds:
        raise TransientError(
            "AwaitingOpsRampVerdict",
            f"OpsRamp has not yet reported whether it can assume role {inputs.role_arn} (waiting up to "
            f"{inputs.grace_seconds:.0f}s for its verdict); {detail}.",
            # OpsRamp tries a role within seconds of a credential write: look again soon, then less often.
            retry_after=min(10.0, max(2.0, waited), max(1.0, inputs.grace_seconds - waited + 0.5)),
        )
    return (
        "NoFailureReported",
        f"OpsRamp reported no verdict on role {inputs.role_arn} within {inputs.grace_seconds:.0f}s (this tenant's "
        f"activity API does not report AWS role checks) and no failure; {detail}.",
    )


def ensure_monitoring(
    client: OpsRampClient,
    integration: InstalledIntegration,
    inputs: MonitoringInputs,
    outcome: MonitoringOutcome | None = None,
    *,
    enabled_only: bool = False,
    profile_in_place: bool = False,
) -> MonitoringOutcome:
    """The monitoring step for one integration, as one-account and many-account resources both run it: enabled as
    the spec says, its discovery profile, then OpsRamp's verdict on the role (`judge`).

    `outcome` (pass one in) collects the writes, warnings and the profile id as they happen, so that a caller still
    records them when the verdict raises (not yet known: TransientError; refused: NeedsAttention).

    `enabled_only` (with `inputs.settled`): only the enabled state, which the read
    integration shows (no request unless it differs); the profile and the verdict stand as recorded. A fleet's settled
    accounts between rechecks, so that a resync of many accounts costs one integration GET each.
    `profile_in_place` (with `inputs.recorded_profile_id`): the caller made that profile match the spec for this very
    integration earlier in this process; only the verdict is read (a fleet's accounts waiting for it).
    """
    outcome = outcome if outcome is not None else MonitoringOutcome(state="done")
    enabled = ensure_enabled(client, integration, inputs)
    outcome.enabled, outcome.enabled_applied = enabled.enabled, True
    outcome.changes.extend(enabled.changes)
    outcome.warnings.extend(enabled.warnings)
    if enabled.state == "disabled":
        outcome.state, outcome.message = "disabled", enabled.message
        outcome.profile_id = inputs.recorded_profile_id
        return outcome
    if enabled_only and inputs.settled is not None:
        outcome.profile_id = inputs.recorded_profile_id
        outcome.reason, outcome.message = inputs.settled
        return outcome
    if profile_in_place and inputs.recorded_profile_id is not None:
        profile_id = inputs.recorded_profile_id
    else:
        profile_id, changes = ensure_discovery(client, integration, inputs)
        outcome.changes.extend(changes)
    outcome.profile_id = profile_id
    outcome.reason, outcome.message = judge(client, integration, inputs, profile_id)
    outcome.state = "done"
    return outcome


@dataclass(frozen=True)
class MonitoringPlan:
    """What `ensure_enabled` and `ensure_discovery` would write (plans and Observe): one entry per write."""

    action: str  # "enable", "disable", "create", "update", "delete"
    target: str
    fields: tuple[tuple[str, Any, Any], ...] = ()
    operations: tuple[str, ...] = ()


def plan_monitoring(
    client: OpsRampClient, integration: InstalledIntegration | None, inputs: MonitoringInputs
) -> list[MonitoringPlan]:
    """Reads only: the enable/disable and discovery-profile writes a pass would make for `integration` (None: one
    about to be installed, which starts enabled with no profile)."""
    want = inputs.spec.enabled
    plans: list[MonitoringPlan] = []
    if integration is None:
        if not want:
            plans.append(
                MonitoringPlan("disable", "the new integration", (("enabled", True, False),), ("opsramp:disable",))
            )
            return plans
        request = discovery_request(inputs, "<new>")
        plans.append(
            MonitoringPlan(
                "create", f"discovery profile {request.name!r}", _profile_fields(request), ("opsramp:create-profile",)
            )
        )
        return plans
    seen = integration.enabled
    current = seen if seen is not None else (inputs.applied_enabled if inputs.applied_enabled is not None else True)
    if current != want:
        plans.append(
            MonitoringPlan(
                "enable" if want else "disable",
                f"integration {integration.id}",
                (("enabled", current, want),),
                (f"opsramp:{'enable' if want else 'disable'}",),
            )
        )
    if not want:
        return plans
    request = discovery_request(inputs, integration.id)
    profile: Mapping[str, Any] | None = None
    if inputs.recorded_profile_id is not None:
        profile = client.get_profile(inputs.recorded_profile_id)
        if profile is not None and not belongs_to(profile, request):
            plans.append(
                MonitoringPlan(
                    "delete", f"discovery profile {inputs.recorded_profile_id}", (), ("opsramp:delete-profile",)
                )
            )
            profile = None
    if profile is None:
        found = [p for p in client.find_profiles(request.name) if belongs_to(p, request)]
        profile = found[0] if found else None
    if profile is None:
        plans.append(
            MonitoringPlan(
                "create", f"discovery profile {request.name!r}", _profile_fields(request), ("opsramp:create-profile",)
            )
        )
        return plans
    diffs = profile_differences(profile, request)
    if diffs:
        plans.append(
            MonitoringPlan(
                "update",
                f"discovery profile {profile.get('id')}",
                tuple((d, "differs", "as the spec says") for d in diffs),
                ("opsramp:update-profile",),
            )
        )
    return plans


def _profile_fields(request: DiscoveryRequest) -> tuple[tuple[str, Any, Any], ...]:
    return (
        ("resource types", None, list(request.resource_types)),
        ("tags", None, dict(request.tags)),
        ("schedule", None, f"{request.pattern_type} {request.pattern} from {request.start_time}"),
        ("manage devices", None, request.manage_devices),
    )
