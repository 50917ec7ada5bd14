"""Deletion policies and suspension end to end: Delete removes everything, Retain keeps it, suspend stops writes."""

from __future__ import annotations

import pytest
from e2e_harness import (
    GROUP,
    Kube,
    Operator,
    Sandbox,
    condition,
    delete_and_wait,
    get_role,
    integration_by_id,
    integration_resource,
    opsramp_writes,
    our_policies,
    regions_of,
    role_name_of,
    role_state,
    wait_condition,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.e2e


def test_delete_of_a_spec_that_no_longer_parses_cleans_up_from_status(
    sandbox: Sandbox, kube: Kube, operator_process: Operator, namespace: str
) -> None:
    """A Ready resource whose spec stops parsing still cleans up on delete, from what status recorded, instead of
    dropping the finalizer. The spec here is one the CRD admits and the operator's model refuses (discovery tags
    with two resource types: a rule the CRD has no CEL for), as after an upgrade that tightened validation."""
    kube.create(integration_resource(namespace, "unparsable", sandbox.opsramp.url))
    obj = wait_ready(kube, namespace, "unparsable")
    role_name, integration_id = role_name_of(obj), obj["status"]["integrationId"]
    discovery = {"resourceTypes": ["EC2", "RDS"], "tags": {"team": "a"}}
    kube.patch_spec(namespace, "unparsable", {"monitoring": {"discovery": discovery}})
    wait_condition(kube, namespace, "unparsable", "Stalled", "True", "InvalidSpec")

    kube.delete(namespace, "unparsable")
    wait_for("object gone", lambda: kube.get(namespace, "unparsable") is None, timeout=45)
    assert integration_by_id(sandbox, integration_id) is None
    assert get_role(sandbox, role_name) is None
    assert our_policies(sandbox, role_name) == []


def test_delete_removes_integration_role_policies_and_finalizer(
    sandbox: Sandbox, kube: Kube, operator_process: Operator, namespace: str
) -> None:
    """Delete uninstalls the integration, deletes the role and our policies, then drops the finalizer."""
    kube.create(integration_resource(namespace, "deleted", sandbox.opsramp.url))
    obj = wait_ready(kube, namespace, "deleted")
    role_name, integration_id = role_name_of(obj), obj["status"]["integrationId"]
    assert f"{GROUP}/cleanup" in obj["metadata"]["finalizers"]
    policy_arns = [p["Arn"] for p in our_policies(sandbox, role_name)]
    assert policy_arns

    kube.delete(namespace, "deleted")
    wait_for("object gone", lambda: kube.get(namespace, "deleted") is None, timeout=45)

    assert integration_by_id(sandbox, integration_id) is None
    assert get_role(sandbox, role_name) is None
    assert our_policies(sandbox, role_name) == []
    for arn in policy_arns:
        with pytest.raises(sandbox.iam().exceptions.NoSuchEntityException):
            sandbox.iam().get_policy(PolicyArn=arn)


def test_retain_keeps_role_and_integration_after_the_object_is_gone(
    sandbox: Sandbox, kube: Kube, operator_process: Operator, namespace: str
) -> None:
    """deletionPolicy Retain: the object goes, the role, its policies and the OpsRamp integration stay as they were."""
    kube.create(integration_resource(namespace, "kept", sandbox.opsramp.url, deletionPolicy="Retain"))
    obj = wait_ready(kube, namespace, "kept")
    role_name, integration_id = role_name_of(obj), obj["status"]["integrationId"]
    before_role = role_state(sandbox, role_name)
    before_integration = integration_by_id(sandbox, integration_id)

    delete_and_wait(kube, namespace, "kept")

    assert role_state(sandbox, role_name) == before_role
    assert integration_by_id(sandbox, integration_id) == before_integration
    # The credentials Secret was never protected for a Retain resource, and nothing holds it now.
    assert kube.secret_finalizers(namespace, "opsramp-api-client") == []


def test_suspend_stops_writes_and_unsuspend_reconciles(
    sandbox: Sandbox, kube: Kube, operator_process: Operator, namespace: str
) -> None:
    """suspend: true → Ready=False Suspended and no writes even when regions change; unsuspending applies the change."""
    kube.create(integration_resource(namespace, "paused", sandbox.opsramp.url, regions=["us-east-1"]))
    obj = wait_ready(kube, namespace, "paused")
    role_name, integration_id = role_name_of(obj), obj["status"]["integrationId"]
    before_role = role_state(sandbox, role_name)

    kube.patch_spec(namespace, "paused", {"suspend": True})
    wait_condition(kube, namespace, "paused", "Ready", "False", "Suspended", current_generation=False)
    before_writes = opsramp_writes(sandbox)
    kube.patch_spec(namespace, "paused", {"regions": ["us-east-1", "us-east-2"]})
    # Every path that could write has its turn: the change handler (its pass stamps the new generation on the
    # condition), then a resync pass (each pass over a suspended resource logs a line; the next one proves it).
    wait_condition(kube, namespace, "paused", "Ready", "False", "Suspended")
    line = f"{namespace}/paused is suspended (spec.suspend): nothing was changed"
    handled = operator_process.output().count(line)
    assert handled >= 1
    wait_for("a resync pass over the suspended resource", lambda: operator_process.output().count(line) > handled)

    paused = kube.get(namespace, "paused")
    assert condition(paused, "Ready")["status"] == "False"
    assert condition(paused, "Ready")["reason"] == "Suspended"
    assert opsramp_writes(sandbox) == before_writes
    integration = integration_by_id(sandbox, integration_id)
    assert integration is not None and regions_of(integration) == {"us-east-1"}
    assert role_state(sandbox, role_name) == before_role

    kube.patch_spec(namespace, "paused", {"suspend": False})
    wait_for(
        "regions applied after unsuspend",
        lambda: (i := integration_by_id(sandbox, integration_id)) and regions_of(i) == {"us-east-1", "us-east-2"},
        timeout=30,
    )
    wait_ready(kube, namespace, "paused")


def test_skip_cleanup_annotation_releases_the_object_without_touching_aws_or_opsramp(
    sandbox: Sandbox, kube: Kube, operator_process: Operator, namespace: str
) -> None:
    """The documented escape: with skip-cleanup set, deletion completes and the role and integration stay."""
    kube.create(integration_resource(namespace, "escape", sandbox.opsramp.url))
    obj = wait_ready(kube, namespace, "escape")
    role_name, integration_id = role_name_of(obj), obj["status"]["integrationId"]
    before_role = role_state(sandbox, role_name)

    kube.patch_meta(namespace, "escape", {"annotations": {f"{GROUP}/skip-cleanup": "true"}})
    delete_and_wait(kube, namespace, "escape")

    assert role_state(sandbox, role_name) == before_role
    assert integration_by_id(sandbox, integration_id) is not None
    assert "CleanupSkipped" in [e.reason for e in kube.events(namespace, "escape") if e.type == "Warning"]
    assert kube.secret_finalizers(namespace, "opsramp-api-client") == []
