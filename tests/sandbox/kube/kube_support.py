"""Shared pieces of the Kubernetes emulator fidelity suite: the fixture CRD, the targets and a tiny client."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests

from opsramp_sandbox.kube import KubeEmulator

GROUP, VERSION, PLURAL, KIND = "example.com", "v1", "widgets", "Widget"
BOOKMARK_INTERVAL = 0.3
EVENT_WINDOW = 60

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": KIND, "shortNames": ["wd"]},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1},
                                    "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                                    "tags": {"type": "array", "items": {"type": "string"}},
                                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "phase": {"type": "string"},
                                    "observedGeneration": {"type": "integer"},
                                    "conditions": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {"type": {"type": "string"}, "status": {"type": "string"}},
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}


def crd_for(plural: str, kind: str, group: str = GROUP, scope: str = "Namespaced") -> dict[str, Any]:
    """A minimal permissive CRD (preserve-unknown-fields) for other kinds."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }


def widget(name: str | None = "w1", size: int = 1, **meta: Any) -> dict[str, Any]:
    """A Widget body."""
    metadata: dict[str, Any] = dict(meta)
    if name is not None:
        metadata["name"] = name
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": metadata, "spec": {"size": size}}


class Api:
    """A thin requests client speaking to whichever emulator is under test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()

    def path(self, plural: str = PLURAL, name: str | None = None, *, ns: str | None = "default",
             group: str = GROUP, version: str = VERSION, sub: str | None = None) -> str:  # fmt: skip
        """The URL of a collection or an object."""
        base = f"{self.url}/api/{version}" if group == "" else f"{self.url}/apis/{group}/{version}"
        if ns is not None:
            base += f"/namespaces/{ns}"
        base += f"/{plural}"
        if name is not None:
            base += f"/{name}"
        if sub is not None:
            base += f"/{sub}"
        return base

    def get(self, url: str, **kw: Any) -> requests.Response:
        """GET."""
        return self.http.get(url, timeout=10, **kw)

    def post(self, url: str, body: Any, **kw: Any) -> requests.Response:
        """POST a JSON body."""
        return self.http.post(url, json=body, timeout=10, **kw)

    def put(self, url: str, body: Any, **kw: Any) -> requests.Response:
        """PUT a JSON body."""
        return self.http.put(url, json=body, timeout=10, **kw)

    def patch(self, url: str, body: Any, kind: str = "merge", **kw: Any) -> requests.Response:
        """PATCH with merge, json or strategic content type."""
        content_type = {
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
            "strategic": "application/strategic-merge-patch+json",
        }[kind]
        return self.http.patch(url, data=json.dumps(body), headers={"Content-Type": content_type}, timeout=10, **kw)

    def delete(self, url: str, body: Any = None, **kw: Any) -> requests.Response:
        """DELETE, optionally with DeleteOptions."""
        return self.http.delete(url, json=body, timeout=10, **kw)

    def create_widget(self, name: str = "w1", size: int = 1, **meta: Any) -> dict[str, Any]:
        """Create a Widget in default and return it; fails the test on any error."""
        response = self.post(self.path(), widget(name, size, **meta))
        # Only test_create_answers_201 pins the code, so other tests still say something about kmock.
        assert response.status_code in (200, 201), response.text
        return dict(response.json())


class Watch:
    """A watch stream read on a thread, so tests can write while it runs."""

    def __init__(self, api: Api, url: str, params: dict[str, str]) -> None:
        self.events: list[dict[str, Any]] = []
        self.content_type = ""
        self.closed = threading.Event()
        self._response = api.http.get(url, params={"watch": "true", **params}, stream=True, timeout=(5, 5))
        self.status_code = self._response.status_code
        self.content_type = self._response.headers.get("Content-Type", "")
        # Closing a requests stream from another thread blocks until the read times out; shutting the
        # socket down ends the reader at once.
        self._socket = self._response.raw._fp.fp.raw._sock
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self._response.iter_lines():
                if line:
                    self.events.append(json.loads(line))
        except (requests.RequestException, ValueError, AttributeError):  # closed under us
            pass
        finally:
            self.closed.set()

    def wait_for(self, predicate: Any, timeout: float = 3.0) -> list[dict[str, Any]]:
        """Wait until predicate(events) is true; returns the events so far either way."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.events):
                break
            time.sleep(0.02)
        return list(self.events)

    def close(self) -> None:
        """Stop reading."""
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self.closed.wait(2)
        self._response.close()


def names(events: list[dict[str, Any]], kind: str | None = None) -> list[str]:
    """`TYPE name` of each non-bookmark event."""
    return [
        f"{e['type']} {e['object']['metadata'].get('name')}"
        for e in events
        if e["type"] != "BOOKMARK" and (kind is None or e["type"] == kind)
    ]


# ---- targets --------------------------------------------------------------------------------------------


class Target:
    """The server under test."""

    url: str
    flavour: str

    def restart_watches(self) -> None:
        """Close every open watch stream."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop serving."""
        raise NotImplementedError


class OurTarget(Target):
    """The project's emulator."""

    flavour = "ours"

    def __init__(self) -> None:
        self.emulator = KubeEmulator(
            crds=[copy.deepcopy(WIDGET_CRD)], bookmark_interval=BOOKMARK_INTERVAL, event_window=EVENT_WINDOW
        )
        self.emulator.start()
        self.url = self.emulator.url

    def restart_watches(self) -> None:
        """Close every open watch stream."""
        self.emulator.restart_watches()

    def stop(self) -> None:
        """Stop serving."""
        self.emulator.stop()


class KmockTarget(Target):
    """Stock kmock 0.8 KubernetesEmulator with the same resources declared up front (it has no CRD controller)."""

    flavour = "kmock"

    def __init__(self) -> None:
        import kmock

        self._kmock = kmock
        ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

        async def serve() -> None:
            handler = kmock.KubernetesEmulator()
            self.handler = handler
            declare = [
                ("", "v1", "namespaces", "Namespace", False, set()),
                ("", "v1", "secrets", "Secret", True, set()),
                ("", "v1", "events", "Event", True, set()),
                ("events.k8s.io", "v1", "events", "Event", True, set()),
                ("coordination.k8s.io", "v1", "leases", "Lease", True, set()),
                ("", "v1", "services", "Service", True, {"status"}),
                ("apps", "v1", "deployments", "Deployment", True, {"status"}),
                ("rbac.authorization.k8s.io", "v1", "roles", "Role", True, set()),
                ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, set()),
                ("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, set()),
                ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False, set()),
                ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, set()),
                ("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
                 {"status"}),
                (GROUP, VERSION, PLURAL, KIND, True, {"status"}),
            ]  # fmt: skip
            for group, version, plural, kind, namespaced, subresources in declare:
                handler.resources[kmock.resource(group, version, plural)] = kmock.ResourceInfo(
                    kind=kind,
                    singular=kind.lower(),
                    namespaced=namespaced,
                    verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
                    subresources=subresources,
                )
            self._stop = asyncio.Event()
            async with handler, kmock.Server(handler, host="127.0.0.1") as server:
                self.url = f"http://{server.host}:{server.port}"
                ready.set()
                await self._stop.wait()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(serve())

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)

    def restart_watches(self) -> None:
        """kmock cannot close its watch streams."""

    def stop(self) -> None:
        """Stop serving."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=5)


def flavour() -> str:
    """Which emulator the suite runs against: `ours` (default) or `kmock` (stock kmock 0.8)."""
    return os.environ.get("KUBE_EMULATOR", "ours")


def start_target() -> Target:
    """Start the emulator selected by KUBE_EMULATOR."""
    return KmockTarget() if flavour() == "kmock" else OurTarget()


def iterate(target: Target) -> Iterator[Target]:
    """Yield a target and stop it afterwards."""
    try:
        yield target
    finally:
        target.stop()
