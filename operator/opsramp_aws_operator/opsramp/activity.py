"""OpsRamp's own verdict on an integration: the role checks it records in integrations/activity.

A tenant may check the role when the install is sent (a 400 then), later (a FAILED or SUCCESS record here), or
never (nothing here). The activity API is a paged GET, from a budget of 50 a minute per tenant, so every resource
of a tenant reads one shared page of the newest records (`ActivityFeed`). A lookup further back than that page
(many accounts installed one after another push each other's records down) reads the next shared page, up to
`MAX_PAGES`, so that a fleet's lookups cost a page per hundred records, not a read each; only a record older than
all of those is asked for on its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from .wire import Scrubber, WireFormat

if TYPE_CHECKING:
    from .client import OpsRampClient


@dataclass(frozen=True)
class Verdict:
    """One role-check outcome OpsRamp recorded for an integration."""

    ok: bool
    at: float  # epoch seconds
    message: str  # OpsRamp's statusMessage, scrubbed


def record_time(record: Mapping[str, Any]) -> float | None:
    """processedTime as epoch seconds: OpsRamp's examples use milliseconds; seconds and ISO strings are read too."""
    value = record.get("processedTime")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / 1000.0 if value > 1e11 else float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def verdict_of(record: Mapping[str, Any]) -> Verdict | None:
    status = str(record.get("status", "")).upper()
    at = record_time(record)
    if at is None or status not in WireFormat.ACTIVITY_OK | WireFormat.ACTIVITY_FAILED:
        return None
    message = Scrubber([])(str(record.get("statusMessage") or ""))
    return Verdict(status in WireFormat.ACTIVITY_OK, at, message)


class ActivityFeed:
    """The newest page of one tenant's activity, shared by every lookup while it is fresh."""

    PAGE_SIZE: Final = 100
    MIN_AGE_SECONDS: Final = 2.0
    MAX_PAGES: Final = 10

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[Mapping[str, Any]] = []
        self.fetched_at: float | None = None
        self.page_size = self.PAGE_SIZE
        self.pages = 0  # pages read into `records` since `fetched_at`
        self.exhausted = False  # the last page read was short: nothing older exists

    def verdict(self, integration_id: str, since: float, client: OpsRampClient) -> Verdict | None:
        """The latest verdict on `integration_id` recorded at or after `since` (epoch seconds), or None."""
        # A quarter of the paged-GET budget at most, whatever the number of resources waiting for a verdict.
        window = client.limits.window_seconds
        max_age = max(self.MIN_AGE_SECONDS, 4.0 * window / max(1, client.limits.paged_gets_per_window))
        with self.lock:  # single flight: waiters use the page the first one fetched
            if self.fetched_at is None or time.monotonic() - self.fetched_at > max_age:
                self.records = client.activity_page(None, self.PAGE_SIZE)
                self.page_size = min(self.PAGE_SIZE, client.dialect.page_size)
                self.fetched_at = time.monotonic()
                self.pages, self.exhausted = 1, len(self.records) < self.page_size
            found = _latest(self.records, integration_id, since)
            # Further back, shared too: the next page, while the records read do not reach back past `since`.
            while found is None and not self._reaches(since) and self.pages < self.MAX_PAGES:
                self.pages += 1
                page = client.activity_page(None, self.PAGE_SIZE, page_no=self.pages)
                self.records.extend(page)
                self.exhausted = len(page) < self.page_size
                found = _latest(page, integration_id, since)
            reaches = self._reaches(since)
        if found is not None or reaches:
            return found  # or None: the records reach back past `since`, nothing newer for this integration
        return _latest(client.activity_page(integration_id, 10), integration_id, since)

    def _reaches(self, since: float) -> bool:
        """Whether the records read reach back past `since` (or there is nothing older)."""
        if self.exhausted:
            return True
        times = [t for t in (record_time(r) for r in self.records) if t is not None]
        return not times or min(times) <= since


def _latest(records: list[Mapping[str, Any]], integration_id: str, since: float) -> Verdict | None:
    best: Verdict | None = None
    for record in records:
        if str(record.get("installedintgId") or record.get("installedIntgId") or "") != integration_id:
            continue
        verdict = verdict_of(record)
        if verdict is not None and verdict.at >= since and (best is None or verdict.at >= best.at):
            best = verdict
    return best


_feeds: dict[tuple[str, str, str], ActivityFeed] = {}
_feeds_lock = threading.Lock()


def activity_feed_for(endpoint: str, tenant_id: str, client_id: str) -> ActivityFeed:
    with _feeds_lock:
        return _feeds.setdefault((endpoint, tenant_id, client_id), ActivityFeed())


def reset_activity_feeds() -> None:
    with _feeds_lock:
        _feeds.clear()
