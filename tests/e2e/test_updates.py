"""Spec changes end to end: a region change touches only OpsRamp; a role rename moves the integration."""

from __future__ import annotations

import pytest
from e2e_harness import (
    GROUP,
    PLURAL,
    VERSION,
    Kube,
    Operator,
    Sandbox,
    get_role,
    integration_by_id,
    integration_resource,
    integrations_named,
    opsramp_writes,
    our_policies,
    regions_of,
    role_name_of,
    role_state,
    wait_for,
    wait_passes,
    wait_ready,
)

pytestmark = pytest.mark.e2e


def test_region_change_updates_only_the_integration(
    sandbox: Sandbox, kube: Kube, operator_process: Operator, namespace: str
) -> None:
    """Changing regions makes exactly one OpsRamp update, no install, and leaves the role and policies as they were."""
    kube.create(integration_resource(namespace, "regions", sandbox.opsramp.url))
    obj = wait_ready(kube, namespace, "regions")
    role_name = role_name_of(obj)
    integration_id = obj["status"]["integrationId"]
    before_role = role_state(sandbox, role_name)
    assert before_role["policies"], "the shipped OpsRamp policy should be attached"
    before_writes = opsramp_writes(sandbox)

    kube.patch_spec(namespace, "regions", {"regions": ["us-east-1", "eu-central-1", "ap-southeast-2"]})
    wait_for(
        "OpsRamp holds the new regions",
        lambda: (
            (i := integration_by_id(sandbox, integration_id))
            and regions_of(i) == {"us-east-1", "eu-central-1", "ap-southeast-2"}
        ),
    )
    obj = wait_ready(kube, namespace, "regions")
    # At least one drift resync over the changed resource, start to end: it must not write either.
    wait_passes(sandbox, integration_id)
    after_writes = opsramp_writes(sandbox)

    assert after_writes["update"] - before_writes["update"] == 1
    assert after_writes["install"] == before_writes["install"]
    assert after_writes["uninstall"] == before_writes["uninstall"]
    assert obj["status"]["integrationId"] == integration_id
    assert len(integrations_named(sandbox, f"{namespace}/regions")) == 1
    assert role_state(sandbox, role_name) == before_role


def test_role_rename_moves_the_integration_and_deletes_the_old_role(
    sandbox: Sandbox, kube: Kube, operator_process: Operator, namespace: str
) -> None:
    """A new spec.role.name creates the new role, points the integration at it, then deletes the old role."""
    old_name, new_name = f"e2e-old-{namespace}"[:64], f"e2e-new-{namespace}"[:64]
    kube.create(integration_resource(namespace, "rename", sandbox.opsramp.url, role={"name": old_name}))
    obj = wait_ready(kube, namespace, "rename")
    integration_id = obj["status"]["integrationId"]
    assert role_name_of(obj) == old_name
    assert our_policies(sandbox, old_name)

    kube.patch_spec(namespace, "rename", {"role": {"name": new_name}})
    wait_for("the new role in status", lambda: (o := kube.get(namespace, "rename")) and role_name_of(o) == new_name)
    obj = wait_ready(kube, namespace, "rename")
    wait_for("old role deleted", lambda: get_role(sandbox, old_name) is None)

    new_role = get_role(sandbox, new_name)
    assert new_role is not None
    assert obj["status"]["roleArn"] == new_role["Arn"]
    assert obj["status"]["integrationId"] == integration_id
    integration = integration_by_id(sandbox, integration_id)
    assert integration is not None
    assert integration["credential"]["AssumeRoleARN"] == new_role["Arn"]
    assert len(integrations_named(sandbox, f"{namespace}/rename")) == 1
    assert our_policies(sandbox, old_name) == []
    assert our_policies(sandbox, new_name)


def test_resources_named_by_the_old_defaults_migrate_to_collision_free_names(
    sandbox: Sandbox, kube: Kube, operator_process: Operator, namespace: str
) -> None:
    """A resource made before the upgrade (role `opsramp-<ns>-<name>`, integration `<ns>-<name>`, both recorded in
    status) moves by the rename path: new role, integration moved and renamed, old role deleted, nothing lost."""
    old_role, old_display = f"opsramp-{namespace}-legacy", f"{namespace}-legacy"
    kube.create(
        integration_resource(namespace, "legacy", sandbox.opsramp.url, role={"name": old_role}, displayName=old_display)
    )
    obj = wait_ready(kube, namespace, "legacy")
    integration_id = obj["status"]["integrationId"]
    # The upgrade: the same resource, now under the new defaults (what an unset name means after it).
    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "legacy", {"spec": {"role": {"name": None}, "displayName": None}}
    )
    new_role = f"opsramp-{namespace}_legacy"
    wait_for("the new role in status", lambda: (o := kube.get(namespace, "legacy")) and role_name_of(o) == new_role)
    obj = wait_ready(kube, namespace, "legacy")
    wait_for("old role deleted", lambda: get_role(sandbox, old_role) is None)
    assert obj["status"]["integrationId"] == integration_id
    integration = integration_by_id(sandbox, integration_id)
    assert integration is not None
    assert integration["displayName"] == f"{namespace}/legacy"
    assert integration["credential"]["AssumeRoleARN"] == obj["status"]["roleArn"]
    assert integrations_named(sandbox, old_display) == []
    assert our_policies(sandbox, old_role) == []
