"""Many accounts, pure parts: the spec's rules, the guardrails for organizations and member roles, the bounded
status table, and the conditions (Ready only when every selected account is)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from opsramp_aws_operator.conditions import PassResult, build_status
from opsramp_aws_operator.errors import NeedsAttention
from opsramp_aws_operator.fleet import FleetResult, Member, member_display_name
from opsramp_aws_operator.guardrails import Guardrails, GuardrailsError
from opsramp_aws_operator.models import AWSIntegrationSpec

OU = "ou-ab12-cdefgh12"


def spec(**extra: Any) -> dict[str, Any]:
    return {
        "regions": ["us-east-1"],
        "opsramp": {
            "endpoint": "https://acme.api.opsramp.com",
            "tenantId": "client_1",
            "credentialsSecretRef": {"name": "creds"},
        },
        "generateExternalId": True,
        **extra,
    }


@pytest.mark.parametrize(
    "extra",
    [
        {"role": {"arn": "arn:aws:iam::111111111111:role/x"}},
        {"adopt": {"role": True}},
        {"adopt": {"integration": True}},
        {"installAllLinkedAccounts": True},
        {"managementPolicy": "Observe"},
    ],
)
def test_many_accounts_refuse_one_account_controls(extra: dict[str, Any]) -> None:
    """accounts/organization with a one-account control (role.arn, adopt, linked accounts, Observe) is refused."""
    with pytest.raises(ValidationError, match="many accounts"):
        AWSIntegrationSpec.model_validate(spec(accounts=["111111111111"], **extra))
    with pytest.raises(ValidationError, match="many accounts"):
        AWSIntegrationSpec.model_validate(spec(organization={}, **extra))
    AWSIntegrationSpec.model_validate(spec(**extra))  # alone, each is fine


def test_organization_selector_shapes() -> None:
    """OU and root ids are checked; an empty selector is the whole organization; a plain spec is one account."""
    assert AWSIntegrationSpec.model_validate(spec(organization={})).fleet
    assert AWSIntegrationSpec.model_validate(spec(accounts=["111111111111"])).fleet
    assert not AWSIntegrationSpec.model_validate(spec()).fleet
    AWSIntegrationSpec.model_validate(spec(organization={"organizationalUnits": [OU, "r-ab12"]}))
    for bad in ({"organizationalUnits": ["ou-1"]}, {"excludeAccounts": ["12345"]}):
        with pytest.raises(ValidationError):
            AWSIntegrationSpec.model_validate(spec(organization=bad))
    with pytest.raises(ValidationError):
        AWSIntegrationSpec.model_validate(spec(accounts=["111111111111"], memberRoleName="bad name"))


def test_organization_guardrail() -> None:
    """By default no namespace may read the organization; '*' allows all, listed OUs allow only those."""
    default = Guardrails.from_env({})
    with pytest.raises(NeedsAttention) as refused:
        default.check_organization("team", [OU])
    assert refused.value.reason == "OrganizationNotAllowed" and "OPERATOR_NAMESPACE_ORGANIZATIONS" in str(refused.value)
    rules = Guardrails.from_env({"OPERATOR_NAMESPACE_ORGANIZATIONS": json.dumps({"platform": ["*"], "team-*": [OU]})})
    rules.check_organization("platform", [])
    rules.check_organization("team-a", [OU])
    for namespace, units in (("team-a", []), ("team-a", ["ou-ab12-zzzzzzzz"]), ("other", [OU])):
        with pytest.raises(NeedsAttention):
            rules.check_organization(namespace, units)
    with pytest.raises(GuardrailsError):
        Guardrails.from_env({"OPERATOR_NAMESPACE_ORGANIZATIONS": json.dumps({"x": ["not-an-ou"]})})


def test_member_roles_follow_namespace_targets() -> None:
    """A member account is entered only through a role the namespace's targets allow (default: none)."""
    arn = "arn:aws:iam::222222222222:role/OrganizationAccountAccessRole"
    assert not Guardrails.from_env({}).member_target_allowed("team", arn)
    rules = Guardrails.from_env(
        {"OPERATOR_NAMESPACE_TARGETS": json.dumps({"team": ["arn:aws:iam::*:role/OrganizationAccountAccessRole"]})}
    )
    assert rules.member_target_allowed("team", arn)
    assert not rules.member_target_allowed("team", arn.replace("OrganizationAccountAccessRole", "Admin"))
    with pytest.raises(NeedsAttention) as refused:
        rules.check_member_targets("team", [arn.replace("OrganizationAccountAccessRole", "Admin")])
    assert refused.value.reason == "TargetNotAllowed"


def _fleet(ready: int, failed: int = 0, rows: int = 50) -> FleetResult:
    fleet = FleetResult(rows=rows, selected=True)
    for index in range(ready + failed):
        account = f"{index:012d}"
        member = Member(account, state="Ready" if index < ready else "Failed")
        if member.state == "Failed":
            member.reason, member.message = "AwsAccessDenied", "refused"
        fleet.members[account] = member
        fleet.account_ids.append(account)
    return fleet


def test_status_table_is_bounded_failed_rows_first() -> None:
    """1,000 accounts: the table keeps the failed rows first and at most the bound; the rest are counted."""
    fleet = _fleet(997, failed=3, rows=50)
    fields = fleet.status_fields()
    assert len(fields["accounts"]) == 50 and fields["accountsOmitted"] == 950
    assert [r["state"] for r in fields["accounts"][:3]] == ["Failed"] * 3
    assert fields["accountsReady"] == "997/1000"
    assert len(fields["accountIds"]) == 1000
    assert len(json.dumps(fields)) < 64_000


def test_ready_only_when_every_account_is() -> None:
    """Ready=True and AccountsReady=True only when all selected accounts are Ready; else the counts and the names."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    patch, _ = build_status(PassResult(fleet=_fleet(3)), {}, 1, now)
    conditions = {c["type"]: c for c in patch["conditions"]}
    assert conditions["Ready"]["status"] == "True" and conditions["AccountsReady"]["status"] == "True"
    fleet = _fleet(2, failed=1)
    error = NeedsAttention("AccountsFailed", f"2/3 accounts Ready; {fleet.summary()}")
    patch, events = build_status(PassResult(fleet=fleet, error=error, failed_step="integration"), {}, 1, now)
    conditions = {c["type"]: c for c in patch["conditions"]}
    assert conditions["Ready"]["status"] == "False" and conditions["Stalled"]["status"] == "True"
    assert conditions["AccountsReady"]["message"].startswith("2/3 accounts Ready")
    assert "000000000002 (AwsAccessDenied" in conditions["Ready"]["message"]
    assert patch["accountsReady"] == "2/3"
    assert [e.reason for e in events if e.type == "Warning"] == ["AccountsFailed"]


def test_member_display_names_fit_opsramp() -> None:
    """`<displayName>/<account>`, at most 128 characters, distinct per account."""
    long = "x" * 128
    assert len(member_display_name(long, "111111111111")) == 128
    assert member_display_name("ns/name", "111111111111") == "ns/name/111111111111"


def test_installed_and_disabled_accounts_are_not_ready() -> None:
    """An account awaiting OpsRamp's verdict (Installed) keeps Ready and Monitoring from True; a fleet whose accounts
    are all Disabled says MonitoringDisabled, neither reconciling nor stalled (as one account does)."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    fleet = _fleet(2)
    fleet.members["000000000009"] = Member("000000000009", state="Installed", reason="AwaitingOpsRampVerdict")
    assert [m.account_id for m in fleet.pending] == ["000000000009"]
    patch, _ = build_status(PassResult(fleet=fleet), {}, 1, now)
    conditions = {c["type"]: c for c in patch["conditions"]}
    assert conditions["Ready"]["status"] == "False" and conditions["Monitoring"]["status"] == "Unknown"
    assert conditions["Monitoring"]["reason"] == "AwaitingOpsRampVerdict"
    assert conditions["IntegrationReady"]["message"].startswith("3/3")
    assert patch["accountsReady"] == "2/3"

    disabled = FleetResult(selected=True)
    for n in range(2):
        account = f"00000000000{n}"
        disabled.members[account] = Member(account, state="Disabled", reason="MonitoringDisabled")
    patch, _ = build_status(PassResult(fleet=disabled, monitoring_message="disabled by spec"), {}, 1, now)
    conditions = {c["type"]: c for c in patch["conditions"]}
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("False", "MonitoringDisabled")
    assert conditions["Monitoring"]["status"] == "False"
    assert conditions["Reconciling"]["status"] == "False" and conditions["Stalled"]["status"] == "False"


def test_rows_left_out_count_as_ready_only_when_the_counts_say_so() -> None:
    """status.accounts shows the not-Ready rows first: the rows it leaves out are Ready unless more accounts were not
    Ready than it shows (then a new process must not take an omitted Installed account for a settled one)."""
    from opsramp_aws_operator.fleet import _omitted_are_ready

    fleet = _fleet(8, failed=2, rows=5)
    assert _omitted_are_ready(fleet.status_fields())
    crowded = _fleet(2, failed=0, rows=5)
    for n in range(6):
        account = f"1000000000{n:02d}"
        crowded.members[account] = Member(account, state="Installed", reason="AwaitingOpsRampVerdict")
    assert not _omitted_are_ready(crowded.status_fields())
    assert not _omitted_are_ready(_fleet(3, rows=5).status_fields())  # nothing left out
