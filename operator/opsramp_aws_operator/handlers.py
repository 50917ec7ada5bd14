"""kopf handlers: parse the resource, call the service, translate our errors into kopf's, write status.

Create, update, resume and the drift timer all run `reconcile_awsintegration`'s pass; delete runs the
cleanup behind our finalizer. Only this module knows kopf's exceptions.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from . import metrics, redaction
from .conditions import EventToPost, PassResult, build_status, changed_only
from .constants import GROUP, PLURAL, ROTATE_ANNOTATION, SECRET_WATCH_LABEL, SKIP_CLEANUP_ANNOTATION, VERSION
from .errors import NeedsAttention, OperatorError, TransientError
from .kube import SecretWatch, patch_awsintegration_status, post_event, read_awsintegration
from .kube import login as kube_login
from .models import AWSIntegrationSpec
from .persistence import PolicyDiffBaseStorage, PolicyProgressStorage, observing
from .service import ResourceRef, Service, salvage_spec
from .settings import Settings

log = logging.getLogger(__name__)

TRUE_VALUES = ("true", "yes", "1")


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


def run_pass(
    service: Service,
    body: kopf.Body,
    spec: Mapping[str, Any],
    meta: Mapping[str, Any],
    status: Mapping[str, Any],
    patch: kopf.Patch,
) -> OperatorError | None:
    """One reconcile pass: status is written whatever happens; the error (if any) is returned, not raised."""
    # Up before the pass's first call and down after it is counted: a scrape showing none in progress has every
    # call of every finished pass behind it (the benchmark measures reads per pass between such scrapes).
    with metrics.RECONCILES_IN_PROGRESS.track_inprogress():
        return _run_pass(service, body, spec, meta, status, patch)


def _run_pass(
    service: Service,
    body: kopf.Body,
    spec: Mapping[str, Any],
    meta: Mapping[str, Any],
    status: Mapping[str, Any],
    patch: kopf.Patch,
) -> OperatorError | None:
    error, changes, events = compute_pass(service, spec, meta, status)
    for key, value in changes.items():
        patch.status[key] = value
    for event in events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    return error


def compute_pass(
    service: Service, spec: Mapping[str, Any], meta: Mapping[str, Any], status: Mapping[str, Any]
) -> tuple[OperatorError | None, dict[str, Any], list[EventToPost]]:
    """One pass: (its error, the status fields to write, the Events to post), everything already redacted."""
    rotate = (meta.get("annotations") or {}).get(ROTATE_ANNOTATION)
    ref = ResourceRef(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        rotate_request=str(rotate)[:256] if rotate else None,
    )
    result = PassResult()
    started = time.monotonic()
    error: OperatorError | None = None
    try:
        desired = parse_spec(spec)
        with service.lock_for(ref.uid):
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
    # Only what differs: a pass that changes nothing sends no status write at all.
    changes = changed_only(_redacted(status_patch), status)
    redacted = [EventToPost(e.type, e.reason, redaction.redact(e.message)) for e in events]
    ready = next((c["status"] for c in status_patch["conditions"] if c["type"] == "Ready"), "Unknown")
    service.record_ready(ref.uid, ready)
    outcome = "ok" if error is None else "needs_attention" if isinstance(error, NeedsAttention) else "transient"
    metrics.RECONCILES.labels(outcome).inc()
    metrics.RECONCILE_SECONDS.labels(outcome).observe(time.monotonic() - started)
    if result.changes:
        log.info("Reconciled %s: %s", ref, "; ".join(result.changes))
    if result.suspended:
        # One line per pass (a resync interval apart): explains a spec change that seems ignored, and shows that
        # the operator still looks at the resource.
        log.info("%s is suspended (spec.suspend): nothing was changed", ref)
    return error, changes, redacted


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
    """Create / update / resume: reconcile, write status, and let kopf retry with our delay on error."""
    error = run_pass(memo.service, body, spec, meta, status, patch)
    if observing(body):
        # Switched from Manage: the credentials Secret no longer needs protecting for this resource's cleanup.
        release_unused_credentials(memo.service, spec, meta, kwargs["credentials_refs"])
    if error is not None:
        delay = retry_delay(error, retry, memo.service.settings)
        raise kopf.TemporaryError(redaction.redact(str(error)), delay=delay)


async def resync_awsintegration(
    *,
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """The drift timer: ticks often and cheaply; runs the same pass when the resync is due or a Secret changed.

    Async, so the thousands of ticks that do nothing cost no worker thread; the pass itself runs in a thread.
    It also runs while a change handler waits out its backoff, which is how a fixed Secret takes effect within
    seconds; the per-resource lock keeps the two from overlapping.
    """
    service: Service = memo.service
    uid = meta["uid"]
    if meta.get("deletionTimestamp") or service.is_gone(uid):
        # Being deleted: the cleanup handler owns it; a pass now would re-create what cleanup removes. Gone (deleted
        # with its finalizer removed by hand): kopf keeps this timer running on the last body it saw.
        return
    if not service.pass_due(uid):
        return
    if service.lock_for(uid).locked():
        return
    error = await asyncio.to_thread(run_pass, service, body, spec, meta, status, patch)
    if isinstance(error, TransientError):
        service.retry_in(uid, error.retry_after)


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


async def track_observed(*, type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Keep the service's list of Observe resources (kopf's timers would put a finalizer on them, so the operator's
    own loop, `observe_loop`, resyncs those), and note every resource that is gone."""
    meta = body.get("metadata") or {}
    watched = type != "DELETED" and observing(body) and not meta.get("deletionTimestamp")
    memo.service.track_observed(meta.get("uid", ""), meta.get("namespace", ""), meta.get("name", ""), watched)
    if type == "DELETED":
        memo.service.mark_gone(meta.get("uid", ""))


def resync_observed(service: Service, uid: str, namespace: str, name: str) -> None:
    """One resync pass of an Observe resource, outside kopf: read it, pass, write status and Events directly."""
    obj = read_awsintegration(namespace, name)
    meta = (obj or {}).get("metadata") or {}
    if obj is None or meta.get("uid") != uid or not observing(obj) or meta.get("deletionTimestamp"):
        service.track_observed(uid, namespace, name, False)
        return
    if service.lock_for(uid).locked():
        return  # a change handler's pass is running
    error, changes, events = compute_pass(service, obj.get("spec") or {}, meta, obj.get("status") or {})
    if changes:
        patch_awsintegration_status(namespace, name, changes)
    involved = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "namespace": namespace,
        "name": name,
        "uid": uid,
    }
    for event in events:
        post_event(involved, event.type, event.reason, event.message)
    if isinstance(error, TransientError):
        service.retry_in(uid, error.retry_after)


async def observe_loop(service: Service) -> None:
    while True:
        await asyncio.sleep(service.settings.resync_tick_seconds)
        for uid, namespace, name in service.observed_due():
            try:
                await asyncio.to_thread(resync_observed, service, uid, namespace, name)
            except Exception:
                log.exception("Resync of Observe resource %s/%s failed", namespace, name)


async def start_observe_loop(memo: kopf.Memo, **_: Any) -> None:
    # Async, so that it runs in the operator's event loop (a sync handler runs in a worker thread).
    memo.observe_task = asyncio.get_running_loop().create_task(observe_loop(memo.service), name="observe-resync")


def stop_observe_loop(memo: kopf.Memo, **_: Any) -> None:
    task = getattr(memo, "observe_task", None)
    if task is not None:
        task.cancel()


def jitter_for(settings: Settings) -> Any:
    def initial_delay(meta: kopf.Meta, **_: Any) -> float:
        # Spread the ticks of a fleet over one tick interval.
        fraction = (zlib.crc32(str(meta.get("uid", "")).encode()) % 1000) / 1000.0
        return settings.resync_tick_seconds * fraction + random.uniform(0, 0.5)

    return initial_delay


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


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    """Attach every handler to `registry` with intervals from `settings`."""
    res = (GROUP, VERSION, PLURAL)
    kopf.on.startup(registry=registry)(configure(settings))
    # A fresh registry has no login handlers: authenticate like the kubernetes client does (in-cluster service
    # account, else KUBECONFIG), the same way kube.py does for Secrets, and never while kube.py loads it too.
    kopf.on.login(registry=registry)(kube_login)
    kopf.index(*res, registry=registry, id="credentials_refs")(index_credentials)
    kopf.on.create(*res, registry=registry, id="reconcile")(reconcile_awsintegration)
    kopf.on.update(*res, registry=registry, id="reconcile", field="spec")(reconcile_awsintegration)
    kopf.on.resume(*res, registry=registry, id="reconcile")(reconcile_awsintegration)
    # Observe resources match no delete handler, so kopf puts no finalizer on them (and takes ours off one switched
    # to Observe): deleting one touches nothing.
    kopf.on.delete(*res, registry=registry, id="cleanup", when=_manages)(delete_awsintegration)
    kopf.on.startup(registry=registry)(start_secret_watch)
    kopf.on.cleanup(registry=registry)(stop_secret_watch)
    kopf.timer(
        *res,
        registry=registry,
        id="resync",
        interval=settings.resync_tick_seconds,
        initial_delay=jitter_for(settings),
        # A kopf timer puts a finalizer on its resource: Observe resources are resynced by `observe_loop` instead.
        when=_manages,
    )(resync_awsintegration)
    kopf.on.event(*res, registry=registry, id="observed")(track_observed)
    kopf.on.startup(registry=registry)(start_observe_loop)
    kopf.on.cleanup(registry=registry)(stop_observe_loop)
