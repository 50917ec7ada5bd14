"""One resync scheduler for every resource, instead of a kopf timer per resource.

A kopf timer per resource meant a task, a daemon record and a copy of the body per resource, and a wake-up of each
every few seconds to ask whether a resync was due: at a thousand resources, two hundred handler invocations a second
doing nothing, a quarter of the operator's CPU and much of its memory (docs/performance.md). Here one asyncio task
looks every tick at when each resource's pass is due (`Service.due`) and runs the due ones, a few at a time, with the
latest body that kopf's watch delivered to the `resources` index (kopf's idiom for an operator-wide view of
objects). The pass is the same as the change handlers' (`handlers.run_pass`); its status patch and Events are sent
here, as kopf would send a handler's.

With peering, kopf pauses its own handlers while a replica of higher priority is alive; this task asks the same
peering object the same question before each pass (`PeeringView`), so a standby replica never resyncs either.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import kopf

from . import metrics
from .constants import GROUP, KIND, PLURAL, ROTATE_ANNOTATION, VERSION
from .errors import OperatorError, TransientError
from .kube import Resources
from .service import Service, generated_secret_name

log = logging.getLogger(__name__)

# Passes the scheduler runs at once: below kopf's worker pool (16), so change handlers always find threads, and
# enough to keep a fleet's resync reads flowing while the rate limiters pace them.
CONCURRENCY = 8


@dataclass(frozen=True)
class Snapshot:
    """What a resync pass needs of a resource, from its latest watch event (the raw spec and status dicts)."""

    namespace: str
    name: str
    uid: str
    generation: int | None
    deleting: bool
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    # The rotate-external-id annotation's value (the one annotation a pass reads).
    rotate: str | None = None

    @property
    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
            "generation": self.generation,
        }
        if self.rotate is not None:
            meta["annotations"] = {ROTATE_ANNOTATION: self.rotate}
        return meta


def secrets_of(namespace: str, name: str, spec: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The Secrets a resource reads, from its raw spec (the index must not parse the model on every event)."""
    names = {generated_secret_name(name)}
    credentials = ((spec.get("opsramp") or {}).get("credentialsSecretRef") or {}).get("name")
    external = (spec.get("externalIdSecretRef") or {}).get("name")
    target = ((spec.get("aws") or {}).get("externalIdSecretRef") or {}).get("name")
    names.update(n for n in (credentials, external, target) if isinstance(n, str) and n)
    return {(namespace, n) for n in names}


async def index_resources(*, body: kopf.Body, memo: kopf.Memo, **_: Any) -> dict[str, Snapshot]:
    """kopf indexer: every resource this operator handles, by uid (async: runs at once on every watch event)."""
    meta = body["metadata"]
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    snapshot = Snapshot(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        generation=meta.get("generation"),
        deleting=bool(meta.get("deletionTimestamp")),
        spec=spec,
        status=status,
        rotate=(meta.get("annotations") or {}).get(ROTATE_ANNOTATION),
    )
    service: Service = memo.service
    service.watched(snapshot.uid, status, snapshot.generation, secrets_of(snapshot.namespace, snapshot.name, spec))
    return {snapshot.uid: snapshot}


class PeeringView:
    """Whether this replica is the active one, by kopf's rule over its peering object: no live peer (other than
    ourselves) with a priority as high as ours. Read at most once per `ttl` seconds per object."""

    def __init__(
        self, resources: Resources, name: str, identity: str, priority: int, clusterwide: bool, ttl: float
    ) -> None:
        self.resources = resources
        self.name = name
        self.identity = identity
        self.priority = priority
        self.clusterwide = clusterwide
        self.ttl = ttl
        self._seen: dict[str | None, tuple[float, bool]] = {}

    def active(self, namespace: str) -> bool:
        key = None if self.clusterwide else namespace
        now = time.monotonic()
        cached = self._seen.get(key)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        status = self.resources.peering_status(key, self.name)
        answer = status is not None and self.decide(status, datetime.datetime.now(datetime.UTC))
        self._seen[key] = (now, answer)
        return answer

    def decide(self, status: Mapping[str, Any], now: datetime.datetime) -> bool:
        """kopf's own test (kopf/_core/engines/peering.py): paused while any other live peer's priority is >= ours;
        and not active before our own record is there (kopf has not joined the peering yet)."""
        if self.identity not in status:
            return False
        for identity, info in status.items():
            if identity == self.identity or not isinstance(info, Mapping):
                continue
            try:
                seen = datetime.datetime.fromisoformat(str(info.get("lastseen")))
                lifetime = float(info.get("lifetime", 60))
                priority = int(info.get("priority", 0))
            except (TypeError, ValueError):
                continue
            if seen.tzinfo is None:
                seen = seen.replace(tzinfo=datetime.UTC)
            alive = seen + datetime.timedelta(seconds=lifetime) > now
            if alive and priority >= self.priority:
                return False
        return True


class Scheduler:
    """The loop; started by a startup handler and cancelled by the cleanup handler."""

    def __init__(
        self,
        service: Service,
        index: kopf.Index[str, Snapshot],
        resources: Resources,
        run_pass: Callable[..., Any],
        peering: PeeringView | None = None,
    ) -> None:
        self.service = service
        self._run_pass = run_pass
        self.index = index
        self.resources = resources
        self.peering = peering
        self.tick = service.settings.resync_tick_seconds
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._waiting = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # The passes' threads, not asyncio's default executor: `asyncio.run` joins that one before it returns, so a
        # pass waiting on a slow endpoint held a stopping operator past its grace period (make chaos). `stop` leaves
        # these to finish or not; main.py exits without joining them (a pass cut short is a crash, which is safe).
        self._executor = ThreadPoolExecutor(CONCURRENCY + 2, thread_name_prefix="resync")
        self._stopped = False

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))

    def snapshot(self, uid: str) -> Snapshot | None:
        store = self.index.get(uid)
        return next(iter(store), None) if store else None

    def _current(self, uid: str) -> tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]] | None:
        """The resource as the watch shows it now, for a pass that holds its lock; None when it is being deleted or
        gone. kopf updates the index before it calls the delete handler for the same event, and the delete handler
        marks the resource deleting before it takes the lock: whichever way the two meet, a pass that gets the lock
        after cleanup began sees it here."""
        snapshot = self.snapshot(uid)
        if snapshot is None or snapshot.deleting or uid in self.service.deleting():
            return None
        return snapshot.spec, snapshot.meta, snapshot.status

    async def run(self) -> None:
        while True:
            try:
                due, unused = self.service.due(set(self.index))
                for uid in due:
                    self._spawn(self._resync(uid), f"resync {uid}")
                if unused:
                    # Our protection of Secrets no resource here reads any more (one moved to another shard, or went
                    # without our cleanup): released, or a namespace deletion would wait for it forever.
                    self._spawn(self._release(unused), "release Secrets")
                self.service.publish()
                metrics.RESYNC_DUE.set(self._waiting)
            except Exception:
                log.exception("The resync scheduler's tick failed; trying again at the next one")
            await asyncio.sleep(self.tick)

    def _spawn(self, coroutine: Any, name: str) -> None:
        if self._stopped:
            coroutine.close()
            return
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release(self, secrets: set[tuple[str, str]]) -> None:
        for namespace, name in sorted(secrets):
            try:
                await self._call(self.service.release_credentials, namespace, name)
            except OperatorError as exc:
                log.warning("Could not release Secret %s/%s (%s)", namespace, name, exc)

    async def stop(self) -> None:
        """No pass starts after this; the ones in flight are not waited for (their threads run on until main.py
        ends the process)."""
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _resync(self, uid: str) -> None:
        self._waiting += 1
        try:
            async with self._slots:
                self._waiting -= 1
                await self._resync_now(uid)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Resync of %s failed unexpectedly", uid)
            self.service.retry_in(uid, 30.0)

    async def _resync_now(self, uid: str) -> None:
        snapshot = self.snapshot(uid)  # the latest body: taken only now that a slot is free
        # Being deleted: the cleanup handler owns it (a pass now would re-create what cleanup removes). A change
        # handler running (or waiting out a backoff inside its pass) holds the lock: this tick is not needed.
        if snapshot is None or snapshot.deleting or self.service.lock_for(uid).locked():
            self.service.not_dispatched(uid)
            return
        if self.peering is not None and not await self._call(self.peering.active, snapshot.namespace):
            self.service.not_dispatched(uid)
            return
        outcome = await self._call(
            self._run_pass, self.service, snapshot.spec, snapshot.meta, snapshot.status, lambda: self._current(uid)
        )
        if outcome is None:
            # Deleted (or being deleted) between this look and the pass's lock: the cleanup handler owns it.
            self.service.not_dispatched(uid)
            return
        try:
            if outcome.status:
                await self._call(self.resources.patch_status, snapshot.namespace, snapshot.name, outcome.status)
        except OperatorError as exc:
            log.warning("Status of %s/%s not written (%s); retrying soon", snapshot.namespace, snapshot.name, exc)
            self.service.retry_in(uid, 5.0)
            return
        for event in outcome.events:
            await self._call(
                self.resources.post_event,
                snapshot.namespace,
                snapshot.name,
                uid,
                event.type,
                event.reason,
                event.message,
            )
        if isinstance(outcome.error, TransientError):
            self.service.retry_in(uid, outcome.error.retry_after)


def awsintegrations() -> Resources:
    return Resources(GROUP, VERSION, PLURAL, KIND)
