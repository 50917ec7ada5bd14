"""The emulator's trust-policy judgement and propagation delay, without a server (fake IAM reader and clock)."""

from __future__ import annotations

from typing import Any

import pytest

from opsramp_sandbox.opsramp_emulator.trust import (
    RoleView,
    TrustChecker,
    evaluate_trust,
    parse_policy_document,
)

OPS = "999988887777"
EXT = "the-external-id"
ARN = "arn:aws:iam::123456789012:role/opsramp/r"


def allow(
    principal: Any = f"arn:aws:iam::{OPS}:root", condition: Any = None, action: Any = "sts:AssumeRole"
) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": principal, "Action": action}
    if condition is not None:
        statement["Condition"] = condition
    return statement


EXT_EQ = {"StringEquals": {"sts:ExternalId": EXT}}


@pytest.mark.parametrize(
    ("statements", "ok"),
    [
        ([allow({"AWS": f"arn:aws:iam::{OPS}:root"}, EXT_EQ)], True),
        ([allow({"AWS": OPS}, EXT_EQ)], True),
        ([allow({"AWS": ["arn:aws:iam::111122223333:root", OPS]}, EXT_EQ)], True),
        ([allow({"AWS": OPS}, {"StringEquals": {"sts:ExternalId": [EXT, "other"]}})], True),
        ([allow({"AWS": OPS}, {"StringLike": {"sts:ExternalId": "the-*"}})], True),
        ([allow({"AWS": OPS}, EXT_EQ, action=["sts:TagSession", "sts:AssumeRole"])], True),
        ([allow({"AWS": OPS}, EXT_EQ, action="sts:*")], True),
        ([allow({"AWS": OPS}, {"StringEquals": {"sts:ExternalId": "nope"}})], False),
        ([allow({"AWS": "111122223333"}, EXT_EQ)], False),
        ([allow({"Service": "ec2.amazonaws.com"}, EXT_EQ)], False),
        ([allow({"AWS": OPS}, EXT_EQ, action="sts:AssumeRoleWithWebIdentity")], False),
        ([allow({"AWS": OPS})], False),  # no External ID condition: refused by the emulator's stricter rule
        ([allow({"AWS": OPS}, {"StringEquals": {"sts:ExternalId": EXT, "aws:SourceIp": "1.2.3.4"}})], False),
        ([allow({"AWS": OPS}, {"NumericEquals": {"sts:ExternalId": EXT}})], False),
        (
            [allow({"AWS": OPS}, EXT_EQ), {"Effect": "Deny", "Principal": {"AWS": OPS}, "Action": "sts:AssumeRole"}],
            False,
        ),
        ([], False),
    ],
)
def test_evaluate_trust(statements: list[dict[str, Any]], ok: bool) -> None:
    """Principal, action, External ID condition and explicit Deny decide like STS (plus the condition rule)."""
    verdict = evaluate_trust({"Version": "2012-10-17", "Statement": statements}, OPS, EXT)
    assert verdict.ok is ok, verdict.reason


def test_condition_rule_can_be_relaxed_to_plain_sts() -> None:
    """With require_external_id_condition=False a condition-less Allow passes, as real STS would."""
    policy = {"Statement": [allow({"AWS": OPS})]}
    assert evaluate_trust(policy, OPS, EXT, require_external_id_condition=False).ok


def test_policy_document_url_encoded_or_dict() -> None:
    """Trust policies arrive as dicts or URL-encoded JSON strings; both parse the same."""
    encoded = "%7B%22Statement%22%3A%20%5B%5D%7D"
    assert parse_policy_document(encoded) == {"Statement": []}
    assert parse_policy_document({"Statement": []}) == {"Statement": []}
    with pytest.raises(ValueError):
        parse_policy_document(42)


class FakeReader:
    def __init__(self, role: RoleView | None) -> None:
        self.role = role

    def read(self, role_arn: str) -> RoleView | None:
        return self.role


class FakeClock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


def good_policy(external_id: str = EXT) -> dict[str, Any]:
    return {"Statement": [allow({"AWS": OPS}, {"StringEquals": {"sts:ExternalId": external_id}})]}


def test_new_role_fails_until_the_delay_passes() -> None:
    """A role created 5 s ago fails a 30 s delay, and passes once 30 s have gone by."""
    clock = FakeClock()
    reader = FakeReader(RoleView(ARN, good_policy(), created_at=clock.now - 5))
    checker = TrustChecker(reader, OPS, propagation_delay=30, clock=clock)
    assert checker.check(ARN, EXT).reason == "the role is inside its propagation delay"
    clock.now += 26
    assert checker.check(ARN, EXT).ok


def test_changed_trust_policy_restarts_the_delay() -> None:
    """An old role whose trust policy the emulator sees change fails again for the delay, then passes."""
    clock = FakeClock()
    reader = FakeReader(RoleView(ARN, good_policy("old-id"), created_at=clock.now - 3600))
    checker = TrustChecker(reader, OPS, propagation_delay=30, clock=clock)
    assert checker.check(ARN, "old-id").ok
    reader.role = RoleView(ARN, good_policy(EXT), created_at=clock.now - 3600)
    clock.now += 1
    assert not checker.check(ARN, EXT).ok
    clock.now += 30
    assert checker.check(ARN, EXT).ok


def test_missing_role_and_unreachable_iam_fail() -> None:
    """No role → refused; an IAM error → refused (OpsRamp cannot tell either from a bad role)."""
    assert TrustChecker(FakeReader(None), OPS).check(ARN, EXT).reason == "the role does not exist"

    class Broken:
        def read(self, role_arn: str) -> RoleView | None:
            raise ConnectionError("down")

    verdict = TrustChecker(Broken(), OPS).check(ARN, EXT)
    assert not verdict.ok
    assert "unreachable" in verdict.reason


def test_a_change_keeping_the_old_external_id_keeps_it_working_while_the_new_one_propagates() -> None:
    """Trust old → old+new → new: the old ID works until it is dropped, the new one once propagated; never neither."""
    clock = FakeClock()
    both = {"Statement": [allow({"AWS": OPS}, {"StringEquals": {"sts:ExternalId": ["old-id", EXT]}})]}
    reader = FakeReader(RoleView(ARN, good_policy("old-id"), created_at=clock.now - 3600))
    checker = TrustChecker(reader, OPS, propagation_delay=30, clock=clock)
    assert checker.check(ARN, "old-id").ok
    reader.role = RoleView(ARN, both, created_at=clock.now - 3600)
    clock.now += 1
    assert checker.check(ARN, "old-id").ok  # both versions admit it
    assert not checker.check(ARN, EXT).ok  # the old version does not admit it yet
    clock.now += 30
    assert checker.check(ARN, "old-id").ok and checker.check(ARN, EXT).ok
    reader.role = RoleView(ARN, good_policy(EXT), created_at=clock.now - 3600)
    clock.now += 1
    assert checker.check(ARN, EXT).ok
    assert not checker.check(ARN, "old-id").ok
