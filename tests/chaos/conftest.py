"""Fixtures of the chaos suite: one sandbox for the run, recorders for the leak scan, and the summary table.

The e2e harness is imported from tests/e2e (not copied) so both suites drive the operator the same way.
Each scenario module starts its own operator processes (with faults, failpoints or peering); two operators
never run against the cluster at once except in the two-replica scenario.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from chaos_support import CHAOS_SIZE, OPERATORS, SECRETS, SUMMARY, EventRecorder
from e2e_harness import Kube, ObjectRecorder, Sandbox, start_sandbox, stop_sandbox
from storm import FaultStorm


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "last: runs after every other chaos test (scans what they left)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fault storm's check waits near the end (the storm runs meanwhile), the tenant scenarios after it; the
    leak scan goes last."""

    def order(item: pytest.Item) -> int:
        if item.get_closest_marker("last") is not None:
            return 3
        path = item.nodeid.split("::")[0]
        if path.endswith("test_faults.py"):
            return 1
        # Hundreds of resources against the one moto: after the storm, so neither slows the other to a timeout.
        return 2 if path.endswith("test_tenants.py") else 0

    items.sort(key=order)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    # Every chaos operator serves a list of namespaces (OPERATOR_NAMESPACES): its identity is the chart installed
    # for that (watchNamespaces set, cluster-wide RBAC), which adds the namespaces kopf follows. The scenarios make
    # their namespaces as they go, so the name here only switches the chart into that mode.
    box = start_sandbox(Path(tmp_path_factory.mktemp("chaos")), chart_values={"watchNamespaces": ["chaos"]})
    SECRETS.add(box.client_secret)
    try:
        yield box
    finally:
        for op in OPERATORS:
            op.kill()
        stop_sandbox(box)


@pytest.fixture(scope="session")
def kube(sandbox: Sandbox) -> Kube:
    return Kube(sandbox.kubeconfig)


@pytest.fixture(scope="session", autouse=True)
def recorders(kube: Kube) -> Iterator[tuple[ObjectRecorder, EventRecorder]]:
    """Every AWSIntegration version and every Event of the run, for the leak scan at the end."""
    objects, events = ObjectRecorder(kube), EventRecorder(kube)
    objects.start()
    events.start()
    try:
        yield objects, events
    finally:
        objects.stop()
        events.stop()


@pytest.fixture(scope="session", autouse=True)
def fault_storm(request: pytest.FixtureRequest, sandbox: Sandbox) -> FaultStorm | None:
    """The fault storm starts with the session (when its test is selected) and runs beside the other scenarios."""
    selected = any(item.nodeid.split("::")[0].endswith("test_faults.py") for item in request.session.items)
    return FaultStorm(sandbox).start() if selected else None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Figures per scenario (resources, time to converge, retries seen): printed, never asserted."""
    if not SUMMARY:
        return
    write = terminalreporter.write_line
    terminalreporter.section(f"chaos summary (CHAOS_SIZE={CHAOS_SIZE})")
    write(f"{'scenario':<34} {'resources':>9} {'seconds':>8}  retries seen")
    for row in SUMMARY:
        write(f"{row.scenario:<34} {row.resources:>9} {row.seconds:>8.1f}  {row.retries}")
        if row.note:
            write(f"{'':<54}{row.note}")
