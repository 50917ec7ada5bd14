"""Contract tests of the role reconciler against moto over HTTP: create, drift, versions, ownership, delete."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from iam_support import (
    OTHER_OWNER,
    OWNER,
    PATH,
    CallLog,
    big_policy,
    desired,
    permission_policy,
    tags_of,
)

from opsramp_aws_operator.aws import AwsAccount
from opsramp_aws_operator.constants import TAG_OWNER_NAME, TAG_OWNER_UID
from opsramp_aws_operator.errors import NeedsAttention, NotOwned, TransientError
from opsramp_aws_operator.policies import policies_equal, policy_digest, trust_policy
from opsramp_aws_operator.roles import delete_role, ensure_role, ensure_role_usable, policy_arn

ACCOUNT = "123456789012"


def our_arn(name: str, index: int = 1) -> str:
    return policy_arn("aws", ACCOUNT, PATH, name, index)


def local_policy_names(raw_iam: Any) -> set[str]:
    return {p["PolicyName"] for p in raw_iam.list_policies(Scope="Local")["Policies"]}


def attached(raw_iam: Any, role: str) -> set[str]:
    return {p["PolicyArn"] for p in raw_iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]}


def iam_document(raw_iam: Any, arn: str) -> dict[str, Any]:
    """The document of a managed policy's default version, as IAM returns it."""
    version = raw_iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    document = raw_iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
    parsed: dict[str, Any] = json.loads(unquote(document)) if isinstance(document, str) else document
    return parsed


def foreign_policy(raw_iam: Any, name: str = "someone-elses") -> str:
    doc = json.dumps(permission_policy("s3:ListAllMyBuckets"))
    return str(raw_iam.create_policy(PolicyName=name, PolicyDocument=doc)["Policy"]["Arn"])


def test_create_then_second_pass_makes_read_calls_only(account: AwsAccount, calls: CallLog, raw_iam: Any) -> None:
    """A first pass creates role, policy and attachment; a second pass over unchanged state only reads."""
    want = desired()
    first = ensure_role(account, want)
    assert first.created
    assert first.arn == f"arn:aws:iam::{ACCOUNT}:role{PATH}{want.name}"
    assert first.account_id == ACCOUNT
    assert first.policy_arns == (our_arn(want.name),)
    assert {"CreateRole", "CreatePolicy", "AttachRolePolicy"} <= set(calls.writes())
    # The digest status reports describes what IAM holds (the default version of each policy attached), and that
    # grants exactly the desired permission policy (a digest is over meaning, so parts and whole compare equal).
    held = [iam_document(raw_iam, arn) for arn in attached(raw_iam, want.name)]
    assert held and first.policy_digest == policy_digest(held)
    assert policy_digest(held) == policy_digest(want.permission_policy or {})

    role = raw_iam.get_role(RoleName=want.name)["Role"]
    assert policies_equal(role["AssumeRolePolicyDocument"], want.trust_policy)
    assert tags_of(role["Tags"])[TAG_OWNER_UID] == OWNER.uid
    assert tags_of(role["Tags"])["team"] == "a"
    policy = raw_iam.get_policy(PolicyArn=our_arn(want.name))["Policy"]
    assert tags_of(policy["Tags"])[TAG_OWNER_UID] == OWNER.uid
    assert attached(raw_iam, want.name) == {our_arn(want.name)}

    calls.clear()
    second = ensure_role(account, want)
    print(f"second pass calls: {calls.calls}")
    assert calls.calls, "the second pass must still observe"
    assert calls.writes() == []
    assert second.changes == ()
    assert not second.created
    assert second.arn == first.arn and second.policy_digest == first.policy_digest


def test_reads_per_pass_are_the_verification_minimum(account: AwsAccount, calls: CallLog) -> None:
    """Creating reads the role and our policy (ownership before any write); a pass over unchanged state after a
    completed one reads the role, its attachments and our policy with its document: nothing else."""
    want = desired()
    first = ensure_role(account, want)
    reads = [c for c in calls.calls if c not in calls.writes()]
    assert sorted(reads) == ["GetCallerIdentity", "GetPolicy", "GetRole"]
    calls.clear()
    ensure_role(account, want, previously_attached=first.policy_arns)
    assert sorted(calls.calls) == ["GetPolicy", "GetPolicyVersion", "GetRole", "ListAttachedRolePolicies"]


def test_a_shrink_that_stopped_before_recording_still_finds_its_leftovers(account: AwsAccount, raw_iam: Any) -> None:
    """Parts beyond the desired ones, detached by a pass that stopped before status recorded the new count, are
    found by probing (status still lists the old parts) and deleted."""
    want = desired(permission_policy=big_policy())
    big = ensure_role(account, want)
    assert len(big.policy_arns) >= 2
    for arn in big.policy_arns[1:]:
        raw_iam.detach_role_policy(RoleName=want.name, PolicyArn=arn)  # the interrupted pass got this far
    small = ensure_role(account, desired(), previously_attached=big.policy_arns)
    assert small.policy_arns == (our_arn(want.name),)
    assert local_policy_names(raw_iam) == {f"{want.name}-opsramp-1"}


@pytest.mark.parametrize(
    ("drift", "expected_change"),
    [
        ("trust", "updated trust policy"),
        ("tag", "tagged role"),
        ("detach", "attached"),
        ("max_session", "updated max session duration"),
        ("boundary", "removed permissions boundary"),
        ("extra_tag", "untagged role"),
    ],
)
def test_out_of_band_change_is_detected_and_restored(
    account: AwsAccount, calls: CallLog, raw_iam: Any, drift: str, expected_change: str
) -> None:
    """Someone edits the role behind our back; the next pass restores it, and the one after only reads."""
    want = desired()
    ensure_role(account, want)
    name = want.name
    if drift == "trust":
        other = trust_policy("444455556666", "some-other-external-id")
        raw_iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(other))
    elif drift == "tag":
        raw_iam.untag_role(RoleName=name, TagKeys=["team", TAG_OWNER_NAME])
    elif drift == "detach":
        raw_iam.detach_role_policy(RoleName=name, PolicyArn=our_arn(name))
    elif drift == "max_session":
        raw_iam.update_role(RoleName=name, MaxSessionDuration=43200)
    elif drift == "boundary":
        boundary = foreign_policy(raw_iam, "a-boundary")
        raw_iam.put_role_permissions_boundary(RoleName=name, PermissionsBoundary=boundary)
    elif drift == "extra_tag":
        raw_iam.tag_role(RoleName=name, Tags=[{"Key": "added-by-hand", "Value": "x"}])

    calls.clear()
    outcome = ensure_role(account, want)
    assert any(c.startswith(expected_change) for c in outcome.changes), outcome.changes
    assert calls.writes(), "restoring must write"

    role = raw_iam.get_role(RoleName=name)["Role"]
    assert policies_equal(role["AssumeRolePolicyDocument"], want.trust_policy)
    assert role["MaxSessionDuration"] == 3600
    assert "PermissionsBoundary" not in role
    assert tags_of(role["Tags"]) == {**want.tags, **OWNER.tags()}
    assert our_arn(name) in attached(raw_iam, name)

    calls.clear()
    assert ensure_role(account, want).changes == ()
    assert calls.writes() == []


def test_foreign_policy_stays_attached_while_role_lives(account: AwsAccount, calls: CallLog, raw_iam: Any) -> None:
    """A policy someone else attached to our role is neither detached nor counted as ours."""
    want = desired()
    ensure_role(account, want)
    foreign = foreign_policy(raw_iam)
    raw_iam.attach_role_policy(RoleName=want.name, PolicyArn=foreign)

    calls.clear()
    outcome = ensure_role(account, want)
    assert outcome.changes == ()
    assert calls.writes() == []
    assert attached(raw_iam, want.name) == {our_arn(want.name), foreign}
    assert foreign not in outcome.policy_arns


def test_seven_policy_changes_keep_at_most_five_versions(account: AwsAccount, raw_iam: Any) -> None:
    """Each change makes a new default version; the oldest non-default ones are pruned, never more than 5."""
    base = desired()
    ensure_role(account, base)
    latest = base
    for round_ in range(7):
        latest = dataclasses.replace(base, permission_policy=permission_policy(f"ec2:DescribeThing{round_}"))
        outcome = ensure_role(account, latest)
        assert any(c.startswith("updated policy") for c in outcome.changes)
        versions = raw_iam.list_policy_versions(PolicyArn=our_arn(base.name))["Versions"]
        assert len(versions) <= 5
    default = raw_iam.get_policy(PolicyArn=our_arn(base.name))["Policy"]["DefaultVersionId"]
    document = raw_iam.get_policy_version(PolicyArn=our_arn(base.name), VersionId=default)["PolicyVersion"]["Document"]
    assert policies_equal(document, latest.permission_policy or {})
    assert ensure_role(account, latest).changes == ()


def test_preexisting_role_without_our_tag_is_untouched(account: AwsAccount, calls: CallLog, raw_iam: Any) -> None:
    """A role under our name that we did not create: NotOwned naming it, and not one write, also on delete."""
    want = desired()
    original_trust = trust_policy("999988887777", "their-own-external-id")
    raw_iam.create_role(
        RoleName=want.name, Path=PATH, AssumeRolePolicyDocument=json.dumps(original_trust), MaxSessionDuration=7200
    )
    with pytest.raises(NotOwned) as caught:
        ensure_role(account, want)
    assert want.name in caught.value.message
    with pytest.raises(NotOwned):
        delete_role(account, want.name, PATH, OWNER)
    assert calls.writes() == []
    role = raw_iam.get_role(RoleName=want.name)["Role"]
    assert policies_equal(role["AssumeRolePolicyDocument"], original_trust)
    assert role["MaxSessionDuration"] == 7200
    assert "Tags" not in role or role["Tags"] == []
    assert local_policy_names(raw_iam) == set()


def test_role_of_another_resource_is_not_owned(account: AwsAccount, calls: CallLog, raw_iam: Any) -> None:
    """Two resources claiming one role name: the second gets NotOwned (which tells it nothing of the first: its
    namespace, name and UID are another tenant's business) and writes nothing."""
    ensure_role(account, desired())
    calls.clear()
    with pytest.raises(NotOwned) as caught:
        ensure_role(account, desired(owner=OTHER_OWNER, tags={"team": "b"}))
    first = desired().owner
    assert "belongs to another AWSIntegration" in caught.value.message
    for secret in (first.uid, f"{first.namespace}/{first.name}"):
        assert secret not in caught.value.message
    assert calls.writes() == []
    assert tags_of(raw_iam.get_role(RoleName=desired().name)["Role"]["Tags"])["team"] == "a"


def test_policy_under_our_name_not_ours_stops_before_any_write(
    account: AwsAccount, calls: CallLog, raw_iam: Any
) -> None:
    """A policy squatting on our policy name: NotOwned naming it, and the role is not even created."""
    want = desired()
    raw_iam.create_policy(
        PolicyName=f"{want.name}-opsramp-1", Path=PATH, PolicyDocument=json.dumps(permission_policy())
    )
    with pytest.raises(NotOwned) as caught:
        ensure_role(account, want)
    assert f"{want.name}-opsramp-1" in caught.value.message
    assert calls.writes() == []
    assert raw_iam.list_roles()["Roles"] == []


def test_delete_removes_ours_and_leaves_foreign_policies(account: AwsAccount, raw_iam: Any) -> None:
    """Delete detaches everything, empties the role, deletes our policies (all versions) and the role."""
    want = desired(permission_policy=big_policy())
    outcome = ensure_role(account, want)
    assert len(outcome.policy_arns) >= 2
    ensure_role(account, dataclasses.replace(want, permission_policy=big_policy(710)))  # a second version
    foreign = foreign_policy(raw_iam)
    raw_iam.attach_role_policy(RoleName=want.name, PolicyArn=foreign)
    raw_iam.put_role_policy(
        RoleName=want.name, PolicyName="inline-by-hand", PolicyDocument=json.dumps(permission_policy())
    )
    raw_iam.create_instance_profile(InstanceProfileName="profile-by-hand")
    raw_iam.add_role_to_instance_profile(InstanceProfileName="profile-by-hand", RoleName=want.name)

    assert delete_role(account, want.name, PATH, OWNER) is True

    assert raw_iam.list_roles()["Roles"] == []
    assert local_policy_names(raw_iam) == {"someone-elses"}
    assert raw_iam.get_instance_profile(InstanceProfileName="profile-by-hand")["InstanceProfile"]["Roles"] == []
    # Already gone: success, nothing to do.
    assert delete_role(account, want.name, PATH, OWNER) is False


def test_delete_cleans_policies_left_without_a_role(account: AwsAccount, raw_iam: Any) -> None:
    """A policy we created whose role never came to be (crash during create) is removed on delete."""
    want = desired()
    ensure_role(account, want)
    raw_iam.detach_role_policy(RoleName=want.name, PolicyArn=our_arn(want.name))
    raw_iam.delete_role(RoleName=want.name)
    assert delete_role(account, want.name, PATH, OWNER) is True
    assert local_policy_names(raw_iam) == set()


def test_fewer_parts_or_no_opsramp_policy_deletes_what_is_no_longer_desired(account: AwsAccount, raw_iam: Any) -> None:
    """Shrinking the split detaches and deletes surplus parts; attachOpsRampPolicy=false removes ours."""
    want = desired(permission_policy=big_policy())
    big = ensure_role(account, want)
    assert len(big.policy_arns) >= 2
    small = ensure_role(account, desired())
    assert small.policy_arns == (our_arn(want.name),)
    assert local_policy_names(raw_iam) == {f"{want.name}-opsramp-1"}
    assert attached(raw_iam, want.name) == {our_arn(want.name)}

    none = ensure_role(account, desired(permission_policy=None))
    assert none.policy_arns == ()
    assert none.policy_digest == ""
    assert local_policy_names(raw_iam) == set()
    assert attached(raw_iam, want.name) == set()


def test_extra_policies_attach_and_dropped_ones_detach(account: AwsAccount, raw_iam: Any) -> None:
    """Extra ARNs are attached as they are; one the spec drops is detached, a foreign one stays."""
    extra_a = foreign_policy(raw_iam, "extra-a")
    extra_b = foreign_policy(raw_iam, "extra-b")
    hand = foreign_policy(raw_iam, "by-hand")
    first = ensure_role(account, desired(extra_managed_policy_arns=(extra_a, extra_b)))
    assert first.policy_arns == (our_arn(desired().name), extra_a, extra_b)
    raw_iam.attach_role_policy(RoleName=desired().name, PolicyArn=hand)

    second = ensure_role(account, desired(extra_managed_policy_arns=(extra_a,)), previously_attached=first.policy_arns)
    assert f"detached {extra_b}" in second.changes
    assert attached(raw_iam, desired().name) == {our_arn(desired().name), extra_a, hand}
    assert local_policy_names(raw_iam) >= {"extra-a", "extra-b", "by-hand"}


def test_missing_extra_policy_is_needs_attention(account: AwsAccount) -> None:
    """Attaching an extra ARN that does not exist is a needs-attention error with the AWS code."""
    missing = f"arn:aws:iam::{ACCOUNT}:policy/does-not-exist"
    with pytest.raises(NeedsAttention) as caught:
        ensure_role(account, desired(extra_managed_policy_arns=(missing,)))
    assert caught.value.reason == "AwsNoSuchEntity"
    assert "does-not-exist" in caught.value.message


def test_boundary_is_put_changed_and_removed(account: AwsAccount, raw_iam: Any) -> None:
    """The permissions boundary follows the spec: set at create, changed, removed."""
    first = foreign_policy(raw_iam, "boundary-1")
    second = foreign_policy(raw_iam, "boundary-2")
    ensure_role(account, desired(permissions_boundary_arn=first))
    role = raw_iam.get_role(RoleName=desired().name)["Role"]
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == first
    assert "set permissions boundary" in ensure_role(account, desired(permissions_boundary_arn=second)).changes
    role = raw_iam.get_role(RoleName=desired().name)["Role"]
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == second
    ensure_role(account, desired())
    assert "PermissionsBoundary" not in raw_iam.get_role(RoleName=desired().name)["Role"]


def test_missing_boundary_is_needs_attention_and_creates_nothing(account: AwsAccount, raw_iam: Any) -> None:
    """A boundary that does not exist is refused by IAM (the sandbox answers as IAM does): NoSuchEntity naming it,
    no role and no policy left behind; on an existing role the boundary it has stays."""
    missing = f"arn:aws:iam::{ACCOUNT}:policy/boundary-does-not-exist"
    with pytest.raises(NeedsAttention) as caught:
        ensure_role(account, desired(permissions_boundary_arn=missing))
    assert caught.value.reason == "AwsNoSuchEntity"
    assert missing in caught.value.message
    assert [r["RoleName"] for r in raw_iam.list_roles()["Roles"] if r["RoleName"] == desired().name] == []
    assert local_policy_names(raw_iam) == set()
    kept = foreign_policy(raw_iam, "boundary-kept")
    ensure_role(account, desired(permissions_boundary_arn=kept))
    with pytest.raises(NeedsAttention) as caught:
        ensure_role(account, desired(permissions_boundary_arn=missing))
    assert caught.value.reason == "AwsNoSuchEntity"
    role = raw_iam.get_role(RoleName=desired().name)["Role"]
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == kept


def test_role_path_cannot_move(account: AwsAccount, calls: CallLog) -> None:
    """IAM cannot move a role to another path: the reconciler says so instead of writing."""
    ensure_role(account, desired())
    calls.clear()
    with pytest.raises(NeedsAttention) as caught:
        ensure_role(account, desired(path="/elsewhere/"))
    assert caught.value.reason == "RolePathChanged"
    assert calls.writes() == []


def test_new_role_is_not_usable_until_it_settles(account: AwsAccount) -> None:
    """Right after create the role is propagating (temporary, with a retry delay); after settling it is usable."""
    outcome = ensure_role(account, desired())
    assert outcome.last_changed is not None
    with pytest.raises(TransientError) as caught:
        ensure_role_usable(outcome, outcome.last_changed + timedelta(seconds=1), settle_seconds=10)
    assert caught.value.reason == "RolePropagating"
    assert 1 <= caught.value.retry_after <= 10
    ensure_role_usable(outcome, outcome.last_changed + timedelta(seconds=10), settle_seconds=10)

    # A trust change on an old role makes it young again.
    later = ensure_role(account, desired(trust_policy=trust_policy("444455556666", "another-external-id")))
    assert later.last_changed is not None and later.last_changed >= outcome.last_changed
    assert "updated trust policy" in later.changes


def test_policy_tags_follow_the_spec(account: AwsAccount, calls: CallLog, raw_iam: Any) -> None:
    """Our policies carry the user's tags and ours; edits by hand and spec changes are brought back in line."""
    want = desired()
    ensure_role(account, want)
    arn = our_arn(want.name)
    raw_iam.untag_policy(PolicyArn=arn, TagKeys=["team"])
    raw_iam.tag_policy(PolicyArn=arn, Tags=[{"Key": "by-hand", "Value": "x"}])
    outcome = ensure_role(account, desired(tags={"team": "a", "cost-center": "42"}))
    assert f"tagged policy {want.name}-opsramp-1" in outcome.changes
    assert f"untagged policy {want.name}-opsramp-1" in outcome.changes
    tags = tags_of(raw_iam.get_policy(PolicyArn=arn)["Policy"]["Tags"])
    assert tags == {"team": "a", "cost-center": "42", **OWNER.tags()}
    calls.clear()
    assert ensure_role(account, desired(tags={"team": "a", "cost-center": "42"})).changes == ()
    assert calls.writes() == []


def test_a_fresh_role_is_created_without_reads_and_a_second_pass_only_reads(
    account: AwsAccount, calls: CallLog
) -> None:
    """Nothing recorded yet (a new resource): create role, policy and attachment with no read before them; the
    next pass over it observes, and writes nothing."""
    want = desired()
    first = ensure_role(account, want, fresh=True)
    assert first.created and first.changes
    reads = [c for c in calls.calls if c not in calls.writes()]
    assert sorted(reads) == ["GetCallerIdentity"], calls.calls
    assert sorted(calls.writes()) == ["AttachRolePolicy", "CreatePolicy", "CreateRole"]
    calls.clear()
    second = ensure_role(account, want, previously_attached=first.policy_arns)
    assert calls.writes() == [] and second.changes == ()


def test_a_fresh_pass_over_a_foreign_role_changes_nothing(account: AwsAccount, raw_iam: Any) -> None:
    """Create-first meets someone else's role: IAM refuses the create, the observing path says NotOwned, and the
    role is as it was."""
    want = desired()
    raw_iam.create_role(RoleName=want.name, Path=PATH, AssumeRolePolicyDocument=json.dumps(want.trust_policy))
    with pytest.raises(NotOwned):
        ensure_role(account, want, fresh=True)
    assert (
        "Tags" not in raw_iam.get_role(RoleName=want.name)["Role"]
        or not raw_iam.get_role(RoleName=want.name)["Role"]["Tags"]
    )
    assert local_policy_names(raw_iam) == set()


def test_a_fresh_pass_over_a_foreign_policy_leaves_nothing_behind(account: AwsAccount, raw_iam: Any) -> None:
    """Create-first meets a policy squatting on our policy name: NotOwned naming it, and the role this pass had
    just created is deleted again (nothing half-created)."""
    want = desired()
    raw_iam.create_policy(
        PolicyName=f"{want.name}-opsramp-1", Path=PATH, PolicyDocument=json.dumps(permission_policy())
    )
    with pytest.raises(NotOwned) as caught:
        ensure_role(account, want, fresh=True)
    assert f"{want.name}-opsramp-1" in caught.value.message
    assert raw_iam.list_roles()["Roles"] == []
    assert local_policy_names(raw_iam) == {f"{want.name}-opsramp-1"}


def test_a_fresh_pass_after_a_crash_finishes_what_the_last_one_started(account: AwsAccount, raw_iam: Any) -> None:
    """Our role exists but the pass that made it died before its policy: the next pass (still nothing recorded)
    finds its own role through the observing path and completes it."""
    want = desired()
    ensure_role(account, want, fresh=True)
    raw_iam.detach_role_policy(RoleName=want.name, PolicyArn=our_arn(want.name))
    raw_iam.delete_policy(PolicyArn=our_arn(want.name))
    again = ensure_role(account, want, fresh=True)
    assert not again.created
    assert attached(raw_iam, want.name) == {our_arn(want.name)}
