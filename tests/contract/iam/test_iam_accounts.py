"""Contract tests of account safety against moto: caller identity, AccountMismatch, cross-account assume-role."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from iam_support import CallLog, desired, make_sessions

from opsramp_aws_operator.aws import AwsAccount, AwsSessions, AwsSettings
from opsramp_aws_operator.errors import NeedsAttention
from opsramp_aws_operator.ratelimit import RateLimiter
from opsramp_aws_operator.roles import check_account, ensure_role
from opsramp_sandbox.aws import DEFAULT_ACCOUNT_ID, MotoHandle, create_account_key

TARGET_ACCOUNT = "222233334444"
CENTRAL_EXTERNAL_ID = "central-cluster-external-id-42"


def target_iam(moto: MotoHandle) -> Any:
    """A plain IAM client acting in the target account (the customer's own view)."""
    key = create_account_key(moto.url, TARGET_ACCOUNT)
    return boto3.client(
        "iam",
        endpoint_url=moto.url,
        region_name="us-east-1",
        aws_access_key_id=key.access_key_id,
        aws_secret_access_key=key.secret_access_key,
    )


def make_operator_access_role(client: Any) -> str:
    """The role the central operator assumes in the target account."""
    return str(
        client.create_role(
            RoleName="opsramp-operator-access",
            AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[]}',
        )["Role"]["Arn"]
    )


def test_default_account_is_read_from_sts_once(account: AwsAccount, calls: CallLog) -> None:
    """The account id comes from GetCallerIdentity, asked once and then cached."""
    assert account.caller_account_id() == DEFAULT_ACCOUNT_ID
    assert check_account(account, DEFAULT_ACCOUNT_ID) == DEFAULT_ACCOUNT_ID
    assert check_account(account, None) == DEFAULT_ACCOUNT_ID
    assert account.partition() == "aws"
    assert calls.calls == ["GetCallerIdentity"]


def test_wrong_account_writes_nothing(account: AwsAccount, calls: CallLog, raw_iam: Any) -> None:
    """A spec naming another account stops with AccountMismatch before any IAM call."""
    with pytest.raises(NeedsAttention) as caught:
        check_account(account, "999999999999")
    assert caught.value.reason == "AccountMismatch"
    assert "999999999999" in caught.value.message and DEFAULT_ACCOUNT_ID in caught.value.message
    assert calls.writes() == []
    assert raw_iam.list_roles()["Roles"] == []


def test_endpoint_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, moto: MotoHandle) -> None:
    """With no endpoint in the settings, botocore's AWS_ENDPOINT_URL points the adapter at moto."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    sessions = AwsSessions(AwsSettings(connect_timeout=2, read_timeout=5), limiter=RateLimiter(1000, 1.0))
    assert sessions.default().caller_account_id() == DEFAULT_ACCOUNT_ID


def test_cross_account_assume_role_acts_in_the_target(sessions: AwsSessions, moto: MotoHandle, raw_iam: Any) -> None:
    """With assumeRoleArn the role is created in the target account, not in the operator's own."""
    customer = target_iam(moto)
    access_role = make_operator_access_role(customer)

    target = sessions.for_target(access_role, CENTRAL_EXTERNAL_ID)
    assert check_account(target, TARGET_ACCOUNT) == TARGET_ACCOUNT
    with pytest.raises(NeedsAttention) as caught:
        check_account(target, DEFAULT_ACCOUNT_ID)
    assert caught.value.reason == "AccountMismatch"

    outcome = ensure_role(target, desired())
    assert outcome.account_id == TARGET_ACCOUNT
    assert outcome.arn.startswith(f"arn:aws:iam::{TARGET_ACCOUNT}:role/")
    assert all(f":{TARGET_ACCOUNT}:policy/" in arn for arn in outcome.policy_arns)
    assert {r["RoleName"] for r in customer.list_roles()["Roles"]} == {"opsramp-operator-access", desired().name}
    assert raw_iam.list_roles()["Roles"] == []
    # The default chain still acts in the operator's own account.
    assert sessions.for_target(None, None).caller_account_id() == DEFAULT_ACCOUNT_ID


def test_assumed_credentials_are_cached_per_target(sessions: AwsSessions, moto: MotoHandle) -> None:
    """One AssumeRole serves many calls; another External ID is another target with its own credentials."""
    access_role = make_operator_access_role(target_iam(moto))
    base = CallLog(sessions.default().sts_client)

    target = sessions.for_target(access_role, CENTRAL_EXTERNAL_ID)
    assert sessions.for_target(access_role, CENTRAL_EXTERNAL_ID) is target
    for _ in range(3):
        target.iam.get_role("opsramp-operator-access")
    assert base.calls.count("AssumeRole") == 1

    other = sessions.for_target(access_role, "another-external-id-0001")
    assert other is not target
    other.iam.get_role("opsramp-operator-access")
    assert base.calls.count("AssumeRole") == 2


def test_credentials_close_to_expiry_are_refreshed(moto: MotoHandle) -> None:
    """Credentials inside botocore's refresh window (15 min before expiry) are renewed before use."""
    access_role = make_operator_access_role(target_iam(moto))
    # 900 s, STS's minimum, is always inside the 15-minute advisory window: every use refreshes.
    sessions = make_sessions(moto.url, assume_role_duration_seconds=900)
    base = CallLog(sessions.default().sts_client)
    target = sessions.for_target(access_role, None)
    target.iam.get_role("opsramp-operator-access")
    target.iam.get_role("opsramp-operator-access")
    assert base.calls.count("AssumeRole") >= 2
    assert target.caller_account_id() == TARGET_ACCOUNT
