"""The benchmark's side of Kubernetes: apply AWSIntegrations over HTTP and watch when each becomes Ready or goes.

Everything here sends User-Agent `opsramp-bench/1`, so the emulator's counters keep the benchmark's own
requests apart from the operator's.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
import yaml

from .meter import BENCH_AGENT

GROUP, VERSION, PLURAL = "integrations.opsramp.com", "v1alpha1", "awsintegrations"
CREDENTIALS = "opsramp-api-client"


def kube_url(kubeconfig: str) -> str:
    config = yaml.safe_load(open(kubeconfig).read())  # noqa: SIM115 - read once, small file
    return str(config["clusters"][0]["cluster"]["server"])


def is_ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj.get("metadata", {}).get("generation"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


class Fleet:
    """AWSIntegrations in one namespace, and a watch that timestamps each one's first Ready and its deletion."""

    def __init__(self, url: str, namespace: str, env: dict[str, str]) -> None:
        self.url = url
        self.namespace = namespace
        self.env = env
        self.http = requests.Session()
        self.http.headers["User-Agent"] = BENCH_AGENT
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=16)
        self.http.mount("http://", adapter)
        self.collection = f"{url}/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
        self.ready_at: dict[str, float] = {}
        self.gone_at: dict[str, float] = {}
        self.reasons: dict[str, str] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    # --- setup ---------------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """The namespace and the OpsRamp credentials Secret every resource references."""
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}
        response = self.http.post(f"{self.url}/api/v1/namespaces", json=namespace, timeout=30)
        if response.status_code not in (201, 409):
            response.raise_for_status()
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": CREDENTIALS},
            "stringData": {
                "clientId": self.env["OPSRAMP_CLIENT_ID"],
                "clientSecret": self.env["OPSRAMP_CLIENT_SECRET"],
            },
        }
        response = self.http.post(f"{self.url}/api/v1/namespaces/{self.namespace}/secrets", json=secret, timeout=30)
        if response.status_code not in (201, 409):
            response.raise_for_status()

    def body(self, name: str) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AWSIntegration",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "regions": ["us-east-1", "eu-west-1"],
                # The sandbox's OpsRamp honours client-chosen External IDs (its default contract).
                "generateExternalId": True,
                "opsramp": {
                    "endpoint": self.env["OPSRAMP_ENDPOINT"],
                    "tenantId": self.env["OPSRAMP_TENANT_ID"],
                    "credentialsSecretRef": {"name": CREDENTIALS},
                },
            },
        }

    # --- apply and delete ----------------------------------------------------------------------------------

    def create(self, name: str) -> float:
        """Create one resource; the time just before the request was sent."""
        started = time.time()
        response = self.http.post(self.collection, json=self.body(name), timeout=60)
        response.raise_for_status()
        return started

    def create_all(self, names: Iterable[str], concurrency: int = 8) -> float:
        """Create every resource (as `kubectl apply` of a big manifest would, a few at a time); the start time."""
        started = time.time()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(self.create, names))
        return started

    def delete(self, name: str) -> None:
        response = self.http.delete(f"{self.collection}/{name}", timeout=60)
        if response.status_code not in (200, 202, 404):
            response.raise_for_status()

    def delete_all(self, names: Iterable[str], concurrency: int = 8) -> float:
        started = time.time()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(self.delete, names))
        return started

    # --- watching ------------------------------------------------------------------------------------------

    def start_watch(self) -> None:
        self._watcher = threading.Thread(target=self._watch_forever, name="bench-watch", daemon=True)
        self._watcher.start()

    def stop_watch(self) -> None:
        self._stop.set()

    def _watch_forever(self) -> None:
        while not self._stop.is_set():
            try:
                listing = self.http.get(self.collection, timeout=60).json()
                items = listing.get("items") or []
                for obj in items:
                    self._see("ADDED", obj)
                self._gone_unless_listed({str((o.get("metadata") or {}).get("name")) for o in items})
                params = {"watch": "true", "resourceVersion": listing["metadata"]["resourceVersion"]}
                params["timeoutSeconds"] = "60"
                with self.http.get(self.collection, params=params, stream=True, timeout=90) as stream:
                    for line in stream.iter_lines():
                        if self._stop.is_set():
                            return
                        if line:
                            event = json.loads(line)
                            self._see(event.get("type", ""), event.get("object") or {})
            except (requests.RequestException, ValueError, KeyError):
                time.sleep(0.2)

    def _gone_unless_listed(self, listed: set[str]) -> None:
        """After a (re)list: what was seen before and is no longer listed was deleted while no watch was open."""
        now = time.time()
        with self._changed:
            for name in self.reasons.keys() | self.ready_at.keys():
                if name not in listed:
                    self.gone_at.setdefault(name, now)
            self._changed.notify_all()

    def _see(self, kind: str, obj: dict[str, Any]) -> None:
        name = (obj.get("metadata") or {}).get("name")
        if not name:
            return
        now = time.time()
        with self._changed:
            if kind == "DELETED":
                self.gone_at.setdefault(name, now)
            elif is_ready(obj):
                self.ready_at.setdefault(name, now)
            conditions = (obj.get("status") or {}).get("conditions") or []
            ready = next((c for c in conditions if c.get("type") == "Ready"), None)
            if ready:
                self.reasons[name] = str(ready.get("reason"))
            self._changed.notify_all()

    def wait(self, names: Iterable[str], *, gone: bool = False, timeout: float) -> float | None:
        """Wait until every name is Ready (or deleted); the time the last one got there, None on timeout."""
        wanted = list(names)
        seen = self.gone_at if gone else self.ready_at
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                missing = [n for n in wanted if n not in seen]
                if not missing:
                    return max(seen[n] for n in wanted)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(min(remaining, 1.0))

    def not_ready(self, names: Iterable[str]) -> dict[str, str]:
        with self._lock:
            return {n: self.reasons.get(n, "no status") for n in names if n not in self.ready_at}
