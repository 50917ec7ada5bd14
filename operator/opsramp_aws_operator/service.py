"""The reconcile service: External ID → IAM role → role usable → OpsRamp integration → monitoring, and the cleanup.

It knows nothing of kopf. Every pass is level-based (observe, create if missing, update what differs) and
fills a `PassResult` step by step, so the handler can report how far it got when a step raises one of our two
error kinds. Before anything is created it checks everything that can be checked (Secrets, credentials, the
AWS account, the display name), so bad input leaves nothing half-created behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import secrets
import string
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from . import metrics, redaction
from .aws import AwsAccount, AwsSessions, known_regions
from .conditions import PassResult, Step, format_time
from .constants import (
    API_VERSION,
    GROUP,
    KIND,
    MANAGED_BY_VALUE,
    ROTATE_ANNOTATION,
    SECRET_WATCH_LABEL,
    TAG_OWNER_UID,
)
from .errors import NeedsAttention, NotOwned, OperatorError, TransientError
from .fleet import Fleet
from .integrations import (
    Applied,
    check_display_name_free,
    ensure_integration,
    plan_integration,
    remove_integration,
)
from .kube import OwnerReference, SecretData, Secrets, patch_awsintegration_status
from .models import EXTERNAL_ID_PATTERN, AWSIntegrationSpec, AwsSpec, OpsRampSpec, label_value
from .monitoring import MonitoringInputs, MonitoringOutcome, ensure_monitoring, plan_monitoring
from .opsramp import (
    AwsIntegrationRequest,
    InstalledIntegration,
    OpsRampClient,
    OpsRampLimits,
    OpsRampTimeouts,
    get_client,
)
from .planning import PlannedChange, ResourcePlan, integration_change, monitoring_changes, role_changes
from .policies import load_opsramp_policy, required_actions, trust_policy
from .roles import (
    Adoption,
    DesiredRole,
    Owner,
    RoleOutcome,
    check_account,
    delete_role,
    ensure_role,
    ensure_role_usable,
    plan_role,
    trust_external_ids,
    validate_desired,
    verify_role,
)
from .rotation import ROLLBACK_REASONS, Rotation, RotationState
from .settings import Settings

log = logging.getLogger(__name__)

CREDENTIALS_FINALIZER = f"{GROUP}/credentials-in-use"


def credentials_finalizer(shard_name: str | None) -> str:
    """The finalizer protecting a credentials Secret; each shard has its own, as its users are its own."""
    return CREDENTIALS_FINALIZER if shard_name is None else f"{CREDENTIALS_FINALIZER}-{shard_name}"


EXTERNAL_ID_KEY = "externalId"
GENERATED_EXTERNAL_ID_LENGTH = 48
# An External ID is what keeps another OpsRamp customer from having OpsRamp assume your role: a guessable one is no
# protection. 16 characters admit a UUID, 32 hex digits and any console-generated value we know of.
MIN_EXTERNAL_ID_LENGTH = 16
# Letters and digits: inside IAM's External ID set and safe to paste anywhere.
_EXTERNAL_ID_ALPHABET = string.ascii_letters + string.digits
# Stands in for an External ID the operator has not generated yet, in plans (always shown masked).
PLACEHOLDER_EXTERNAL_ID = "not-yet-generated-External-ID-0000"
# Ready=False on purpose: not what "not Ready for too long" alerts on.
INTENDED_NOT_READY = frozenset({"Suspended", "MonitoringDisabled"})
_ROLE_ARN = re.compile(r"^arn:[^:]+:iam::(?P<account>[0-9]{12}):role(?P<path>/(?:.*/)?)(?P<name>[^/]+)$")


@dataclass(frozen=True)
class ResourceRef:
    """The AWSIntegration being reconciled, as the service needs to know it."""

    namespace: str
    name: str
    uid: str
    # The rotate-external-id annotation's value (a new value asks for a rotation, or another try after a rollback).
    rotate_request: str | None = None

    @property
    def owner(self) -> Owner:
        return Owner(uid=self.uid, namespace=self.namespace, name=self.name)

    def owner_reference(self) -> OwnerReference:
        return OwnerReference(api_version=API_VERSION, kind=KIND, name=self.name, uid=self.uid)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def generated_secret_name(resource_name: str) -> str:
    """Deterministic name of the Secret holding a generated External ID (valid, ≤ 253 characters)."""
    name = f"{resource_name}-opsramp-external-id"
    if len(name) <= 253:
        return name
    digest = hashlib.sha256(resource_name.encode()).hexdigest()[:8]
    return f"{resource_name[:220]}-{digest}-opsramp-external-id"


def generate_external_id() -> str:
    return "".join(secrets.choice(_EXTERNAL_ID_ALPHABET) for _ in range(GENERATED_EXTERNAL_ID_LENGTH))


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def parse_role_arn(arn: str) -> tuple[str, str, str] | None:
    """(account, path, name) of a role ARN, or None."""
    match = _ROLE_ARN.match(arn)
    return (match["account"], match["path"], match["name"]) if match else None


def check_external_id(value: str, where: str) -> None:
    """Refuse an External ID IAM would refuse or anyone could guess; a good one is masked from then on."""
    if len(value) < MIN_EXTERNAL_ID_LENGTH:
        raise NeedsAttention(
            "ExternalIdTooShort",
            f"The External ID in {where} has {len(value)} characters; at least {MIN_EXTERNAL_ID_LENGTH} are needed "
            "for it to be a secret (OpsRamp's console shows a longer one; or remove the reference to have the "
            "operator generate one).",
        )
    if len(value) > 1224 or not re.match(EXTERNAL_ID_PATTERN, value):
        raise NeedsAttention(
            "ExternalIdInvalid",
            f"The External ID in {where} is not valid for IAM: it must be {MIN_EXTERNAL_ID_LENGTH} to 1224 "
            "characters of letters, digits and _+=,.@:/-.",
        )
    redaction.register(value)


def referenced_secrets(spec: AWSIntegrationSpec, ref: ResourceRef) -> set[tuple[str, str]]:
    """(namespace, name) of every Secret the resource reads."""
    names = {spec.opsramp.credentials_secret_ref.name, generated_secret_name(ref.name)}
    for secret_ref in (spec.external_id_secret_ref, spec.aws.external_id_secret_ref):
        if secret_ref is not None:
            names.add(secret_ref.name)
    return {(ref.namespace, name) for name in names}


def salvage_spec(raw: Mapping[str, Any], status: Mapping[str, Any]) -> AWSIntegrationSpec | None:
    """A spec to clean up with when the stored one no longer parses (an older CRD, a bad hand edit).

    Cleanup needs only where OpsRamp is (spec.opsramp), where the role lives (spec.aws) and which role (what
    status.roleArn recorded): those parts are taken when each still parses on its own. None when they do not.
    """
    data: dict[str, Any] = {"regions": ["All"]}
    try:
        data["opsramp"] = OpsRampSpec.model_validate(raw.get("opsramp")).model_dump(by_alias=True)
        data["aws"] = AwsSpec.model_validate(raw.get("aws") or {}).model_dump(by_alias=True, exclude_none=True)
    except ValidationError:
        return None
    parsed = parse_role_arn(str(status.get("roleArn") or ""))
    if parsed is not None:
        data["role"] = {"name": parsed[2], "path": parsed[1]}
    for key in ("deletionPolicy", "displayName"):
        if key in raw:
            try:
                AWSIntegrationSpec.model_validate({**data, key: raw[key]})
            except ValidationError:
                continue
            data[key] = raw[key]
    try:
        return AWSIntegrationSpec.model_validate(data)
    except ValidationError:
        return None


@contextmanager
def step(result: PassResult, name: Step) -> Iterator[None]:
    """Attribute any error raised inside to one step, so conditions say which side failed."""
    try:
        yield
    except OperatorError:
        result.failed_step = name
        raise


AWAITING_VERDICT = "AwaitingOpsRampVerdict"


@dataclass(frozen=True)
class _Awaiting:
    """What a pass that stopped only for OpsRamp's verdict had verified (see `Service._verdict_only`)."""

    spec: AWSIntegrationSpec
    result: PassResult
    client: OpsRampClient
    integration: InstalledIntegration
    outcome: RoleOutcome
    since: tuple[float | None, float | None]
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class OpsRampCredentials:
    client_id: str
    client_secret: str = ""

    def __repr__(self) -> str:
        return f"OpsRampCredentials(client_id={self.client_id!r})"


class Service:
    """One per operator process; handlers call `reconcile` and `cleanup`."""

    def __init__(
        self,
        settings: Settings,
        *,
        secrets_api: Secrets | None = None,
        aws: AwsSessions | None = None,
        opsramp_factory: Callable[..., OpsRampClient] = get_client,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        record_accounts: Callable[[str, str, Mapping[str, Any]], None] | None = patch_awsintegration_status,
    ) -> None:
        self.settings = settings
        self.secrets = secrets_api or Secrets()
        self.aws = aws or AwsSessions()
        self.opsramp_factory = opsramp_factory
        self.clock = clock
        self.limits = OpsRampLimits(
            gets_per_window=settings.opsramp_gets_per_window,
            paged_gets_per_window=settings.opsramp_paged_gets_per_window,
            writes_per_window=settings.opsramp_writes_per_window,
            window_seconds=settings.opsramp_window_seconds,
        )
        self.timeouts = OpsRampTimeouts(
            max_server_wait_seconds=settings.max_wait_in_pass_seconds,
            server_wait_cap_seconds=settings.max_server_wait_seconds,
        )
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._ready: dict[str, str] = {}
        # Since when each resource that is not Ready has not been (epoch seconds), and why each Stalled one is: the
        # gauges an SRE alerts on (docs/observability.md).
        self._not_ready_since: dict[str, float] = {}
        self._stalled: dict[str, str] = {}
        self._stalled_published: set[str] = set()
        self._next_pass: dict[str, float] = {}
        self._nudged: set[str] = set()
        # When each resource last read OpsRamp's verdict (monotonic): a settled Monitoring is re-checked after
        # `monitoring_recheck_seconds`, and once per process.
        self._verdict_read: dict[str, float] = {}
        # The ids of what each resource's last pass in this process found or made (see `with_recorded_ids`).
        self._recorded: dict[str, dict[str, Any]] = {}
        # Resources whose last pass stopped only for OpsRamp's verdict, and what it verified (`_verdict_only`).
        self._awaiting: dict[str, _Awaiting] = {}
        # Which resources read which Secrets: a change to one re-checks them within a tick.
        self._secret_users: dict[tuple[str, str], set[str]] = {}
        self._secrets_of: dict[str, set[tuple[str, str]]] = {}
        self._deleting: dict[str, float] = {}
        # Many accounts (spec.accounts / spec.organization): fleet.py; its account list is recorded in status before
        # the first write in a new account.
        self.fleet = Fleet(self, record=record_accounts)
        self._scanning: set[str] = set()

    # --- concurrency: one pass per resource at a time (change handlers and the drift timer) -------------

    def lock_for(self, uid: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(uid, threading.Lock())

    # --- when the resync scheduler runs a pass: resync due (jittered per resource) or nudged by a Secret change ----

    def _fraction(self, uid: str) -> float:
        """A stable number in [0, 1) per resource: spreads a fleet's passes evenly over the resync interval."""
        return (zlib.crc32(uid.encode()) % 1000) / 1000.0

    def passed(self, uid: str) -> None:
        """A pass just ran for `uid` (from any handler): the next resync is one jittered interval away."""
        with self._locks_guard:
            interval = self.settings.resync_interval_seconds * (0.9 + 0.2 * self._fraction(uid))
            if uid in self._scanning:
                # An organization is scanned for new and removed accounts on its own interval.
                interval = min(interval, self.settings.organization_scan_seconds)
            self._next_pass[uid] = time.monotonic() + interval
            self._nudged.discard(uid)

    def retry_in(self, uid: str, seconds: float) -> None:
        """A scheduled pass failed temporarily: run the next one after the error's delay, not a resync interval later
        (a pass nudged by a fixed Secret that then meets a young role would otherwise wait out the handler's
        needs-attention backoff)."""
        with self._locks_guard:
            self._next_pass[uid] = time.monotonic() + max(seconds, 1.0)

    def nudge(self, uid: str) -> None:
        """A Secret the resource reads changed: a full pass, soon (not the verdict-only follow-up)."""
        with self._locks_guard:
            self._nudged.add(uid)
            self._awaiting.pop(uid, None)

    # How soon after a restart a resource that was not Ready gets its first pass (spread over this many seconds).
    UNSETTLED_FIRST_PASS_SECONDS = 30.0

    def watched(self, uid: str, status: Mapping[str, Any], generation: Any, secrets: set[tuple[str, str]]) -> None:
        """The resource as its latest watch event shows it (called for every event, so cheap).

        The first sight of a resource schedules its first pass: one that is Ready for its generation at a stable
        point of the resync interval (a restarted operator verifies the fleet spread over the interval, not all at
        once); one that is not, within a few seconds; a new one (no status yet) not at all, as kopf's create
        handler runs its first pass.
        """
        conditions = {c.get("type"): c for c in status.get("conditions") or () if isinstance(c, Mapping)}
        ready = conditions.get("Ready") or {}
        stalled = conditions.get("Stalled") or {}
        settled = ready.get("status") == "True" and status.get("observedGeneration") == generation
        with self._locks_guard:
            if uid not in self._next_pass:
                if not conditions:
                    delay = self.settings.resync_interval_seconds
                elif settled:
                    delay = self.settings.resync_interval_seconds * self._fraction(uid)
                else:
                    delay = min(self.UNSETTLED_FIRST_PASS_SECONDS, self.settings.resync_interval_seconds)
                    delay *= self._fraction(uid)
                self._next_pass[uid] = time.monotonic() + delay
            self._ready[uid] = str(ready.get("status") or "Unknown")
            if ready.get("status") == "True" or ready.get("reason") in INTENDED_NOT_READY:
                self._not_ready_since.pop(uid, None)
            elif uid not in self._not_ready_since:
                since = _parse_time(ready.get("lastTransitionTime"))
                self._not_ready_since[uid] = since if since is not None else time.time()
            reason = str(stalled.get("reason") or "") if stalled.get("status") == "True" else ""
            if reason:
                self._stalled[uid] = reason
            else:
                self._stalled.pop(uid, None)
        if secrets != self._secrets_of.get(uid):
            self.use_secrets(uid, secrets)

    def due(self, known: set[str]) -> tuple[list[str], set[tuple[str, str]]]:
        """The resources whose pass is due now (nudged, or their resync time has come), marked as dispatched; and
        the Secrets to release: whatever this process tracked that is no longer `known` (deleted without our cleanup,
        or moved to another shard) is forgotten, and the Secrets it read that no resource left here reads."""
        now = time.monotonic()
        with self._locks_guard:
            gone = {uid for uid in self._next_pass if uid not in known}
            due = [uid for uid, at in self._next_pass.items() if (at <= now or uid in self._nudged) and uid in known]
            for uid in due:
                # Dispatched: not due again until its pass ends (`passed` or `retry_in` sets the next time).
                self._next_pass[uid] = float("inf")
                self._nudged.discard(uid)
            unused: set[tuple[str, str]] = set()
            if gone:
                still = {key for uid, keys in self._secrets_of.items() if uid not in gone for key in keys}
                unused = {key for uid in gone for key in self._secrets_of.get(uid, ())} - still
        for uid in gone:
            self.forget(uid)
        return due, unused

    def not_dispatched(self, uid: str) -> None:
        """A due pass was not run after all (the resource is busy or being deleted): look again at the next tick."""
        with self._locks_guard:
            if self._next_pass.get(uid) == float("inf"):
                self._next_pass[uid] = time.monotonic()

    def use_secrets(self, uid: str, keys: set[tuple[str, str]]) -> None:
        """Record the Secrets resource `uid` reads now (credentials, External IDs)."""
        with self._locks_guard:
            for key in self._secrets_of.get(uid, set()) - keys:
                users = self._secret_users.get(key)
                if users is not None:
                    users.discard(uid)
                    if not users:
                        del self._secret_users[key]
            for key in keys:
                self._secret_users.setdefault(key, set()).add(uid)
            self._secrets_of[uid] = set(keys)

    def secret_event(self, kind: str, namespace: str, name: str, resource_version: str) -> None:
        """The Secret watch saw a labelled Secret listed, created, changed or deleted."""
        # The echo of our own write (the External ID Secret a pass just created, the finalizer or label it added)
        # is not news: re-checking every user of it would double each resource's first pass.
        if kind in ("ADDED", "MODIFIED") and self.secrets.is_own_write(namespace, name, resource_version):
            return
        # Whatever happened to it, the next read of it goes to the API server (the Secrets cache follows the watch).
        self.secrets.changed(namespace, name, deleted=kind == "DELETED")
        if kind not in ("ADDED", "MODIFIED"):
            return
        with self._locks_guard:
            users = set(self._secret_users.get((namespace, name), ()))
        for uid in users:
            self.nudge(uid)

    # How long a deleted resource still counts as "being deleted" for the credentials release (see handlers).
    DELETING_MEMORY_SECONDS = 300.0

    def mark_deleting(self, uid: str) -> None:
        with self._locks_guard:
            self._deleting[uid] = time.monotonic()

    def deleting(self) -> set[str]:
        """UIDs whose deletion this process handled in the last few minutes."""
        with self._locks_guard:
            horizon = time.monotonic() - self.DELETING_MEMORY_SECONDS
            for uid in [u for u, at in self._deleting.items() if at < horizon]:
                del self._deleting[uid]
            return set(self._deleting)

    def forget(self, uid: str) -> None:
        self.use_secrets(uid, set())
        with self._locks_guard:
            self._secrets_of.pop(uid, None)
            self._locks.pop(uid, None)
            self._next_pass.pop(uid, None)
            self._nudged.discard(uid)
            self._ready.pop(uid, None)
            self._not_ready_since.pop(uid, None)
            self._stalled.pop(uid, None)
            self._verdict_read.pop(uid, None)
            self._recorded.pop(uid, None)
            self._scanning.discard(uid)
            self._awaiting.pop(uid, None)
        self.fleet.forget(uid)

    def with_recorded_ids(self, uid: str, status: Mapping[str, Any]) -> Mapping[str, Any]:
        """`status`, with the ids (and credentialsAppliedTime) this process's last pass recorded for `uid` where it
        has none.

        The body a handler gets can be older than the status our own last pass wrote (kopf handles a watch event
        queued before that patch), so its status may lack status.integrationId or status.discoveryProfileId;
        without the remembered ones, such a pass would search OpsRamp by name (a paged listing of the tenant)
        for what it already knows. A new process has only the status: after a crash, the search finds it.
        """
        with self._locks_guard:
            remembered = self._recorded.get(uid) or {}
        missing = {key: value for key, value in remembered.items() if not status.get(key)}
        return {**status, **missing} if missing else status

    def _remember(self, uid: str, key: str, value: Any) -> None:
        with self._locks_guard:
            self._recorded.setdefault(uid, {})[key] = value

    def record_ready(self, uid: str, ready: str) -> None:
        """Ready as a pass just computed it (the watch event with it comes later); published by `publish`."""
        with self._locks_guard:
            self._ready[uid] = ready
            if ready == "True":
                self._not_ready_since.pop(uid, None)

    def publish(self) -> None:
        """Set the fleet gauges from what the watch and the passes showed: once per scheduler tick, not per pass (at
        thousands of resources, a count over all of them per pass was itself a cost)."""
        with self._locks_guard:
            counts = {"True": 0, "False": 0, "Unknown": 0}
            for value in self._ready.values():
                counts[value] = counts.get(value, 0) + 1
            stalled: dict[str, int] = {}
            for reason in self._stalled.values():
                stalled[reason] = stalled.get(reason, 0) + 1
            oldest = min(self._not_ready_since.values(), default=None)
        for value, count in counts.items():
            metrics.RESOURCES.labels(value).set(count)
        for reason in set(self._stalled_published) - set(stalled):
            metrics.STALLED.labels(reason).set(0)
        for reason, count in stalled.items():
            metrics.STALLED.labels(reason).set(count)
        self._stalled_published = set(stalled)
        metrics.OLDEST_NOT_READY_SECONDS.set(time.time() - oldest if oldest is not None else 0)

    # --- inputs -----------------------------------------------------------------------------------------

    def opsramp_account_id(self, spec: AWSIntegrationSpec) -> str:
        return self.settings.guardrails.opsramp_account(spec.opsramp.aws_account_id)

    def check_guardrails(self, spec: AWSIntegrationSpec, ref: ResourceRef) -> None:
        """The cluster admin's rules (guardrails.py), before any Secret is read or anything is sent anywhere."""
        rules = self.settings.guardrails
        rules.check_endpoint(spec.opsramp.endpoint)
        rules.opsramp_account(spec.opsramp.aws_account_id)
        rules.check_managed_policies(spec.role.managed_policy_arns)
        rules.permissions_boundary(spec.role.permissions_boundary_arn)
        rules.check_target(ref.namespace, spec.aws.assume_role_arn)
        if spec.aws.external_id is not None:
            raise NeedsAttention(
                "ExternalIdInSpec",
                "spec.aws.externalId holds a secret in plain sight of everyone who may read this resource: put it in "
                "a Secret (key externalId), set spec.aws.externalIdSecretRef to it and remove spec.aws.externalId.",
            )

    def check_regions(self, spec: AWSIntegrationSpec) -> None:
        unknown = [r for r in spec.regions if r != "All" and r not in known_regions()]
        if unknown:
            raise NeedsAttention(
                "UnknownRegion",
                f"spec.regions has {', '.join(repr(r) for r in unknown)}, which is not an AWS region: check the "
                'spelling (e.g. us-east-1), or use ["All"].',
            )

    def watched_secret(self, namespace: str, name: str, *, watch: bool = True) -> SecretData | None:
        """A Secret the resource reads, labelled (once) so that the operator's Secret watch sees its changes.

        `watch=False` (Observe, plan) only reads: no label is added.
        """
        secret = self.secrets.get(namespace, name)
        if watch and secret is not None and secret.labels.get(SECRET_WATCH_LABEL) != "true":
            self.secrets.add_label(namespace, secret, SECRET_WATCH_LABEL, "true")
        return secret

    def credentials(
        self, spec: AWSIntegrationSpec, ref: ResourceRef, *, protect: bool, watch: bool = True
    ) -> OpsRampCredentials:
        name = spec.opsramp.credentials_secret_ref.name
        secret = self.watched_secret(ref.namespace, name, watch=watch)
        if secret is None:
            raise NeedsAttention(
                "CredentialsSecretNotFound",
                f"Secret {ref.namespace}/{name} (spec.opsramp.credentialsSecretRef) does not exist: create it with "
                "keys clientId and clientSecret of an OpsRamp API client.",
            )
        missing = [k for k in ("clientId", "clientSecret") if not secret.data.get(k)]
        if missing:
            raise NeedsAttention(
                "CredentialsSecretInvalid",
                f"Secret {ref.namespace}/{name} lacks key(s) {', '.join(missing)}: it needs clientId and "
                "clientSecret of an OpsRamp API client.",
            )
        creds = OpsRampCredentials(secret.data["clientId"], secret.data["clientSecret"])
        redaction.register(creds.client_secret)
        if protect:
            # Cleanup needs these credentials; keep the Secret until the resources using it are gone, so that
            # deleting a namespace cannot remove it before the uninstall.
            self.secrets.add_finalizer(ref.namespace, secret, credentials_finalizer(self.settings.shard_name))
        return creds

    def check_external_id_source(self, spec: AWSIntegrationSpec, ref: ResourceRef) -> None:
        """One of externalIdSecretRef and generateExternalId must be set (resources made before may have neither)."""
        if spec.external_id_secret_ref is None and not spec.generate_external_id:
            raise NeedsAttention(
                "ExternalIdSourceUnset",
                "Set spec.externalIdSecretRef to a Secret holding the External ID from OpsRamp's 'Install AWS "
                "Integration' page (recommended), or spec.generateExternalId: true to keep an External ID the "
                f"operator generates (Secret {generated_secret_name(ref.name)}; OpsRamp must honour it). Nothing was "
                "changed in AWS or OpsRamp. See docs/upgrading.md.",
            )

    def external_id(
        self,
        spec: AWSIntegrationSpec,
        ref: ResourceRef,
        status: Mapping[str, Any] | None = None,
        result: PassResult | None = None,
    ) -> tuple[str, str]:
        """(External ID, name of the Secret holding it): the referenced Secret, or one we generate and own.

        A new value of the rotate-external-id annotation replaces a generated External ID that already existed (the
        rotation then moves the role and OpsRamp to it without a gap, see rotation.py).
        """
        if spec.external_id_secret_ref is not None:
            return self._referenced_external_id(spec.external_id_secret_ref.name, ref, watch=True), (
                spec.external_id_secret_ref.name
            )
        name = generated_secret_name(ref.name)
        secret = self.watched_secret(ref.namespace, name)
        created = secret is None
        if secret is None:
            value = generate_external_id()
            redaction.register(value)
            labels = {
                "app.kubernetes.io/managed-by": MANAGED_BY_VALUE,
                f"{GROUP}/awsintegration": label_value(ref.name),
                SECRET_WATCH_LABEL: "true",
            }
            self.secrets.create(ref.namespace, name, {EXTERNAL_ID_KEY: value}, ref.owner_reference(), labels)
            # Read back: after a crash or a race, the Secret that exists is the one that counts.
            secret = self.watched_secret(ref.namespace, name)
            if secret is None:
                raise NeedsAttention("ExternalIdSecretInvalid", f"Secret {ref.namespace}/{name} vanished after create.")
        if ref.uid not in secret.owner_uids:
            raise NotOwned(
                f"Secret {ref.namespace}/{name} exists but is not owned by this AWSIntegration: delete it, or "
                "put the External ID in a Secret of your own and set spec.externalIdSecretRef."
            )
        value = secret.data.get(EXTERNAL_ID_KEY, "")
        redaction.register(value)
        if not value or not re.match(EXTERNAL_ID_PATTERN, value):
            raise NeedsAttention(
                "ExternalIdSecretInvalid",
                f"Secret {ref.namespace}/{name} no longer holds a valid generated External ID: delete it to "
                "generate a new one.",
            )
        handled = (status or {}).get("handledRotationRequest")
        if ref.rotate_request is not None and ref.rotate_request != handled and not created:
            value = generate_external_id()
            redaction.register(value)
            self.secrets.replace_data(ref.namespace, secret, {EXTERNAL_ID_KEY: value})
            if result is not None:
                result.changes.append(f"generated a new External ID in Secret {name} ({ROTATE_ANNOTATION})")
        return value, name

    def _referenced_external_id(self, name: str, ref: ResourceRef, *, watch: bool) -> str:
        secret = self.watched_secret(ref.namespace, name, watch=watch)
        if secret is None:
            raise NeedsAttention(
                "ExternalIdSecretNotFound",
                f"Secret {ref.namespace}/{name} (spec.externalIdSecretRef) does not exist: create it with key "
                "externalId holding the External ID from OpsRamp's 'Install AWS Integration' page.",
            )
        value = secret.data.get(EXTERNAL_ID_KEY, "")
        if not value:
            raise NeedsAttention(
                "ExternalIdSecretInvalid", f"Secret {ref.namespace}/{name} has no key externalId (or it is empty)."
            )
        check_external_id(value, f"Secret {ref.namespace}/{name} (spec.externalIdSecretRef)")
        return value

    def read_external_id(self, spec: AWSIntegrationSpec, ref: ResourceRef) -> tuple[str | None, str]:
        """Like `external_id`, reading only: (None, name) when the operator would generate one now."""
        if spec.external_id_secret_ref is not None:
            name = spec.external_id_secret_ref.name
            return self._referenced_external_id(name, ref, watch=False), name
        name = generated_secret_name(ref.name)
        secret = self.secrets.get(ref.namespace, name)
        if secret is None:
            return None, name
        if ref.uid not in secret.owner_uids:
            raise NotOwned(
                f"Secret {ref.namespace}/{name} exists but is not owned by this AWSIntegration: delete it, or "
                "put the External ID in a Secret of your own and set spec.externalIdSecretRef."
            )
        value = secret.data.get(EXTERNAL_ID_KEY, "")
        redaction.register(value)
        return (value or None), name

    def account(self, spec: AWSIntegrationSpec, ref: ResourceRef, *, watch: bool = True) -> AwsAccount:
        """Where the role lives: the operator's own credentials, or spec.aws.assumeRoleArn (already allowed)."""
        external_id = None
        if spec.aws.assume_role_arn and spec.aws.external_id_secret_ref is not None:
            name = spec.aws.external_id_secret_ref.name
            secret = self.watched_secret(ref.namespace, name, watch=watch)
            if secret is None:
                raise NeedsAttention(
                    "ExternalIdSecretNotFound",
                    f"Secret {ref.namespace}/{name} (spec.aws.externalIdSecretRef) does not exist: create it with key "
                    "externalId holding the External ID the trust policy of spec.aws.assumeRoleArn requires.",
                )
            external_id = secret.data.get(EXTERNAL_ID_KEY, "")
            check_external_id(external_id, f"Secret {ref.namespace}/{name} (spec.aws.externalIdSecretRef)")
        elif spec.aws.assume_role_arn and spec.aws.external_id:
            # Only cleanup gets here (a pass refuses the field): a resource made before it moved must still go.
            external_id = spec.aws.external_id
            redaction.register(external_id)
        return self.aws.for_target(spec.aws.assume_role_arn, external_id)

    def client(self, spec: AWSIntegrationSpec, creds: OpsRampCredentials) -> OpsRampClient:
        return self.opsramp_factory(
            spec.opsramp.endpoint.rstrip("/"),
            spec.opsramp.tenant_id,
            creds.client_id,
            creds.client_secret,
            limits=self.limits,
            timeouts=self.timeouts,
        )

    def desired_role(
        self,
        spec: AWSIntegrationSpec,
        ref: ResourceRef,
        opsramp_account: str,
        external_id: str,
        partition: str = "aws",
        also_accept: tuple[str, ...] = (),
    ) -> DesiredRole:
        return DesiredRole(
            name=spec.effective_role_name(ref.namespace, ref.name),
            path=spec.role.path,
            trust_policy=trust_policy(opsramp_account, external_id, partition, also_accept=also_accept),
            max_session_duration=spec.role.max_session_duration,
            permissions_boundary_arn=self.settings.guardrails.permissions_boundary(spec.role.permissions_boundary_arn),
            tags=dict(spec.role.tags),
            permission_policy=load_opsramp_policy() if spec.role.attach_opsramp_policy else None,
            extra_managed_policy_arns=tuple(spec.role.managed_policy_arns),
            owner=ref.owner,
            description=f"OpsRamp monitoring role for AWSIntegration {ref}",
        )

    # --- reconcile ----------------------------------------------------------------------------------------

    def reconcile(
        self, spec: AWSIntegrationSpec, ref: ResourceRef, status: Mapping[str, Any], result: PassResult
    ) -> None:
        self.use_secrets(ref.uid, referenced_secrets(spec, ref))
        if spec.suspend:
            result.suspended = True
            return
        status = self.with_recorded_ids(ref.uid, status)
        if spec.observe_only:
            self.observe(spec, ref, status, result)
            return
        if spec.fleet:
            with self._locks_guard:
                (self._scanning.add if spec.organization is not None else self._scanning.discard)(ref.uid)
            self.fleet.reconcile(spec, ref, status, result)
            return
        if self._verdict_only(spec, ref, status, result):
            return
        recorded_id = status.get("integrationId") or None
        previous_arn = status.get("roleArn") or None
        display_name = spec.effective_display_name(ref.namespace, ref.name)
        protect = spec.deletion_policy == "Delete"

        # 1. Everything that can be checked before a write: first the admin's rules, before any Secret is read.
        with step(result, "role"):
            self.check_guardrails(spec, ref)
            self.check_external_id_source(spec, ref)
            opsramp_account = self.opsramp_account_id(spec)
            self.check_regions(spec)
        with step(result, "integration"):
            creds = self.credentials(spec, ref, protect=protect)
            client = self.client(spec, creds)
        with step(result, "role"):
            account = self.account(spec, ref)
            result.account_id = check_account(account, spec.aws.account_id)
            role_name = spec.effective_role_name(ref.namespace, ref.name)
            role_arn = self.role_arn(spec, ref, account, result.account_id)
        our_arns = {role_arn} | ({previous_arn} if previous_arn else set())
        observed = None
        with step(result, "integration"):
            if recorded_id:
                # A cheap non-paged read that also proves the credentials work (and is reused below).
                observed = client.get(recorded_id)
            elif not spec.adopt.integration:
                check_display_name_free(client, display_name, result.account_id, our_arns, recorded_id)

        # 2. External ID (the first write: a Secret we own), then the role.
        with step(result, "role"):
            external_id, secret_name = self.external_id(spec, ref, status, result)
            result.external_id_secret_name = secret_name
            rotation = self.rotation(spec, ref, status, account, role_name, external_id)
            result.rotation = rotation.status
            result.handled_rotation_request = ref.rotate_request
            outcome = self._ensure_role(spec, ref, status, account, opsramp_account, rotation.trust, result)
            result.role = "done"
            renamed = previous_arn is not None and previous_arn != outcome.arn
            # status.roleArn names the role the integration uses: after a rename it keeps the old one until the
            # integration has moved and the old role is gone, or a pass that fails in between would forget
            # the old role (never deleted) and disown the integration still pointing at it.
            result.role_arn = previous_arn if renamed else outcome.arn
            if renamed:
                result.role_message = (
                    f"IAM role {outcome.arn} matches the spec; the integration moves to it from {previous_arn}, "
                    "which is deleted afterwards."
                )
            result.changes.extend(outcome.changes)
            our_arns.add(outcome.arn)

        # 3-5. The integration (moved to the new External ID once the role accepts both), then OpsRamp's view.
        try:
            self._integration_and_monitoring(
                spec,
                ref,
                status,
                result,
                client,
                account,
                outcome,
                rotation,
                recorded_id,
                observed,
                our_arns,
                previous_arn,
                display_name,
            )
        except NeedsAttention as exc:
            if not rotation.switching or exc.reason not in ROLLBACK_REASONS:
                raise
            # The rotation cannot complete: back to the old External ID (OpsRamp, then the trust), and say why.
            self._roll_back(spec, ref, status, result, client, account, opsramp_account, rotation, exc, display_name)
            return
        # 6. A rotation OpsRamp is shown to work with: drop the old External ID from the trust.
        if rotation.switching and result.monitoring == "done":
            with step(result, "role"):
                done = rotation.completed()
                self._ensure_role(spec, ref, status, account, opsramp_account, done.trust, result)
                result.rotation = done.status
                result.notices.append(
                    (
                        "ExternalIdRotated",
                        f"OpsRamp works with the new External ID ({done.to_digest}); the old one "
                        f"({done.from_digest}) was dropped from the trust policy of {outcome.arn}.",
                    )
                )
        if rotation.holding:
            with step(result, "integration"):
                raise NeedsAttention(
                    "ExternalIdRotationFailed",
                    str(
                        (status.get("externalIdRotation") or {}).get("message")
                        or "The External ID rotation was rolled back."
                    ),
                )

    def _ensure_role(
        self,
        spec: AWSIntegrationSpec,
        ref: ResourceRef,
        status: Mapping[str, Any],
        account: AwsAccount,
        opsramp_account: str,
        trust: tuple[str, ...],
        result: PassResult,
    ) -> RoleOutcome:
        """The role with `trust` (External IDs it accepts, the one to keep first): ours, adopted, or brought."""
        if spec.role.arn is not None:
            return verify_role(
                account,
                spec.role.arn,
                opsramp_accounts=(opsramp_account,),
                external_id=trust[0],
                required_actions=required_actions(load_opsramp_policy()),
                owner=ref.owner,
            )
        desired = self.desired_role(spec, ref, opsramp_account, trust[0], account.partition(), also_accept=trust[1:])
        validate_desired(desired)
        attached = tuple(status.get("attachedPolicyArns") or ())
        # Nothing recorded, in status or by this process, and nothing to adopt or rotate: the role is most likely new
        # (create first). `status` carries the ids this process recorded (`with_recorded_ids`).
        fresh = (
            not status.get("roleArn")
            and not attached
            and not status.get("integrationId")
            and not status.get("externalIdRotation")
            and not (spec.adopt.role or spec.adopt.integration)
            and ref.rotate_request is None
            and len(trust) == 1
        )
        outcome = ensure_role(
            account,
            desired,
            previously_attached=attached,
            adoption=self.adoption(spec, opsramp_account, trust[0]),
            fresh=fresh,
        )
        result.attached_policy_arns = list(outcome.policy_arns)
        result.policy_digest = outcome.policy_digest
        if outcome.adopted is not None:
            result.adopted_role = (outcome.arn, outcome.adopted)
            result.notices.append(
                (
                    "Adopted",
                    f"Adopted IAM role {outcome.arn} (spec.adopt.role; it had "
                    + (
                        "no ownership tag"
                        if outcome.adopted == "none"
                        else "the tags of this resource before a restore"
                    )
                    + "): its trust admits only OpsRamp's account with this resource's External ID; it is now tagged "
                    "and managed as this resource's.",
                )
            )
        return outcome

    def adoption(self, spec: AWSIntegrationSpec, opsramp_account: str, external_id: str) -> Adoption:
        return Adoption(
            requested=spec.adopt.role,
            opsramp_accounts=(opsramp_account,),
            external_id=external_id,
            allowed_policy_patterns=self.settings.guardrails.managed_policy_patterns,
        )

    def role_arn(self, spec: AWSIntegrationSpec, ref: ResourceRef, account: AwsAccount, account_id: str) -> str:
        """The role's ARN; for a role brought or adopted, once the cluster's rules allow this namespace it."""
        rules = self.settings.guardrails
        if spec.role.arn is not None:
            rules.check_existing_role(ref.namespace, spec.role.arn, "spec.role.arn")
            parsed = parse_role_arn(spec.role.arn)
            if parsed is None or parsed[0] != account_id:
                raise NeedsAttention(
                    "AccountMismatch",
                    f"spec.role.arn {spec.role.arn} is not in account {account_id}, where the operator acts for this "
                    "resource (spec.aws); nothing was written. Name a role in that account, or set spec.aws.",
                )
            return spec.role.arn
        name = spec.effective_role_name(ref.namespace, ref.name)
        arn = f"arn:{account.partition()}:iam::{account_id}:role{spec.role.path}{name}"
        if spec.adopt.role:
            rules.check_existing_role(ref.namespace, arn, "spec.adopt.role")
        return arn

    def _integration_and_monitoring(
        self,
        spec: AWSIntegrationSpec,
        ref: ResourceRef,
        status: Mapping[str, Any],
        result: PassResult,
        client: OpsRampClient,
        account: AwsAccount,
        outcome: RoleOutcome,
        rotation: Rotation,
        recorded_id: str | None,
        observed: InstalledIntegration | None,
        our_arns: set[str],
        previous_arn: str | None,
        display_name: str,
    ) -> None:
        # 3. Wait out IAM's propagation, then the integration.
        with step(result, "integration"):
            ensure_role_usable(outcome, self.clock(), self.settings.role_settle_seconds)
            applied = Applied.from_status(status.get("appliedIntegration"))
            request = AwsIntegrationRequest(
                display_name=display_name,
                account_number=result.account_id or outcome.account_id,
                role_arn=outcome.arn,
                external_id=rotation.send,
                regions=tuple(spec.regions),
                install_all_linked_accounts=spec.install_all_linked_accounts,
                send_linked_accounts=bool(applied and applied.install_all_linked_accounts),
            )
            if rotation.switching:
                result.rotation = rotation.phase("Switching").status
            try:
                integration = ensure_integration(
                    client,
                    request,
                    recorded_id,
                    our_arns,
                    force_credentials=rotation.force,
                    observed=observed,
                    applied=applied,
                    adopt=spec.adopt.integration,
                )
            except TransientError as exc:
                raise self._escalate_assume_failure(exc, outcome, spec) from None
            result.integration = "done"
            result.integration_id = integration.integration.id
            result.external_id_digest = rotation.send_digest
            if rotation.switching:
                result.rotation = rotation.phase("Verifying").status
            if integration.adopted:
                result.adopted_integration = integration.integration.id
                result.notices.append(
                    (
                        "Adopted",
                        f"Adopted OpsRamp integration {integration.integration.id} (spec.adopt.integration): it now "
                        f"uses role {outcome.arn} and is managed as this resource's.",
                    )
                )
            self._remember(ref.uid, "integrationId", integration.integration.id)
            result.changes.extend(integration.changes)
            applied_status = Applied.of(request).to_status()
            result.applied_integration = applied_status
            credentials_since = _parse_time(status.get("credentialsAppliedTime"))
            verdict_since = credentials_since
            if integration.credentials_written or recorded_id != integration.integration.id:
                # A credential write, or an integration found after a lost answer: the grace starts at the write
                # (OpsRamp may judge the role before its answer reaches us) or now; for the adopted one, a verdict
                # OpsRamp gave before (on that very install) counts.
                credentials_since = integration.written_at or time.time()
                verdict_since = credentials_since if integration.credentials_written else 0.0
                result.credentials_applied_time = format_time(datetime.fromtimestamp(credentials_since, UTC))
                # A later pass handed a body older than this pass's status (no credentialsAppliedTime) must still
                # wait out the grace from this write: without it, it found no verdict yet and no grace to wait, and
                # settled at once on "no failure reported" (Ready, even for a role OpsRamp was about to fail).
                self._remember(ref.uid, "credentialsAppliedTime", result.credentials_applied_time)

        # 4. A renamed role: the integration has moved, so the old one (if ours) can go.
        if previous_arn and previous_arn != outcome.arn:
            with step(result, "role"):
                parsed = parse_role_arn(previous_arn)
                if parsed is not None:
                    _, old_path, old_name = parsed
                    try:
                        if delete_role(account, old_name, old_path, ref.owner):
                            result.changes.append(f"deleted previous role {old_name}")
                    except NotOwned:
                        log.warning("Previous role %s is not ours; left in place", old_name)
                result.role_arn = outcome.arn
                result.role_message = ""

        # 5. OpsRamp's own view: enabled, a discovery profile, and its verdict on the role.
        since = (verdict_since, credentials_since)
        try:
            with step(result, "monitoring"):
                self._ensure_monitoring(
                    spec, ref, status, result, client, integration.integration, outcome, since, display_name
                )
        except TransientError as exc:
            # Not mid-rotation: that pass's next step (the old External ID out of the trust) needs the full pass.
            if exc.reason == AWAITING_VERDICT and not (rotation.switching or rotation.holding or rotation.force):
                self._remember_awaiting(
                    ref.uid, _Awaiting(spec, result, client, integration.integration, outcome, since)
                )
            raise

    # How long after a pass that left only OpsRamp's verdict outstanding the next pass asks for the verdict alone.
    VERDICT_ONLY_SECONDS = 60.0

    def _remember_awaiting(self, uid: str, awaiting: _Awaiting) -> None:
        with self._locks_guard:
            self._awaiting[uid] = awaiting

    def _verdict_only(
        self, spec: AWSIntegrationSpec, ref: ResourceRef, status: Mapping[str, Any], result: PassResult
    ) -> bool:
        """The follow-up of a pass that did everything but get OpsRamp's verdict (it comes within seconds of a
        credential write): with the same spec and a moment later, only the monitoring step runs, on what that pass
        verified. Re-verifying the role and the integration two seconds after making them cost four IAM reads and
        two OpsRamp GETs per resource per retry, the largest part of a fleet's creation (docs/performance.md)."""
        with self._locks_guard:
            awaiting = self._awaiting.pop(ref.uid, None)
        if (
            awaiting is None
            or awaiting.spec != spec
            or time.monotonic() - awaiting.at > self.VERDICT_ONLY_SECONDS
            or status.get("integrationId") != awaiting.integration.id
        ):
            return False
        done = awaiting.result
        for name in (
            "role", "integration", "role_arn", "role_message", "integration_id", "account_id",
            "external_id_secret_name", "policy_digest", "attached_policy_arns", "applied_integration",
        ):  # fmt: skip
            setattr(result, name, getattr(done, name))
        display_name = spec.effective_display_name(ref.namespace, ref.name)
        try:
            with step(result, "monitoring"):
                self._ensure_monitoring(
                    spec, ref, status, result, awaiting.client, awaiting.integration, awaiting.outcome,
                    awaiting.since, display_name,
                )  # fmt: skip
        except TransientError as exc:
            if exc.reason == AWAITING_VERDICT:
                self._remember_awaiting(ref.uid, dataclasses.replace(awaiting, result=result))
            raise
        return True

    def _roll_back(
        self,
        spec: AWSIntegrationSpec,
        ref: ResourceRef,
        status: Mapping[str, Any],
        result: PassResult,
        client: OpsRampClient,
        account: AwsAccount,
        opsramp_account: str,
        rotation: Rotation,
        cause: NeedsAttention,
        display_name: str,
    ) -> None:
        """OpsRamp back on the old External ID first (the trust still accepts both), then the trust on it alone."""
        back = rotation.rolled_back(cause)
        result.rotation = back.status
        result.error = None
        result.failed_step = None
        applied = Applied.from_status(status.get("appliedIntegration"))
        with step(result, "integration"):
            arn = result.role_arn or ""
            request = AwsIntegrationRequest(
                display_name=display_name,
                account_number=result.account_id or "",
                role_arn=arn,
                external_id=back.send,
                regions=tuple(spec.regions),
                install_all_linked_accounts=spec.install_all_linked_accounts,
                send_linked_accounts=bool(applied and applied.install_all_linked_accounts),
            )
            integration = ensure_integration(
                client,
                request,
                result.integration_id or status.get("integrationId") or None,
                {arn},
                force_credentials=True,
                applied=applied,
            )
            result.integration_id = integration.integration.id
            result.external_id_digest = back.send_digest
            result.changes.extend(integration.changes)
            result.credentials_applied_time = format_time(self.clock())
        with step(result, "role"):
            self._ensure_role(spec, ref, status, account, opsramp_account, back.trust, result)
        raise NeedsAttention("ExternalIdRotationFailed", str((back.status or {}).get("message")))

    # --- External ID rotation -----------------------------------------------------------------------------

    def rotation(
        self,
        spec: AWSIntegrationSpec,
        ref: ResourceRef,
        status: Mapping[str, Any],
        account: AwsAccount,
        role_name: str,
        external_id: str,
    ) -> Rotation:
        """Where this pass stands in an External ID rotation (see rotation.py); reads the role only mid-rotation."""
        previous = status.get("externalIdRotation") if isinstance(status.get("externalIdRotation"), Mapping) else None
        applied = status.get("externalIdDigest") if isinstance(status.get("externalIdDigest"), str) else None
        handled = (
            status.get("handledRotationRequest") if isinstance(status.get("handledRotationRequest"), str) else None
        )
        state = RotationState.of(ref.uid, external_id, applied, previous, ref.rotate_request, handled, self.clock())
        if not state.needs_trust or spec.role.arn is not None:
            # Steady (or a role someone else manages, whose trust is theirs to change): no extra read.
            return state.decide(None, brought=spec.role.arn is not None)
        role = account.iam.get_role(role_name)
        return state.decide(trust_external_ids(role.trust_policy) if role is not None else frozenset())

    # --- Observe and plan: the same reads as a pass, and no write ----------------------------------------------

    def plan(self, spec: AWSIntegrationSpec, ref: ResourceRef, status: Mapping[str, Any]) -> ResourcePlan:
        """What a Manage pass would write now, from reads only, by the reconcilers' own rules (Observe, `plan`).

        Errors a pass would stop on before its first write (bad credentials, guardrails, ...) are raised; the ones
        it would stop on at an object (NotOwned, AdoptionRefused, a brought role's checks) go to `blocked`.
        """
        if spec.fleet:
            raise NeedsAttention(
                "PlanUnsupported",
                "plan covers one-account resources; this one has spec.accounts or spec.organization, whose per-account "
                "state is in status.accounts (docs/organizations.md).",
            )
        plan = ResourcePlan(ref.namespace, ref.name)
        recorded_id = status.get("integrationId") or None
        previous_arn = status.get("roleArn") or None
        display_name = spec.effective_display_name(ref.namespace, ref.name)
        self.check_guardrails(spec, ref)
        self.check_external_id_source(spec, ref)
        opsramp_account = self.opsramp_account_id(spec)
        self.check_regions(spec)
        client = self.client(spec, self.credentials(spec, ref, protect=False, watch=False))
        account = self.account(spec, ref, watch=False)
        account_id = check_account(account, spec.aws.account_id)
        role_arn = self.role_arn(spec, ref, account, account_id)
        role_name = spec.effective_role_name(ref.namespace, ref.name)
        our_arns = {role_arn} | ({previous_arn} if previous_arn else set())
        observed = client.get(recorded_id) if recorded_id else None

        external_id, secret_name = self.read_external_id(spec, ref)
        labels: dict[str, str] = {}
        if external_id is None:
            plan.changes.append(
                PlannedChange(
                    "kubernetes",
                    "create",
                    f"Secret {ref.namespace}/{secret_name}",
                    (),
                    ("kubernetes:create-secret",),
                    "holding a generated External ID",
                )
            )
            external_id = PLACEHOLDER_EXTERNAL_ID
            labels[external_id] = "<the External ID to be generated>"
        else:
            labels[external_id] = "<this resource's External ID>"
        rotation = self.rotation(spec, ref, status, account, role_name, external_id)
        for value in rotation.trust[1:]:
            labels[value] = "<the External ID OpsRamp has now>"
        if rotation.switching:
            plan.notes.append(
                "External ID rotation: the trust accepts the old and the new External ID, OpsRamp moves to the new "
                "one, and the old one is dropped once OpsRamp works with it"
            )
        elif rotation.holding:
            plan.notes.append("External ID rotation rolled back: running on the old External ID")

        role_changes_before = len(plan.changes)
        if spec.role.arn is not None:
            try:
                self._ensure_role(spec, ref, status, account, opsramp_account, rotation.trust, PassResult())
            except NeedsAttention as exc:
                plan.blocked.append(("role", exc))
            planned_arn = spec.role.arn
            role_exists = True
        else:
            desired = self.desired_role(
                spec, ref, opsramp_account, rotation.trust[0], account.partition(), also_accept=rotation.trust[1:]
            )
            validate_desired(desired)
            role_plan = plan_role(
                account,
                desired,
                previously_attached=tuple(status.get("attachedPolicyArns") or ()),
                adoption=self.adoption(spec, opsramp_account, rotation.trust[0]),
                strict=False,
            )
            if role_plan.blocked is not None:
                plan.blocked.append(("role", role_plan.blocked))
            plan.changes.extend(role_changes(role_plan, labels))
            planned_arn = role_plan.role.arn if role_plan.role is not None else role_arn
            role_exists = role_plan.role is not None
        our_arns.add(planned_arn)
        if previous_arn and previous_arn != planned_arn and (parsed := parse_role_arn(previous_arn)) is not None:
            plan.changes.append(
                PlannedChange(
                    "iam",
                    "delete",
                    f"role {parsed[2]}",
                    (),
                    ("iam:DeleteRole",),
                    "the role before the rename, once the integration has moved",
                )
            )
        plan.role_changes = len(plan.changes) - role_changes_before

        applied = Applied.from_status(status.get("appliedIntegration"))
        request = AwsIntegrationRequest(
            display_name=display_name,
            account_number=account_id,
            role_arn=planned_arn,
            external_id=rotation.send,
            regions=tuple(spec.regions),
            install_all_linked_accounts=spec.install_all_linked_accounts,
            send_linked_accounts=bool(applied and applied.install_all_linked_accounts),
        )
        try:
            found = plan_integration(
                client,
                request,
                recorded_id,
                our_arns,
                force_credentials=rotation.force and role_exists,
                observed=observed,
                applied=applied,
                adopt=spec.adopt.integration,
            )
        except NeedsAttention as exc:
            plan.blocked.append(("integration", exc))
            return plan
        change = integration_change(found, display_name)
        if change is not None:
            plan.changes.append(change)
        current = found.current if found.action in ("none", "update") else None
        recorded_profile = status.get("discoveryProfileId")
        inputs = self._monitoring_inputs(
            spec,
            display_name,
            status,
            recorded_profile if found.how == "recorded" and isinstance(recorded_profile, int) else None,
            planned_arn,
        )
        plan.changes.extend(monitoring_changes(plan_monitoring(client, current, inputs)))
        if current is not None and current.enabled is not False:
            verdict = client.verdict(current.id, 0.0)
            plan.verdict = verdict
            if verdict is not None:
                plan.notes.append(
                    f"OpsRamp's last verdict on the role: {'assumed it' if verdict.ok else 'could not assume it'}"
                    + ("" if verdict.ok else f" ({verdict.message})")
                )
        plan.integration_id = current.id if current is not None else None
        return plan

    def observe(
        self, spec: AWSIntegrationSpec, ref: ResourceRef, status: Mapping[str, Any], result: PassResult
    ) -> None:
        """managementPolicy Observe: read both sides, report every difference from the spec, write nothing."""
        result.observing = True
        with step(result, "role"):
            plan = self.plan(spec, ref, status)
        result.differences = plan.differences()
        by_side: dict[str, list[str]] = {"role": [], "integration": [], "monitoring": []}
        for side, blocked in plan.blocked:
            by_side[side].append(f"Manage would stop here: {blocked.reason}: {blocked.message}")
        for index, change in enumerate(plan.changes):
            if change.system in ("iam", "kubernetes") or index < plan.role_changes:
                side = "role"
            elif change.target.startswith("integration"):
                side = "integration"
            else:
                side = "monitoring"
            by_side[side].extend(change.lines())
        verdict = plan.verdict
        monitoring: tuple[str, str, str]
        if plan.integration_id is None:
            monitoring = ("Unknown", "NoIntegration", "No OpsRamp integration of this resource to judge.")
        elif by_side["monitoring"]:
            monitoring = ("False", "MonitoringDiffers", "; ".join(by_side["monitoring"]))
        elif verdict is None:
            monitoring = (
                "Unknown",
                "NoVerdict",
                f"OpsRamp has reported no verdict on integration {plan.integration_id}.",
            )
        elif verdict.ok:
            monitoring = (
                "True",
                "RoleAssumed",
                f"OpsRamp reports it assumed the role of integration {plan.integration_id}.",
            )
        else:
            monitoring = ("False", "OpsRampCannotAssumeRole", f"OpsRamp reports: {verdict.message}")
        result.observed_conditions = [
            (
                "RoleReady",
                "False" if by_side["role"] else "True",
                "RoleDiffers" if by_side["role"] else "RoleMatches",
                "; ".join(by_side["role"]) or "The IAM role matches the spec (Observe: nothing is written).",
            ),
            (
                "IntegrationReady",
                "False" if by_side["integration"] else "True",
                "IntegrationDiffers" if by_side["integration"] else "IntegrationMatches",
                "; ".join(by_side["integration"])
                or f"OpsRamp integration {plan.integration_id} matches the spec (Observe: nothing is written).",
            ),
            ("Monitoring", *monitoring),
        ]

    def _monitoring_inputs(
        self,
        spec: AWSIntegrationSpec,
        display_name: str,
        status: Mapping[str, Any],
        recorded_profile: int | None,
        role_arn: str,
    ) -> MonitoringInputs:
        applied = status.get("appliedIntegration") or {}
        return MonitoringInputs(
            display_name=display_name,
            spec=spec.monitoring,
            recorded_profile_id=recorded_profile,
            applied_enabled=applied.get("enabled") if isinstance(applied.get("enabled"), bool) else None,
            verdict_since=None,
            credentials_since=None,
            settled=None,
            now=time.time(),
            grace_seconds=self.settings.monitoring_grace_seconds,
            role_arn=role_arn,
            role_last_changed=None,
            assume_grace_seconds=self.settings.assume_grace_seconds,
            generated_external_id=spec.external_id_secret_ref is None,
            linked_accounts_requested=spec.install_all_linked_accounts,
        )

    def _ensure_monitoring(
        self,
        spec: AWSIntegrationSpec,
        ref: ResourceRef,
        status: Mapping[str, Any],
        result: PassResult,
        client: OpsRampClient,
        integration: InstalledIntegration,
        outcome: RoleOutcome,
        since: tuple[float | None, float | None],
        display_name: str,
    ) -> None:
        """Step 5. `since`: (the time OpsRamp's verdict must be newer than, when the grace for it started)."""
        previous = next((c for c in status.get("conditions") or () if c.get("type") == "Monitoring"), None)
        recorded_profile = status.get("discoveryProfileId")
        applied = status.get("appliedIntegration") or {}
        now_mono = time.monotonic()
        recheck = self.settings.monitoring_recheck_seconds
        with self._locks_guard:
            last_read = self._verdict_read.get(ref.uid)
            if last_read is None and previous and previous.get("status") == "True":
                # A settled verdict this process has not read yet (it restarted): due again at a stable point of the
                # recheck interval, not on the first pass, or a restart would read every resource's verdict at once
                # (a paged GET each, from the tenant's 50 a minute).
                last_read = now_mono - recheck * self._fraction(ref.uid)
                self._verdict_read[ref.uid] = last_read
        fresh = last_read is not None and now_mono - last_read < recheck
        unchanged = result.credentials_applied_time is None and status.get("integrationId") == integration.id
        settled = None
        if previous and previous.get("status") == "True" and unchanged and fresh:
            settled = (str(previous.get("reason") or "Monitoring"), str(previous.get("message") or ""))
        inputs = MonitoringInputs(
            display_name=display_name,
            spec=spec.monitoring,
            recorded_profile_id=int(recorded_profile) if isinstance(recorded_profile, int) else None,
            applied_enabled=applied.get("enabled") if isinstance(applied.get("enabled"), bool) else None,
            verdict_since=since[0],
            credentials_since=since[1],
            settled=settled,
            now=time.time(),
            grace_seconds=self.settings.monitoring_grace_seconds,
            role_arn=outcome.arn,
            role_last_changed=outcome.last_changed,
            assume_grace_seconds=self.settings.assume_grace_seconds,
            generated_external_id=spec.external_id_secret_ref is None,
            linked_accounts_requested=spec.install_all_linked_accounts,
        )
        watched = MonitoringOutcome(state="done")
        try:
            ensure_monitoring(client, integration, inputs, watched)
        finally:
            result.changes.extend(watched.changes)
            result.warnings.extend(watched.warnings)
            if watched.enabled_applied and result.applied_integration is not None:
                result.applied_integration = {**result.applied_integration, "enabled": spec.monitoring.enabled}
            if watched.profile_id is not None:
                result.discovery_profile_id = watched.profile_id
                if watched.state != "disabled":
                    self._remember(ref.uid, "discoveryProfileId", watched.profile_id)
        if watched.state == "disabled":
            result.monitoring = "disabled"
            result.monitoring_message = watched.message
            return
        reason, message = watched.reason, watched.message
        if settled is None:
            with self._locks_guard:
                self._verdict_read[ref.uid] = now_mono
        result.monitoring = "done"
        result.monitoring_reason = reason
        result.monitoring_message = message

    def _escalate_assume_failure(
        self, exc: TransientError, outcome: RoleOutcome, spec: AWSIntegrationSpec | None = None
    ) -> OperatorError:
        """OpsRamp failing to assume a young role is IAM propagating; on a settled role it is a real mistake."""
        if exc.reason != "OpsRampCannotAssumeRole" or outcome.last_changed is None:
            return exc
        age = (self.clock() - outcome.last_changed).total_seconds()
        remaining = self.settings.assume_grace_seconds - age
        if remaining > 0:
            # Retry no later than just after the grace runs out, so a real mistake is reported on time rather
            # than a grown backoff later.
            return TransientError(exc.reason, exc.message, min(exc.retry_after, remaining + 1.0), exact=True)
        hint = (
            " With generateExternalId, OpsRamp must honour an External ID the client chose; if it does not, put the "
            "External ID from OpsRamp's console in a Secret and set spec.externalIdSecretRef instead."
            if spec is not None and spec.external_id_secret_ref is None
            else ""
        )
        return NeedsAttention(
            "OpsRampCannotAssumeRole",
            f"OpsRamp still cannot assume {outcome.arn} {age:.0f}s after it last changed: check that "
            "spec.opsramp.awsAccountId is OpsRamp's AWS account and that OpsRamp expects this External ID." + hint,
        )

    # --- cleanup ------------------------------------------------------------------------------------------

    def cleanup(self, spec: AWSIntegrationSpec, ref: ResourceRef, status: Mapping[str, Any]) -> list[str]:
        """Uninstall the integration, then delete the role and our policies; already gone counts as done."""
        done: list[str] = []
        if spec.fleet or status.get("accountIds"):
            return self.fleet.cleanup(spec, ref, status)
        if spec.deletion_policy == "Retain":
            return ["deletionPolicy is Retain: the role and the integration are kept"]
        status = self.with_recorded_ids(ref.uid, status)
        recorded_id = status.get("integrationId") or None
        recorded_arn = status.get("roleArn") or None
        display_name = spec.effective_display_name(ref.namespace, ref.name)
        try:
            # Cleanup sends credentials and assumes roles too: only where the admin's rules allow.
            self.settings.guardrails.check_endpoint(spec.opsramp.endpoint)
            self.settings.guardrails.check_target(ref.namespace, spec.aws.assume_role_arn)
        except NeedsAttention:
            if recorded_id or recorded_arn:
                raise
            # No pass got past these rules, so nothing was made: waiting for them to change would wedge deletion.
            return ["the guardrails refuse its endpoint or target and nothing was recorded: nothing to clean up"]
        account = self.account(spec, ref)
        try:
            account_id = check_account(account, spec.aws.account_id)
        except NeedsAttention as exc:
            if exc.reason != "AccountMismatch" or recorded_id or recorded_arn:
                raise
            # Every pass stopped at this check before its first write, so there is nothing to clean up; waiting
            # for the account to match would wedge the deletion (and its namespace) for good.
            return ["spec.aws.accountId never matched and nothing was recorded: nothing to clean up"]
        role_name = spec.effective_role_name(ref.namespace, ref.name)
        role_arn = f"arn:{account.partition()}:iam::{account_id}:role{spec.role.path}{role_name}"
        our_arns = {role_arn} | ({recorded_arn} if recorded_arn else set())
        # An integration is ours by our display name plus one of our role ARNs. A role under our name that
        # someone else owns makes its ARN theirs: a copy refused with NotOwned must not uninstall the original's
        # integration when it is deleted.
        existing = account.iam.get_role(role_name)
        if existing is not None and existing.tags.get(TAG_OWNER_UID) != ref.uid:
            our_arns.discard(role_arn)

        try:
            creds = self.credentials(spec, ref, protect=False)
        except NeedsAttention:
            if recorded_id or recorded_arn:
                raise
            # Nothing was ever recorded, so nothing can have been installed but after a crash; without
            # credentials there is no way to look, and waiting for them would wedge the deletion.
            log.info("No OpsRamp credentials and nothing recorded for %s: skipping the OpsRamp side", ref)
        else:
            client = self.client(spec, creds)
            reason = f"AWSIntegration {ref} was deleted (deletionPolicy Delete)"
            try:
                profile_id = status.get("discoveryProfileId")
                if isinstance(profile_id, int):
                    client.delete_profile(profile_id)
                    done.append(f"deleted discovery profile {profile_id}")
                for removed in remove_integration(client, recorded_id, display_name, account_id, our_arns, reason):
                    done.append(f"uninstalled OpsRamp integration {removed}")
            except NeedsAttention:
                if recorded_id or recorded_arn:
                    raise
                # Nothing recorded: no pass ever got as far as a role, so nothing can be installed.
                log.info("OpsRamp refused the lookup for %s and nothing was recorded: skipping it", ref)

        roles_to_delete = {(spec.role.path, role_name)}
        if recorded_arn and (parsed := parse_role_arn(recorded_arn)) is not None:
            roles_to_delete.add((parsed[1], parsed[2]))
        for path, name in sorted(roles_to_delete):
            try:
                if delete_role(account, name, path, ref.owner):
                    done.append(f"deleted IAM role {name} and its policies")
            except NotOwned:
                # Someone else's role under the name we would have used: never ours to delete.
                log.info("IAM role %s is not owned by %s; left in place", name, ref)
        return done

    def release_credentials(self, namespace: str, secret_name: str) -> None:
        self.secrets.remove_finalizer(namespace, secret_name, credentials_finalizer(self.settings.shard_name))
