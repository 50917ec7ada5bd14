"""Crash safety end to end: the operator SIGKILLed between external calls converges without duplicates.

This module runs its own operator process (the session one is stopped meanwhile) so it can kill and restart it.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from e2e_harness import (
    ALL_OPERATORS,
    INSTALL_ROUTE,
    Kube,
    Operator,
    Sandbox,
    get_role,
    integration_resource,
    integrations_named,
    our_policies,
    policies_owned_by,
    roles_owned_by,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.e2e


def _assert_exactly_one_of_everything(
    sandbox: Sandbox, kube: Kube, namespace: str, name: str, role_name: str
) -> dict[str, Any]:
    obj = wait_ready(kube, namespace, name, timeout=45)
    uid = obj["metadata"]["uid"]
    assert roles_owned_by(sandbox, uid) == [role_name]
    attached = {
        p["PolicyArn"] for p in sandbox.iam().list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
    }
    owned = policies_owned_by(sandbox, uid)
    assert sorted(owned) == sorted(p["Arn"] for p in our_policies(sandbox, role_name))
    assert set(owned) == attached
    (integration,) = integrations_named(sandbox, f"{namespace}/{name}")
    assert integration["id"] == obj["status"]["integrationId"]
    assert integration["credential"]["AssumeRoleARN"] == obj["status"]["roleArn"]
    return obj


def test_killed_after_role_created_before_integration_converges(
    sandbox: Sandbox, kube: Kube, exclusive_operator: Operator, namespace: str
) -> None:
    """SIGKILL once the role exists while OpsRamp fails installs: restart → one role, policy set and integration."""
    role_name = f"e2e-crash-role-{namespace}"[:64]
    installs_before = sandbox.opsramp.request_count(*INSTALL_ROUTE)
    sandbox.opsramp.set_faults(error_next=10_000, error_method="POST", error_status=503)
    try:
        kube.create(integration_resource(namespace, "crash-role", sandbox.opsramp.url, role={"name": role_name}))
        wait_for("role created", lambda: get_role(sandbox, role_name) is not None, timeout=30)
        wait_for(
            "an install refused", lambda: sandbox.opsramp.request_count(*INSTALL_ROUTE) > installs_before, timeout=30
        )
        exclusive_operator.kill()
    finally:
        sandbox.opsramp.clear_faults()
    assert integrations_named(sandbox, f"{namespace}/crash-role") == []

    exclusive_operator.start()
    _assert_exactly_one_of_everything(sandbox, kube, namespace, "crash-role", role_name)


def test_killed_after_install_applied_before_id_recorded_adopts_it(
    sandbox: Sandbox, kube: Kube, exclusive_operator: Operator, namespace: str
) -> None:
    """SIGKILL after OpsRamp applied an install whose answer was lost: restart adopts it instead of installing again."""
    role_name = f"e2e-crash-intg-{namespace}"[:64]
    sandbox.opsramp.set_faults(error_next=10_000, error_method="POST", error_status=502, error_after_apply=True)
    try:
        kube.create(integration_resource(namespace, "crash-intg", sandbox.opsramp.url, role={"name": role_name}))
        applied: list[dict[str, Any]] = wait_for(
            "install applied behind a 502", lambda: integrations_named(sandbox, f"{namespace}/crash-intg"), timeout=30
        )
        (orphan,) = applied
        exclusive_operator.kill()
    finally:
        sandbox.opsramp.clear_faults()
    obj = kube.get(namespace, "crash-intg")
    assert obj is not None and not (obj.get("status") or {}).get("integrationId")

    exclusive_operator.start()
    obj = _assert_exactly_one_of_everything(sandbox, kube, namespace, "crash-intg", role_name)
    assert obj["status"]["integrationId"] == orphan["id"]


@contextmanager
def silent_endpoint() -> Iterator[tuple[str, list[socket.socket]]]:
    """A loopback HTTP endpoint that accepts connections and never answers: a call to it waits out its client's read
    timeout (20 s for AWS). Yields its URL and the connections accepted so far."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", accepted
    finally:
        server.close()
        for conn in accepted:
            conn.close()


def test_sigterm_while_a_resync_pass_waits_on_aws_exits_promptly(
    sandbox: Sandbox, kube: Kube, exclusive_operator: Operator, namespace: str
) -> None:
    """SIGTERM while the resync scheduler's pass waits on an AWS endpoint that never answers: the process exits
    within the harness's stop deadline (a pod's grace period is 30 s), abandoning the pass as a crash would.

    Seen in the chaos suite: the scheduler's passes ran in asyncio's default executor, which `asyncio.run` joins
    before it returns, so the operator outlived its 15 s and was SIGKILLed. (The Secret watch's part in it:
    tests/contract/kube/test_secret_watch.py.)"""
    kube.create(integration_resource(namespace, "term", sandbox.opsramp.url))
    wait_ready(kube, namespace, "term", timeout=45)
    exclusive_operator.stop()
    try:
        with silent_endpoint() as (url, accepted):
            op = Operator(sandbox, extra_env={"AWS_ENDPOINT_URL": url})
            ALL_OPERATORS.append(op)
            op.start()
            assert op.process is not None
            # A restarted operator has no resume handler: the scheduler runs the resource's first pass, on AWS.
            wait_for("the resync pass calling AWS", lambda: accepted, timeout=60)
            op.process.send_signal(signal.SIGTERM)
            try:
                code = op.process.wait(15)
            except subprocess.TimeoutExpired:
                op.kill()
                pytest.fail("the operator did not exit within 15 s of SIGTERM with a resync pass in flight")
            assert code == 0, op.output()[-3000:]
    finally:
        exclusive_operator.start()
    wait_ready(kube, namespace, "term", timeout=45)
