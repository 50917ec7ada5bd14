"""kopf runs unchanged against the emulator and the real control plane: create → status → update → delete →
finalizer removed, repeatedly, also with every watch stream cut between steps."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from kopf.testing import KopfRunner
from kube_support import Api, OurTarget, RealTarget, Target, flavours, iterate, widget

OPERATOR = Path(__file__).with_name("fixture_operator.py")
CYCLES = 20


@pytest.fixture(params=[f for f in flavours() if f != "kmock"])
def server(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    """The emulator (bookmarks every second) or a namespace on the module's control plane; KUBECONFIG names it."""
    if request.param == "real":
        plane, cutter = request.getfixturevalue("real_plane")
        target: Target = RealTarget(
            plane, cutter, f"{request.node.originalname[5:30].replace('_', '-')}-{uuid4().hex[:5]}"
        )
    else:
        target = OurTarget(bookmark_interval=1.0)
    kubeconfig = tmp_path / "kubeconfig"
    target.write_kubeconfig(kubeconfig)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    yield from iterate(target)


def wait(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll until check() holds; fail naming what never happened (a hang shows up here)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def cycle(api: Api, name: str, between: Callable[[], None]) -> None:
    """One full life: create, status written, update, status follows, delete, finalizer removed, gone."""
    url = api.path(name=name)

    def body() -> dict[str, Any]:
        return dict(api.get(url).json())

    assert api.post(api.path(), widget(name, 1)).status_code == 201
    wait(f"{name} finalizer", lambda: "example.com/fixture" in body()["metadata"].get("finalizers", []))
    wait(f"{name} status size-1", lambda: body().get("status", {}).get("phase") == "size-1")
    between()
    api.patch(url, {"spec": {"size": 2}})
    wait(f"{name} status size-2", lambda: body().get("status", {}).get("phase") == "size-2")
    between()
    api.delete(url)
    wait(f"{name} gone", lambda: api.get(url).status_code == 404)


def run_cycles(server: Target, between: Callable[[], None]) -> None:
    api = server.api()
    args = ["run", "--standalone", f"--namespace={api.ns}", "--verbose", str(OPERATOR)]
    with KopfRunner(args, timeout=60) as runner:
        for index in range(CYCLES):
            cycle(api, f"w{index}", between)
    assert runner.exit_code == 0, runner.output[-3000:]
    assert runner.exception is None
    assert "Traceback" not in runner.output, runner.output[-3000:]


def test_kopf_lifecycle_twenty_times(server: Target) -> None:
    """20 create/status/update/delete cycles in a row complete without a hang."""
    run_cycles(server, lambda: None)


def test_kopf_lifecycle_survives_watch_restarts(server: Target) -> None:
    """The same 20 cycles with every watch stream closed by the server between steps."""
    run_cycles(server, server.restart_watches)


@pytest.mark.skipif(os.environ.get("KUBE_EMULATOR") == "kmock", reason="uses the project's emulator only")
def test_fixture_operator_file_exists() -> None:
    """The fixture operator is where the runner looks for it."""
    assert OPERATOR.is_file()
