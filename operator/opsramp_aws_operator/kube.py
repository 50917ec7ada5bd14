"""Kubernetes Secrets the operator reads and owns, through the official client: the only module importing it.

kopf talks to the API server for the custom resource itself; everything else (the OpsRamp credentials
Secret, the External ID Secret, the protection finalizer on referenced Secrets) goes through here.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
import kubernetes
import kubernetes.watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from . import failpoints, metrics
from .constants import GROUP, PLURAL, VERSION
from .errors import NeedsAttention, TransientError

log = logging.getLogger(__name__)

# Held for every load of the kubernetes client's configuration in this process, kopf's login included. The client
# writes an inline CA (`certificate-authority-data`) to a temporary file it names in a process-wide cache *before*
# writing it, so a second load in another thread meanwhile gets the name of an empty file: kopf's login then built
# its TLS context from it and the operator died at startup with "NO_CERTIFICATE_OR_CRL_FOUND".
_client_lock = threading.Lock()
_api: kubernetes.client.CoreV1Api | None = None


def core_api() -> kubernetes.client.CoreV1Api:
    """One CoreV1Api for the process: in-cluster config when running in a pod, else KUBECONFIG."""
    global _api  # noqa: PLW0603 - a process-wide client, created lazily once
    with _client_lock:
        if _api is None:
            try:
                kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
            _api = kubernetes.client.CoreV1Api()
        return _api


def configure_client(kubeconfig: str | None = None, context: str | None = None) -> None:
    """Use this kubeconfig (and context) from now on (the plan command; the operator uses `core_api`'s default)."""
    global _api  # noqa: PLW0603
    with _client_lock:
        kubernetes.config.load_kube_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
        _api = kubernetes.client.CoreV1Api()


def login(**kwargs: Any) -> Any:
    """kopf's `login_via_client` (in-cluster service account, else KUBECONFIG), never beside another config load."""
    with _client_lock:
        return kopf.login_via_client(**kwargs)


def read_awsintegration(namespace: str, name: str) -> dict[str, Any] | None:
    """The AWSIntegration as the cluster has it (None when absent): its UID and status, for plans."""
    api = kubernetes.client.CustomObjectsApi(core_api().api_client)
    try:
        found = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise _classify(exc, f"AWSIntegration {namespace}/{name}") from None
    except (Urllib3Error, OSError) as exc:
        raise _classify(exc, f"AWSIntegration {namespace}/{name}") from None
    return dict(found) if isinstance(found, dict) else None


def patch_awsintegration_status(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """Merge `status` into the AWSIntegration's status subresource (a many-account pass's account list, recorded
    before its first write in a new account; fleet.py)."""
    Resources(GROUP, VERSION, PLURAL, "AWSIntegration").patch_status(namespace, name, status)


def reset_client() -> None:
    """Forget the cached client (tests that switch clusters)."""
    global _api, _custom  # noqa: PLW0603
    with _client_lock:
        _api = None
        _custom = None


@dataclass(frozen=True)
class OwnerReference:
    api_version: str
    kind: str
    name: str
    uid: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class SecretData:
    name: str
    # Secret values: never in a repr (a log line or a traceback's locals would carry them).
    data: Mapping[str, str] = field(repr=False)
    owner_uids: tuple[str, ...]
    finalizers: tuple[str, ...]
    deleting: bool
    resource_version: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


def _classify(exc: Exception, what: str) -> Exception:
    if isinstance(exc, ApiException):
        metrics.API_ERRORS.labels("kubernetes", "secrets", str(exc.status)).inc()
        if exc.status in (401, 403):
            return NeedsAttention(
                "KubernetesForbidden",
                f"The operator may not access {what} (HTTP {exc.status}): check its RBAC.",
            )
        if exc.status == 429 or (exc.status or 0) >= 500:
            return TransientError("KubernetesUnavailable", f"Kubernetes API error {exc.status} on {what}.", 5.0)
        return NeedsAttention("KubernetesRejected", f"Kubernetes refused the request on {what} (HTTP {exc.status}).")
    metrics.API_ERRORS.labels("kubernetes", "secrets", "connection").inc()
    return TransientError("KubernetesUnavailable", f"Kubernetes API unreachable while reading {what}.", 5.0)


def _decode(secret: Any) -> SecretData:
    raw = secret.data or {}
    data = {}
    for key, value in raw.items():
        try:
            data[key] = base64.b64decode(value).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            data[key] = ""
    meta = secret.metadata
    return SecretData(
        name=meta.name,
        data=data,
        owner_uids=tuple(ref.uid for ref in meta.owner_references or ()),
        finalizers=tuple(meta.finalizers or ()),
        deleting=meta.deletion_timestamp is not None,
        resource_version=meta.resource_version or "",
        labels=dict(meta.labels or {}),
    )


class Secrets:
    """get / create / finalizer changes on Secrets; errors come out as our two kinds.

    With `cache_seconds` > 0, `get` answers from what it read before until the Secret changes: every pass reads
    the same two Secrets (credentials, External ID), and a fleet's resync would otherwise GET both per resource.
    That needs a watch on Secrets calling `changed()` for every event (the operator's `secret_changed`
    handler does); our own writes call it too. `cache_seconds` bounds how long an entry is trusted anyway.
    """

    def __init__(self, *, cache_seconds: float = 0.0) -> None:
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, SecretData | None]] = {}
        # Bumped by every change heard of, for keys ever read: a read that raced a change is not cached.
        self._versions: dict[tuple[str, str], int] = {}
        # The resourceVersion our own last write produced, per Secret: its watch event is an echo, not news.
        self._written: dict[tuple[str, str], str] = {}

    def _wrote(self, namespace: str, name: str, result: Any) -> None:
        version = getattr(getattr(result, "metadata", None), "resource_version", None)
        if version:
            with self._lock:
                self._written[(namespace, name)] = str(version)

    def is_own_write(self, namespace: str, name: str, resource_version: str | None) -> bool:
        """Whether a watch event shows the Secret exactly as our own last write left it."""
        with self._lock:
            return bool(resource_version) and self._written.get((namespace, name)) == resource_version

    def changed(self, namespace: str, name: str, *, deleted: bool = False) -> None:
        """The Secret was created, changed or deleted: the next `get` reads it from the API server."""
        key = (namespace, name)
        with self._lock:
            self._cache.pop(key, None)
            if deleted:
                # Not tracked any more (a read in flight is not cached either): nothing grows with churn.
                self._versions.pop(key, None)
                self._written.pop(key, None)
            elif key in self._versions:
                self._versions[key] += 1

    def get(self, namespace: str, name: str, *, fresh: bool = False) -> SecretData | None:
        """The Secret (None when absent); `fresh` skips the cache (read-modify-write must see the latest)."""
        if self.cache_seconds <= 0:
            return self._read(namespace, name)
        key = (namespace, name)
        with self._lock:
            version = self._versions.setdefault(key, 0)
            hit = self._cache.get(key)
        if hit is not None and not fresh and time.monotonic() - hit[0] < self.cache_seconds:
            return hit[1]
        value = self._read(namespace, name)
        with self._lock:
            if self._versions.get(key) == version:
                self._cache[key] = (time.monotonic(), value)
        return value

    def _read(self, namespace: str, name: str) -> SecretData | None:
        what = f"Secret {namespace}/{name}"
        metrics.API_CALLS.labels("kubernetes", "read_secret").inc()
        try:
            secret = core_api().read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _classify(exc, what) from None
        except (Urllib3Error, OSError) as exc:
            raise _classify(exc, what) from None
        return _decode(secret)

    def create(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        owner: OwnerReference,
        labels: Mapping[str, str],
    ) -> bool:
        """Create the Secret; False (no error) when it already exists, so a rerun after a crash is harmless."""
        what = f"Secret {namespace}/{name}"
        body: Any = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": dict(labels),
                "ownerReferences": [owner.as_dict()],
            },
            "stringData": dict(data),
        }
        metrics.API_CALLS.labels("kubernetes", "create_secret").inc()
        try:
            created = core_api().create_namespaced_secret(namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise _classify(exc, what) from None
        except (Urllib3Error, OSError) as exc:
            raise _classify(exc, what) from None
        finally:
            self.changed(namespace, name)
        self._wrote(namespace, name, created)
        failpoints.hit("kube:create_secret")
        return True

    def _set_finalizers(self, namespace: str, secret: SecretData, finalizers: list[str]) -> None:
        """Replace the finalizer list with a JSON patch guarded by the resourceVersion we read.

        Not a strategic merge patch (the client's default for a dict body): the API server merges
        metadata.finalizers as a set there, so a shorter list would remove nothing and the Secret, and with it
        its namespace, would never go away.
        """
        what = f"Secret {namespace}/{secret.name}"
        ops: list[dict[str, Any]] = []
        if secret.resource_version:
            ops.append({"op": "test", "path": "/metadata/resourceVersion", "value": secret.resource_version})
        ops.append({"op": "add", "path": "/metadata/finalizers", "value": finalizers})
        metrics.API_CALLS.labels("kubernetes", "patch_secret").inc()
        try:
            patched = core_api().patch_namespaced_secret(secret.name, namespace, ops)
        except ApiException as exc:
            if exc.status == 404:
                return
            if exc.status in (409, 422):
                # Someone changed the Secret since we read it: read again on the next pass.
                raise TransientError(
                    "KubernetesConflict", f"{what} changed while updating its finalizers.", 1.0
                ) from None
            raise _classify(exc, what) from None
        except (Urllib3Error, OSError) as exc:
            raise _classify(exc, what) from None
        finally:
            self.changed(namespace, secret.name)
        self._wrote(namespace, secret.name, patched)

    def add_label(self, namespace: str, secret: SecretData, key: str, value: str) -> None:
        """Put a label on the Secret (a merge of metadata.labels; nothing else of it changes)."""
        if secret.labels.get(key) == value or secret.deleting:
            return
        what = f"Secret {namespace}/{secret.name}"
        metrics.API_CALLS.labels("kubernetes", "patch_secret").inc()
        try:
            patched = core_api().patch_namespaced_secret(secret.name, namespace, {"metadata": {"labels": {key: value}}})
        except ApiException as exc:
            if exc.status == 404:
                return
            raise _classify(exc, what) from None
        except (Urllib3Error, OSError) as exc:
            raise _classify(exc, what) from None
        finally:
            self.changed(namespace, secret.name)
        self._wrote(namespace, secret.name, patched)

    def replace_data(self, namespace: str, secret: SecretData, data: Mapping[str, str]) -> None:
        """Replace the Secret's data (a JSON patch guarded by the resourceVersion read: a concurrent change wins)."""
        what = f"Secret {namespace}/{secret.name}"
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        ops: list[dict[str, Any]] = []
        if secret.resource_version:
            ops.append({"op": "test", "path": "/metadata/resourceVersion", "value": secret.resource_version})
        ops.append({"op": "add", "path": "/data", "value": encoded})
        metrics.API_CALLS.labels("kubernetes", "patch_secret").inc()
        try:
            patched = core_api().patch_namespaced_secret(secret.name, namespace, ops)
        except ApiException as exc:
            if exc.status in (409, 422):
                raise TransientError(
                    "KubernetesConflict", f"{what} changed while it was being replaced.", 1.0
                ) from None
            raise _classify(exc, what) from None
        except (Urllib3Error, OSError) as exc:
            raise _classify(exc, what) from None
        finally:
            self.changed(namespace, secret.name)
        self._wrote(namespace, secret.name, patched)

    # Concurrent writers (other resources sharing the Secret, namespace deletion) make the guarded patch fail
    # with a conflict now and then: read again and retry a few times before calling it a temporary error.
    _FINALIZER_ATTEMPTS = 5

    def add_finalizer(self, namespace: str, secret: SecretData, finalizer: str) -> None:
        current: SecretData | None = secret
        for attempt in range(self._FINALIZER_ATTEMPTS):
            if current is None or finalizer in current.finalizers or current.deleting:
                return
            try:
                self._set_finalizers(namespace, current, [*current.finalizers, finalizer])
                return
            except TransientError as exc:
                if exc.reason != "KubernetesConflict" or attempt == self._FINALIZER_ATTEMPTS - 1:
                    raise
            current = self.get(namespace, secret.name, fresh=True)

    def remove_finalizer(self, namespace: str, name: str, finalizer: str) -> None:
        for attempt in range(self._FINALIZER_ATTEMPTS):
            secret = self.get(namespace, name, fresh=attempt > 0)
            if secret is None or finalizer not in secret.finalizers:
                return
            try:
                self._set_finalizers(namespace, secret, [f for f in secret.finalizers if f != finalizer])
                return
            except TransientError as exc:
                if exc.reason != "KubernetesConflict" or attempt == self._FINALIZER_ATTEMPTS - 1:
                    raise


SecretEvent = Callable[[str, str, str, str], None]


class SecretWatch:
    """Lists and watches only the Secrets carrying a label, in the watched namespaces (all when none are named).

    kopf watches a resource whole (it has no server-side selectors), which for Secrets means every Secret of the
    cluster streaming through the operator. This asks the API server for the labelled ones only. Each event goes to
    `on_event(type, namespace, name, resourceVersion)`; type is ADDED, MODIFIED, DELETED, or LISTED for what a
    (re)list finds. A dropped or expired watch lists again.
    """

    def __init__(self, namespaces: tuple[str, ...], label_selector: str, on_event: SecretEvent) -> None:
        self.namespaces = namespaces
        self.label_selector = label_selector
        self.on_event = on_event
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.lists = 0

    def start(self) -> None:
        for namespace in self.namespaces or (None,):
            thread = threading.Thread(
                target=self._run, args=(namespace,), name=f"secret-watch-{namespace or 'all'}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    # How long `stop` waits for the watch threads, all of them together.
    STOP_WAIT_SECONDS = 1.0

    def stop(self) -> None:
        """Stop delivering events. A thread blocked in its watch's read (until the next event or the server's timeout)
        is not waited for: they are daemon threads, and each checks the stop flag before it delivers an event. Joining
        each for 5 s in turn kept a stopping operator that watched a few namespaces past its grace period (make
        chaos)."""
        self._stop.set()
        deadline = time.monotonic() + self.STOP_WAIT_SECONDS
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _list_fn(self, namespace: str | None) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        api = core_api()
        if namespace is None:
            return api.list_secret_for_all_namespaces, ()
        return api.list_namespaced_secret, (namespace,)

    def _run(self, namespace: str | None) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                self._list_and_watch(namespace)
                backoff = 1.0
            except Exception as exc:
                metrics.API_ERRORS.labels("kubernetes", "watch_secrets", type(exc).__name__).inc()
                log.debug("Secret watch (%s) failed: %s; listing again in %.0fs", namespace or "all", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _list_and_watch(self, namespace: str | None) -> None:
        list_fn, args = self._list_fn(namespace)
        listed = list_fn(*args, label_selector=self.label_selector)
        self.lists += 1
        for item in listed.items or ():
            if self._stop.is_set():
                return
            meta = item.metadata
            self.on_event("LISTED", meta.namespace, meta.name, meta.resource_version or "")
        version = listed.metadata.resource_version
        watcher = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
        try:
            for event in watcher.stream(  # type: ignore[no-untyped-call]
                list_fn, *args, label_selector=self.label_selector, resource_version=version, timeout_seconds=300
            ):
                if self._stop.is_set():
                    return
                kind, obj = event["type"], event["object"]
                if kind == "ERROR" or not hasattr(obj, "metadata"):
                    return  # 410 Gone and friends: list again
                meta = obj.metadata
                self.on_event(kind, meta.namespace, meta.name, meta.resource_version or "")
        except ApiException as exc:
            if exc.status == 410:
                return
            raise
        finally:
            watcher.stop()  # type: ignore[no-untyped-call]


_custom: kubernetes.client.CustomObjectsApi | None = None


def custom_api() -> kubernetes.client.CustomObjectsApi:
    """One CustomObjectsApi for the process, sharing the configuration (and connection pool) of `core_api`."""
    global _custom  # noqa: PLW0603 - a process-wide client, created lazily once
    api = core_api()
    with _client_lock:
        if _custom is None:
            _custom = kubernetes.client.CustomObjectsApi(api.api_client)
        return _custom


class Resources:
    """What the resync scheduler writes outside kopf's handlers: an AWSIntegration's status and its Events.

    kopf applies a handler's status patch and posts its Events itself; the scheduler's passes run outside any
    handler, so they send the same merge patch of `/status` and the same Event here.
    """

    def __init__(self, group: str, version: str, plural: str, kind: str) -> None:
        self.group, self.version, self.plural, self.kind = group, version, plural, kind

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge-patch the status subresource; a resource deleted meanwhile is not an error."""
        what = f"{self.kind} {namespace}/{name}"
        metrics.API_CALLS.labels("kubernetes", "patch_status").inc()
        try:
            custom_api().patch_namespaced_custom_object_status(
                self.group, self.version, namespace, self.plural, name, {"status": dict(status)}
            )
        except ApiException as exc:
            if exc.status == 404:
                return
            raise _classify(exc, what) from None
        except (Urllib3Error, OSError) as exc:
            raise _classify(exc, what) from None

    def post_event(self, namespace: str, name: str, uid: str, type_: str, reason: str, message: str) -> None:
        """One Event on the resource, as kopf posts them (same source), never raising: an Event is best effort."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body: Any = {
            "metadata": {"namespace": namespace, "generateName": "kopf-event-"},
            "involvedObject": {
                "apiVersion": f"{self.group}/{self.version}",
                "kind": self.kind,
                "name": name,
                "namespace": namespace,
                "uid": uid,
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "kopf"},
            "reportingComponent": "kopf",
            "reportingInstance": "dev",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "eventTime": None,
            "count": 1,
        }
        metrics.API_CALLS.labels("kubernetes", "create_event").inc()
        try:
            core_api().create_namespaced_event(namespace, body)
        except (ApiException, Urllib3Error, OSError) as exc:
            log.warning("Could not post the %s Event on %s %s/%s: %s", reason, self.kind, namespace, name, exc)

    def peering_status(self, namespace: str | None, name: str) -> Mapping[str, Any] | None:
        """kopf's peering object (KopfPeering in `namespace`, ClusterKopfPeering when None): its status, or None."""
        body: Any
        try:
            if namespace is None:
                body = custom_api().get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", name)
            else:
                body = custom_api().get_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings", name)
        except (ApiException, Urllib3Error, OSError):
            return None
        return dict(body.get("status") or {})
