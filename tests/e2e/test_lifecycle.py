"""The operator end to end: apply → Ready with the role and the integration real; delete → both gone."""

from __future__ import annotations

import json
import subprocess
from urllib.parse import unquote

import pytest
import yaml
from e2e_harness import (
    OPSRAMP_ACCOUNT,
    TENANT,
    Kube,
    Operator,
    Sandbox,
    condition,
    console_secret,
    example_resource,
    wait_for,
)

from opsramp_sandbox.tools import ensure_kubectl

pytestmark = pytest.mark.e2e


def test_apply_example_reaches_ready_and_delete_cleans_up(
    sandbox: Sandbox, kube: Kube, operator_process: Operator, namespace: str
) -> None:
    """The README example (with the console's External ID) becomes a trusted role plus one OpsRamp integration that
    OpsRamp monitors through (enabled, a discovery profile); deleting it removes all of them."""
    console_secret(kube, sandbox, namespace)
    kube.create(example_resource(namespace, sandbox.opsramp.url))
    obj = wait_for(
        "Ready=True",
        lambda: (o := kube.get(namespace, "production")) and condition(o, "Ready").get("status") == "True" and o,
    )
    status = obj["status"]
    assert condition(obj, "Ready")["observedGeneration"] == obj["metadata"]["generation"]
    role_name = status["roleArn"].rsplit("/", 1)[-1]

    # IAM: the trust policy admits only OpsRamp's account, and only with the External ID kept in the Secret.
    role = sandbox.iam().get_role(RoleName=role_name)["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(unquote(trust)) if isinstance(trust, str) else trust
    external_id = (kube.core.read_namespaced_secret(status["externalIdSecretName"], namespace).data or {})["externalId"]
    import base64

    external_id = base64.b64decode(external_id).decode()
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"AWS": f"arn:aws:iam::{OPSRAMP_ACCOUNT}:root"}
    assert statement["Condition"] == {"StringEquals": {"sts:ExternalId": external_id}}
    assert len(external_id) >= 32

    # OpsRamp: exactly one integration, with that role and the regions.
    ours = [i for i in sandbox.opsramp.integrations(TENANT) if i["id"] == status["integrationId"]]
    assert len(ours) == 1
    credential = ours[0]["credential"]
    assert credential["AssumeRoleARN"] == status["roleArn"]
    assert set(credential["Regions"].split(",")) == {"us-east-1", "eu-west-1"}
    assert external_id == sandbox.opsramp.console_external_id(TENANT)
    # Monitoring: OpsRamp's own verdict, the integration enabled, and its discovery profile in place.
    monitoring = condition(obj, "Monitoring")
    assert (monitoring["status"], monitoring["reason"]) == ("True", "RoleAssumed")
    assert ours[0]["status"] == "enabled"
    (profile,) = [p for p in sandbox.opsramp.discovery_profiles(TENANT) if p["id"] == status["discoveryProfileId"]]
    assert profile["installedIntegrationId"] == status["integrationId"]
    assert profile["policy"]["actions"] == [{"action": "MANAGE DEVICE", "items": []}]

    # The External ID never shows up in status, events or the operator's output.
    assert external_id not in json.dumps(obj)
    assert external_id not in operator_process.output()
    assert sandbox.client_secret not in operator_process.output()

    kube.delete(namespace, "production")
    wait_for("object gone", lambda: kube.get(namespace, "production") is None)
    assert not [i for i in sandbox.opsramp.integrations(TENANT) if i["id"] == status["integrationId"]]
    assert not [p for p in sandbox.opsramp.discovery_profiles(TENANT) if p["id"] == status["discoveryProfileId"]]
    with pytest.raises(sandbox.iam().exceptions.NoSuchEntityException):
        sandbox.iam().get_role(RoleName=role_name)
    assert kube.secret_finalizers(namespace, "opsramp-api-client") == []


def test_kubectl_apply_then_wait_for_condition_ready(
    sandbox: Sandbox, kube: Kube, operator_process: Operator, namespace: str
) -> None:
    """What a user scripts: `kubectl apply -f` the example, then `kubectl wait --for=condition=Ready` returns 0
    once the operator reports Ready, and `kubectl delete` returns once the finalizer is done."""
    console_secret(kube, sandbox, namespace)
    doc = example_resource(namespace, sandbox.opsramp.url)
    doc["metadata"]["name"] = "waited"
    kubectl = [str(ensure_kubectl()), f"--kubeconfig={sandbox.kubeconfig}", "-n", namespace]
    applied = subprocess.run([*kubectl, "apply", "-f", "-"], input=yaml.safe_dump(doc),
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    waited = subprocess.run([*kubectl, "wait", "--for=condition=Ready", "awsintegration/waited", "--timeout=90s"],
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert waited.returncode == 0, waited.stderr
    assert "condition met" in waited.stdout
    assert condition(kube.get(namespace, "waited"), "Ready")["status"] == "True"
    deleted = subprocess.run([*kubectl, "delete", "awsintegration", "waited", "--timeout=90s"],
                             capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert deleted.returncode == 0, deleted.stderr
    assert kube.get(namespace, "waited") is None
