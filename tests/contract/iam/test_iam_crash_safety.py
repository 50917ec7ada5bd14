"""Crash safety against moto: the process dies right after each write, a rerun converges without duplicates."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from iam_support import OWNER, PATH, CallLog, big_policy, desired, permission_policy

from opsramp_aws_operator.aws import AwsAccount
from opsramp_aws_operator.policies import policies_equal, trust_policy
from opsramp_aws_operator.roles import DesiredRole, delete_role, ensure_role
from opsramp_sandbox.aws import MotoHandle

READS = ("Get", "List")


class SimulatedCrash(BaseException):
    """Raised from botocore's after-call hook: the write reached IAM, then the process "died"."""


class CrashAfterWrite:
    """Raises SimulatedCrash right after the n-th successful write call of a client (0 = never)."""

    def __init__(self, client: Any) -> None:
        self.crash_after = 0
        self.writes = 0
        client.meta.events.register("after-call.iam", self._after_call)

    def arm(self, crash_after: int) -> None:
        self.crash_after = crash_after
        self.writes = 0

    def _after_call(self, model: Any, http_response: Any, **_: Any) -> None:
        if model.name.startswith(READS) or http_response.status_code >= 300:
            return
        self.writes += 1
        if self.writes == self.crash_after:
            raise SimulatedCrash(model.name)


def setup_world(moto: MotoHandle, raw_iam: Any) -> str:
    """Fresh moto with one customer policy to attach as an extra ARN."""
    moto.reset()
    doc = json.dumps(permission_policy("s3:ListAllMyBuckets"))
    return str(raw_iam.create_policy(PolicyName="extra", PolicyDocument=doc)["Policy"]["Arn"])


def full_spec(extra: str, **changes: Any) -> DesiredRole:
    # Two policy parts plus an extra ARN: six writes to create it all.
    spec: dict[str, Any] = {"permission_policy": big_policy(300), "extra_managed_policy_arns": (extra,)}
    return desired(**(spec | changes))


def assert_converged(raw_iam: Any, account: AwsAccount, want: DesiredRole, parts: int) -> None:
    """Exactly one role, exactly our parts plus the extra policy, all attached once, one version each."""
    roles = raw_iam.list_roles()["Roles"]
    assert [r["RoleName"] for r in roles] == [want.name]
    assert policies_equal(roles[0]["AssumeRolePolicyDocument"], want.trust_policy)
    names = sorted(p["PolicyName"] for p in raw_iam.list_policies(Scope="Local")["Policies"])
    assert names == sorted(["extra", *(f"{want.name}-opsramp-{i}" for i in range(1, parts + 1))])
    attached = [p["PolicyName"] for p in raw_iam.list_attached_role_policies(RoleName=want.name)["AttachedPolicies"]]
    assert sorted(attached) == names
    calls = CallLog(account.iam_client)
    assert ensure_role(account, want).changes == ()
    assert [c for c in calls.calls if not c.startswith(READS)] == []


def crash_at_every_write(
    moto: MotoHandle,
    raw_iam: Any,
    account: AwsAccount,
    prepare: Callable[[str], object],
    act: Callable[[str], object],
    check: Callable[[str], None],
) -> int:
    """For k = 1, 2, ...: fresh world, prepare, act with a crash after write k, act again, check; returns k max."""
    crash = CrashAfterWrite(account.iam_client)
    # A clean run counts the write points.
    extra = setup_world(moto, raw_iam)
    prepare(extra)
    crash.arm(0)
    act(extra)
    points = crash.writes
    assert points > 0
    for k in range(1, points + 1):
        extra = setup_world(moto, raw_iam)
        prepare(extra)
        crash.arm(k)
        with pytest.raises(SimulatedCrash):
            act(extra)
        crash.arm(0)
        act(extra)
        check(extra)
    return points


def test_crash_during_create_then_rerun_converges(moto: MotoHandle, raw_iam: Any, account: AwsAccount) -> None:
    """Role, two policy parts and three attachments: a crash after any write, then a rerun, leaves no duplicate."""
    points = crash_at_every_write(
        moto,
        raw_iam,
        account,
        prepare=lambda extra: None,
        act=lambda extra: ensure_role(account, full_spec(extra)),
        check=lambda extra: assert_converged(raw_iam, account, full_spec(extra), parts=2),
    )
    print(f"create: crashed after each of {points} writes")
    assert points == 6


def test_crash_during_update_then_rerun_converges(moto: MotoHandle, raw_iam: Any, account: AwsAccount) -> None:
    """Trust, settings, tags, policy shrinking from two parts to one: a crash after any write converges."""

    def changed(extra: str) -> DesiredRole:
        return full_spec(
            extra,
            permission_policy=permission_policy("ec2:Describe*"),
            max_session_duration=7200,
            tags={"team": "a2"},
            trust_policy=trust_policy("444455556666", "another-external-id-77"),
        )

    points = crash_at_every_write(
        moto,
        raw_iam,
        account,
        prepare=lambda extra: ensure_role(account, full_spec(extra)) and None,
        act=lambda extra: ensure_role(account, changed(extra)),
        check=lambda extra: assert_converged(raw_iam, account, changed(extra), parts=1),
    )
    print(f"update: crashed after each of {points} writes")
    assert points >= 5


def test_crash_during_delete_then_rerun_removes_everything(moto: MotoHandle, raw_iam: Any, account: AwsAccount) -> None:
    """Delete interrupted after any write and run again removes every thing we made and nothing else."""
    name = desired().name

    def prepare(extra: str) -> None:
        ensure_role(account, full_spec(extra))
        raw_iam.put_role_policy(
            RoleName=name, PolicyName="inline", PolicyDocument=json.dumps(permission_policy("s3:Get*"))
        )

    def check(extra: str) -> None:
        assert raw_iam.list_roles()["Roles"] == []
        assert [p["PolicyName"] for p in raw_iam.list_policies(Scope="Local")["Policies"]] == ["extra"]

    points = crash_at_every_write(
        moto,
        raw_iam,
        account,
        prepare=prepare,
        act=lambda extra: delete_role(account, name, PATH, OWNER),
        check=check,
    )
    print(f"delete: crashed after each of {points} writes")
    assert points >= 6
