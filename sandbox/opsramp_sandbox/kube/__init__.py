"""A Kubernetes API emulator on aiohttp: the apiserver semantics kopf and the operator rely on, in-process."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from .server import KubeServer
from .store import ApiError, ResourceType, Store

__all__ = ["ApiError", "KubeEmulator", "ResourceType", "Store", "load_crds"]


def load_crds(paths: Iterable[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition document in the given YAML files."""
    crds = []
    for path in paths:
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                crds.append(doc)
    return crds


class KubeEmulator:
    """The emulator on its own thread and event loop, listening on host:port (0 = a free port)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        crds: Iterable[dict[str, Any]] = (),
        bookmark_interval: float = 5.0,
        event_window: int = 10_000,
        field_validation_default: str = "Warn",
    ) -> None:
        self.host = host
        self.port = port
        self.url = ""
        self.store = Store(event_window=event_window, field_validation_default=field_validation_default)
        crd_type = self.store.resolve("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        for crd in crds:
            self.store.create(crd_type, None, crd)
        self.server = KubeServer(self.store, bookmark_interval=bookmark_interval)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def start(self) -> None:
        """Serve on a background thread; returns once the socket listens."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="kube-emulator", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]

    async def _listen(self) -> None:
        # Watch streams end on shutdown through restart_watches(); a short grace period is enough.
        self._runner = web.AppRunner(self.server.app(), shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.url = f"http://{self.host}:{self.port}"
        self.server.address = f"{self.host}:{self.port}"

    def stop(self) -> None:
        """Close every stream, stop listening and end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            self.store.log.close_all()
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = None

    def restart_watches(self) -> None:
        """End every open watch stream, as an apiserver restart or timeout would; clients reconnect."""
        if self._loop is not None:
            done = threading.Event()

            def close() -> None:
                self.store.log.close_all()
                done.set()

            self._loop.call_soon_threadsafe(close)
            done.wait(timeout=5)

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a store operation on the emulator's loop (the store is not thread-safe) and return its result."""
        if self._loop is None:
            return fn(*args, **kwargs)

        async def invoke() -> Any:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(invoke(), self._loop).result(timeout=10)

    def write_kubeconfig(self, path: str | os.PathLike[str]) -> None:
        """A kubeconfig for this emulator: plain HTTP, a dummy token, context `sandbox`, namespace default."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sandbox", "cluster": {"server": self.url, "insecure-skip-tls-verify": True}}],
            "users": [{"name": "sandbox", "user": {"token": "sandbox-token"}}],
            "contexts": [
                {"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox", "namespace": "default"}}
            ],
            "current-context": "sandbox",
            "preferences": {},
        }
        Path(path).write_text(yaml.safe_dump(config, sort_keys=False))

    def __enter__(self) -> KubeEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
