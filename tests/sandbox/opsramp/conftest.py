"""Fixtures for the OpsRamp emulator tests: one moto server for the session, an emulator per test."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from opsramp_sandbox.opsramp import ApiClient, OpsRampEmulator

from opsramp_emulator_support import CLIENT_ID, CLIENT_SECRET, OPSRAMP_ACCOUNT, TENANT, Api, trust_policy  # isort: skip


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def iam(moto_url: str) -> Any:
    return boto3.client(
        "iam", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )


@pytest.fixture
def emulator(moto_url: str) -> Iterator[OpsRampEmulator]:
    emu = OpsRampEmulator(
        clients=[ApiClient(TENANT, CLIENT_ID, CLIENT_SECRET), ApiClient("client_2", "key-2", "secret-2")],
        opsramp_aws_account_id=OPSRAMP_ACCOUNT,
        iam_endpoint_url=moto_url,
    )
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def api(emulator: OpsRampEmulator) -> Api:
    return Api(emulator.url)


@pytest.fixture
def make_role(iam: Any) -> Callable[..., str]:
    """Create a role with the given trust policy (default: OpsRamp + a fresh External ID); returns its ARN."""

    def make(policy: dict[str, Any] | None = None, external_id: str | None = None) -> str:
        doc = policy if policy is not None else trust_policy(external_id or secrets.token_hex(20))
        name = "emu-" + secrets.token_hex(6)
        return str(
            iam.create_role(RoleName=name, Path="/opsramp/", AssumeRolePolicyDocument=json.dumps(doc))["Role"]["Arn"]
        )

    return make
