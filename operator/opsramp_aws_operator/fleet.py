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
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import failpoints
from .aws import AwsAccount
from .conditions import PassResult, format_time
from .errors import NeedsAttention, NotOwned, OperatorError, TransientError
from .integrations import IntegrationOutcome, ensure_integration, remove_integration
from .models import AWSIntegrationSpec
from .monitoring import MonitoringInputs, MonitoringOutcome, ensure_monitoring
from .opsramp import AwsIntegrationRequest, OpsRampClient
from .roles import RoleOutcome, check_account, delete_role, ensure_role, ensure_role_usable, validate_desired

if TYPE_CHECKING:
    from .service import ResourceRef, Service

log = logging.getLogger(__name__)

# The OpsRamp tenant's write budget is spent (its limiter, or a 429 it honours): the rest of the fan-out waits for the
# next pass instead of drawing the same refusal once per account. (IAM throttles per account: not a reason to stop.)
_BUDGET_REASONS = frozenset({"OpsRampRateLimited"})
# Org accounts in these states cannot be acted in: they are left out of the selection.
_ACTIVE = "ACTIVE"


# A settled account (Ready: OpsRamp's verdict read) costs a resync one integration GET: its discovery profile and
# OpsRamp's verdict are read again every OPERATOR_MONITORING_RECHECK_SECONDS (and after a change of
# spec.monitoring), as one account's verdict is. At most this many such full checks per pass, so that a fleet whose
# rechecks fall due together, or a new process over accounts it knows only as counted Ready rows, spreads them over
# passes instead of bursting at OpsRamp's paged reads (50 a minute). Installs and credential writes always wait for
# their verdict.
RECHECKS_PER_PASS = 10
# The verdicts a Ready row may carry (the Monitoring reasons of one account).
_MONITORED = frozenset({"RoleAssumed", "NoFailureReported", "Monitoring"})


# Accounts are entered, recorded and written a chunk at a time: one status write records a chunk's new accounts,
# and a spent budget leaves the later chunks untouched (not even entered) until the next pass.
CHUNK = 25


def _carried(account_id: str, prior: Mapping[str, Any] | None, stop: TransientError) -> Member:
    """An account this pass did not get to (a budget was spent): its last row, Pending unless it was Ready."""
    prior = prior or {}
    member = Member.carry(account_id, prior)
    if prior.get("state") == "Ready":
        member.state, member.reason = "Ready", prior.get("reason")
    else:
        member.fail(stop)
    return member


def _omitted_are_ready(status: Mapping[str, Any]) -> bool:
    """Whether the rows status.accounts left out are all Ready: the table shows the others first, so they are unless
    more accounts were not Ready than the table holds (counted from accountsReady)."""
    if not status.get("accountsOmitted"):
        return False
    try:
        ready, total = (int(part) for part in str(status.get("accountsReady") or "").split("/"))
    except ValueError:
        return False
    shown = [r for r in status.get("accounts") or () if isinstance(r, Mapping)]
    shown_not_ready = sum(1 for r in shown if r.get("state") != "Ready")
    # Removing rows are not among the selected accounts accountsReady counts.
    removing = sum(1 for r in shown if r.get("state") == "Removing")
    return shown_not_ready - removing >= total - ready


def member_role_arn(partition: str, account_id: str, role_name: str) -> str:
    return f"arn:{partition}:iam::{account_id}:role/{role_name}"


def member_display_name(base: str, account_id: str) -> str:
    """The integration's name in OpsRamp for one account: `<displayName>/<account>` (at most 128 characters)."""
    return f"{base[: 128 - 13]}/{account_id}"


@dataclass
class Member:
    """One account's row of status.accounts.

    state: Pending (in progress) -> Installed (role and integration in place, OpsRamp's verdict on the role not yet
    known) -> Ready (OpsRamp monitors: its verdict, or no failure reported within the grace); Disabled
    (spec.monitoring.enabled is false); Failed (needs a person: reason, message); Removing (no longer selected).
    """

    account_id: str
    state: str = "Pending"
    role_arn: str | None = None
    integration_id: str | None = None
    reason: str | None = None
    message: str | None = None
    profile_id: int | None = None
    credentials_applied_time: str | None = None
    retry_after: float | None = None

    @classmethod
    def carry(cls, account_id: str, prior: Mapping[str, Any]) -> Member:
        """A row for `account_id` that keeps the ids its last row recorded."""
        profile = prior.get("discoveryProfileId")
        applied = prior.get("credentialsAppliedTime")
        return cls(
            account_id,
            role_arn=prior.get("roleArn"),
            integration_id=prior.get("integrationId"),
            profile_id=profile if isinstance(profile, int) else None,
            credentials_applied_time=applied if isinstance(applied, str) else None,
        )

    def to_status(self) -> dict[str, Any]:
        row: dict[str, Any] = {"accountId": self.account_id, "state": self.state}
        for key, value in (
            ("roleArn", self.role_arn),
            ("integrationId", self.integration_id),
            ("discoveryProfileId", self.profile_id),
            ("credentialsAppliedTime", self.credentials_applied_time),
            ("reason", self.reason),
            ("message", (self.message or "")[:1024] or None),
        ):
            if value is not None:
                row[key] = value
        return row

    def fail(self, exc: OperatorError) -> None:
        if isinstance(exc, NeedsAttention):
            self.state = "Failed"
        elif self.state != "Installed":
            # An installed account whose verdict is not known yet (or could not be read) stays Installed.
            self.state = "Pending"
        self.reason = exc.reason
        self.message = exc.message
        self.retry_after = exc.retry_after if isinstance(exc, TransientError) else None


@dataclass
class _Watch:
    """What this process knows of one account's monitoring (status keeps only the first rows of a large fleet)."""

    integration_id: str | None = None
    profile_id: int | None = None
    credentials_since: float | None = None  # epoch seconds of the last credential write
    enabled: bool | None = None  # what the operator last set
    verdict_read: float | None = None  # monotonic time OpsRamp's verdict was last read
    reason: str | None = None  # the verdict: RoleAssumed / NoFailureReported
    message: str | None = None
    monitoring: str | None = None  # spec.monitoring the profile was last made to match (None: not known)
    profile_for: str | None = None  # the integration id that profile was made to match for
    ready: bool | None = None  # the account's state after this process's last pass over it (None: none yet)


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
        return [
            m
            for m in (*self.members.values(), *self.removing.values())
            if m.state in ("Pending", "Installed", "Removing")
        ]

    @property
    def installed(self) -> int:
        """Accounts whose role and integration are in place (Ready, awaiting OpsRamp's verdict, or disabled)."""
        return sum(1 for m in self.members.values() if m.state in ("Ready", "Installed", "Disabled"))

    @property
    def disabled(self) -> list[Member]:
        return [m for m in self.members.values() if m.state == "Disabled"]

    def counts(self) -> str:
        return f"{self.ready}/{len(self.members)}"

    def status_fields(self) -> dict[str, Any]:
        """status.accounts (not-Ready rows first, bounded), accountIds, accountsReady, accountsOmitted."""
        rank = {"Failed": 0, "Removing": 1, "Pending": 2, "Installed": 3, "Disabled": 4, "Ready": 5}
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
        # uid -> account -> what this process knows of that account's monitoring.
        self._watches: dict[str, dict[str, _Watch]] = {}
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
            self._watches.pop(uid, None)

    def _watch(self, uid: str, account_id: str) -> _Watch:
        with self._lock:
            return self._watches.setdefault(uid, {}).setdefault(account_id, _Watch())

    def _unwatch(self, uid: str, account_id: str) -> None:
        with self._lock:
            self._watches.get(uid, {}).pop(account_id, None)

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
        omitted_ready = _omitted_are_ready(status)
        rechecks = [RECHECKS_PER_PASS]
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
                if member.integration_id is None:
                    # A row status leaves out (Ready, beyond the table's bound): the id this process recorded.
                    member.integration_id = self._watch(ref.uid, account_id).integration_id
                recorded_id = member.integration_id
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
                    member.state, member.reason, member.message = "Installed", None, None
                    prior = previous_rows.get(account_id)
                    watch = self._watch(ref.uid, account_id)
                    if prior is not None:
                        was_ready = prior.get("state") == "Ready"
                    elif watch.ready is not None:
                        was_ready = watch.ready
                    else:
                        was_ready = omitted_ready and account_id in recorded
                    self._monitor(
                        spec,
                        ref,
                        client,
                        member,
                        integration,
                        outcome,
                        recorded_id,
                        prior or {},
                        was_ready,
                        rechecks,
                        result,
                    )
                except OperatorError as exc:
                    member.fail(exc)
                    self._watch(ref.uid, account_id).ready = False
                    if isinstance(exc, TransientError) and exc.reason in _BUDGET_REASONS:
                        stop = exc
        # Accounts no longer selected: cleaned up as deletionPolicy says, forgotten once done.
        for account_id in sorted(recorded - set(selected)):
            member = Member.carry(account_id, previous_rows.get(account_id) or {})
            member.state = "Removing"
            try:
                if spec.deletion_policy == "Delete":
                    done = self.remove_member(
                        spec, ref, client, base, base_id, account_id, member.integration_id, member.profile_id
                    )
                    result.changes.extend(f"{account_id}: {line}" for line in done)
                fleet.account_ids.remove(account_id)
                self._unwatch(ref.uid, account_id)
            except OperatorError as exc:
                member.state, member.reason, member.message = "Removing", exc.reason, exc.message
                if isinstance(exc, NeedsAttention):
                    member.state = "Failed"
                fleet.removing[account_id] = member
        self._remember(ref.uid, fleet.account_ids)
        self._finish(fleet, result)

    def _monitor(
        self,
        spec: AWSIntegrationSpec,
        ref: ResourceRef,
        client: OpsRampClient,
        member: Member,
        installed: IntegrationOutcome,
        role: RoleOutcome,
        recorded_id: str | None,
        prior: Mapping[str, Any],
        was_ready: bool,
        rechecks: list[int],
        result: PassResult,
    ) -> None:
        """The one-account monitoring step (monitoring.ensure_monitoring) for one member account: enabled, its
        discovery profile, OpsRamp's verdict on its role. Ready on a verdict (or none reported within the grace);
        raises as the step does (not known yet: TransientError, the account stays Installed; refused: NeedsAttention,
        the account is Failed with OpsRamp's reason)."""
        from .service import _parse_time

        settings = self.service.settings
        watch = self._watch(ref.uid, member.account_id)
        integration = installed.integration
        watch.integration_id = integration.id
        # Credentials written, or an integration other than the recorded one (found after a lost answer); a Ready row
        # status left out has no id recorded, and its integration found by name is the same one.
        written = installed.credentials_written or (
            recorded_id != integration.id if recorded_id is not None else not was_ready
        )
        credentials_since = watch.credentials_since
        if credentials_since is None and member.credentials_applied_time:
            credentials_since = _parse_time(member.credentials_applied_time)
        verdict_since = credentials_since
        if written:
            # As for one account: the grace starts at the write; for an integration found after a lost answer, a
            # verdict OpsRamp gave before counts.
            credentials_since = installed.written_at or time.time()
            verdict_since = credentials_since if installed.credentials_written else 0.0
            watch.verdict_read = None
        watch.credentials_since = credentials_since
        if credentials_since is not None:
            member.credentials_applied_time = format_time(datetime.fromtimestamp(credentials_since, UTC))
        if member.profile_id is None:
            member.profile_id = watch.profile_id
        now_mono = time.monotonic()
        settled: tuple[str, str] | None = None
        enabled_only = False
        wanted = spec.monitoring.model_dump_json()
        prior_reason = prior.get("reason") if was_ready else None
        if was_ready and not written:
            if watch.verdict_read is None and (watch.reason or prior_reason in _MONITORED):
                # A verdict read by an earlier process: re-read one recheck interval from now, not all at once.
                watch.verdict_read = now_mono
            due = watch.verdict_read is None or now_mono - watch.verdict_read >= settings.monitoring_recheck_seconds
            known = member.profile_id is not None and watch.monitoring in (None, wanted)
            settled = (
                str(watch.reason or prior_reason or "Monitoring"),
                watch.message or f"OpsRamp monitors account {member.account_id} (its verdict was read before).",
            )
            if not due and known:
                enabled_only = True
            elif rechecks[0] > 0:
                rechecks[0] -= 1
                if due:
                    settled = None
            else:
                # Over this pass's share of full checks: as it was, until a later pass.
                enabled_only = True
        inputs = MonitoringInputs(
            display_name=member_display_name(spec.effective_display_name(ref.namespace, ref.name), member.account_id),
            spec=spec.monitoring,
            recorded_profile_id=member.profile_id,
            applied_enabled=watch.enabled,
            verdict_since=verdict_since,
            credentials_since=credentials_since,
            settled=settled,
            now=time.time(),
            grace_seconds=settings.monitoring_grace_seconds,
            role_arn=role.arn,
            role_last_changed=role.last_changed,
            assume_grace_seconds=settings.assume_grace_seconds,
            generated_external_id=spec.external_id_secret_ref is None,
            linked_accounts_requested=False,
        )
        watched = MonitoringOutcome(state="done")
        try:
            # An account waiting for its verdict: its profile was made to match in an earlier pass of this process.
            in_place = (
                watch.monitoring == wanted and watch.profile_for == integration.id and member.profile_id is not None
            )
            ensure_monitoring(
                client, integration, inputs, watched, enabled_only=enabled_only, profile_in_place=in_place
            )
        finally:
            self._result_lines(result, member.account_id, watched)
            if watched.enabled_applied:
                watch.enabled = spec.monitoring.enabled
            if watched.profile_id is not None:
                member.profile_id = watch.profile_id = watched.profile_id
                if not enabled_only and watched.state == "done" and watched.enabled_applied:
                    # ensure_discovery went through (or was skipped as in place) for this integration.
                    watch.monitoring, watch.profile_for = wanted, integration.id
        if watched.state == "disabled":
            member.state, member.reason, member.message = "Disabled", "MonitoringDisabled", watched.message
            watch.ready = False
            return
        if settled is None:
            watch.verdict_read = now_mono
        watch.reason, watch.message = watched.reason, watched.message
        member.state, member.reason, member.message = "Ready", watched.reason, None
        watch.ready = True

    @staticmethod
    def _result_lines(result: PassResult, account_id: str, watched: MonitoringOutcome) -> None:
        result.changes.extend(f"{account_id}: {c}" for c in watched.changes)
        result.warnings.extend((reason, f"Account {account_id}: {message}") for reason, message in watched.warnings)

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
            member = Member.carry(account_id, previous_rows.get(account_id) or {})
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
            if fleet.disabled:
                result.monitoring = "disabled"
                result.monitoring_message = (
                    f"spec.monitoring.enabled is false: the OpsRamp integrations of {len(fleet.disabled)} accounts "
                    "are disabled, so OpsRamp does not monitor through them."
                )
            else:
                result.monitoring = "done"
            return
        pending = fleet.pending
        with step(result, "integration"):
            if pending:
                first = min(
                    (m for m in pending),
                    key=lambda m: m.account_id,
                )
                waiting = sum(1 for m in pending if m.state == "Installed")
                # The soonest an account can move on: a verdict grace says when to look again (5 s otherwise).
                soonest = min((m.retry_after for m in pending if m.retry_after), default=5.0)
                raise TransientError(
                    "AccountsPending",
                    f"{fleet.ready}/{total} accounts Ready; {len(pending)} in progress"
                    + (f" ({waiting} installed, awaiting OpsRamp's verdict on the role)" if waiting else "")
                    + f" (e.g. {first.account_id}: {first.reason or 'Pending'})"
                    + (f"; failed: {fleet.summary()}" if fleet.failed else ""),
                    retry_after=max(1.0, min(soonest, 30.0)),
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
        profile_id: int | None = None,
    ) -> list[str]:
        """Delete the account's discovery profile (when known), uninstall its integration, then delete its role;
        already gone counts as done."""
        done: list[str] = []
        account = self.account_for(spec, ref, base, base_id, account_id)
        if profile_id is None:
            profile_id = self._watch(ref.uid, account_id).profile_id
        if profile_id is not None:
            client.delete_profile(profile_id)
            done.append(f"deleted discovery profile {profile_id}")
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
                row = rows.get(account_id) or {}
                profile = row.get("discoveryProfileId")
                lines = self.remove_member(
                    spec,
                    ref,
                    client,
                    base,
                    base_id,
                    account_id,
                    row.get("integrationId"),
                    profile if isinstance(profile, int) else None,
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
