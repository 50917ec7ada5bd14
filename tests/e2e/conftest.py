"""Session fixtures for the end-to-end suite: one sandbox and one operator process for all tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_harness import CLIENT_ID, Kube, Operator, Sandbox, start_sandbox, stop_sandbox


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    box = start_sandbox(Path(tmp_path_factory.mktemp("sandbox")))
    try:
        yield box
    finally:
        stop_sandbox(box)


@pytest.fixture(scope="session")
def kube(sandbox: Sandbox) -> Kube:
    return Kube(sandbox.kubeconfig)


@pytest.fixture(scope="session")
def operator_process(sandbox: Sandbox) -> Iterator[Operator]:
    op = Operator(sandbox)
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def namespace(kube: Kube, sandbox: Sandbox, request: pytest.FixtureRequest) -> str:
    """A fresh namespace with a valid OpsRamp credentials Secret in it."""
    ns = kube.namespace(request.node.name.replace("_", "-").lower()[:40].strip("-"))
    kube.apply_secret(ns, "opsramp-api-client", {"clientId": CLIENT_ID, "clientSecret": sandbox.client_secret})
    return ns
