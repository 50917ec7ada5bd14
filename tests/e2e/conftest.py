"""Session fixtures for the end-to-end suite: one sandbox and one operator process for all tests."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from e2e_harness import (
    ALL_OPERATORS,
    CLIENT_ID,
    GROUP,
    SECRETS_SEEN,
    Kube,
    ObjectRecorder,
    Operator,
    Sandbox,
    start_sandbox,
    stop_sandbox,
    wait_for,
)
from kubernetes.client.exceptions import ApiException

SKIP_CLEANUP = f"{GROUP}/skip-cleanup"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "after_all: runs after every other e2e test (scans what they left)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `after_all` go last, whatever their file name."""
    items.sort(key=lambda item: item.get_closest_marker("after_all") is not None)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    box = start_sandbox(Path(tmp_path_factory.mktemp("sandbox")))
    SECRETS_SEEN.add(box.client_secret)
    try:
        yield box
    finally:
        stop_sandbox(box)


@pytest.fixture(scope="session")
def kube(sandbox: Sandbox) -> Kube:
    return Kube(sandbox.kubeconfig)


@pytest.fixture(scope="session", autouse=True)
def recorder(kube: Kube) -> Iterator[ObjectRecorder]:
    """Every version of every AWSIntegration the suite produced, for the leak scan at the end."""
    rec = ObjectRecorder(kube)
    rec.start()
    try:
        yield rec
    finally:
        rec.stop()


@pytest.fixture(scope="session")
def operator_process(sandbox: Sandbox) -> Iterator[Operator]:
    op = Operator(sandbox)
    ALL_OPERATORS.append(op)
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture(scope="module")
def exclusive_operator(sandbox: Sandbox, operator_process: Operator) -> Iterator[Operator]:
    """An operator of the module's own (to kill and restart); the session one is stopped meanwhile.

    Two operators against one cluster would both act on every resource, so never run both at once.
    """
    operator_process.stop()
    op = Operator(sandbox)
    ALL_OPERATORS.append(op)
    op.start()
    try:
        yield op
    finally:
        op.stop()
        operator_process.start()


def _gone(kube: Kube, namespace: str, name: str) -> bool:
    return kube.get(namespace, name) is None


def _delete_all(kube: Kube, namespace: str) -> None:
    """Delete the namespace's AWSIntegrations and wait for their cleanup, so no test's leftovers act later."""
    listed = kube.objects(namespace)
    names = [o["metadata"]["name"] for o in listed]
    for name in names:
        try:
            kube.delete(namespace, name)
        except ApiException as exc:
            if exc.status != 404:
                raise
    stuck = []
    for name in names:
        try:
            wait_for(f"{namespace}/{name} deleted", partial(_gone, kube, namespace, name), 40)
        except AssertionError:
            stuck.append(name)
            # Release it so it cannot disturb later tests, then report the wedged deletion.
            kube.patch_meta(namespace, name, {"annotations": {SKIP_CLEANUP: "true"}})
    assert not stuck, f"deletion wedged for {stuck} in {namespace}"


@pytest.fixture
def namespace(kube: Kube, sandbox: Sandbox, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace with a valid OpsRamp credentials Secret in it; its AWSIntegrations go at the end."""
    ns = kube.namespace(request.node.name.replace("_", "-").lower()[:40].strip("-"))
    kube.apply_secret(ns, "opsramp-api-client", {"clientId": CLIENT_ID, "clientSecret": sandbox.client_secret})
    yield ns
    _delete_all(kube, ns)
