"""Fixtures for the OpsRamp client contract tests: moto for IAM, the OpsRamp emulator over HTTP, a role maker."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from opsramp_aws_operator import opsramp as client_mod
from opsramp_aws_operator.opsramp import OpsRampClient, OpsRampLimits, get_client
from opsramp_aws_operator.ratelimit import _reset_registry_for_tests
from opsramp_sandbox.opsramp import ApiClient, OpsRampEmulator

from opsramp_contract_support import (  # isort: skip
    CLIENT_ID,
    CLIENT_SECRET,
    FAST,
    OPSRAMP_ACCOUNT,
    TENANT,
    RoleMaker,
)


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
        "iam",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    """Every test starts without cached clients, tokens, sessions or shared limiters."""
    client_mod._reset_caches_for_tests()
    _reset_registry_for_tests()
    yield
    client_mod._reset_caches_for_tests()
    _reset_registry_for_tests()


@pytest.fixture
def emulator(moto_url: str) -> Iterator[OpsRampEmulator]:
    emu = OpsRampEmulator(
        clients=[ApiClient(TENANT, CLIENT_ID, CLIENT_SECRET), ApiClient("client_7", "other-key", "other-secret")],
        opsramp_aws_account_id=OPSRAMP_ACCOUNT,
        iam_endpoint_url=moto_url,
    )
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def client(emulator: OpsRampEmulator) -> OpsRampClient:
    return get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, limits=OpsRampLimits(), timeouts=FAST)


@pytest.fixture
def make_role(iam: Any) -> RoleMaker:
    """Create a role OpsRamp may assume with a fresh External ID; returns (role ARN, External ID)."""

    def make(principal: str = f"arn:aws:iam::{OPSRAMP_ACCOUNT}:root") -> tuple[str, str]:
        external_id = secrets.token_urlsafe(32)
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": principal},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
                }
            ],
        }
        name = "opsramp-" + secrets.token_hex(6)
        role = iam.create_role(RoleName=name, Path="/opsramp/", AssumeRolePolicyDocument=json.dumps(trust))
        return str(role["Role"]["Arn"]), external_id

    return make
