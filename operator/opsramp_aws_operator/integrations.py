"""The OpsRamp integration reconciler: observe by recorded id (or by name after a crash), then install or update.

Ownership: an integration is ours when its id is the one recorded in status, or when it carries our display
name and our role ARN (found after a crash between the install and the status write). An integration with
our display name but another role belongs to someone else and is never touched.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from .errors import NeedsAttention, NotOwned
from .opsramp import AwsIntegrationRequest, InstalledIntegration, OpsRampClient


@dataclass(frozen=True)
class IntegrationOutcome:
    integration: InstalledIntegration
    changes: tuple[str, ...]


def differences(current: InstalledIntegration, desired: AwsIntegrationRequest) -> list[str]:
    """What an update must change; fields OpsRamp does not echo back (None) are not compared."""
    diffs: list[str] = []
    if current.display_name != desired.display_name:
        diffs.append("display name")
    if current.role_arn is not None and current.role_arn != desired.role_arn:
        diffs.append("role ARN")
    if set(current.regions) != set(desired.regions):
        diffs.append("regions")
    if (
        current.install_all_linked_accounts is not None
        and current.install_all_linked_accounts != desired.install_all_linked_accounts
    ):
        diffs.append("linked accounts")
    if current.account_number is not None and current.account_number != desired.account_number:
        diffs.append("account number")
    return diffs


def ensure_integration(
    client: OpsRampClient,
    desired: AwsIntegrationRequest,
    recorded_id: str | None,
    our_role_arns: Collection[str],
    *,
    force_update: bool = False,
    observed: InstalledIntegration | None = None,
) -> IntegrationOutcome:
    """Make OpsRamp hold exactly one integration matching `desired`; writes only what differs.

    `observed` is the recorded integration as this pass already read it (saves a second GET); None reads it.
    """
    if recorded_id:
        current = observed if observed is not None and observed.id == recorded_id else client.get(recorded_id)
        if current is not None:
            if current.role_arn is not None and current.role_arn not in our_role_arns:
                raise NotOwned(
                    f"OpsRamp integration {current.id} (recorded in status) now uses role {current.role_arn}, "
                    "which this resource does not manage; the operator will not change it. Point it back at "
                    "status.roleArn or remove status.integrationId's integration by hand."
                )
            return _update_if_needed(client, current, desired, force_update)
    same_name = client.named(desired.display_name)
    ours = [i for i in same_name if i.role_arn is not None and i.role_arn in our_role_arns]
    if ours:
        # Installed by an earlier pass that crashed before recording the id: adopt it.
        outcome = _update_if_needed(client, ours[0], desired, force_update)
        return IntegrationOutcome(outcome.integration, ("adopted existing integration", *outcome.changes))
    if same_name:
        ids = ", ".join(i.id for i in same_name)
        raise NeedsAttention(
            "DisplayNameInUse",
            f"OpsRamp already has an AWS integration named {desired.display_name!r} ({ids}) that uses another "
            "role. Set spec.displayName to a unique name, or uninstall that integration in OpsRamp.",
        )
    installed = client.install_aws(desired)
    return IntegrationOutcome(installed, ("installed integration",))


def check_display_name_free(
    client: OpsRampClient, display_name: str, our_role_arns: Collection[str], recorded_id: str | None
) -> None:
    """Before creating anything: refuse a display name another integration already uses."""
    others = [
        i
        for i in client.named(display_name)
        if i.id != recorded_id and (i.role_arn is None or i.role_arn not in our_role_arns)
    ]
    if others:
        raise NeedsAttention(
            "DisplayNameInUse",
            f"OpsRamp already has an AWS integration named {display_name!r} ({others[0].id}) that uses another "
            "role. Set spec.displayName to a unique name, or uninstall that integration in OpsRamp.",
        )


def _update_if_needed(
    client: OpsRampClient, current: InstalledIntegration, desired: AwsIntegrationRequest, force: bool
) -> IntegrationOutcome:
    diffs = differences(current, desired)
    if force and not diffs:
        diffs = ["credentials"]
    if not diffs:
        return IntegrationOutcome(current, ())
    updated = client.update(current.id, desired)
    return IntegrationOutcome(updated, tuple(f"updated integration {d}" for d in diffs))


def remove_integration(
    client: OpsRampClient,
    recorded_id: str | None,
    display_name: str,
    our_role_arns: Collection[str],
    reason: str,
) -> list[str]:
    """Uninstall what is ours (recorded id, or our name with our role); already gone counts as done."""
    removed: list[str] = []
    candidates: list[InstalledIntegration] = []
    if recorded_id:
        current = client.get(recorded_id)
        if current is not None:
            candidates.append(current)
    if not candidates:
        candidates = [i for i in client.named(display_name) if i.role_arn is not None and i.role_arn in our_role_arns]
    for integration in candidates:
        if integration.role_arn is not None and integration.role_arn not in our_role_arns:
            # Re-pointed at a role we do not manage: not ours any more.
            continue
        client.uninstall(integration.id, reason)
        removed.append(integration.id)
    return removed
