"""Counting API calls at the emulators: IAM/STS at a counting proxy in front of moto, OpsRamp from the
emulator's request log, Kubernetes from the emulator's request counters. What is counted is what arrived over
the wire, whoever sent it (the operator or the floor), never what a client believes it sent.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import requests

from ..faultproxy import FaultProxy

STS_ACTIONS = frozenset({"GetCallerIdentity", "AssumeRole", "GetSessionToken", "AssumeRoleWithWebIdentity"})
# Clients whose Kubernetes requests are the benchmark's own (applying and watching the fleet), not the operator's.
BENCH_AGENT = "opsramp-bench/1"
KUBE_WRITE_VERBS = frozenset({"create", "update", "patch", "delete"})


def is_iam_read(action: str) -> bool:
    return action.startswith(("Get", "List"))


@dataclass
class Calls:
    """API calls in a span, by the API categories the benchmark reports."""

    iam_reads: int = 0
    iam_writes: int = 0
    sts: int = 0
    opsramp_gets: int = 0
    opsramp_writes: int = 0
    opsramp_tokens: int = 0
    opsramp_429: int = 0
    kube_writes: int = 0
    kube_reads: int = 0
    iam_by_action: dict[str, int] | None = None
    opsramp_by_route: dict[str, int] | None = None
    kube_writes_by_resource: dict[str, int] | None = None

    def per(self, n: float) -> dict[str, float]:
        """The headline counts divided by `n` (resources, or passes)."""
        keys = ("iam_reads", "iam_writes", "sts", "opsramp_gets", "opsramp_writes", "kube_writes")
        return {k: round(getattr(self, k) / n, 2) if n else 0.0 for k in keys}

    @property
    def writes(self) -> int:
        return self.iam_writes + self.opsramp_writes + self.kube_writes

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Mark:
    at: float
    iam: dict[str, int]
    opsramp_seen: int
    kube: dict[tuple[str, str, str], int]


class Meter:
    """Snapshots of the three counters; `since(mark)` is what arrived after the mark."""

    def __init__(self, proxy: FaultProxy, opsramp_admin_url: str, kube_url: str) -> None:
        self.proxy = proxy
        self.opsramp_admin_url = opsramp_admin_url
        self.kube_url = kube_url
        self.http = requests.Session()
        self.http.headers["User-Agent"] = BENCH_AGENT

    def opsramp_log(self) -> list[dict[str, Any]]:
        state = self.http.get(f"{self.opsramp_admin_url}/state", timeout=60).json()
        log: list[dict[str, Any]] = state["request_log"]
        return log

    def kube_counts(self) -> dict[tuple[str, str, str], int]:
        rows = self.http.get(f"{self.kube_url}/_emulator/requests", timeout=60).json()["requests"]
        return {(r["verb"], r["resource"], r["client"]): int(r["count"]) for r in rows}

    def mark(self) -> Mark:
        return Mark(
            at=time.time(),
            iam=dict(self.proxy.counters.by_action),
            opsramp_seen=len(self.opsramp_log()),
            kube=self.kube_counts(),
        )

    def since(self, mark: Mark) -> Calls:
        calls = Calls()
        iam_now = self.proxy.counters.by_action
        by_action = {a: n - mark.iam.get(a, 0) for a, n in iam_now.items() if n - mark.iam.get(a, 0)}
        for action, count in by_action.items():
            if action in STS_ACTIONS:
                calls.sts += count
            elif is_iam_read(action):
                calls.iam_reads += count
            else:
                calls.iam_writes += count
        calls.iam_by_action = dict(sorted(by_action.items()))

        routes: Counter[str] = Counter()
        for record in self.opsramp_log()[mark.opsramp_seen :]:
            route = f"{record['method']} {record['route']}"
            if record["status"] == 429:
                calls.opsramp_429 += 1
                routes[f"{route} (429)"] += 1
                continue
            routes[route] += 1
            if "token" in record["route"]:
                calls.opsramp_tokens += 1
            elif record["method"] == "GET":
                calls.opsramp_gets += 1
            else:
                calls.opsramp_writes += 1
        calls.opsramp_by_route = dict(sorted(routes.items()))

        writes: Counter[str] = Counter()
        for key, count in self.kube_counts().items():
            verb, resource, client = key
            delta = count - mark.kube.get(key, 0)
            if client == BENCH_AGENT or not delta:
                continue
            if verb in KUBE_WRITE_VERBS:
                calls.kube_writes += delta
                writes[f"{verb} {resource}"] += delta
            elif verb == "get":
                calls.kube_reads += delta
        calls.kube_writes_by_resource = dict(sorted(writes.items()))
        return calls

    def opsramp_writes_at(self, since: float) -> list[tuple[float, int]]:
        """(arrival time, status) of every OpsRamp write after `since` (epoch seconds)."""
        return [
            (float(r["at"]), int(r["status"]))
            for r in self.opsramp_log()
            if r["at"] >= since and r["method"] != "GET" and "token" not in r["route"]
        ]
