"""Many accounts (spec.accounts, spec.organization): the same IAM role in every selected account, one OpsRamp
integration per account, each account reconciled on its own so that one refusing account never blocks the others.

Each account reuses the single-account reconcilers (`ensure_role`, `ensure_integration`, `delete_role`,
`remove_integration`) and their ownership rules. The operator reaches a member account by assuming
`memberRoleName` there from spec.aws's credentials (the management account, or a delegated administrator for the
organization scan). Every account the operator acts in is recorded in status.accountIds before its first write
there, so an account dropped from the selection (and every account on delete) is cleaned up even after a crash.
See docs/organizations.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import failpoints
from .aws import AwsAccount
from .conditions import PassResult
from .errors import NeedsAttention, NotOwned, OperatorError, TransientError
from .integrations import ensure_integration, remove_integration
from .models import AWSIntegrationSpec
from .opsramp import AwsIntegrationRequest, OpsRampClient
from .roles import check_account, delete_role, ensure_role, ensure_role_usable, validate_desired

if TYPE_CHECKING:
    from .service import ResourceRef, Service

log = logging.getLogger(__name__)

# The OpsRamp tenant's write budget is spent (its limiter, or a 429 it honours): the rest of the fan-out waits for the
# next pass instead of drawing the same refusal once per account. (IAM throttles per account: not a reason to stop.)
_BUDGET_REASONS = frozenset({"OpsRampRateLimited"})
# Org accounts in these states cannot be acted in: they are left out of the selection.
_ACTIVE = "ACTIVE"


# Accounts are entered, recorded and written a chunk at a time: one status write records a chunk's new accounts,
# and a spent budget leaves the later chunks untouched (not even entered) until the next pass.
CHUNK = 25


def _carried(account_id: str, prior: Mapping[str, Any] | None, stop: TransientError) -> Member:
    """An account this pass did not get to (a budget was spent): its last row, Pending unless it was Ready."""
    prior = prior or {}
    member = Member(account_id, role_arn=prior.get("roleArn"), integration_id=prior.get("integrationId"))
    if prior.get("state") == "Ready":
        member.state = "Ready"
    else:
        member.fail(stop)
    return member


def member_role_arn(partition: str, account_id: str, role_name: str) -> str:
    return f"arn:{partition}:iam::{account_id}:role/{role_name}"


def member_display_name(base: str, account_id: str) -> str:
    """The integration's name in OpsRamp for one account: `<displayName>/<account>` (at most 128 characters)."""
    return f"{base[: 128 - 13]}/{account_id}"


@dataclass
class Member:
    """One account's row of status.accounts."""

    account_id: str
    state: str = "Pending"
    role_arn: str | None = None
    integration_id: str | None = None
    reason: str | None = None
    message: str | None = None

    def to_status(self) -> dict[str, Any]:
        row: dict[str, Any] = {"accountId": self.account_id, "state": self.state}
        for key, value in (
            ("roleArn", self.role_arn),
            ("integrationId", self.integration_id),
            ("reason", self.reason),
            ("message", (self.message or "")[:1024] or None),
        ):
            if value is not None:
                row[key] = value
        return row

    def fail(self, exc: OperatorError) -> None:
        self.state = "Failed" if isinstance(exc, NeedsAttention) else "Pending"
        self.reason = exc.reason
        self.message = exc.message


@dataclass
class FleetResult:
    """What a many-account pass achieved: the selected accounts' rows, those being removed, what to record."""

    members: dict[str, Member] = field(default_factory=dict)
    removing: dict[str, Member] = field(default_factory=dict)
    account_ids: list[str] = field(default_factory=list)
    rows: int = 50
    # False until the selection is known (a pass refused before it leaves the table as it was).
    selected: bool = False

    @property
    def ready(self) -> int:
        return sum(1 for m in self.members.values() if m.state == "Ready")

    @property
    def failed(self) -> list[Member]:
        return [m for m in (*self.members.values(), *self.removing.values()) if m.state == "Failed"]

    @property
    def pending(self) -> list[Member]:
        return [m for m in (*self.members.values(), *self.removing.values()) if m.state in ("Pending", "Removing")]

    def counts(self) -> str:
        return f"{self.ready}/{len(self.members)}"

    def status_fields(self) -> dict[str, Any]:
        """status.accounts (not-Ready rows first, bounded), accountIds, accountsReady, accountsOmitted."""
        rank = {"Failed": 0, "Removing": 1, "Pending": 2, "Ready": 3}
        rows = sorted(
            (*self.members.values(), *self.removing.values()), key=lambda m: (rank.get(m.state, 9), m.account_id)
        )
        shown = rows[: self.rows]
        if not self.selected:
            return {"accountIds": sorted(self.account_ids)}
        return {
            "accounts": [m.to_status() for m in shown],
            "accountIds": sorted(self.account_ids),
            "accountsReady": self.counts(),
            "accountsOmitted": len(rows) - len(shown),
        }

    def summary(self, limit: int = 10) -> str:
        """Which accounts are not Ready and why, for conditions and Events."""
        parts = [f"{m.account_id} ({m.reason}: {m.message})" for m in self.failed[:limit]]
        more = len(self.failed) - limit
        return "; ".join(parts) + (f"; and {more} more (status.accounts)" if more > 0 else "")


class Fleet:
    """The many-account reconcile; one per `Service`."""

    def __init__(self, service: Service, record: Callable[[str, str, Mapping[str, Any]], None] | None = None) -> None:
        self.service = service
        # Writes status.accountIds before the first write in a new account (kube.patch_awsintegration_status).
        self._record = record
        self._scans: dict[str, tuple[float, tuple[str, ...], tuple[str, ...]]] = {}
        self._known: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    # --- which accounts ---------------------------------------------------------------------------------------

    def check_rules(self, spec: AWSIntegrationSpec, ref: ResourceRef) -> None:
        """The admin's rules for many accounts, before anything is read or written."""
        rules = self.service.settings.guardrails
        if spec.organization is not None:
            rules.check_organization(ref.namespace, spec.organization.organizational_units)

    def member_role(self, spec: AWSIntegrationSpec) -> str:
        return spec.member_role_name or self.service.settings.member_role_name

    def scan(self, spec: AWSIntegrationSpec, ref: ResourceRef, base: AwsAccount) -> tuple[str, ...]:
        """The organization's accounts the selector names (active ones), read again once per scan interval."""
        org = spec.organization
        if org is None:
            return ()
        key = (tuple(sorted(org.organizational_units)), tuple(sorted(org.include_accounts)))
        interval = self.service.settings.organization_scan_seconds
        with self._lock:
            cached = self._scans.get(ref.uid)
        if cached is not None and time.monotonic() - cached[0] < interval and cached[1] == key[0] + key[1]:
            return cached[2]
        organizations = base.organizations
        parents = list(org.organizational_units) or organizations.roots()
        found: dict[str, str] = {}
        for parent in parents:
            for account in organizations.accounts_under(parent):
                found[account.account_id] = account.status
        if org.include_accounts:
            everywhere = {
                a.account_id: a.status for root in organizations.roots() for a in organizations.accounts_under(root)
            }
            missing = [a for a in org.include_accounts if a not in everywhere]
            if missing:
                raise NeedsAttention(
                    "AccountNotInOrganization",
                    f"spec.organization.includeAccounts has {', '.join(missing)}, which the organization does not "
                    "hold; nothing was created. Remove them, or list them in spec.accounts.",
                )
            found.update({a: everywhere[a] for a in org.include_accounts})
        selected = tuple(sorted(a for a, state in found.items() if state == _ACTIVE))
        with self._lock:
            self._scans[ref.uid] = (time.monotonic(), key[0] + key[1], selected)
        return selected

    def forget(self, uid: str) -> None:
        with self._lock:
            self._scans.pop(uid, None)
            self._known.pop(uid, None)

    def known(self, uid: str) -> set[str]:
        """The accounts this process recorded for `uid` (a handler's body can be older than our last status patch)."""
        with self._lock:
            return set(self._known.get(uid, ()))

    def _remember(self, uid: str, account_ids: list[str]) -> None:
        with self._lock:
            self._known[uid] = tuple(account_ids)

    def selection(self, spec: AWSIntegrationSpec, ref: ResourceRef, base: AwsAccount) -> list[str]:
        excluded = set(spec.organization.exclude_accounts) if spec.organization is not None else set()
        chosen = set(spec.accounts) | set(self.scan(spec, ref, base))
        return sorted(chosen - excluded)

    def account_for(
        self, spec: AWSIntegrationSpec, ref: ResourceRef, base: AwsAccount, base_id: str, account_id: str
    ) -> AwsAccount:
        """The credentials for one member account: spec.aws's own for its account, else memberRoleName assumed."""
        if account_id == base_id:
            return base
        arn = member_role_arn(base.partition(), account_id, self.member_role(spec))
        if not self.service.settings.guardrails.member_target_allowed(ref.namespace, arn):
            raise NeedsAttention(
                "TargetNotAllowed",
                f"Namespace {ref.namespace} may not act in account {account_id} through {arn}; nothing was written "
                "there. Ask the cluster admin to allow it in OPERATOR_NAMESPACE_TARGETS (Helm: "
                "guardrails.namespaceTargets), or exclude the account.",
            )
        account = self.service.aws.for_target(arn)
        actual = check_account(account, None)
        if actual != account_id:
            raise NeedsAttention(
                "AccountMismatch",
                f"assuming {arn} lands in account {actual}, not {account_id}; nothing was written there.",
            )
        return account

    # --- the pass ------------------------------------------------------------------------------------------

    def reconcile(
        self, spec: AWSIntegrationSpec, ref: ResourceRef, status: Mapping[str, Any], result: PassResult
    ) -> None:
        from .service import step  # service imports this module

        svc = self.service
        rules = svc.settings.guardrails
        fleet = FleetResult(rows=svc.settings.accounts_status_rows)
        result.fleet = fleet
        previous_rows = {str(r.get("accountId")): r for r in (status.get("accounts") or []) if isinstance(r, Mapping)}
        recorded = {str(a) for a in (status.get("accountIds") or [])} | self.known(ref.uid)
        fleet.account_ids = sorted(recorded)
        with step(result, "role"):
            svc.check_guardrails(spec, ref)
            self.check_rules(spec, ref)
            svc.check_external_id_source(spec, ref)
            opsramp_account = svc.opsramp_account_id(spec)
            svc.check_regions(spec)
        with step(result, "integration"):
            client = svc.client(spec, svc.credentials(spec, ref, protect=spec.deletion_policy == "Delete"))
        with step(result, "role"):
            base = svc.account(spec, ref)
            base_id = check_account(base, spec.aws.account_id)
            result.account_id = base_id
            partition = base.partition()
            explicit = [member_role_arn(partition, a, self.member_role(spec)) for a in spec.accounts if a != base_id]
            rules.check_member_targets(ref.namespace, explicit)
            selected = self.selection(spec, ref, base)
            fleet.selected = True
            external_id, secret_name = svc.external_id(spec, ref, status, result)
            result.external_id_secret_name = secret_name
            desired = svc.desired_role(spec, ref, opsramp_account, external_id, partition)
            validate_desired(desired)
        display = spec.effective_display_name(ref.namespace, ref.name)
        previously_attached = tuple(status.get("attachedPolicyArns") or ())
        # Accounts not Ready last time go first: after a spent budget, the next pass starts where work is left.
        ordered = sorted(selected, key=lambda a: ((previous_rows.get(a) or {}).get("state") == "Ready", a))
        stop: TransientError | None = None
        for start in range(0, len(ordered), CHUNK):
            chunk = ordered[start : start + CHUNK]
            if stop is not None:
                for account_id in chunk:
                    fleet.members[account_id] = _carried(account_id, previous_rows.get(account_id), stop)
                continue
            reached = self._reach(spec, ref, base, base_id, chunk, previous_rows, fleet)
            # Before the first write in a new account: record it, so that whatever happens next it is cleaned up.
            new = [a for a in reached if a not in fleet.account_ids]
            if new:
                fleet.account_ids = sorted({*fleet.account_ids, *new})
                if self._record is not None:
                    with step(result, "role"):
                        self._record(ref.namespace, ref.name, {"accountIds": fleet.account_ids})
                    failpoints.hit("kube:record_accounts")
                self._remember(ref.uid, fleet.account_ids)
            for account_id, account in reached.items():
                member = fleet.members[account_id]
                if stop is not None:
                    fleet.members[account_id] = _carried(account_id, previous_rows.get(account_id), stop)
                    continue
                try:
                    outcome = ensure_role(
                        account,
                        desired,
                        previously_attached=previously_attached,
                        adoption=svc.adoption(spec, opsramp_account, external_id),
                    )
                    member.role_arn = outcome.arn
                    result.changes.extend(f"{account_id}: {c}" for c in outcome.changes)
                    result.attached_policy_arns = list(outcome.policy_arns)
                    result.policy_digest = outcome.policy_digest
                    ensure_role_usable(outcome, svc.clock(), svc.settings.role_settle_seconds)
                    request = AwsIntegrationRequest(
                        display_name=member_display_name(display, account_id),
                        account_number=account_id,
                        role_arn=outcome.arn,
                        external_id=external_id,
                        regions=tuple(spec.regions),
                    )
                    try:
                        integration = ensure_integration(client, request, member.integration_id, {outcome.arn})
                    except TransientError as exc:
                        raise svc._escalate_assume_failure(exc, outcome, spec) from None
                    member.integration_id = integration.integration.id
                    result.changes.extend(f"{account_id}: {c}" for c in integration.changes)
                    member.state, member.reason, member.message = "Ready", None, None
                except OperatorError as exc:
                    member.fail(exc)
                    if isinstance(exc, TransientError) and exc.reason in _BUDGET_REASONS:
                        stop = exc
        # Accounts no longer selected: cleaned up as deletionPolicy says, forgotten once done.
        for account_id in sorted(recorded - set(selected)):
            member = Member(account_id, state="Removing")
            prior = previous_rows.get(account_id) or {}
            member.role_arn, member.integration_id = prior.get("roleArn"), prior.get("integrationId")
            try:
                if spec.deletion_policy == "Delete":
                    done = self.remove_member(spec, ref, client, base, base_id, account_id, member.integration_id)
                    result.changes.extend(f"{account_id}: {line}" for line in done)
                fleet.account_ids.remove(account_id)
            except OperatorError as exc:
                member.state, member.reason, member.message = "Removing", exc.reason, exc.message
                if isinstance(exc, NeedsAttention):
                    member.state = "Failed"
                fleet.removing[account_id] = member
        self._remember(ref.uid, fleet.account_ids)
        self._finish(fleet, result)

    def _reach(
        self,
        spec: AWSIntegrationSpec,
        ref: ResourceRef,
        base: AwsAccount,
        base_id: str,
        chunk: list[str],
        previous_rows: Mapping[str, Mapping[str, Any]],
        fleet: FleetResult,
    ) -> dict[str, AwsAccount]:
        """Enter each account of `chunk` (assume its member role: no write), so that an account the operator cannot
        enter is reported on its own, and is never recorded (nothing can have been written there)."""
        reached: dict[str, AwsAccount] = {}
        for account_id in chunk:
            prior = previous_rows.get(account_id) or {}
            member = Member(account_id, role_arn=prior.get("roleArn"), integration_id=prior.get("integrationId"))
            fleet.members[account_id] = member
            try:
                reached[account_id] = self.account_for(spec, ref, base, base_id, account_id)
            except OperatorError as exc:
                member.fail(exc)
        return reached

    def _finish(self, fleet: FleetResult, result: PassResult) -> None:
        """The pass's error: failures need a person (after the pending ones are through), pending ones a retry."""
        from .service import step

        total = len(fleet.members)
        if not fleet.failed and not fleet.pending:
            result.role = result.integration = "done"
            return
        pending = fleet.pending
        with step(result, "integration"):
            if pending:
                first = min(
                    (m for m in pending),
                    key=lambda m: m.account_id,
                )
                raise TransientError(
                    "AccountsPending",
                    f"{fleet.ready}/{total} accounts Ready; {len(pending)} in progress (e.g. {first.account_id}: "
                    f"{first.reason or 'Pending'})" + (f"; failed: {fleet.summary()}" if fleet.failed else ""),
                    retry_after=5.0,
                )
            raise NeedsAttention(
                "AccountsFailed",
                f"{fleet.ready}/{total} accounts Ready; {len(fleet.failed)} need attention (the others are not "
                f"affected): {fleet.summary()}",
            )

    # --- removal ------------------------------------------------------------------------------------------------

    def remove_member(
        self,
        spec: AWSIntegrationSpec,
        ref: ResourceRef,
        client: OpsRampClient,
        base: AwsAccount,
        base_id: str,
        account_id: str,
        recorded_id: str | None,
    ) -> list[str]:
        """Uninstall the account's integration, then delete its role; already gone counts as done."""
        done: list[str] = []
        account = self.account_for(spec, ref, base, base_id, account_id)
        role_name = spec.effective_role_name(ref.namespace, ref.name)
        role_arn = f"arn:{account.partition()}:iam::{account_id}:role{spec.role.path}{role_name}"
        display = member_display_name(spec.effective_display_name(ref.namespace, ref.name), account_id)
        reason = f"AWSIntegration {ref} no longer covers account {account_id}"
        for removed in remove_integration(client, recorded_id, display, account_id, {role_arn}, reason):
            done.append(f"uninstalled OpsRamp integration {removed}")
        try:
            if delete_role(account, role_name, spec.role.path, ref.owner):
                done.append(f"deleted IAM role {role_name} and its policies")
        except NotOwned:
            log.info("IAM role %s in %s is not owned by %s; left in place", role_name, account_id, ref)
        return done

    def cleanup(self, spec: AWSIntegrationSpec, ref: ResourceRef, status: Mapping[str, Any]) -> list[str]:
        """Delete: every recorded and every selected account, each on its own; all must succeed to release."""
        svc = self.service
        if spec.deletion_policy == "Retain":
            return ["deletionPolicy is Retain: the roles and the integrations are kept in every account"]
        rows = {str(r.get("accountId")): r for r in (status.get("accounts") or []) if isinstance(r, Mapping)}
        recorded = {str(a) for a in (status.get("accountIds") or [])}
        svc.settings.guardrails.check_endpoint(spec.opsramp.endpoint)
        client = svc.client(spec, svc.credentials(spec, ref, protect=False))
        base = svc.account(spec, ref)
        base_id = check_account(base, spec.aws.account_id)
        # Every account ever written to is recorded before that write: those are the ones to clean.
        accounts = recorded | self.known(ref.uid)
        done: list[str] = []
        failed: list[str] = []
        for account_id in sorted(accounts):
            try:
                lines = self.remove_member(
                    spec, ref, client, base, base_id, account_id, (rows.get(account_id) or {}).get("integrationId")
                )
                done.extend(f"{account_id}: {line}" for line in lines)
            except OperatorError as exc:
                failed.append(f"{account_id} ({exc.reason}: {exc.message})")
        if failed:
            raise NeedsAttention(
                "AccountsCleanupFailed",
                f"{len(failed)} of {len(accounts)} accounts could not be cleaned up: " + "; ".join(failed[:10]),
            )
        self.forget(ref.uid)
        return done
