"""Conditions and Events from a reconcile pass: pure functions, checked with tables of cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from opsramp_aws_operator.conditions import (
    ConditionUpdate,
    PassResult,
    build_status,
    changed_only,
    desired_updates,
    merge_conditions,
)
from opsramp_aws_operator.errors import NeedsAttention, TransientError

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def by_type(conditions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in conditions}


def done() -> PassResult:
    return PassResult(
        role="done",
        integration="done",
        monitoring="done",
        monitoring_reason="RoleAssumed",
        role_arn="arn:aws:iam::1:role/r",
        integration_id="INTG-1",
    )


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (
            done(),
            {
                "Ready": "True",
                "RoleReady": "True",
                "IntegrationReady": "True",
                "Monitoring": "True",
                "Reconciling": "False",
                "Stalled": "False",
            },
        ),
        (
            PassResult(role="done", integration="done"),
            {
                "Ready": "False",
                "RoleReady": "True",
                "IntegrationReady": "True",
                "Monitoring": "Unknown",
                "Reconciling": "True",
                "Stalled": "False",
            },
        ),
        (
            PassResult(
                role="done",
                integration="done",
                failed_step="monitoring",
                error=TransientError("AwaitingOpsRampVerdict", "waiting"),
            ),
            {
                "Ready": "False",
                "RoleReady": "True",
                "IntegrationReady": "True",
                "Monitoring": "Unknown",
                "Reconciling": "True",
                "Stalled": "False",
            },
        ),
        (
            PassResult(
                role="done",
                integration="done",
                failed_step="monitoring",
                error=NeedsAttention("OpsRampCannotAssumeRole", "OpsRamp reports it could not assume the role"),
            ),
            {
                "Ready": "False",
                "RoleReady": "True",
                "IntegrationReady": "True",
                "Monitoring": "False",
                "Reconciling": "False",
                "Stalled": "True",
            },
        ),
        (
            PassResult(role="done", integration="done", monitoring="disabled", monitoring_message="off"),
            {
                "Ready": "False",
                "RoleReady": "True",
                "IntegrationReady": "True",
                "Monitoring": "False",
                "Reconciling": "False",
                "Stalled": "False",
            },
        ),
        (
            PassResult(role="done", failed_step="integration", error=NeedsAttention("OpsRampAuthFailed", "bad")),
            {
                "Ready": "False",
                "RoleReady": "True",
                "IntegrationReady": "False",
                "Monitoring": "Unknown",
                "Reconciling": "False",
                "Stalled": "True",
            },
        ),
        (
            PassResult(role="done", failed_step="integration", error=TransientError("RolePropagating", "wait")),
            {
                "Ready": "False",
                "RoleReady": "True",
                "IntegrationReady": "False",
                "Monitoring": "Unknown",
                "Reconciling": "True",
                "Stalled": "False",
            },
        ),
        (
            PassResult(failed_step="role", error=NeedsAttention("AccountMismatch", "wrong account")),
            {
                "Ready": "False",
                "RoleReady": "False",
                "IntegrationReady": "Unknown",
                "Monitoring": "Unknown",
                "Reconciling": "False",
                "Stalled": "True",
            },
        ),
    ],
    ids=[
        "all-done",
        "integration-done-monitoring-pending",
        "awaiting-verdict",
        "role-check-failed",
        "monitoring-disabled",
        "integration-needs-attention",
        "integration-transient",
        "role-needs-attention",
    ],
)
def test_condition_statuses(result: PassResult, expected: dict[str, str]) -> None:
    """Each pass outcome maps to the documented six conditions: Ready only with Monitoring True (kstatus
    Reconciling/Stalled included; a disabled integration is neither)."""
    assert {u.type: u.status for u in desired_updates(result)} == expected


def test_ready_carries_the_failing_reason_and_message() -> None:
    """Ready=False names the reason and the message of the step that failed, so users see what to fix."""
    result = PassResult(failed_step="integration", error=NeedsAttention("CredentialsSecretNotFound", "create it"))
    ready = next(u for u in desired_updates(result) if u.type == "Ready")
    assert (ready.reason, ready.message) == ("CredentialsSecretNotFound", "create it")


def test_last_transition_time_moves_only_when_status_flips() -> None:
    """Same status, new reason: lastTransitionTime kept; status flip: new time; generation always stamped."""
    first = merge_conditions([], [ConditionUpdate("Ready", "False", "A", "a")], 1, T0)
    same = merge_conditions(first, [ConditionUpdate("Ready", "False", "B", "b")], 2, T1)
    flipped = merge_conditions(same, [ConditionUpdate("Ready", "True", "Reconciled", "")], 3, T1)
    assert same[0]["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    assert same[0]["reason"] == "B"
    assert same[0]["observedGeneration"] == 2
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T12:05:00Z"
    assert flipped[0]["observedGeneration"] == 3


def test_unknown_condition_types_are_kept_and_order_is_fixed() -> None:
    """A condition another controller wrote survives; ours come first in a stable order."""
    previous = [{"type": "Foreign", "status": "True", "reason": "X", "message": "", "lastTransitionTime": "t"}]
    merged = merge_conditions(previous, desired_updates(done()), 1, T0)
    assert [c["type"] for c in merged] == [
        "Ready",
        "RoleReady",
        "IntegrationReady",
        "Monitoring",
        "Reconciling",
        "Stalled",
        "Foreign",
    ]


def test_events_only_on_transitions() -> None:
    """A Warning on entering a needs-attention state, none while it persists, a Normal Ready on recovery."""
    failing = PassResult(failed_step="integration", error=NeedsAttention("OpsRampAuthFailed", "check the Secret"))
    status1, events1 = build_status(failing, {}, 1, T0)
    status2, events2 = build_status(failing, status1, 1, T1)
    status3, events3 = build_status(done(), status2, 1, T1)
    _, events4 = build_status(done(), status3, 1, T1)
    assert [(e.type, e.reason) for e in events1] == [("Warning", "OpsRampAuthFailed")]
    assert events2 == []
    assert [(e.type, e.reason) for e in events3] == [("Normal", "Ready")]
    assert events4 == []


def test_transient_errors_post_no_event() -> None:
    """Waiting for IAM to propagate is progress, not a problem: no Warning Event."""
    _, events = build_status(
        PassResult(role="done", failed_step="integration", error=TransientError("RolePropagating", "wait")), {}, 1, T0
    )
    assert events == []


def test_status_patch_fields() -> None:
    """Success records what the operator learned, the generation it acted on and the sync time."""
    result = done()
    result.account_id = "123456789012"
    result.external_id_secret_name = "x-opsramp-external-id"
    result.policy_digest = "sha256:abc"
    patch, _ = build_status(result, {}, 7, T0)
    assert patch["observedGeneration"] == 7
    assert patch["roleArn"] == "arn:aws:iam::1:role/r"
    assert patch["integrationId"] == "INTG-1"
    assert patch["accountId"] == "123456789012"
    assert patch["lastSyncTime"] == "2026-01-01T12:00:00Z"
    assert all(c["observedGeneration"] == 7 for c in patch["conditions"])


def test_failure_does_not_stamp_sync_time() -> None:
    """lastSyncTime means 'confirmed matching': a failed pass leaves it out of the patch."""
    patch, _ = build_status(PassResult(failed_step="role", error=NeedsAttention("X", "y")), {}, 1, T0)
    assert "lastSyncTime" not in patch


def test_suspended_keeps_observed_generation() -> None:
    """Suspended: Ready=False/Suspended, and observedGeneration does not claim the new spec was acted on."""
    patch, events = build_status(PassResult(suspended=True), {"observedGeneration": 3}, 4, T0)
    ready = by_type(patch["conditions"])["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "Suspended")
    assert "observedGeneration" not in patch
    assert [(e.type, e.reason) for e in events] == [("Normal", "Suspended")]


def test_disabled_by_hand_warns_and_monitoring_disabled_is_announced() -> None:
    """An integration disabled in OpsRamp's console (re-enabled by the pass) posts a Warning; a spec that disables
    monitoring turns Ready False with a Normal Event, not a Warning."""
    result = done()
    result.warnings.append(("IntegrationDisabledInOpsRamp", "was disabled by hand"))
    _, events = build_status(result, {}, 1, T0)
    assert [(e.type, e.reason) for e in events] == [("Normal", "Ready"), ("Warning", "IntegrationDisabledInOpsRamp")]
    status, _ = build_status(done(), {}, 1, T0)
    off = PassResult(role="done", integration="done", monitoring="disabled", monitoring_message="off")
    patch, events = build_status(off, status, 2, T1)
    ready = by_type(patch["conditions"])["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "MonitoringDisabled")
    assert [(e.type, e.reason) for e in events] == [("Normal", "MonitoringDisabled")]


def test_same_reason_turning_into_needs_attention_posts_a_warning() -> None:
    """A reason that was retried and now needs a person (e.g. OpsRampCannotAssumeRole) is a transition."""
    transient = PassResult(role="done", failed_step="integration", error=TransientError("OpsRampCannotAssumeRole", "w"))
    stalled = PassResult(role="done", failed_step="integration", error=NeedsAttention("OpsRampCannotAssumeRole", "x"))
    status1, events1 = build_status(transient, {}, 1, T0)
    status2, events2 = build_status(stalled, status1, 1, T1)
    _, events3 = build_status(stalled, status2, 1, T1)
    assert events1 == []
    assert [(e.type, e.reason) for e in events2] == [("Warning", "OpsRampCannotAssumeRole")]
    assert events3 == []


def test_a_pass_that_changes_nothing_writes_nothing() -> None:
    """Resync of a Ready resource that found everything matching: the patch equals the status, so nothing is sent;
    a pass that changed something stamps lastSyncTime again."""
    result = done()
    result.account_id = "123456789012"
    first, _ = build_status(result, {}, 3, T0)
    later = T0 + timedelta(minutes=10)
    again, events = build_status(result, first, 3, later)
    assert changed_only(again, first) == {}
    assert events == []
    result.changes.append("updated integration regions")
    changed, _ = build_status(result, first, 3, later)
    assert changed_only(changed, first) == {"lastSyncTime": "2026-01-01T12:10:00Z"}
