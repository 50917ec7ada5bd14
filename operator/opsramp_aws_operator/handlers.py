"""kopf handlers: parse the resource, call the service, translate our errors into kopf's, write status.

Create and update run `reconcile_awsintegration`'s pass, and the resync scheduler (resync.py) runs the same pass;
delete runs the cleanup behind our finalizer. Only this module knows kopf's exceptions.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from . import metrics, passlog, redaction, resync
from .conditions import EventToPost, PassResult, build_status, changed_only
from .constants import GROUP, PLURAL, ROTATE_ANNOTATION, SECRET_WATCH_LABEL, SKIP_CLEANUP_ANNOTATION, VERSION
from .errors import NeedsAttention, OperatorError, TransientError
from .kube import SecretWatch
from .kube import login as kube_login
from .models import AWSIntegrationSpec
from .persistence import PolicyDiffBaseStorage, PolicyProgressStorage, observing
from .service import ResourceRef, Service, salvage_spec
from .settings import Settings

log = logging.getLogger(__name__)

TRUE_VALUES = ("true", "yes", "1")
# Transient states of a healthy resource that the resync scheduler follows up instead of kopf's retries.
SCHEDULER_RETRIES = frozenset({"AwaitingOpsRampVerdict"})


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, naming the spec field: the API server's schema catches most of these first."""
    problems = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "spec"
        problems.append(f"spec.{where}: {item['msg']}")
    return "Invalid spec: " + "; ".join(problems)


def parse_spec(spec: Mapping[str, Any]) -> AWSIntegrationSpec:
    try:
        return AWSIntegrationSpec.model_validate(dict(spec))
    except ValidationError as exc:
        raise NeedsAttention("InvalidSpec", describe_validation_error(exc)) from None


def retry_delay(error: OperatorError, retry: int, settings: Settings) -> float:
    """Needs-attention errors back off exponentially to a cap; transient ones wait as told, growing gently."""
    if isinstance(error, NeedsAttention):
        return float(
            min(settings.attention_backoff_seconds * 2 ** min(retry, 16), settings.attention_backoff_max_seconds)
        )
    if isinstance(error, TransientError):
        if error.exact:
            return float(max(error.retry_after, 1.0))
        return float(min(max(error.retry_after, 1.0) * (1.5 ** min(retry, 8)), 120.0))
    return float(min(5.0 * 2 ** min(retry, 6), 300.0))


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redaction.redact(value)
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    return value


@dataclass
class PassOutcome:
    """What one pass leaves to write: its error (if any), the status entries that differ, the Events it owes."""

    error: OperatorError | None
    status: dict[str, Any]
    events: list[EventToPost]
    pass_id: str


# What the resync scheduler hands a pass to read the resource again under its lock: (spec, meta, status) as the
# watch shows it now, or None when it is being deleted or gone.
Current = Callable[[], tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]] | None]


def run_pass(
    service: Service,
    spec: Mapping[str, Any],
    meta: Mapping[str, Any],
    status: Mapping[str, Any],
    current: Current | None = None,
) -> PassOutcome | None:
    """One reconcile pass; the caller writes the status and posts the Events (kopf for handlers, the scheduler
    itself for resyncs). The error (if any) is returned, not raised.

    `current` (the scheduler's passes): the resource is read again once the pass holds the resource's lock, and the
    pass runs on that; None from it (being deleted, or gone) means no pass at all, and None is returned. The lock is
    what the delete handler holds while it cleans up, so a pass that was due before the deletion and got the lock
    after it sees the deletion instead of re-creating what cleanup just removed.
    """
    # Up before the pass's first call and down after it is counted: a scrape showing none in progress has every
    # call of every finished pass behind it (the benchmark measures reads per pass between such scrapes).
    with (
        metrics.RECONCILES_IN_PROGRESS.track_inprogress(),
        passlog.in_pass(meta["namespace"], meta["name"], meta["uid"], passlog.new_pass_id()) as pass_id,
    ):
        return _run_pass(service, spec, meta, status, pass_id, current)


def _ref(meta: Mapping[str, Any]) -> ResourceRef:
    rotate = (meta.get("annotations") or {}).get(ROTATE_ANNOTATION)
    return ResourceRef(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        rotate_request=str(rotate)[:256] if rotate else None,
    )


def _run_pass(
    service: Service,
    spec: Mapping[str, Any],
    meta: Mapping[str, Any],
    status: Mapping[str, Any],
    pass_id: str,
    current: Current | None,
) -> PassOutcome | None:
    ref = _ref(meta)
    result = PassResult()
    started = time.monotonic()
    error: OperatorError | None = None
    try:
        with service.lock_for(ref.uid):
            if current is not None:
                latest = current()
                if latest is None:
                    return None
                spec, meta, status = latest
                ref = _ref(meta)
            desired = parse_spec(spec)
            service.reconcile(desired, ref, status, result)
    except OperatorError as exc:
        error = exc
        if result.failed_step is None:
            result.failed_step = "role"
    except Exception as exc:
        log.exception("Unexpected error while reconciling %s", ref)
        error = TransientError("InternalError", f"Unexpected {type(exc).__name__}; see the operator's log.", 30.0)
        result.failed_step = result.failed_step or "role"
    result.error = error
    service.passed(ref.uid)
    status_patch, events = build_status(result, status, meta.get("generation"), datetime.now(UTC))
    ready = next((c["status"] for c in status_patch["conditions"] if c["type"] == "Ready"), "Unknown")
    service.record_ready(ref.uid, ready)
    outcome = "ok" if error is None else "needs_attention" if isinstance(error, NeedsAttention) else "transient"
    metrics.RECONCILES.labels(outcome).inc()
    metrics.RECONCILE_SECONDS.labels(outcome).observe(time.monotonic() - started)
    if error is not None:
        metrics.RECONCILE_ERRORS.labels(error.reason, outcome).inc()
        # The line that ties the pass's other lines to its outcome (kopf logs the retry without the pass id).
        log.info("Pass of %s failed (%s): %s", ref, error.reason, redaction.redact(error.message))
    if result.changes:
        log.info("Reconciled %s: %s", ref, "; ".join(result.changes))
    if result.suspended:
        # One line per pass (a resync interval apart): explains a spec change that seems ignored, and shows that
        # the operator still looks at the resource.
        log.info("%s is suspended (spec.suspend): nothing was changed", ref)

    def suffix(kind: str) -> str:
        return f" (pass {pass_id})" if kind == "Warning" else ""

    # A Warning names its pass, so that `kubectl describe` leads to the pass's log lines.
    events = [EventToPost(e.type, e.reason, redaction.redact(e.message) + suffix(e.type)) for e in events]
    # Only what differs: a pass that changes nothing sends no status write at all.
    return PassOutcome(error, changed_only(_redacted(status_patch), status), events, pass_id)


def apply_outcome(outcome: PassOutcome, body: kopf.Body, patch: kopf.Patch) -> None:
    """A handler's pass: kopf writes the status patch when the handler returns and posts the Events."""
    for key, value in outcome.status.items():
        patch.status[key] = value
    for event in outcome.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


def reconcile_awsintegration(
    *,
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    retry: int,
    **kwargs: Any,
) -> None:
    """Create / update: reconcile, write status, and let kopf retry with our delay on error."""
    outcome = run_pass(memo.service, spec, meta, status)
    assert outcome is not None  # only a pass given `current` can be called off
    apply_outcome(outcome, body, patch)
    if observing(body):
        # Switched from Manage: the credentials Secret no longer needs protecting for this resource's cleanup.
        release_unused_credentials(memo.service, spec, meta, kwargs["credentials_refs"])
    if isinstance(outcome.error, TransientError) and outcome.error.reason in SCHEDULER_RETRIES:
        # Everything is written and only OpsRamp's verdict is outstanding: the resync scheduler looks again soon
        # (reads only). A kopf retry would cost two more writes of its progress annotation per retry.
        memo.service.retry_in(meta["uid"], outcome.error.retry_after)
        return
    if outcome.error is not None:
        delay = retry_delay(outcome.error, retry, memo.service.settings)
        raise kopf.TemporaryError(f"{redaction.redact(str(outcome.error))} (pass {outcome.pass_id})", delay=delay)


def delete_awsintegration(
    *,
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    retry: int,
    **kwargs: Any,
) -> None:
    """Cleanup behind the finalizer; the skip-cleanup annotation releases it without touching AWS or OpsRamp."""
    service: Service = memo.service
    ref = ResourceRef(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"])
    service.mark_deleting(ref.uid)
    annotations = meta.get("annotations") or {}
    unparsed: NeedsAttention | None = None
    try:
        desired: AWSIntegrationSpec | None = parse_spec(spec)
    except NeedsAttention as exc:
        # Clean up from what status recorded (and the parts of the spec that still parse), never silently skip.
        unparsed = exc
        desired = salvage_spec(spec, status)
    if str(annotations.get(SKIP_CLEANUP_ANNOTATION, "")).lower() in TRUE_VALUES:
        kopf.event(
            body,
            type="Warning",
            reason="CleanupSkipped",
            message=f"{SKIP_CLEANUP_ANNOTATION} is set: the IAM role and the OpsRamp integration were left in place.",
        )
    elif desired is not None or status.get("roleArn") or status.get("integrationId"):
        try:
            if desired is None:
                assert unparsed is not None
                raise NeedsAttention(
                    "InvalidSpec",
                    f"the stored spec no longer parses and cleanup cannot tell where the role or the integration "
                    f"is ({unparsed.message}).",
                )
            with service.lock_for(ref.uid):
                done = service.cleanup(desired, ref, status)
        except OperatorError as exc:
            message = (
                f"Cleanup failed: {exc.message} Fix it, or annotate the resource with {SKIP_CLEANUP_ANNOTATION}=true "
                "to release it without cleanup."
            )
            conditions = build_status(
                PassResult(failed_step="integration", error=type(exc)(exc.reason, message)),
                status,
                meta.get("generation"),
                datetime.now(UTC),
            )[0]["conditions"]
            patch.status["conditions"] = _redacted(conditions)
            if isinstance(exc, NeedsAttention) and retry == 0:
                kopf.event(body, type="Warning", reason=exc.reason, message=redaction.redact(message))
            raise kopf.TemporaryError(
                redaction.redact(message), delay=retry_delay(exc, retry, service.settings)
            ) from None
        for line in done:
            log.info("Cleanup of %s: %s", ref, line)
    elif unparsed is not None:
        log.info("Cleanup of %s: the spec no longer parses and status recorded nothing: nothing to clean up", ref)
    # Release the credentials Secret when no other resource still uses it.
    if desired is not None:
        release_unused_credentials(service, spec, meta, kwargs["credentials_refs"])
    service.forget(ref.uid)


def release_unused_credentials(
    service: Service, spec: Mapping[str, Any], meta: Mapping[str, Any], credentials_refs: Any
) -> None:
    """Drop the protection finalizer from the credentials Secret when no other Manage resource uses it."""
    secret = ((spec.get("opsramp") or {}).get("credentialsSecretRef") or {}).get("name")
    if not secret:
        return
    users = set(credentials_refs.get((meta["namespace"], secret), ()))
    # Resources deleted at the same moment (a namespace going away) may each still see the other in the index:
    # those being deleted do not count, or neither would release the Secret and the namespace would wedge.
    if not (users - {meta["uid"]} - service.deleting()):
        try:
            service.release_credentials(meta["namespace"], secret)
        except OperatorError as exc:
            # Cleanup is done; only the Secret's finalizer is left. Retry soon, not after kopf's default.
            raise kopf.TemporaryError(redaction.redact(str(exc)), delay=retry_delay(exc, 0, service.settings)) from None


async def index_credentials(*, spec: kopf.Spec, meta: kopf.Meta, **_: Any) -> dict[tuple[str, str], str] | None:
    """Which resources use which credentials Secret (to know when its protection finalizer can go).

    Async on purpose: kopf runs every indexer on every watch event, and a sync one would wait for a thread of the
    pool the reconcile passes fill during a burst (issue 18).
    """
    ref = (spec.get("opsramp") or {}).get("credentialsSecretRef") or {}
    # An Observe resource needs no credentials for a cleanup (it has none to do).
    if not ref.get("name") or meta.get("deletionTimestamp") or spec.get("managementPolicy") == "Observe":
        return None
    return {(meta["namespace"], ref["name"]): meta["uid"]}


def start_secret_watch(memo: kopf.Memo, **_: Any) -> None:
    """Watch the labelled Secrets (credentials, External IDs) so a changed one takes effect within a tick."""
    service: Service = memo.service
    memo.secret_watch = SecretWatch(service.settings.namespaces, f"{SECRET_WATCH_LABEL}=true", service.secret_event)
    memo.secret_watch.start()


def stop_secret_watch(memo: kopf.Memo, **_: Any) -> None:
    watch = getattr(memo, "secret_watch", None)
    if watch is not None:
        watch.stop()


def scheduler_for(settings: Settings, identity: str | None) -> Any:
    async def start_scheduler(memo: kopf.Memo, **kwargs: Any) -> None:
        """Start the one resync scheduler (resync.py) over the `resources` index."""
        resources = resync.awsintegrations()
        peering = None
        if settings.peering_name and identity is not None:
            peering = resync.PeeringView(
                resources,
                settings.peering_name,
                identity,
                peering_priority(settings),
                clusterwide=not settings.namespaces,
                ttl=max(settings.resync_tick_seconds, 1.0),
            )
        scheduler = resync.Scheduler(memo.service, kwargs["resources"], resources, run_pass, peering)
        memo.scheduler = scheduler
        memo.scheduler_task = asyncio.create_task(scheduler.run(), name="resync scheduler")

    return start_scheduler


async def stop_scheduler(memo: kopf.Memo, **_: Any) -> None:
    task = getattr(memo, "scheduler_task", None)
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await memo.scheduler.stop()


def peering_priority(settings: Settings) -> int:
    """This replica's peering priority: the configured one, else random (kopf freezes on equal priorities)."""
    if settings.peering_priority is not None:
        return settings.peering_priority
    return random.SystemRandom().randint(1, 1_000_000)


def configure(ours: Settings) -> Any:
    def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Our own names for everything kopf stores on the resource (DESIGN: prefix under our group).
        settings.persistence.finalizer = f"{GROUP}/cleanup"
        # In annotations, as always, except for managementPolicy Observe resources: those get no write beyond
        # their status, so kopf keeps its bookkeeping there (persistence.py).
        settings.persistence.progress_storage = PolicyProgressStorage()
        settings.persistence.diffbase_storage = PolicyDiffBaseStorage()
        # persistence.consistency_timeout stays at kopf's 5 s: it bounds how long kopf waits for the echo of its
        # own patch before it trusts an older body. Our indexers are async so that an event is processed in
        # milliseconds, well inside it, even while every worker thread is busy (issue 18).
        # Events only where we post them ourselves (transitions), never kopf's per-retry chatter.
        settings.posting.loggers = False
        # Sync handlers (boto3, requests) run in this pool; bounded so thousands of resources do not mean
        # thousands of threads. The rate limiters keep the external APIs safe either way.
        settings.execution.max_workers = 16
        # Reconnect watches regularly so a silently dropped stream never stalls the operator for long.
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        if ours.shard_selector:
            # This shard's slice: the API server sends only the resources its label selector matches, and a resource
            # relabelled away arrives as deleted here and as added in its new shard (kopf's own sharding idiom).
            settings.watching.label_selectors[GROUP, PLURAL] = ours.shard_selector
        settings.peering.standalone = ours.peering_name is None
        if ours.peering_name:
            # Two replicas: the one with the higher priority acts, the other waits until the first's peering
            # record expires (lifetime), then takes over.
            settings.peering.name = ours.peering_name
            settings.peering.priority = peering_priority(ours)
            settings.peering.lifetime = ours.peering_lifetime_seconds
            settings.peering.mandatory = True

    return startup


def _manages(body: kopf.Body, **_: Any) -> bool:
    return not observing(body)


def register(registry: kopf.OperatorRegistry, settings: Settings, identity: str | None = None) -> None:
    """Attach every handler to `registry` with intervals from `settings`; `identity` is this replica's peering id
    (what `kopf.run` is given), for the resync scheduler to follow kopf's peering."""
    res = (GROUP, VERSION, PLURAL)
    kopf.on.startup(registry=registry)(configure(settings))
    # A fresh registry has no login handlers: authenticate like the kubernetes client does (in-cluster service
    # account, else KUBECONFIG), the same way kube.py does for Secrets, and never while kube.py loads it too.
    kopf.on.login(registry=registry)(kube_login)
    kopf.index(*res, registry=registry, id="credentials_refs")(index_credentials)
    kopf.on.create(*res, registry=registry, id="reconcile")(reconcile_awsintegration)
    kopf.on.update(*res, registry=registry, id="reconcile", field="spec")(reconcile_awsintegration)
    # Observe resources match no delete handler, so kopf puts no finalizer on them (and takes ours off one switched
    # to Observe): deleting one touches nothing.
    kopf.on.delete(*res, registry=registry, id="cleanup", when=_manages)(delete_awsintegration)
    kopf.on.startup(registry=registry)(start_secret_watch)
    # Every resource's body, for the one resync scheduler (no kopf timer per resource, no resume handler: a restarted
    # operator verifies its fleet spread over the resync interval instead of all at once; see resync.py). Observe
    # resources are resynced by it too: an index puts no finalizer on a resource, as a kopf timer would.
    kopf.index(*res, registry=registry, id="resources")(resync.index_resources)
    kopf.on.startup(registry=registry)(scheduler_for(settings, identity))
    # Cleanup in order: the scheduler first (it would start new passes), then the Secret watch.
    kopf.on.cleanup(registry=registry)(stop_scheduler)
    kopf.on.cleanup(registry=registry)(stop_secret_watch)
