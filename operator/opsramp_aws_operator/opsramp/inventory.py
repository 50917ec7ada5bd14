"""The shared listing: one tenant's AWS integrations by name, for lookups before a create.

An integration's name is its displayName, else the name in its credential set ("<name> AWS Integration"), else,
for one this process wrote itself, the name it sent; integrations a tenant's search shows no name for are kept
under None, for the reconciler to read one by one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from opsramp_aws_operator.errors import TransientError

from .transport import OpsRampLimits
from .wire import InstalledIntegration


class Inventory:
    """One tenant's AWS integrations by display name: listed once, kept current by this process's own writes.

    A display-name lookup means listing every AWS integration of the tenant (OpsRamp has no display-name
    search key), page by page from the paged-GET budget of 50 a minute. A fleet being created would list the
    whole tenant once per resource, so lookups share one listing while it is fresh, and our own installs,
    updates and uninstalls are applied to it as they succeed. A write whose outcome is unknown (timeout,
    dropped connection, 5xx) makes the next lookup list again, so an install that went through unseen is
    adopted rather than duplicated; a new process always lists first. Fresh means younger than a few seconds,
    or for big tenants as long as keeps listings within half the paged-GET budget.
    """

    MIN_AGE_SECONDS: Final = 5.0
    MAX_AGE_SECONDS: Final = 300.0
    # How long a lookup waits for another caller's listing before giving up (temporarily).
    WAIT_SECONDS: Final = 120.0

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.listing: Listing | None = None
        self.items: dict[str, InstalledIntegration] = {}
        self.by_name: dict[str | None, dict[str, InstalledIntegration]] = {}
        self.keys: dict[str, str | None] = {}
        self.listed_at: float | None = None
        self.pages = 1

    def _add(self, integration: InstalledIntegration, name: str | None = None) -> None:
        key = name or integration.name or self.keys.get(integration.id)
        self._drop(integration.id)
        self.items[integration.id] = integration
        self.keys[integration.id] = key
        self.by_name.setdefault(key, {})[integration.id] = integration

    def _drop(self, integration_id: str) -> None:
        old = self.items.pop(integration_id, None)
        key = self.keys.pop(integration_id, None)
        if old is not None:
            named = self.by_name.get(key, {})
            named.pop(integration_id, None)
            if not named:
                self.by_name.pop(key, None)

    def max_age(self, limits: OpsRampLimits) -> float:
        budget_share = 2.0 * self.pages * limits.window_seconds / max(1, limits.paged_gets_per_window)
        return min(self.MAX_AGE_SECONDS, max(self.MIN_AGE_SECONDS, budget_share))

    def named(
        self,
        display_name: str | None,
        limits: OpsRampLimits,
        list_all: Callable[[], tuple[list[InstalledIntegration], int]],
    ) -> list[InstalledIntegration]:
        # Single flight, with the network call outside the lock: one caller lists, the others wait for that
        # listing and use it. When it fails (429s, 5xx), each waiter lists on its own, concurrently, and uses its
        # own answer without caching it: sharing is only an optimisation, and one request stream alone would
        # take every 429 of a burst where many in parallel get through.
        while True:
            with self.lock:
                now = time.monotonic()
                if self.listed_at is not None and now - self.listed_at <= self.max_age(limits):
                    return list(self.by_name.get(display_name, {}).values())
                listing = self.listing
                leader = listing is None
                if listing is None:
                    listing = self.listing = Listing()
            if not leader:
                if not listing.done.wait(self.WAIT_SECONDS):
                    raise TransientError("OpsRampUnavailable", "Listing OpsRamp's AWS integrations takes too long")
                if listing.error is not None:
                    own, _ = list_all()
                    return [i for i in own if i.name == display_name]
                continue
            try:
                found, pages = list_all()
            except TransientError as exc:
                listing.error = exc
                raise
            else:
                with self.lock:
                    self.items, self.by_name, self.keys = {}, {}, {}
                    for integration in found:
                        self._add(integration)
                    # Our writes while the pages were read may be missing from them: apply them again.
                    for integration_id, written, name in listing.writes:
                        if written is None:
                            self._drop(integration_id)
                        else:
                            self._add(written, name)
                    self.pages = max(1, pages)
                    self.listed_at = None if listing.invalidated else time.monotonic()
            finally:
                with self.lock:
                    self.listing = None
                listing.done.set()
            with self.lock:
                return list(self.by_name.get(display_name, {}).values())

    def put(self, integration: InstalledIntegration, name: str | None = None) -> None:
        """Our own write (or a fresh read) of one integration; `name` is the display name we sent, if we did."""
        with self.lock:
            if self.listing is not None:
                self.listing.writes.append((integration.id, integration, name))
            if self.listed_at is not None:
                self._add(integration, name)

    def remove(self, integration_id: str) -> None:
        with self.lock:
            if self.listing is not None:
                self.listing.writes.append((integration_id, None, None))
            self._drop(integration_id)

    def invalidate(self) -> None:
        with self.lock:
            self.listed_at = None
            if self.listing is not None:
                self.listing.invalidated = True


@dataclass
class Listing:
    """A listing in flight: its waiters, its outcome, and what happened meanwhile."""

    done: threading.Event = field(default_factory=threading.Event)
    error: TransientError | None = None
    writes: list[tuple[str, InstalledIntegration | None, str | None]] = field(default_factory=list)
    invalidated: bool = False


_inventories: dict[tuple[str, str, str], Inventory] = {}
_inventories_lock = threading.Lock()


def inventory_for(endpoint: str, tenant_id: str, client_id: str) -> Inventory:
    # Per API client, not per tenant: a lookup must prove that *these* credentials may read this tenant before
    # the reconciler writes anything, which a listing made by another client would not.
    with _inventories_lock:
        return _inventories.setdefault((endpoint, tenant_id, client_id), Inventory())


def reset_inventories() -> None:
    with _inventories_lock:
        _inventories.clear()
