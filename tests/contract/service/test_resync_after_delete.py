"""The resync scheduler against the sandbox over HTTP: a pass that was due before a deletion never re-creates anything.

The scheduler decides a resource's pass is due from the watch's latest body, then the pass waits for the resource's
lock, which the delete handler holds while it cleans up. A pass that got the lock after cleanup, working from the body
it looked at before, re-created the IAM role, its policy and the OpsRamp integration of a deleted resource (seen in
`make chaos`). Here the deletion happens exactly in that window: right after the scheduler's look.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import boto3
import pytest
import test_recorded_integration as recorded
from test_recorded_integration import NS, World, new_resource, new_service
from test_rotation_request import until_ready

from opsramp_aws_operator import handlers, resync
from opsramp_aws_operator.handlers import parse_spec
from opsramp_aws_operator.service import ResourceRef, Service

# The recorded-integration tests' fixture: the sandbox in this process, the operator's clients pointed at it.
world = recorded.world


class DeletedAfterFirstLook(Mapping[str, list[resync.Snapshot]]):
    """kopf's `resources` index as the scheduler sees it when the resource is deleted just after the scheduler's
    first look: that look shows it as it was; `delete` then runs; every later look shows what the watch shows then
    (`after`: the body being deleted, or nothing once it is gone)."""

    def __init__(self, snapshot: resync.Snapshot, delete: Any, after: resync.Snapshot | None) -> None:
        self.snapshot = snapshot
        self.delete = delete
        self.after = after
        self.looks = 0

    def __getitem__(self, uid: str) -> list[resync.Snapshot]:
        self.looks += 1
        if self.looks == 1:
            self.delete()
            return [self.snapshot]
        if self.after is None or uid != self.snapshot.uid:
            raise KeyError(uid)
        return [self.after]

    def __iter__(self) -> Iterator[str]:
        return iter([self.snapshot.uid])

    def __len__(self) -> int:
        return 1


def role_exists(name: str) -> bool:
    iam = boto3.client("iam", region_name="us-east-1")
    try:
        iam.get_role(RoleName=name)
    except iam.exceptions.NoSuchEntityException:
        return False
    return True


def our_policies() -> list[str]:
    iam = boto3.client("iam", region_name="us-east-1")
    return [p["PolicyName"] for p in iam.list_policies(Scope="Local")["Policies"]]


@pytest.mark.parametrize("where", ["here", "elsewhere"])
def test_a_resync_due_before_the_deletion_leaves_the_deleted_resource_deleted(world: World, where: str) -> None:
    """Deleted right after the scheduler found its pass due: by this process's delete handler (the watch then shows
    it being deleted) or by another replica (the watch then shows it gone). The pass does nothing: no role, policy or
    integration comes back, and no status is written."""
    service = new_service(world)
    ref = new_resource(world, f"deleted-{where}")
    status = until_ready(service, world, ref, {})
    role_name = str(status["roleArn"]).rsplit("/", 1)[-1]
    tenant = world.sandbox.OPSRAMP_TENANT_ID
    assert role_exists(role_name) and world.sandbox.opsramp.integrations(tenant)

    def delete() -> None:
        # What delete_awsintegration does (here), or another process's cleanup (elsewhere).
        cleaner: Service = service if where == "here" else new_service(world)
        if where == "here":
            service.mark_deleting(ref.uid)
        with cleaner.lock_for(ref.uid):
            cleaner.cleanup(parse_spec(world.spec), ResourceRef(NS, ref.name, ref.uid), status)
        if where == "here":
            service.forget(ref.uid)
        assert not role_exists(role_name), "cleanup left the role: the test proves nothing"
        assert not world.sandbox.opsramp.integrations(tenant), "cleanup left the integration: the test proves nothing"

    before = resync.Snapshot(NS, ref.name, ref.uid, 1, deleting=False, spec=world.spec, status=status)
    after = dataclasses.replace(before, deleting=True) if where == "here" else None
    index = DeletedAfterFirstLook(before, delete, after)
    written: list[Mapping[str, Any]] = []

    class Resources:
        def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
            written.append(patch)

        def post_event(self, *args: Any) -> None:
            pass

    scheduler = resync.Scheduler(service, index, Resources(), handlers.run_pass)  # type: ignore[arg-type]
    asyncio.run(scheduler._resync_now(ref.uid))

    assert index.looks >= 1
    assert not role_exists(role_name), "a pass re-created the deleted resource's IAM role"
    assert not [p for p in our_policies() if p.startswith(role_name)], "a pass re-created its policy"
    assert not world.sandbox.opsramp.integrations(tenant), "a pass re-installed its OpsRamp integration"
    assert not written, written
