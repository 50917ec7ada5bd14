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
from pathlib import Path
from typing import Any

import requests

from opsramp_sandbox.kube import KubeEmulator
from opsramp_sandbox.realkube import ConnectionCutter, ControlPlane

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
    """A thin requests client speaking to whichever server is under test.

    `ns` is the test's namespace: `default` on an emulator (a fresh one per test), a fresh namespace per test on
    the real control plane (one per module, so tests must not see each other's objects).
    """

    def __init__(self, url: str, *, http: requests.Session | None = None, ns: str = "default") -> None:
        self.url = url
        self.http = http or requests.Session()
        self.ns = ns

    def path(self, plural: str = PLURAL, name: str | None = None, *, ns: str | None = "",
             group: str = GROUP, version: str = VERSION, sub: str | None = None) -> str:  # fmt: skip
        """The URL of a collection or an object; `ns=""` means the test's namespace, None cluster-wide."""
        base = f"{self.url}/api/{version}" if group == "" else f"{self.url}/apis/{group}/{version}"
        if ns == "":
            ns = self.ns
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


def eventually(check: Any, timeout: float = 30.0) -> Any:
    """Poll `check()` until it is truthy (returning its value) or `timeout` passes (returning the last value).

    For what a real apiserver does in the background (establishing CRDs, discovery, namespace deletion, garbage
    collection): the emulator does it at once, a real cluster promises only that it happens.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


class Watch:
    """A watch stream read on a thread, so tests can write while it runs."""

    def __init__(self, api: Api, url: str, params: dict[str, str], *, read_timeout: float = 5) -> None:
        self.events: list[dict[str, Any]] = []
        self.content_type = ""
        self.closed = threading.Event()
        self._response = api.http.get(url, params={"watch": "true", **params}, stream=True, timeout=(5, read_timeout))
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
    namespace = "default"
    # Seconds between the periodic watch bookmarks this server sends.
    bookmark_period = BOOKMARK_INTERVAL

    def api(self) -> Api:
        """A client for this server, in the test's namespace."""
        return Api(self.url, ns=self.namespace)

    def restart_watches(self) -> None:
        """Close every open watch stream."""
        raise NotImplementedError

    def write_kubeconfig(self, path: Path) -> None:
        """A kubeconfig naming this server."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop serving."""
        raise NotImplementedError


class OurTarget(Target):
    """The project's emulator."""

    flavour = "ours"

    def __init__(self, bookmark_interval: float = BOOKMARK_INTERVAL, crds: list[dict[str, Any]] | None = None) -> None:
        self.emulator = KubeEmulator(
            crds=[copy.deepcopy(WIDGET_CRD), *(crds or [])],
            bookmark_interval=bookmark_interval,
            event_window=EVENT_WINDOW,
        )
        self.bookmark_period = bookmark_interval
        self.emulator.start()
        self.url = self.emulator.url

    def write_kubeconfig(self, path: Path) -> None:
        """A kubeconfig naming this emulator."""
        self.emulator.write_kubeconfig(path)

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


class RealTarget(Target):
    """The real control plane (etcd, kube-apiserver, kube-controller-manager) shared by a module's tests.

    Each test gets a namespace of its own. The URL goes through a ConnectionCutter, so `restart_watches()` ends
    every open stream at once, as an apiserver restart would, without the seconds a real restart takes.
    """

    flavour = "real"
    # kube-apiserver's watch cache sends each watcher a bookmark about once a minute (not configurable).
    bookmark_period = 60.0

    def __init__(self, plane: ControlPlane, cutter: ConnectionCutter, namespace: str) -> None:
        self.plane = plane
        self.cutter = cutter
        self.url = cutter.url
        self.namespace = namespace
        plane.ensure_namespace(namespace)

    def api(self) -> Api:
        """A client authenticated as the admin, in the test's namespace."""
        return Api(self.url, http=self.plane.session(), ns=self.namespace)

    def write_kubeconfig(self, path: Path) -> None:
        """An admin kubeconfig naming the ConnectionCutter in front of the apiserver."""
        self.plane.write_kubeconfig(path, server=self.url)

    def restart_watches(self) -> None:
        """Drop every connection to the apiserver (watch streams end; resourceVersions carry on)."""
        self.cutter.cut()

    def stop(self) -> None:
        """The control plane outlives the test (module scope); the namespace stays until it stops."""


def flavour() -> str:
    """Which emulator the suite runs against: `ours` (default) or `kmock` (stock kmock 0.8)."""
    return os.environ.get("KUBE_EMULATOR", "ours")


def flavours() -> list[str]:
    """The servers each fidelity test runs against: our emulator and the real control plane, or kmock alone."""
    return ["kmock"] if flavour() == "kmock" else ["emulator", "real"]


@contextlib.contextmanager
def real_control_plane(
    tmp: Path, crds: list[dict[str, Any]] | None = None
) -> Iterator[tuple[ControlPlane, ConnectionCutter]]:
    """A started control plane with the Widget CRD (or `crds`) and a ConnectionCutter in front of it."""
    plane = ControlPlane(tmp).start(crds=crds if crds is not None else [copy.deepcopy(WIDGET_CRD)])
    cutter = ConnectionCutter(plane.url)
    try:
        yield plane, cutter
    finally:
        cutter.close()
        plane.stop()


def iterate(target: Target) -> Iterator[Target]:
    """Yield a target and stop it afterwards."""
    try:
        yield target
    finally:
        target.stop()
