"""A kopf operator of a few lines used to prove kopf runs against the emulator: status, update, finalizer."""

from __future__ import annotations

from typing import Any

import kopf


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Short timeouts so reconnects happen within a test; a finalizer of our own."""
    settings.persistence.finalizer = "example.com/fixture"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="example.com")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="example.com")
    settings.watching.server_timeout = 10
    settings.watching.client_timeout = 15
    settings.posting.level = 30  # only warnings become Events: fewer writes per cycle


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Read KUBECONFIG now: the kubernetes client fixes its default path when first imported."""
    return kopf.login_with_kubeconfig(**kwargs)


@kopf.on.create("example.com", "v1", "widgets")
@kopf.on.update("example.com", "v1", "widgets", field="spec")
def reconcile(spec: Any, meta: Any, patch: kopf.Patch, **_: Any) -> None:
    """Write the size seen into status."""
    patch.status["phase"] = f"size-{spec['size']}"
    patch.status["observedGeneration"] = meta["generation"]


@kopf.on.delete("example.com", "v1", "widgets")
def cleanup(**_: Any) -> None:
    """Nothing to clean; its presence makes kopf keep a finalizer."""
