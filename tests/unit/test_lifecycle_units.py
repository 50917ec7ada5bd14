"""Lifecycle controls as pure logic: rotation decisions, judging foreign trust and permissions, the existing-roles
guardrail, Observe's conditions and Events, plans without secrets, and the spec rules for brought roles."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from opsramp_aws_operator.conditions import PassResult, build_status
from opsramp_aws_operator.errors import NeedsAttention
from opsramp_aws_operator.guardrails import Guardrails, GuardrailsError
from opsramp_aws_operator.models import AWSIntegrationSpec
from opsramp_aws_operator.planning import FieldChange, PlannedChange, ResourcePlan, render, role_changes
from opsramp_aws_operator.policies import (
    load_opsramp_policy,
    mask_external_ids,
    missing_actions,
    required_actions,
    trust_policy,
    trust_problems,
)
from opsramp_aws_operator.roles import DesiredRole, Owner, RolePlan, Write
from opsramp_aws_operator.rotation import RotationState, digest_of

ROOT = Path(__file__).resolve().parents[2]
UID = "4f1c0000-0000-4000-8000-000000000001"
OPS = "999988887777"
OLD = "old-external-id-0123456789abcdef"
NEW = "new-external-id-0123456789abcdef"
NOW = datetime(2026, 11, 30, tzinfo=UTC)


def state(
    desired: str = NEW,
    applied: str | None = OLD,
    previous: dict[str, Any] | None = None,
    request: str | None = None,
    handled: str | None = None,
) -> RotationState:
    applied_digest = digest_of(UID, applied) if applied is not None else None
    return RotationState.of(UID, desired, applied_digest, previous, request, handled, NOW)


# --- rotation ------------------------------------------------------------------------------------------------


def test_steady_state_needs_no_trust_read_and_sends_the_secret_s_value() -> None:
    """OpsRamp already has the Secret's External ID: no role read, nothing forced, nothing recorded."""
    steady = state(desired=OLD, applied=OLD)
    assert not steady.needs_trust
    decision = steady.decide(None)
    assert (decision.send, decision.trust, decision.force, decision.status) == (OLD, (OLD,), False, None)


def test_a_new_external_id_first_overlaps_both_then_verifies_then_completes() -> None:
    """Secret changed: the trust accepts both and OpsRamp is sent the new one; once OpsRamp has it, Verifying keeps
    both until `completed`, which trusts only the new one and counts the rotation."""
    starting = state()
    assert starting.needs_trust
    overlapping = starting.decide(frozenset({OLD}))
    assert overlapping.status is not None and overlapping.status["phase"] == "Overlapping"
    assert set(overlapping.trust) == {OLD, NEW} and overlapping.trust[0] == NEW
    assert overlapping.force and overlapping.switching and overlapping.send == NEW
    assert overlapping.status["fromDigest"] == digest_of(UID, OLD)
    # OpsRamp was moved (status.externalIdDigest is the new one's): Verifying, nothing forced any more.
    verifying = state(applied=NEW, previous=overlapping.status).decide(frozenset({OLD, NEW}))
    assert verifying.status is not None and verifying.status["phase"] == "Verifying"
    assert set(verifying.trust) == {OLD, NEW} and not verifying.force and verifying.switching
    done = verifying.completed()
    assert done.trust == (NEW,) and done.status is not None
    assert (done.status["phase"], done.status["count"]) == ("Completed", 1)


def test_a_rolled_back_rotation_holds_the_old_id_until_another_try_is_asked_for() -> None:
    """After a rollback the old ID is sent and trusted alone; a new annotation value starts the rotation again."""
    rolled = state().decide(frozenset({OLD})).rolled_back(NeedsAttention("OpsRampRejected", "no"))
    assert rolled.status is not None and rolled.status["phase"] == "RolledBack"
    assert (rolled.send, rolled.trust, rolled.holding) == (OLD, (OLD,), True)
    assert OLD not in json.dumps(rolled.status) and NEW not in json.dumps(rolled.status)
    held = state(previous=rolled.status).decide(frozenset({OLD}))
    assert held.holding and held.send == OLD and held.trust == (OLD,) and not held.force
    retry = state(previous=rolled.status, request="try-2", handled="try-1").decide(frozenset({OLD}))
    assert retry.switching and retry.status is not None and retry.status["request"] == "try-2"


def test_without_the_old_id_in_the_trust_it_goes_straight_to_the_new_one() -> None:
    """The trust no longer holds the ID OpsRamp has (edited by hand): no overlap possible, the new one is forced."""
    decision = state().decide(frozenset({"someone-elses-id-0123456789"}))
    assert decision.trust == (NEW,) and decision.force and not decision.switching


def test_a_brought_role_only_moves_opsramp() -> None:
    """spec.role.arn: the role's trust is its owner's; OpsRamp gets the new ID (forced) once the Secret changes."""
    decision = state().decide(None, brought=True)
    assert decision.trust == (NEW,) and decision.force and decision.status is None


def test_digests_are_keyed_by_the_resource() -> None:
    """The same External ID has different digests for two resources; neither reveals the value."""
    assert digest_of(UID, OLD) != digest_of("another-uid", OLD)
    assert OLD not in digest_of(UID, OLD)


# --- judging what someone else wrote --------------------------------------------------------------------------


def test_trust_problems_prove_adoptability_before_saying_anything_else() -> None:
    """Only a trust requiring this resource's External ID for an allowed OpsRamp account proves it; other principals
    and an OpsRamp statement without the External ID are listed, and nothing is said of a role not meant for us."""
    ours = trust_policy(OPS, OLD)
    assert trust_problems(ours, [OPS], OLD) == (True, [])
    assert trust_problems(ours, [OPS], NEW)[0] is False
    assert trust_problems(ours, ["111122223333"], OLD)[0] is False
    wide = trust_policy(OPS, OLD)
    wide["Statement"] += [
        {"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "sts:AssumeRole"},
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OPS}:root"}, "Action": "sts:*"},
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"},
    ]
    admits, problems = trust_problems(wide, [OPS], OLD)
    assert admits
    assert "it also admits arn:aws:iam::111122223333:root" in problems
    assert f"it admits arn:aws:iam::{OPS}:root without requiring the External ID (sts:ExternalId)" in problems
    assert "it also admits service:ec2.amazonaws.com" in problems
    like = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": OPS},
                "Action": "sts:AssumeRole",
                "Condition": {"StringLike": {"sts:ExternalId": "*"}},
            }
        ]
    }
    assert trust_problems(like, [OPS], OLD)[0] is False  # a wildcard admits anyone's External ID
    assert all(OLD not in p for p in problems)


def test_missing_actions_reads_wildcards_denies_conditions_and_boundaries() -> None:
    """Granted means allowed on every resource without a condition, not denied, and inside the boundary."""

    def doc(*statements: dict[str, Any]) -> dict[str, Any]:
        return {"Version": "2012-10-17", "Statement": list(statements)}

    wanted = ["ec2:DescribeInstances", "s3:ListAllMyBuckets", "rds:DescribeDBInstances"]
    assert missing_actions(wanted, [doc({"Effect": "Allow", "Action": "*", "Resource": "*"})]) == []
    assert missing_actions(wanted, [doc({"Effect": "Allow", "Action": "ec2:describe*", "Resource": "*"})]) == [
        "s3:ListAllMyBuckets",
        "rds:DescribeDBInstances",
    ]
    assert missing_actions(wanted, [doc({"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"})]) == [
        "s3:ListAllMyBuckets"
    ]
    denied = [
        doc({"Effect": "Allow", "Action": "*", "Resource": "*"}),
        doc({"Effect": "Deny", "Action": "rds:*", "Resource": "*"}),
    ]
    assert missing_actions(wanted, denied) == ["rds:DescribeDBInstances"]
    narrow = doc(
        {"Effect": "Allow", "Action": "ec2:*", "Resource": "arn:aws:ec2:*:*:instance/*"},
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "true"}}},
        {"Effect": "Allow", "Action": "rds:*", "Resource": ["*"]},
    )
    assert missing_actions(wanted, [narrow]) == ["ec2:DescribeInstances", "s3:ListAllMyBuckets"]
    everything = [doc({"Effect": "Allow", "Action": "*", "Resource": "*"})]
    boundary = doc({"Effect": "Allow", "Action": ["ec2:*", "s3:*"], "Resource": "*"})
    assert missing_actions(wanted, everything, boundary) == ["rds:DescribeDBInstances"]
    policy = load_opsramp_policy()
    assert missing_actions(required_actions(policy), [policy]) == []
    assert len(required_actions(policy)) > 100


def test_masking_labels_every_external_id() -> None:
    """A trust policy shown in a plan carries labels, never values, whatever the operator and form."""
    doc = trust_policy(OPS, NEW, also_accept=[OLD])
    masked = json.dumps(mask_external_ids(doc, {NEW: "<new>"}))
    assert NEW not in masked and OLD not in masked
    assert "<new>" in masked and "<another External ID>" in masked


# --- the existing-roles guardrail -------------------------------------------------------------------------------


def test_existing_roles_default_to_any_and_narrow_per_namespace() -> None:
    """By default any role the namespace's targets reach; set, only the listed accounts or ARN patterns."""
    arn = "arn:aws:iam::123456789012:role/stackset/opsramp"
    Guardrails().check_existing_role("team-a", arn, "spec.role.arn")
    rules = Guardrails.from_env(
        {
            "OPERATOR_NAMESPACE_EXISTING_ROLES": json.dumps(
                {"team-a": ["arn:aws:iam::*:role/stackset/*"], "ops": ["123456789012"]}
            )
        }
    )
    rules.check_existing_role("team-a", arn, "spec.role.arn")
    rules.check_existing_role("ops", "arn:aws:iam::123456789012:role/anything", "spec.adopt.role")
    with pytest.raises(NeedsAttention) as refused:
        rules.check_existing_role("team-b", arn, "spec.adopt.role")
    assert refused.value.reason == "RoleNotAllowed"
    assert "OPERATOR_NAMESPACE_EXISTING_ROLES" in refused.value.message
    with pytest.raises(NeedsAttention):
        rules.check_existing_role("ops", "arn:aws:iam::999999999999:role/x", "spec.role.arn")
    for bad in ("[]", json.dumps({"team-a": ["role/*"]}), json.dumps({"Team_A": ["*"]})):
        with pytest.raises(GuardrailsError):
            Guardrails.from_env({"OPERATOR_NAMESPACE_EXISTING_ROLES": bad})


# --- Observe's status ---------------------------------------------------------------------------------------------


def observed(differences: list[str]) -> PassResult:
    result = PassResult(observing=True, differences=differences)
    sides = "False" if differences else "True"
    result.observed_conditions = [
        ("RoleReady", sides, "RoleDiffers" if differences else "RoleMatches", "; ".join(differences)),
        ("IntegrationReady", "True", "IntegrationMatches", ""),
        ("Monitoring", "True", "RoleAssumed", ""),
    ]
    return result


def test_observe_reports_differences_as_not_ready_never_stalled_and_posts_an_event_when_they_change() -> None:
    """Ready=False DriftDetected listing the differences, Stalled and Reconciling False; an Event per new set;
    back in sync: Ready=True Observed; status.differences goes away once the resource is managed again."""
    first, events = build_status(observed(["iam role x: maxSessionDuration is 7200, the spec wants 3600"]), {}, 1, NOW)
    conditions = {c["type"]: c for c in first["conditions"]}
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("False", "DriftDetected")
    assert "maxSessionDuration is 7200" in conditions["Ready"]["message"]
    assert conditions["Stalled"]["status"] == conditions["Reconciling"]["status"] == "False"
    assert [e.reason for e in events] == ["DriftDetected"]
    _, events = build_status(observed(list(first["differences"])), first, 1, NOW)
    assert events == []
    more = [*first["differences"], "opsramp integration 'x': regions differ"]
    _, events = build_status(observed(more), first, 1, NOW)
    assert [e.reason for e in events] == ["DriftDetected"]
    synced, _ = build_status(observed([]), first, 1, NOW)
    assert {c["type"]: c["reason"] for c in synced["conditions"]}["Ready"] == "Observed"
    managed, _ = build_status(PassResult(), {**first, "differences": ["x"]}, 2, NOW)
    assert managed["differences"] is None


def test_adoptions_are_recorded_in_status_and_kept() -> None:
    """status.adopted names what was taken over and when; a later adoption keeps the earlier one."""
    result = PassResult(adopted_role=("arn:aws:iam::1:role/x", "restore"))
    patch, _ = build_status(result, {}, 1, NOW)
    assert patch["adopted"]["role"] == {
        "name": "arn:aws:iam::1:role/x",
        "time": "2026-11-30T00:00:00Z",
        "previousOwner": "restore",
    }
    later, _ = build_status(PassResult(adopted_integration="INTG-1"), patch, 1, NOW)
    assert (
        later["adopted"]["role"]["name"] == "arn:aws:iam::1:role/x"
        and later["adopted"]["integration"]["name"] == "INTG-1"
    )


# --- plans ----------------------------------------------------------------------------------------------------------


def test_plans_show_trust_policies_masked_and_summarise_the_verdict() -> None:
    """A role plan's trust change is shown with labels for External IDs in text, JSON and status lines."""
    desired = DesiredRole(
        name="r",
        path="/opsramp/",
        trust_policy=trust_policy(OPS, NEW, also_accept=[OLD]),
        max_session_duration=3600,
        permissions_boundary_arn=None,
        tags={},
        permission_policy=None,
        extra_managed_policy_arns=(),
        owner=Owner(UID, "ns", "n"),
    )
    write = Write(
        "iam:UpdateAssumeRolePolicy",
        "role r",
        "updated trust policy",
        "update_trust",
        ("r", desired.trust_policy),
        attribute="trust policy",
        before=trust_policy(OPS, OLD),
        after=desired.trust_policy,
    )
    plan = RolePlan(desired, "1", None, [], [], (), [write], None)
    changes = role_changes(plan, {NEW: "<this resource's External ID>", OLD: "<the External ID OpsRamp has now>"})
    resource = ResourcePlan("ns", "n", changes=changes)
    text = render([resource]) + json.dumps(resource.as_json()) + "\n".join(resource.differences())
    assert OLD not in text and NEW not in text
    assert "<this resource's External ID>" in text and "~ trust policy:" in text
    assert resource.action == "update" and resource.operations() == {"iam:UpdateAssumeRolePolicy": 1}
    assert "Plan: 0 to create, 1 to update, 0 to replace, 0 unchanged, 0 with errors." in render([resource])
    blocked = ResourcePlan("ns", "m", blocked=[("role", NeedsAttention("NotOwned", "not ours"))])
    assert blocked.action == "error" and "NotOwned" in render([blocked])
    created = ResourcePlan(
        "ns",
        "c",
        changes=[
            PlannedChange("iam", "create", "role r", (FieldChange("path", None, "/"),), ("iam:CreateRole",)),
            PlannedChange("opsramp", "create", "integration 'c'", (), ("opsramp:install",)),
        ],
    )
    assert created.action == "create"


# --- the spec ----------------------------------------------------------------------------------------------------


def spec(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "regions": ["us-east-1"],
        "opsramp": {
            "endpoint": "https://acme.api.opsramp.com",
            "tenantId": "client_1",
            "credentialsSecretRef": {"name": "c"},
        },
    }
    return {**base, **changes}


def test_a_brought_role_excludes_what_only_an_own_role_has_and_adoption() -> None:
    """role.arn refuses name, boundary, extra policies and tags beside it, and adopt.role; name and path follow it."""
    arn = "arn:aws:iam::123456789012:role/team/x/opsramp"
    parsed = AWSIntegrationSpec.model_validate(spec(role={"arn": arn}))
    assert (parsed.effective_role_name("ns", "n"), parsed.effective_role_path()) == ("opsramp", "/team/x/")
    for extra in (
        {"name": "x"},
        {"tags": {"a": "b"}},
        {"managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]},
    ):
        with pytest.raises(ValidationError, match="excludes"):
            AWSIntegrationSpec.model_validate(spec(role={"arn": arn, **extra}))
    with pytest.raises(ValidationError, match="not both"):
        AWSIntegrationSpec.model_validate(spec(role={"arn": arn}, adopt={"role": True}))
    assert AWSIntegrationSpec.model_validate(spec(managementPolicy="Observe")).observe_only
    with pytest.raises(ValidationError):
        AWSIntegrationSpec.model_validate(spec(managementPolicy="ObserveOnly"))


def test_every_reason_is_in_the_troubleshooting_guide() -> None:
    """Each reason a pass can report (and each new condition and Event reason) has a row in docs/troubleshooting.md;
    only reasons the operator catches itself are exempt."""
    internal = {"CredentialImmutable", "DuplicateRefused", "NotFound"}  # translated before they reach a condition
    source = "\n".join(p.read_text() for p in (ROOT / "operator").rglob("*.py"))
    reasons = set(re.findall(r'(?:NeedsAttention|TransientError)\(\s*"([A-Za-z]+)"', source)) - internal
    reasons |= {
        "RoleDiffers",
        "IntegrationDiffers",
        "MonitoringDiffers",
        "DriftDetected",
        "Observed",
        "NoVerdict",
        "Adopted",
        "ExternalIdRotated",
    }
    guide = (ROOT / "docs" / "troubleshooting.md").read_text()
    aws_generic = "`AwsAccessDenied` (and other `Aws<Code>`)" in guide
    missing = sorted(r for r in reasons if f"`{r}`" not in guide and not (aws_generic and r.startswith("Aws")))
    assert missing == []


def test_a_scheduled_pass_sees_the_rotate_annotation() -> None:
    """The resync scheduler's body of a resource carries the rotate-external-id annotation to the pass (the
    annotation is no spec change: only a resync pass acts on it)."""
    from opsramp_aws_operator.handlers import _ref
    from opsramp_aws_operator.resync import Snapshot

    asked = Snapshot("ns", "prod", "uid-1", 3, deleting=False, spec={}, status={}, rotate="2026-11-30")
    assert _ref(asked.meta).rotate_request == "2026-11-30"
    assert _ref(Snapshot("ns", "prod", "uid-1", 3, deleting=False, spec={}, status={}).meta).rotate_request is None
