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
from opsramp_sandbox.testing import isolate_aws_env


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoHandle]:
    handle = start_moto()
    yield handle
    handle.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, moto: MotoHandle) -> None:
    """Credentials and config only from the environment, never from the machine; moto emptied."""
    isolate_aws_env(monkeypatch, tmp_path)
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
