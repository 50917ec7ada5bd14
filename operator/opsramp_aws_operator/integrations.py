"""The OpsRamp integration reconciler: observe by recorded id (or by name after a crash), then install or update.

Ownership: an integration is ours when its id is the one recorded in status, or when it carries our name and,
as far as OpsRamp shows them, our role ARN and our AWS account (found after a crash between the install and the
status write). The name is the displayName, else the credential set's "<name> AWS Integration"; a tenant whose
answers show neither is read one integration at a time, and one that still cannot be told apart is never adopted.

OpsRamp may leave fields out of its answers (docs/opsramp-api-assumptions.md, questions 5 and 6). A field it does
not show is compared with what the operator last sent (status.appliedIntegration), never taken for a difference.
Whether an update changes the credential (question 7) is learned per tenant from the read-back: where OpsRamp is
not shown to apply it, the integration is uninstalled and installed again, so no role is deleted while OpsRamp
may still use it.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import NeedsAttention, NotOwned
from .opsramp import AwsIntegrationRequest, InstalledIntegration, OpsRampClient

CREDENTIAL_FIELDS = ("role ARN", "regions", "linked accounts", "account number", "External ID")


@dataclass(frozen=True)
class Applied:
    """What the operator last had OpsRamp accept (status.appliedIntegration): the non-secret fields."""

    display_name: str
    role_arn: str
    regions: tuple[str, ...]
    install_all_linked_accounts: bool
    account_number: str

    @classmethod
    def of(cls, request: AwsIntegrationRequest) -> Applied:
        return cls(
            request.display_name,
            request.role_arn,
            tuple(sorted(request.regions)),
            request.install_all_linked_accounts,
            request.account_number,
        )

    @classmethod
    def from_status(cls, value: Any) -> Applied | None:
        """The status form back; None for a status written before the field existed (nothing known)."""
        if not isinstance(value, Mapping):
            return None
        try:
            return cls(
                str(value["displayName"]),
                str(value["roleArn"]),
                tuple(sorted(str(r) for r in value["regions"])),
                bool(value["installAllLinkedAccounts"]),
                str(value["accountNumber"]),
            )
        except (KeyError, TypeError):
            return None

    def to_status(self) -> dict[str, Any]:
        return {
            "displayName": self.display_name,
            "roleArn": self.role_arn,
            "regions": list(self.regions),
            "installAllLinkedAccounts": self.install_all_linked_accounts,
            "accountNumber": self.account_number,
        }


@dataclass(frozen=True)
class IntegrationOutcome:
    integration: InstalledIntegration
    changes: tuple[str, ...]
    # OpsRamp accepted credentials in this pass (install, reinstall, credential update), and is shown to use them
    # (read back, a fresh install, or an update of a tenant known to apply them): Monitoring then waits for a
    # verdict newer than this pass, and a renamed role's predecessor may go.
    credentials_written: bool = False
    # When the credential write was sent (epoch seconds): OpsRamp may judge the role before its answer reaches us,
    # so a verdict is new enough if it is newer than this, not than the moment the answer arrived.
    written_at: float | None = None
    # This pass took over an integration the operator did not install (spec.adopt.integration).
    adopted: bool = False


def _observed(current: InstalledIntegration) -> dict[str, Any]:
    """What OpsRamp showed of each field (None: not shown)."""
    return {
        "display name": current.name,
        "role ARN": current.role_arn,
        "regions": None if current.regions is None else set(current.regions),
        "linked accounts": current.install_all_linked_accounts,
        "account number": current.account_number,
    }


def _wanted(desired: AwsIntegrationRequest) -> dict[str, Any]:
    return {
        "display name": desired.display_name,
        "role ARN": desired.role_arn,
        "regions": set(desired.regions),
        "linked accounts": desired.install_all_linked_accounts,
        "account number": desired.account_number,
    }


def _last_sent(applied: Applied | None) -> dict[str, Any]:
    if applied is None:
        return {}
    return {
        "display name": applied.display_name,
        "role ARN": applied.role_arn,
        "regions": set(applied.regions),
        "linked accounts": applied.install_all_linked_accounts,
        "account number": applied.account_number,
    }


def differences(
    current: InstalledIntegration, desired: AwsIntegrationRequest, applied: Applied | None = None
) -> list[str]:
    """What an update must change. A field OpsRamp does not show is compared with what was last sent; with neither
    known, it is not compared (a resync must never write because OpsRamp simply leaves a field out)."""
    seen, want, sent = _observed(current), _wanted(desired), _last_sent(applied)
    diffs: list[str] = []
    for key, value in want.items():
        have = seen[key] if seen[key] is not None else sent.get(key)
        if key == "linked accounts" and have is None and seen["linked accounts"] is None and not value:
            continue  # never asked for: nothing to switch off
        if have is not None and have != value:
            diffs.append(key)
    return diffs


def identify(
    client: OpsRampClient, display_name: str, account: str, our_role_arns: Collection[str]
) -> tuple[list[InstalledIntegration], list[InstalledIntegration], list[InstalledIntegration]]:
    """(ours, others by the same name, integrations OpsRamp shows too little of to tell) for a lookup by name."""
    same = list(client.named(display_name))
    unidentified: list[InstalledIntegration] = []
    for listed in client.unnamed():
        if listed.account_number not in (None, account):
            continue
        # Search left the name out; a GET may show more (and files it under its name for the next lookup).
        full = client.get(listed.id)
        if full is None:
            continue
        if full.name == display_name:
            same.append(full)
        elif full.name is None:
            unidentified.append(full)
    ours: list[InstalledIntegration] = []
    others: list[InstalledIntegration] = []
    for item in same:
        role_ok = item.role_arn is None or item.role_arn in our_role_arns
        account_ok = item.account_number in (None, account)
        (ours if role_ok and account_ok else others).append(item)
    for item in list(unidentified):
        if item.role_arn is not None:
            unidentified.remove(item)
            if item.role_arn in our_role_arns:
                ours.append(item)  # no name shown, but our role: ours
    return ours, others, unidentified


def _cannot_identify(display_name: str, items: list[InstalledIntegration]) -> NeedsAttention:
    ids = ", ".join(i.id for i in items[:5])
    return NeedsAttention(
        "OpsRampCannotIdentify",
        f"OpsRamp shows neither names nor role ARNs for AWS integration(s) {ids} of this AWS account, so the "
        f"operator cannot tell whether one of them is the integration {display_name!r} it installed (and installing "
        "again could duplicate it). Uninstall the ones that are not in use in OpsRamp, or record the right one in "
        "status.integrationId.",
    )


@dataclass(frozen=True)
class Found:
    """Which existing integration a pass works on (None: it installs one), and how it was found."""

    current: InstalledIntegration | None
    # "recorded" (status.integrationId), "found" (our name and role: installed by us before a lost answer),
    # "adopted" (spec.adopt.integration: our name, another role), or "new".
    how: str


def _recorded_not_ours(current: InstalledIntegration) -> NotOwned:
    return NotOwned(
        f"OpsRamp integration {current.id} (recorded in status) now uses a role this resource does not "
        "manage; the operator will not change it. Point it back at status.roleArn, remove "
        "status.integrationId's integration by hand, or set spec.adopt.integration: true to take it over."
    )


def find_integration(
    client: OpsRampClient,
    desired: AwsIntegrationRequest,
    recorded_id: str | None,
    our_role_arns: Collection[str],
    *,
    observed: InstalledIntegration | None = None,
    adopt: bool = False,
) -> Found:
    """The integration this resource has in OpsRamp (reads only); raises when it cannot tell or may not take it."""
    if recorded_id:
        current = observed if observed is not None and observed.id == recorded_id else client.get(recorded_id)
        if current is not None:
            if current.role_arn is not None and current.role_arn not in our_role_arns:
                if not adopt:
                    raise _recorded_not_ours(current)
                return Found(current, "adopted")
            return Found(current, "recorded")
    ours, others, unidentified = identify(client, desired.display_name, desired.account_number, our_role_arns)
    if ours:
        # Installed by an earlier pass that crashed (or lost the answer) before recording the id: adopt it.
        return Found(ours[0], "found")
    if others and adopt:
        foreign = [i for i in others if i.account_number not in (None, desired.account_number)]
        if len(foreign) == len(others):
            raise NeedsAttention(
                "AdoptionRefused",
                f"The OpsRamp integration named {desired.display_name!r} monitors another AWS account than "
                f"{desired.account_number}, so spec.adopt.integration cannot take it over; nothing was changed. "
                "Set spec.displayName to another name.",
            )
        return Found(next(i for i in others if i not in foreign), "adopted")
    if others:
        raise _name_in_use(desired.display_name, others)
    if unidentified:
        raise _cannot_identify(desired.display_name, unidentified)
    return Found(None, "new")


@dataclass(frozen=True)
class IntegrationPlan:
    """What `ensure_integration` would do, for plans and Observe: the action and the fields it changes."""

    action: str  # "none", "install", "update", "replace"
    integration_id: str | None
    how: str  # as in `Found`
    # (field, what OpsRamp shows or was last sent, what the spec wants); External IDs never appear.
    fields: tuple[tuple[str, Any, Any], ...] = ()
    operations: tuple[str, ...] = ()
    current: InstalledIntegration | None = field(default=None, repr=False, compare=False)


def plan_integration(
    client: OpsRampClient,
    desired: AwsIntegrationRequest,
    recorded_id: str | None,
    our_role_arns: Collection[str],
    *,
    force_credentials: bool = False,
    observed: InstalledIntegration | None = None,
    applied: Applied | None = None,
    adopt: bool = False,
) -> IntegrationPlan:
    """Reads only: what `ensure_integration` would write, by the same rules (and the tenant's learned dialect)."""
    found = find_integration(client, desired, recorded_id, our_role_arns, observed=observed, adopt=adopt)
    current = found.current
    if current is None:
        return IntegrationPlan("install", None, found.how, _install_fields(desired), ("opsramp:install",), current)
    diffs = differences(current, desired, applied)
    if force_credentials and "External ID" not in diffs:
        diffs.append("External ID")
    if not diffs:
        return IntegrationPlan("none", current.id, found.how, current=current)
    seen, want, sent = _observed(current), _wanted(desired), _last_sent(applied)
    fields = tuple(
        (d, seen.get(d) if seen.get(d) is not None else sent.get(d), want.get(d))
        if d != "External ID"
        else (d, "<the External ID OpsRamp has>", "<the new External ID>")
        for d in diffs
    )
    fields = tuple((f, _shown(b), _shown(a)) for f, b, a in fields)
    credential = [d for d in diffs if d in CREDENTIAL_FIELDS]
    updates = client.dialect.credential_updates
    if credential and updates in ("ignored", "rejected"):
        return IntegrationPlan(
            "replace", current.id, found.how, fields, ("opsramp:uninstall", "opsramp:install"), current
        )
    unshown = [d for d in credential if seen.get(d) is None]
    if credential and unshown and updates != "applied":
        # converge updates, reads back, and reinstalls when nothing it sees proves the update was applied.
        return IntegrationPlan(
            "replace",
            current.id,
            found.how,
            fields,
            ("opsramp:update", "opsramp:uninstall", "opsramp:install"),
            current,
        )
    return IntegrationPlan("update", current.id, found.how, fields, ("opsramp:update",), current)


def _shown(value: Any) -> Any:
    return sorted(value) if isinstance(value, set) else value


def _install_fields(desired: AwsIntegrationRequest) -> tuple[tuple[str, Any, Any], ...]:
    return tuple((key, None, _shown(value)) for key, value in _wanted(desired).items())


def ensure_integration(
    client: OpsRampClient,
    desired: AwsIntegrationRequest,
    recorded_id: str | None,
    our_role_arns: Collection[str],
    *,
    force_credentials: bool = False,
    observed: InstalledIntegration | None = None,
    applied: Applied | None = None,
    adopt: bool = False,
) -> IntegrationOutcome:
    """Make OpsRamp hold exactly one integration matching `desired`; writes only what differs.

    `observed` is the recorded integration as this pass already read it (saves a second GET); None reads it.
    `force_credentials`: the credential must be sent although nothing shown differs (the External ID changed).
    `adopt` (spec.adopt.integration): take over an integration of our name (same AWS account) using another role.
    """
    found = find_integration(client, desired, recorded_id, our_role_arns, observed=observed, adopt=adopt)
    if found.current is not None:
        outcome = converge(client, found.current, desired, applied, force_credentials)
        if found.how == "recorded":
            return outcome
        words = "adopted existing integration" if found.how == "found" else f"adopted integration {found.current.id}"
        return IntegrationOutcome(
            outcome.integration,
            (words, *outcome.changes),
            outcome.credentials_written,
            outcome.written_at,
            adopted=found.how == "adopted",
        )
    sent = time.time()
    try:
        installed = client.install_aws(desired)
    except NeedsAttention as exc:
        if exc.reason != "DuplicateRefused":
            raise
        # OpsRamp refuses a second integration of this name: after a lost install answer, most likely ours.
        ours, others, _ = identify(client, desired.display_name, desired.account_number, our_role_arns)
        if ours:
            outcome = converge(client, ours[0], desired, applied, force_credentials)
            return IntegrationOutcome(
                outcome.integration,
                ("adopted existing integration", *outcome.changes),
                outcome.credentials_written,
                outcome.written_at,
            )
        raise _name_in_use(desired.display_name, others) if others else exc from None
    return IntegrationOutcome(installed, ("installed integration",), credentials_written=True, written_at=sent)


def _name_in_use(display_name: str, others: list[InstalledIntegration]) -> NeedsAttention:
    # Which integration it is (its id) may be another tenant's: the message names only the display name.
    return NeedsAttention(
        "DisplayNameInUse",
        f"OpsRamp already has an AWS integration named {display_name!r} that uses another role or AWS "
        "account. Set spec.displayName to a unique name, or uninstall that integration in OpsRamp.",
    )


def check_display_name_free(
    client: OpsRampClient, display_name: str, account: str, our_role_arns: Collection[str], recorded_id: str | None
) -> None:
    """Before creating anything: refuse a display name another integration already uses, and an integration this
    resource cannot tell from its own (install would risk a duplicate)."""
    ours, others, unidentified = identify(client, display_name, account, our_role_arns)
    others = [i for i in others if i.id != recorded_id]
    if others:
        raise _name_in_use(display_name, others)
    if unidentified and not ours:
        raise _cannot_identify(display_name, unidentified)


def converge(
    client: OpsRampClient,
    current: InstalledIntegration,
    desired: AwsIntegrationRequest,
    applied: Applied | None,
    force_credentials: bool,
) -> IntegrationOutcome:
    """Bring one integration to `desired`: an update where OpsRamp applies it, else uninstall and install again."""
    diffs = differences(current, desired, applied)
    if force_credentials and "External ID" not in diffs:
        diffs.append("External ID")
    if not diffs:
        return IntegrationOutcome(current, ())
    credential = [d for d in diffs if d in CREDENTIAL_FIELDS]
    if credential and client.dialect.credential_updates in ("ignored", "rejected"):
        return reinstall(client, current, desired, credential)
    sent = time.time()
    try:
        updated = client.update(current.id, desired)
    except NeedsAttention as exc:
        if exc.reason != "CredentialImmutable":
            raise
        return reinstall(client, current, desired, credential)
    changes = tuple(f"updated integration {d}" for d in diffs)
    if not credential:
        return IntegrationOutcome(updated, changes)
    seen, want = _observed(updated), _wanted(desired)
    ignored = [d for d in credential if d in seen and seen[d] is not None and seen[d] != want[d]]
    unshown = [d for d in credential if d not in seen or seen[d] is None]
    if ignored:
        # OpsRamp answered 200 and kept the old credential: this tenant does not change credentials on update.
        client.dialect.credential_updates = "ignored"
        return reinstall(client, updated, desired, credential)
    if not unshown:
        client.dialect.credential_updates = "applied"
    elif client.dialect.credential_updates != "applied":
        # Nothing OpsRamp shows proves it uses the new credential: install it afresh rather than trust the update.
        return reinstall(client, updated, desired, credential)
    return IntegrationOutcome(updated, changes, credentials_written=True, written_at=sent)


def reinstall(
    client: OpsRampClient, current: InstalledIntegration, desired: AwsIntegrationRequest, fields: list[str]
) -> IntegrationOutcome:
    """Uninstall, then install with the new credential: the only way to a credential OpsRamp is known to use.

    Uninstall first, so a tenant that refuses duplicate names takes the install; a crash in between leaves the
    recorded id pointing at nothing, and the next pass installs.
    """
    client.uninstall(current.id, f"Replaced by opsramp-aws-operator: {', '.join(fields)} changed")
    sent = time.time()
    installed = client.install_aws(desired)
    change = f"reinstalled integration ({', '.join(fields)} changed; OpsRamp does not apply that on update)"
    return IntegrationOutcome(installed, (change,), credentials_written=True, written_at=sent)


def remove_integration(
    client: OpsRampClient,
    recorded_id: str | None,
    display_name: str,
    account: str | None,
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
    if not candidates and account is not None:
        candidates, _, _ = identify(client, display_name, account, our_role_arns)
    for integration in candidates:
        if integration.role_arn is not None and integration.role_arn not in our_role_arns:
            # Re-pointed at a role we do not manage: not ours any more.
            continue
        client.uninstall(integration.id, reason)
        removed.append(integration.id)
    return removed
