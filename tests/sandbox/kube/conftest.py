"""Fixtures for the Kubernetes emulator tests: each fidelity test runs against the project's emulator and the
real control plane (etcd + kube-apiserver + kube-controller-manager); KUBE_EMULATOR=kmock runs it against stock
kmock 0.8 alone."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from kube_support import Api, KmockTarget, OurTarget, RealTarget, Target, flavours, iterate, real_control_plane

from opsramp_sandbox.realkube import ConnectionCutter, ControlPlane


@pytest.fixture(scope="module")
def real_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, ConnectionCutter]]:
    """One real control plane per test module (a few seconds to start), with the Widget CRD."""
    with real_control_plane(tmp_path_factory.mktemp("realkube")) as plane:
        yield plane


@pytest.fixture(params=flavours())
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The server under test: a fresh emulator per test, or a fresh namespace on the module's control plane."""
    if request.param == "real":
        plane, cutter = request.getfixturevalue("real_plane")
        name = request.node.originalname.replace("_", "-")[5:40].strip("-")
        yield RealTarget(plane, cutter, f"{name}-{uuid.uuid4().hex[:5]}")
        return
    yield from iterate(KmockTarget() if request.param == "kmock" else OurTarget())


@pytest.fixture
def api(target: Target) -> Api:
    """A client for the server under test, in the test's namespace."""
    return target.api()
