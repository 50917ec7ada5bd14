"""The Monitoring decision: OpsRamp's verdict, the grace for one, console drift, linked accounts (tables of cases)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from opsramp_aws_operator.errors import NeedsAttention, TransientError
from opsramp_aws_operator.models import MonitoringSpec
from opsramp_aws_operator.monitoring import MonitoringInputs, ensure_enabled, judge
from opsramp_aws_operator.opsramp import InstalledIntegration, OpsRampClient, Verdict

NOW = 1_000_000.0
ROLE = "arn:aws:iam::123456789012:role/opsramp/r"


@dataclass
class FakeOpsRamp:
    """Just the calls the monitoring step makes, answering from a table."""

    verdict_answer: Verdict | None = None
    verdict_asked: list[float] = field(default_factory=list)
    rescans: list[int] = field(default_factory=list)
    enabled_calls: list[bool] = field(default_factory=list)

    def verdict(self, integration_id: str, since: float) -> Verdict | None:
        self.verdict_asked.append(since)
        return self.verdict_answer

    def rescan(self, profile_id: int) -> None:
        self.rescans.append(profile_id)

    def set_enabled(self, integration_id: str, enabled: bool) -> None:
        self.enabled_calls.append(enabled)


def integration(**overrides: Any) -> InstalledIntegration:
    values: dict[str, Any] = {
        "id": "INTG-1",
        "display_name": "d",
        "role_arn": ROLE,
        "regions": ("us-east-1",),
        "install_all_linked_accounts": None,
        "account_number": "123456789012",
        "status": "enabled",
        "raw": {},
    }
    values.update(overrides)
    return InstalledIntegration(**values)


def inputs(**overrides: Any) -> MonitoringInputs:
    values: dict[str, Any] = {
        "display_name": "d",
        "spec": MonitoringSpec(),
        "recorded_profile_id": 7,
        "applied_enabled": True,
        "verdict_since": NOW - 30,
        "credentials_since": NOW - 30,
        "settled": None,
        "now": NOW,
        "grace_seconds": 60.0,
        "role_arn": ROLE,
        "role_last_changed": datetime.fromtimestamp(NOW - 600, UTC),
        "assume_grace_seconds": 120.0,
        "generated_external_id": False,
        "linked_accounts_requested": False,
    }
    values.update(overrides)
    return MonitoringInputs(**values)


def run(fake: FakeOpsRamp, given: MonitoringInputs, current: InstalledIntegration | None = None) -> tuple[str, str]:
    return judge(cast(OpsRampClient, fake), current or integration(), given, 7)


def test_a_success_verdict_is_monitoring() -> None:
    """OpsRamp reports it assumed the role after the credentials were written: Monitoring=True, RoleAssumed."""
    fake = FakeOpsRamp(Verdict(True, NOW - 5, "Processed successfully"))
    reason, message = run(fake, inputs())
    assert reason == "RoleAssumed"
    assert ROLE in message and "discovery profile 7" in message
    assert fake.verdict_asked == [NOW - 30 - 2.0]  # newer than the write, with the clock-skew allowance


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (inputs(), ("AwaitingOpsRampVerdict", TransientError)),
        (inputs(credentials_since=NOW - 61), ("NoFailureReported", None)),
        (inputs(credentials_since=None, verdict_since=None), ("NoFailureReported", None)),
    ],
    ids=["within-grace", "grace-over", "older-resource"],
)
def test_no_verdict_waits_out_the_grace_then_says_so(given: MonitoringInputs, expected: tuple[str, Any]) -> None:
    """No verdict: not True while OpsRamp may still check the role; after the grace, True saying nothing was
    reported (never the same reason as a verdict)."""
    reason, error = expected
    if error is not None:
        with pytest.raises(error) as info:
            run(FakeOpsRamp(), given)
        assert info.value.reason == reason
        assert info.value.retry_after <= 10
    else:
        got, message = run(FakeOpsRamp(), given)
        assert got == reason
        assert "no verdict" in message


def test_a_failed_verdict_on_a_young_role_asks_again_then_needs_a_person() -> None:
    """FAILED while the role is younger than the assume grace: OpsRamp is asked to rescan and the pass retries
    soon; on a settled role it needs a person, and with a generated External ID the message says what to use."""
    fake = FakeOpsRamp(Verdict(False, NOW - 5, "Unable to assume role " + ROLE))
    young = inputs(role_last_changed=datetime.fromtimestamp(NOW - 20, UTC))
    with pytest.raises(TransientError) as transient:
        run(fake, young)
    assert transient.value.reason == "OpsRampCannotAssumeRole"
    assert fake.rescans == [7]
    with pytest.raises(NeedsAttention) as stalled:
        run(fake, inputs(generated_external_id=True))
    assert stalled.value.reason == "OpsRampCannotAssumeRole"
    assert "externalIdSecretRef" in stalled.value.message
    assert fake.rescans == [7]


def test_a_settled_verdict_is_not_read_again() -> None:
    """A resync of a settled resource keeps its Monitoring without asking OpsRamp for the verdict."""
    fake = FakeOpsRamp()
    assert run(fake, inputs(settled=("RoleAssumed", "kept"))) == ("RoleAssumed", "kept")
    assert fake.verdict_asked == []


@pytest.mark.parametrize("shown", [None, False])
def test_linked_accounts_not_shown_are_never_monitoring(shown: bool | None) -> None:
    """Linked accounts asked for but not shown as on: LinkedAccountsUnconfirmed, even with a verdict in hand."""
    fake = FakeOpsRamp(Verdict(True, NOW, "ok"))
    with pytest.raises(NeedsAttention) as info:
        run(
            fake,
            inputs(linked_accounts_requested=True, settled=("RoleAssumed", "x")),
            integration(install_all_linked_accounts=shown),
        )
    assert info.value.reason == "LinkedAccountsUnconfirmed"
    assert run(fake, inputs(linked_accounts_requested=True), integration(install_all_linked_accounts=True))[0] == (
        "RoleAssumed"
    )


@pytest.mark.parametrize(
    ("status", "applied", "want", "calls", "warned", "state"),
    [
        ("enabled", True, True, [], False, "done"),
        ("disabled", True, True, [True], True, "done"),  # disabled by hand: enabled again, reported
        ("disabled", False, True, [True], False, "done"),  # the spec switched it back on
        ("enabled", True, False, [False], False, "disabled"),
        (None, True, True, [], False, "done"),  # status not shown: what the operator last set counts
        (None, False, True, [True], False, "done"),
        (None, None, True, [], False, "done"),  # nothing known: installed integrations start enabled
    ],
    ids=["same", "by-hand", "spec-on", "spec-off", "unshown", "unshown-spec-on", "unknown"],
)
def test_enabled_follows_the_spec_and_reports_console_drift(
    status: str | None, applied: bool | None, want: bool, calls: list[bool], warned: bool, state: str
) -> None:
    """enable/disable only when OpsRamp (or, where it does not say, the last call) differs from the spec."""
    fake = FakeOpsRamp()
    given = inputs(applied_enabled=applied, spec=MonitoringSpec(enabled=want))
    outcome = ensure_enabled(cast(OpsRampClient, fake), integration(status=status), given)
    assert fake.enabled_calls == calls
    assert [w[0] for w in outcome.warnings] == (["IntegrationDisabledInOpsRamp"] if warned else [])
    assert outcome.state == state
