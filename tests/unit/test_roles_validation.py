"""Unit tests for validate_desired (IAM's limits moto does not check) and ensure_role_usable."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from opsramp_aws_operator.errors import NeedsAttention, TransientError
from opsramp_aws_operator.policies import trust_policy
from opsramp_aws_operator.roles import (
    DesiredRole,
    Owner,
    RoleOutcome,
    ensure_role_usable,
    policy_name,
    validate_desired,
)

OWNER = Owner(uid="7e1d2c3b-0000-4000-8000-000000000001", namespace="team-a", name="prod")
ARN = "arn:aws:iam::123456789012:policy/extra-{}"


def statement(actions: list[str], **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": "*", **extra}


def spec(**changes: Any) -> DesiredRole:
    base = DesiredRole(
        name="opsramp-team-a-prod",
        path="/opsramp/",
        trust_policy=trust_policy("111122223333", "opsramp-ext-0123456789abcdef"),
        max_session_duration=3600,
        permissions_boundary_arn=None,
        tags={"team": "a"},
        permission_policy={"Version": "2012-10-17", "Statement": [statement(["ec2:Describe*"])]},
        extra_managed_policy_arns=(),
        owner=OWNER,
    )
    return dataclasses.replace(base, **changes)


def long_trust(external_id: str = "e" * 1224) -> dict[str, Any]:
    """A trust policy over IAM's default 2,048 characters: a long External ID and many trusted accounts."""
    doc = trust_policy("111122223333", external_id)
    doc["Statement"][0]["Principal"]["AWS"] = [f"arn:aws:iam::{i:012d}:root" for i in range(40)]
    return doc


def many_actions(count: int) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [statement([f"ec2:DescribeSomethingNumber{i:05d}" for i in range(count)])],
    }


GOOD = [
    ("defaults", {}),
    ("64-char name", {"name": "r" * 64}),
    ("all name punctuation", {"name": "a_b+c=d,e.f@g-h"}),
    ("root path", {"path": "/"}),
    ("nested path", {"path": "/a/b-c/"}),
    ("max session bounds", {"max_session_duration": 43200}),
    ("no OpsRamp policy", {"permission_policy": None}),
    ("boundary", {"permissions_boundary_arn": "arn:aws:iam::aws:policy/PowerUserAccess"}),
    ("gov partition extra", {"extra_managed_policy_arns": ("arn:aws-us-gov:iam::123456789012:policy/p",)}),
    ("46 user tags + 4 ours = 50", {"tags": {f"k{i}": "v" for i in range(46)}}),
    ("9 extras + 1 part = quota 10", {"extra_managed_policy_arns": tuple(ARN.format(i) for i in range(9))}),
    ("big policy split in parts", {"permission_policy": many_actions(400)}),
]

BAD = [
    ("65-char name", {"name": "r" * 65}, "role name"),
    ("empty name", {"name": ""}, "role name"),
    ("slash in name", {"name": "a/b"}, "role name"),
    ("non-ASCII name", {"name": "rôle"}, "role name"),
    ("space in name", {"name": "a b"}, "role name"),
    ("path without trailing slash", {"path": "/opsramp"}, "role path"),
    ("path without leading slash", {"path": "opsramp/"}, "role path"),
    ("path with a space", {"path": "/a b/"}, "role path"),
    ("path too long", {"path": "/" + "a" * 511 + "/"}, "role path"),
    ("session too short", {"max_session_duration": 3599}, "maxSessionDuration"),
    ("session too long", {"max_session_duration": 43201}, "maxSessionDuration"),
    ("description too long", {"description": "d" * 1001}, "description"),
    (
        "boundary not a policy ARN",
        {"permissions_boundary_arn": "arn:aws:iam::123456789012:role/x"},
        "permissionsBoundaryArn",
    ),
    ("extra not an ARN", {"extra_managed_policy_arns": ("ReadOnlyAccess",)}, "managedPolicyArns"),
    ("47 user tags + 4 ours = 51", {"tags": {f"k{i}": "v" for i in range(47)}}, "tags"),
    ("reserved aws: tag", {"tags": {"aws:cloudformation:stack": "x"}}, "reserved prefix"),
    ("reserved ownership tag", {"tags": {"opsramp.com/owner-uid": "forged"}}, "reserved prefix"),
    ("tag key too long", {"tags": {"k" * 129: "v"}}, "tag key"),
    ("tag value too long", {"tags": {"k": "v" * 257}}, "value"),
    ("tag key bad character", {"tags": {"a*b": "v"}}, "tag key"),
    ("10 extras + 1 part > quota", {"extra_managed_policy_arns": tuple(ARN.format(i) for i in range(10))}, "quota"),
    ("too many parts", {"permission_policy": many_actions(2500)}, "quota"),
    (
        "unsplittable statement over 6144",
        {
            "permission_policy": {
                "Version": "2012-10-17",
                "Statement": [
                    statement(
                        [f"ec2:Describe{i:05d}" for i in range(600)],
                        Condition={"Bool": {"aws:SecureTransport": "true"}},
                    )
                ],
            }
        },
        "cannot",
    ),
    (
        "trust policy over 2048",
        {"trust_policy": long_trust()},
        "trust policy",
    ),
]


@pytest.mark.parametrize(("label", "changes"), GOOD, ids=[g[0] for g in GOOD])
def test_valid_specs_pass(label: str, changes: dict[str, Any]) -> None:
    """Specs inside every IAM limit are accepted."""
    validate_desired(spec(**changes))


@pytest.mark.parametrize(("label", "changes", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_invalid_specs_need_attention(label: str, changes: dict[str, Any], fragment: str) -> None:
    """Each limit moto does not enforce is refused as InvalidSpec, with a message naming the field."""
    with pytest.raises(NeedsAttention) as caught:
        validate_desired(spec(**changes))
    assert caught.value.reason == "InvalidSpec"
    assert fragment in caught.value.message


def test_every_problem_is_reported_at_once() -> None:
    """One message lists all problems, so the user fixes the spec in one go."""
    with pytest.raises(NeedsAttention) as caught:
        validate_desired(spec(name="bad name", path="nope", max_session_duration=10))
    message = caught.value.message
    assert "role name" in message and "role path" in message and "maxSessionDuration" in message


def test_quota_is_a_parameter() -> None:
    """An account with a raised quota accepts more managed policies; a lower one refuses sooner."""
    extras = tuple(ARN.format(i) for i in range(12))
    validate_desired(spec(extra_managed_policy_arns=extras), max_managed_policies=20)
    with pytest.raises(NeedsAttention):
        validate_desired(spec(extra_managed_policy_arns=extras[:2]), max_managed_policies=2)


def test_duplicate_extras_count_once() -> None:
    """The same extra ARN listed twice counts once against the quota."""
    validate_desired(spec(extra_managed_policy_arns=(ARN.format(1),) * 12), max_managed_policies=2)


def test_validation_never_echoes_the_external_id() -> None:
    """A too-long trust policy is reported by size, not by content (it holds the External ID)."""
    secret = "s" * 1224
    with pytest.raises(NeedsAttention) as caught:
        validate_desired(spec(trust_policy=long_trust(secret)))
    assert secret not in str(caught.value)


def test_policy_names_fit_iam_for_the_longest_role_name() -> None:
    """Our policy part names stay within IAM's 128 characters even for a 64-character role."""
    assert len(policy_name("r" * 64, 20)) <= 128


def outcome(last_changed: datetime | None) -> RoleOutcome:
    return RoleOutcome(
        arn="arn:aws:iam::123456789012:role/opsramp/r",
        account_id="123456789012",
        policy_arns=(),
        policy_digest="",
        changes=(),
        created=False,
        last_changed=last_changed,
    )


T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("age_seconds", "settle", "retry_after"),
    [
        (0, 30, 30),
        (5, 30, 25),
        (29.5, 30, 1),  # never less than a second
        (-50, 30, 30),  # our clock behind AWS's: at most one settle period
    ],
)
def test_young_role_is_propagating(age_seconds: float, settle: float, retry_after: float) -> None:
    """While the last change is younger than the settle time, a temporary RolePropagating with the rest."""
    with pytest.raises(TransientError) as caught:
        ensure_role_usable(outcome(T0), T0 + timedelta(seconds=age_seconds), settle)
    assert caught.value.reason == "RolePropagating"
    assert caught.value.retry_after == pytest.approx(retry_after)


@pytest.mark.parametrize(("last", "settle"), [(T0, 30), (T0 - timedelta(days=1), 30), (None, 30), (T0, 0)])
def test_settled_role_is_usable(last: datetime | None, settle: float) -> None:
    """An old role, an unknown change time, or no settle time: usable at once."""
    ensure_role_usable(outcome(last), T0 + timedelta(seconds=30), settle)
