"""Crash safety end to end: the operator SIGKILLed between external calls converges without duplicates.

This module runs its own operator process (the session one is stopped meanwhile) so it can kill and restart it.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e_harness import (
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
