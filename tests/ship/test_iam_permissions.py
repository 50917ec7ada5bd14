"""Tests of the operator's own IAM policy: generated from aws.py, committed current, and enough for a lifecycle."""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from policy_sentry.querying.actions import get_action_data
from ship_support import ROOT

from opsramp_aws_operator.aws import AwsSessions, AwsSettings
from opsramp_aws_operator.policies import trust_policy
from opsramp_aws_operator.ratelimit import RateLimiter
from opsramp_aws_operator.roles import DesiredRole, Owner, delete_role, ensure_role, policy_arn, verify_role
from opsramp_codegen import iam_permissions
from opsramp_codegen.iam_permissions import (
    RESOURCE_KIND,
    aws_operations,
    main,
    operator_policy,
    organizations_policy,
)
from opsramp_sandbox.aws import MEMBER_ROLE, MotoHandle, create_account_key, create_organization, start_moto
from opsramp_sandbox.testing import isolate_aws_env

TARGET_ACCOUNT = "222233334444"
PATH = "/opsramp/"
OWNER = Owner(uid="7a1f0000-0000-4000-8000-00000000c0de", namespace="team-a", name="prod")
EXTERNAL_ID = "opsramp-ext-0123456789abcdef0123456789"
CENTRAL_EXTERNAL_ID = "central-cluster-external-id-42"


# --- the generator and the committed files ----------------------------------------------------------------


def test_committed_policy_and_docs_are_current() -> None:
    """`--check` passes: docs/operator-iam-policy*.json and docs/security.md's section match aws.py today."""
    assert main(["--check"]) == 0, "run: .venv/bin/python -m opsramp_codegen.iam_permissions --write"


def test_check_names_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """In a copy of docs/, a hand-edited policy file makes `--check` fail naming it, and `--write` repairs it."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    policy = tmp_path / iam_permissions.POLICY_FILE
    policy.write_text(policy.read_text().replace("iam:DeleteRole", "iam:*", 1))
    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert "docs/operator-iam-policy.json" in capsys.readouterr().err
    assert main(["--write", "--root", str(tmp_path)]) == 0
    assert main(["--check", "--root", str(tmp_path)]) == 0
    assert policy.read_bytes() == (ROOT / iam_permissions.POLICY_FILE).read_bytes()


def test_actions_are_read_from_the_adapter_source() -> None:
    """A new IAM call in aws.py shows up in the operations, and one without a scope decision stops the generator."""
    source = iam_permissions.AWS_MODULE.read_text()
    ops = {op.action for op in aws_operations(source)}
    assert {"iam:CreateRole", "iam:GetPolicyVersion", "sts:GetCallerIdentity", "sts:AssumeRole"} <= ops
    added = source + '\n\ndef _extra(iam):\n    return iam._call("ListRoleTags", "x", RoleName="x")\n'
    new_ops = aws_operations(added)
    assert {op.action for op in new_ops} - ops == {"iam:ListRoleTags"}
    with pytest.raises(ValueError, match="ListRoleTags"):
        operator_policy(operations=new_ops)


def test_policy_is_scoped_to_the_path_and_partition() -> None:
    """Role and policy writes name only the given path; the partition and account go into every ARN."""
    policy = operator_policy("/team-x/opsramp/", "aws-cn", account_id="123456789012")
    resources = {s["Sid"]: s["Resource"] for s in policy["Statement"]}
    assert resources["ManageRolesOnPath"] == "arn:aws-cn:iam::123456789012:role/team-x/opsramp/*"
    assert resources["ManagePoliciesOnPath"] == "arn:aws-cn:iam::123456789012:policy/team-x/opsramp/*"
    assert resources["ReadRolesAnywhere"] == "arn:aws-cn:iam::123456789012:role/*"
    assert "AssumeTargetAccountRoles" not in resources
    for bad in ("opsramp", "/opsramp", "/*/", "/a b/"):
        with pytest.raises(ValueError, match="path"):
            operator_policy(bad)


def test_every_action_exists_and_is_scoped_to_the_resource_iam_checks() -> None:
    """policy_sentry's IAM database knows every granted action, on the resource type the generator assumed."""
    needle = {
        "role": ":role/",
        "any-role": ":role/",
        "any-policy": ":policy/",
        "target-role": ":role/",
        "policy": ":policy/",
        "instance-profile": ":instance-profile/",
        "org-parent": ":ou/",
    }
    for action, kind in RESOURCE_KIND.items():
        service, name = action.split(":")
        entries = get_action_data(service, name).get(service, [])
        assert entries, f"{action} is not a known IAM action"
        formats = {e["resource_arn_format"] for e in entries}
        if kind in ("any", "org-any"):
            assert formats == {"*"}, f"{action} has resource types {formats}"
        else:
            assert any(needle[kind] in f for f in formats), f"{action} is not authorised on a {kind}: {formats}"


# --- the lifecycle against moto, every call checked against the policy --------------------------------------


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoHandle]:
    handle = start_moto()
    yield handle
    handle.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, moto: MotoHandle) -> None:
    """Credentials and config only from the environment, never from the machine; moto emptied."""
    isolate_aws_env(monkeypatch, tmp_path)
    moto.reset()


@dataclasses.dataclass(frozen=True)
class Call:
    """One IAM/STS request as IAM authorises it: the action and the resource ARN it acts on."""

    action: str
    resource: str
    policy_arn: str | None
    # What IAM sees in the request for condition keys: aws:RequestTag/<key> and iam:PermissionsBoundary.
    request_tags: tuple[tuple[str, str], ...] = ()
    boundary: str | None = None


class Recorder:
    """Every IAM/STS request the given clients send, recorded by a `before-call` event hook."""

    def __init__(self, account_id: str, *clients: Any) -> None:
        self.account_id = account_id
        self.calls: list[Call] = []
        for client in clients:
            prefix = client.meta.service_model.endpoint_prefix
            client.meta.events.register(
                f"before-call.{client.meta.service_model.service_id.hyphenize()}", self._hook(prefix)
            )

    def _hook(self, prefix: str) -> Any:
        def record(model: Any, params: dict[str, Any], **_: Any) -> None:
            self.calls.append(Call(f"{prefix}:{model.name}", self._resource(model.name, params["body"]), None))
            body = params["body"]
            if "PolicyArn" in body and model.name in {"AttachRolePolicy", "DetachRolePolicy"}:
                self.calls[-1] = dataclasses.replace(self.calls[-1], policy_arn=body["PolicyArn"])
            tags = tuple(
                (body[key], body[key.replace(".Key", ".Value")]) for key in sorted(body) if key.endswith(".Key")
            )
            if model.name in {"CreateRole", "CreatePolicy"}:
                self.calls[-1] = dataclasses.replace(self.calls[-1], request_tags=tags)
            if model.name in {"CreateRole", "PutRolePermissionsBoundary"}:
                self.calls[-1] = dataclasses.replace(self.calls[-1], boundary=body.get("PermissionsBoundary"))

        return record

    def _resource(self, operation: str, body: dict[str, Any]) -> str:
        arn = f"arn:aws:iam::{self.account_id}"
        if operation == "AssumeRole":
            return str(body["RoleArn"])
        if operation == "GetCallerIdentity":
            return "*"
        if operation == "RemoveRoleFromInstanceProfile":
            return f"{arn}:instance-profile/{body['InstanceProfileName']}"
        if operation == "CreatePolicy":
            return f"{arn}:policy{body['Path']}{body['PolicyName']}"
        if "PolicyArn" in body and "RoleName" not in body:
            return str(body["PolicyArn"])
        # Every role in this scenario lives on PATH (the policy's GetRole statement covers any path anyway).
        return f"{arn}:role{body.get('Path', PATH)}{body['RoleName']}"


def allowed(policy: dict[str, Any], call: Call) -> bool:
    """Whether an Allow statement of `policy` grants the call (IAM wildcards; ArnLike on iam:PolicyARN,
    StringEquals on aws:RequestTag/<key> and iam:PermissionsBoundary; any other condition key fails the test)."""
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if call.action not in actions or not any(fnmatch.fnmatchcase(call.resource, r) for r in resources):
            continue
        if all(_holds(operator, key, value, call) for operator, keys in statement.get("Condition", {}).items()
               for key, value in keys.items()):  # fmt: skip
            return True
    return False


def _holds(operator: str, key: str, value: Any, call: Call) -> bool:
    wanted = value if isinstance(value, list) else [value]
    if operator == "ArnLike" and key == "iam:PolicyARN":
        return any(fnmatch.fnmatchcase(call.policy_arn or "", p) for p in wanted)
    assert operator == "StringEquals", (operator, key)
    if key.startswith("aws:RequestTag/"):
        return dict(call.request_tags).get(key.split("/", 1)[1]) in wanted
    assert key == "iam:PermissionsBoundary", key
    return call.boundary in wanted


def test_allowed_refuses_what_the_policy_does_not_grant() -> None:
    """The evaluator the lifecycle test relies on says no off the path, for other actions and off-condition ARNs."""
    policy = operator_policy(extra_policy_arns=["arn:aws:iam::aws:policy/ReadOnlyAccess"])
    role = "arn:aws:iam::1:role/opsramp/r"
    assert allowed(policy, Call("iam:DeleteRole", role, None))
    assert not allowed(policy, Call("iam:DeleteRole", "arn:aws:iam::1:role/admin", None))
    assert allowed(policy, Call("iam:GetRole", "arn:aws:iam::1:role/admin", None))
    assert not allowed(policy, Call("iam:CreateUser", "arn:aws:iam::1:user/opsramp/u", None))
    assert allowed(policy, Call("iam:AttachRolePolicy", role, "arn:aws:iam::aws:policy/ReadOnlyAccess"))
    assert allowed(policy, Call("iam:AttachRolePolicy", role, "arn:aws:iam::1:policy/opsramp/r-opsramp-1"))
    assert not allowed(policy, Call("iam:AttachRolePolicy", role, "arn:aws:iam::aws:policy/AdministratorAccess"))


def _desired(**changes: Any) -> DesiredRole:
    base = DesiredRole(
        name="opsramp-team-a-prod",
        path=PATH,
        trust_policy=trust_policy("111122223333", EXTERNAL_ID),
        max_session_duration=3600,
        permissions_boundary_arn=None,
        tags={"team": "a"},
        permission_policy=_permissions("ec2:Describe*"),
        extra_managed_policy_arns=(),
        owner=OWNER,
        description="OpsRamp integration role for team-a/prod",
    )
    return dataclasses.replace(base, **changes)


def _permissions(*actions: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}]}


def _big_permissions() -> dict[str, Any]:
    """Larger than one managed policy may hold, so the reconciler splits it into two parts."""
    return _permissions(*(f"ec2:DescribeSomethingNumber{i:04d}" for i in range(700)))


def test_lifecycle_needs_exactly_the_generated_policy(aws_env: None, moto: MotoHandle) -> None:
    """Create → drift → update → delete across accounts: every call is granted, and every grant is used."""
    customer = boto3.client(
        "iam",
        endpoint_url=moto.url,
        region_name="us-east-1",
        aws_access_key_id=(key := create_account_key(moto.url, TARGET_ACCOUNT)).access_key_id,
        aws_secret_access_key=key.secret_access_key,
    )
    access_role = customer.create_role(
        RoleName="opsramp-aws-operator", AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[]}'
    )["Role"]["Arn"]
    sessions = AwsSessions(
        AwsSettings(endpoint_url=moto.url, connect_timeout=2.0, read_timeout=10.0),
        limiter=RateLimiter(100_000, 1.0, name="test-iam-permissions"),
    )
    target = sessions.for_target(access_role, CENTRAL_EXTERNAL_ID)
    recorder = Recorder(TARGET_ACCOUNT, sessions.default().sts_client, target.iam_client, target.sts_client)
    foreign = customer.create_policy(
        PolicyName="someones-readonly", PolicyDocument=json.dumps(_permissions("s3:List*"))
    )
    extra_arn = foreign["Policy"]["Arn"]
    boundary = customer.create_policy(PolicyName="boundary", PolicyDocument=json.dumps(_permissions("*")))
    boundary_arn = boundary["Policy"]["Arn"]

    # Create, with an extra policy and a boundary.
    want = _desired(extra_managed_policy_arns=(extra_arn,), permissions_boundary_arn=boundary_arn)
    first = ensure_role(target, want)
    name = want.name
    ours = policy_arn("aws", TARGET_ACCOUNT, PATH, name, 1)

    # Drift, out of band: trust, settings, tags on role and policy, a detach, and the policy at five versions.
    customer.update_assume_role_policy(
        RoleName=name, PolicyDocument=json.dumps(trust_policy("444455556666", "someone-elses-id"))
    )
    customer.update_role(RoleName=name, MaxSessionDuration=7200)
    customer.tag_role(RoleName=name, Tags=[{"Key": "added-by-hand", "Value": "x"}])
    customer.untag_role(RoleName=name, TagKeys=["team"])
    customer.detach_role_policy(RoleName=name, PolicyArn=ours)
    customer.tag_policy(PolicyArn=ours, Tags=[{"Key": "added-by-hand", "Value": "x"}])
    customer.untag_policy(PolicyArn=ours, TagKeys=["team"])
    for action in ("s3:Get*", "s3:List*", "sqs:Get*", "sns:Get*"):
        customer.create_policy_version(
            PolicyArn=ours, PolicyDocument=json.dumps(_permissions(action)), SetAsDefault=True
        )
    ensure_role(target, want, previously_attached=first.policy_arns)

    # Updates: another boundary, then none; the extra dropped; the policy split in two, then back to one part.
    ensure_role(target, dataclasses.replace(want, permissions_boundary_arn=ours))
    second = ensure_role(target, dataclasses.replace(want, permission_policy=_big_permissions()))
    third = ensure_role(target, _desired(), previously_attached=second.policy_arns)
    assert third.policy_arns == (ours,)

    # A role someone else manages on another path (spec.role.arn): read only, its policies wherever they live.
    brought = customer.create_role(
        RoleName="brought-by-hand",
        AssumeRolePolicyDocument=json.dumps(trust_policy("111122223333", EXTERNAL_ID)),
        PermissionsBoundary=boundary_arn,
    )["Role"]["Arn"]
    customer.attach_role_policy(RoleName="brought-by-hand", PolicyArn=extra_arn)
    customer.put_role_policy(
        RoleName="brought-by-hand", PolicyName="ec2", PolicyDocument=json.dumps(_permissions("ec2:Describe*"))
    )
    verified = verify_role(
        target,
        brought,
        opsramp_accounts=("111122223333",),
        external_id=EXTERNAL_ID,
        required_actions=["ec2:DescribeInstances", "s3:ListBucket"],
        owner=OWNER,
    )
    assert verified.arn == brought

    # Delete, with an inline policy and an instance profile someone added by hand.
    customer.put_role_policy(RoleName=name, PolicyName="by-hand", PolicyDocument=json.dumps(_permissions("s3:*")))
    customer.create_instance_profile(InstanceProfileName="profile-by-hand")
    customer.add_role_to_instance_profile(InstanceProfileName="profile-by-hand", RoleName=name)
    assert delete_role(target, name, PATH, OWNER)
    assert customer.list_roles(PathPrefix=PATH)["Roles"] == []

    policy = operator_policy(extra_policy_arns=[extra_arn], assume_role_arns=[access_role])
    denied = sorted({f"{c.action} on {c.resource}" for c in recorder.calls if not allowed(policy, c)})
    assert denied == [], "the generated policy misses these calls"
    granted = {a for s in policy["Statement"] for a in s["Action"]}
    used = {c.action for c in recorder.calls}
    print(f"{len(recorder.calls)} calls, {len(used)} distinct actions, {len(granted)} granted")
    assert granted - used == set(), "granted but never needed by the lifecycle (least privilege)"

    # Only the allowed policies attach: the default policy (no extras allowed) refuses the tenant's extra, and
    # nothing but ours and the allowed ones ever attaches.
    default = operator_policy(assume_role_arns=[access_role])
    refused = [c for c in recorder.calls if not allowed(default, c)]
    assert {(c.action, c.policy_arn) for c in refused} == {("iam:AttachRolePolicy", extra_arn)}
    assert not allowed(policy, Call("iam:AttachRolePolicy", first.arn, "arn:aws:iam::aws:policy/AdministratorAccess"))
    # Creates carry our tag, and only with it are they allowed.
    creates = [c for c in recorder.calls if c.action in ("iam:CreateRole", "iam:CreatePolicy")]
    assert creates and all(allowed(policy, c) for c in creates)
    assert not any(allowed(policy, dataclasses.replace(c, request_tags=())) for c in creates)


def test_a_required_boundary_is_the_only_one_roles_get() -> None:
    """With OPERATOR_PERMISSIONS_BOUNDARY_ARN, roles are created and re-bounded only with it, never unbounded."""
    boundary = "arn:aws:iam::1:policy/opsramp-boundary"
    policy = operator_policy(permissions_boundary_arn=boundary)
    role = "arn:aws:iam::1:role/opsramp/r"
    tags = (("opsramp.com/managed-by", "opsramp-aws-operator"),)
    assert allowed(policy, Call("iam:CreateRole", role, None, tags, boundary))
    assert not allowed(policy, Call("iam:CreateRole", role, None, tags, None))
    assert not allowed(policy, Call("iam:CreateRole", role, None, tags, "arn:aws:iam::1:policy/wide-open"))
    assert not allowed(policy, Call("iam:CreateRole", role, None, (), boundary))
    assert allowed(policy, Call("iam:PutRolePermissionsBoundary", role, None, (), boundary))
    assert not allowed(policy, Call("iam:PutRolePermissionsBoundary", role, None, (), "arn:aws:iam::1:policy/x"))
    assert not allowed(policy, Call("iam:DeleteRolePermissionsBoundary", role, None))


# --- many accounts: the organization scan and the member role, against moto --------------------------------------


def test_many_accounts_need_exactly_the_organizations_policy(aws_env: None, moto: MotoHandle) -> None:
    """The organization scan (nested OUs too) and entering member accounts, through the operator's adapter against
    moto's Organizations: every call is granted by the organizations policy, every grant there is used, and the
    single-account policy grants none of them (an admin without organizations attaches nothing for them)."""
    org = create_organization(moto.url, {"scan-a": 2, "scan-b": 1}, prefix="iam-scan")
    client = org.client()
    nested = client.create_organizational_unit(ParentId=org.units["scan-a"], Name="scan-a-nested")
    org.units["scan-a-nested"] = nested["OrganizationalUnit"]["Id"]
    org.add_account("scan-a-nested", "iam-scan-deep")
    organization_id = client.describe_organization()["Organization"]["Id"]
    sessions = AwsSessions(
        AwsSettings(endpoint_url=moto.url, connect_timeout=2.0, read_timeout=10.0),
        limiter=RateLimiter(100_000, 1.0, name="test-iam-organizations"),
    )
    base = sessions.default()
    calls: list[Call] = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        parent = str(params.get("ParentId", ""))
        kind = "root" if parent.startswith("r-") else "ou"
        resource = f"arn:aws:organizations::{base.caller_account_id()}:{kind}/{organization_id}/{parent}"
        calls.append(Call(f"organizations:{model.name}", resource if parent else "*", None))

    organizations = base.organizations
    organizations.client.meta.events.register("before-parameter-build.organizations", record)
    recorder = Recorder(base.caller_account_id(), base.sts_client)

    (root,) = organizations.roots()
    everywhere = {a.account_id for a in organizations.accounts_under(root)}
    assert set(org.all_accounts) <= everywhere
    member = org.accounts["scan-b"][0]
    assert sessions.for_target(f"arn:aws:iam::{member}:role/{MEMBER_ROLE}").caller_account_id() == member
    calls.extend(c for c in recorder.calls if c.action == "sts:AssumeRole")

    policy = organizations_policy()
    denied = sorted({f"{c.action} on {c.resource}" for c in calls if not allowed(policy, c)})
    assert denied == [], "the organizations policy misses these calls"
    granted = {a for s in policy["Statement"] for a in s["Action"]}
    used = {c.action for c in calls}
    assert granted == used, f"granted but never needed: {granted - used}; needed, not granted: {used - granted}"
    single = {a for s in operator_policy()["Statement"] for a in s["Action"]}
    assert not {a for a in single if a.startswith("organizations:")}
    # Another member role name narrows the AssumeRole grant to it.
    other = organizations_policy(member_role_name="opsramp-member")
    assert not allowed(other, next(c for c in calls if c.action == "sts:AssumeRole"))
