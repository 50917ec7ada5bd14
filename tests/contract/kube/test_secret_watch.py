"""The label-selected Secret watch against the Kubernetes emulator: stopping it while its streams are open."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
import requests

from opsramp_aws_operator import kube
from opsramp_aws_operator.kube import SecretWatch
from opsramp_sandbox.kube import KubeEmulator
from opsramp_sandbox.testing import running_kube

NAMESPACES = ("team-a", "team-b", "team-c", "team-d")


@pytest.fixture
def emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeEmulator]:
    with running_kube() as emu:
        config = tmp_path / "kubeconfig"
        emu.write_kubeconfig(config)
        # The client reads KUBECONFIG once, at import: point its default at the emulator's file instead.
        monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(config))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        kube.reset_client()
        yield emu
        kube.reset_client()


def watches_opened(emu: KubeEmulator) -> int:
    rows = requests.get(f"{emu.url}/_emulator/requests", timeout=10).json()["requests"]
    return sum(r["count"] for r in rows if r["verb"] == "watch" and "secrets" in r["resource"])


def test_stop_does_not_wait_for_each_open_watch_in_turn(emulator: KubeEmulator) -> None:
    """Four namespaces, each watch stream open and quiet (no event to wake its thread): `stop` returns within a few
    seconds. It joined each thread for 5 s in turn, 20 s here, and held a stopping operator past the chaos suite's
    15 s (a pod's grace period is 30 s)."""
    events: list[tuple[str, str, str, str]] = []
    watch = SecretWatch(NAMESPACES, "integrations.opsramp.com/watch=true", lambda *e: events.append(e))
    watch.start()
    deadline = time.monotonic() + 30
    while watches_opened(emulator) < len(NAMESPACES):
        assert time.monotonic() < deadline, f"{watches_opened(emulator)} of {len(NAMESPACES)} watches opened"
        time.sleep(0.1)

    stopped = threading.Event()

    def stop() -> None:
        watch.stop()
        stopped.set()

    threading.Thread(target=stop, daemon=True).start()
    # The deadline is the test's patience, well under the 20 s of the old stop, not a measured figure.
    assert stopped.wait(10), "SecretWatch.stop still waiting after 10 s"
