"""Drift end to end: changes made behind the operator's back in IAM and OpsRamp are undone by the resync timer."""

from __future__ import annotations

import json

import pytest
from e2e_harness import (
    OPSRAMP_ACCOUNT,
    Kube,
    Operator,
    Sandbox,
    external_id_of,
    get_role,
    integration_by_id,
    integration_resource,
    integrations_named,
    role_name_of,
    trust_document,
    uninstall_behind_back,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.e2e


def _trusts_only_opsramp(sandbox: Sandbox, role_name: str, external_id: str) -> bool:
    role = get_role(sandbox, role_name)
    if role is None:
        return False
    statements = trust_document(role)["Statement"]
    return bool(
        len(statements) == 1
        and statements[0]["Principal"] == {"AWS": f"arn:aws:iam::{OPSRAMP_ACCOUNT}:root"}
        and statements[0]["Condition"] == {"StringEquals": {"sts:ExternalId": external_id}}
    )


def test_trust_policy_edit_and_uninstalled_integration_are_restored_by_resync(
    sandbox: Sandbox, kube: Kube, operator_process: Operator, namespace: str
) -> None:
    """A hand-edited trust policy and an integration uninstalled in OpsRamp both come back without a spec change."""
    kube.create(integration_resource(namespace, "drift", sandbox.opsramp.url, regions=["us-west-2"]))
    obj = wait_ready(kube, namespace, "drift")
    role_name = role_name_of(obj)
    external_id = external_id_of(kube, namespace, obj)
    old_integration = obj["status"]["integrationId"]
    generation = obj["metadata"]["generation"]

    # Behind the operator's back: anyone in the account may now assume the role, and OpsRamp forgot it.
    open_trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "sts:AssumeRole"}
        ],
    }
    sandbox.iam().update_assume_role_policy(RoleName=role_name, PolicyDocument=json.dumps(open_trust))
    uninstall_behind_back(sandbox, old_integration)
    assert not _trusts_only_opsramp(sandbox, role_name, external_id)
    assert integration_by_id(sandbox, old_integration) is None

    wait_for("trust policy restored", lambda: _trusts_only_opsramp(sandbox, role_name, external_id), timeout=30)
    wait_for("integration reinstalled", lambda: integrations_named(sandbox, f"{namespace}/drift"), timeout=30)
    wait_for(
        "status records the new integration",
        lambda: (o := kube.get(namespace, "drift")) and o["status"]["integrationId"] != old_integration,
        timeout=30,
    )
    obj = wait_ready(kube, namespace, "drift")

    (integration,) = integrations_named(sandbox, f"{namespace}/drift")
    assert obj["status"]["integrationId"] == integration["id"]
    assert integration["credential"]["AssumeRoleARN"] == obj["status"]["roleArn"]
    assert integration["credential"]["Regions"] == "us-west-2"
    # Nothing in the spec changed: only the timer can have done this.
    assert obj["metadata"]["generation"] == generation
