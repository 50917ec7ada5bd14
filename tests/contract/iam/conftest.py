"""Fixtures for the IAM contract tests: one moto server for the session, reset before every test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from iam_support import CallLog, make_sessions

from opsramp_aws_operator.aws import AwsAccount, AwsSessions
from opsramp_sandbox.aws import MotoHandle, start_moto
from opsramp_sandbox.faultproxy import FaultProxy


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoHandle]:
    handle = start_moto()
    yield handle
    handle.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, moto: MotoHandle) -> None:
    """Credentials and config only from the environment, never from the machine; moto emptied."""
    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_IAM",
        "AWS_ENDPOINT_URL_STS",
        "AWS_SESSION_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    moto.reset()


@pytest.fixture
def sessions(moto: MotoHandle) -> AwsSessions:
    return make_sessions(moto.url)


@pytest.fixture
def account(sessions: AwsSessions) -> AwsAccount:
    return sessions.default()


@pytest.fixture
def calls(account: AwsAccount) -> CallLog:
    """Every IAM and STS call the operator's clients make in the test."""
    return CallLog(account.iam_client, account.sts_client)


@pytest.fixture
def raw_iam(moto: MotoHandle) -> Any:
    """A plain boto3 IAM client: "someone else" changing things out of band, and the test's eyes."""
    return boto3.client("iam", endpoint_url=moto.url, region_name="us-east-1")


@pytest.fixture
def proxy(moto: MotoHandle) -> Iterator[FaultProxy]:
    with FaultProxy(moto.url, seed=7) as fault_proxy:
        yield fault_proxy
