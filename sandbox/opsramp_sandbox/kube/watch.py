"""Watch subscriptions: an event log bounded by resourceVersion, and per-stream queues fed synchronously."""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field
from typing import Any

from .selectors import Matcher

# Pushed into a watcher's queue to end its stream (restart_watches, shutdown).
CLOSE = object()


@dataclass
class Change:
    """One committed write, as watchers see it."""

    rv: int
    storage_key: tuple[str, str]
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None


@dataclass(eq=False)
class Watcher:
    """One open watch stream: what it selects and the queue its events go to."""

    storage_key: tuple[str, str]
    namespace: str | None
    labels: Matcher
    fields: Matcher
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)

    def translate(self, change: Change) -> tuple[str, dict[str, Any]] | None:
        """The event this stream gets for a change, if any.

        Like the apiserver, an object that stops matching the selector arrives as DELETED and one that
        starts matching arrives as ADDED, so a client's cache stays consistent with its selector.
        """
        if change.storage_key != self.storage_key:
            return None
        if self.namespace is not None and change.obj.get("metadata", {}).get("namespace") != self.namespace:
            return None
        now = self._matches(change.obj)
        before = change.old is not None and self._matches(change.old)
        if change.type == "MODIFIED":
            if now and before:
                return "MODIFIED", change.obj
            if now:
                return "ADDED", change.obj
            if before:
                return "DELETED", change.obj
            return None
        return (change.type, change.obj) if now else None

    def _matches(self, obj: dict[str, Any]) -> bool:
        return self.labels(obj) and self.fields(obj)


class EventLog:
    """The last `window` changes, so a watch can resume from a resourceVersion or get 410 Gone."""

    def __init__(self, window: int) -> None:
        self._changes: collections.deque[Change] = collections.deque(maxlen=window)
        self.evicted_upto = 0  # every change with rv <= this is forgotten
        self.watchers: set[Watcher] = set()

    def record(self, change: Change) -> None:
        """Append a change and hand it to every open stream at once (no await: nothing slips between)."""
        if self._changes.maxlen is not None and len(self._changes) == self._changes.maxlen:
            self.evicted_upto = self._changes[0].rv
        self._changes.append(change)
        for watcher in self.watchers:
            event = watcher.translate(change)
            if event is not None:
                # Committed objects are never mutated in place, so sharing them is safe.
                watcher.queue.put_nowait({"type": event[0], "object": event[1]})

    def since(self, rv: int) -> list[Change] | None:
        """Changes after `rv`, or None when some of them were already forgotten (410 Gone)."""
        if rv < self.evicted_upto:
            return None
        return [c for c in self._changes if c.rv > rv]

    def close_all(self) -> None:
        """End every open stream; clients reconnect with their last resourceVersion."""
        for watcher in list(self.watchers):
            watcher.queue.put_nowait(CLOSE)
        self.watchers.clear()
