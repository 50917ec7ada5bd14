"""Helpers for the OpsRamp emulator tests: raw HTTP calls, bodies, trust policies."""

from __future__ import annotations

from typing import Any

import requests

OPSRAMP_ACCOUNT = "999988887777"
CUSTOMER_ACCOUNT = "123456789012"  # moto's default account
TENANT = "client_1"
CLIENT_ID = "emu-key"
CLIENT_SECRET = "emu-secret"
BASE = "/api/v2/tenants/{tenant}/integrations"


def trust_policy(external_id: str | None, principal: str = f"arn:aws:iam::{OPSRAMP_ACCOUNT}:root") -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}
    if external_id is not None:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return {"Version": "2012-10-17", "Statement": [statement]}


def aws_body(role_arn: str, external_id: str, name: str = "team-a", **credential: Any) -> dict[str, Any]:
    cred: dict[str, Any] = {
        "credentialType": "AWS",
        "AWSType": "External ID",
        "AccountNumber": CUSTOMER_ACCOUNT,
        "AssumeRoleARN": role_arn,
        "ExternalId": external_id,
        "Regions": "us-east-1",
        "InstallAllLinkedAccounts": "false",
    }
    cred.update(credential)
    return {"displayName": name, "credential": cred}


class Api:
    """Raw HTTP against the emulator with one tenant's token."""

    def __init__(self, url: str, tenant: str = TENANT, client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET):
        self.url = url
        self.tenant = tenant
        self.http = requests.Session()
        self.token = self.fetch_token(client_id, secret).json()["access_token"]

    def fetch_token(self, client_id: str, secret: str) -> requests.Response:
        return self.http.post(
            self.url + "/tenancy/auth/oauth/token",
            data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
            timeout=10,
        )

    def path(self, suffix: str, tenant: str | None = None) -> str:
        return self.url + BASE.format(tenant=tenant or self.tenant) + suffix

    def call(self, method: str, suffix: str, *, token: str | None = None, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token if token is not None else self.token}", **kw.pop("headers", {})}
        return self.http.request(method, self.path(suffix, kw.pop("tenant", None)), headers=headers, timeout=10, **kw)

    def install(self, body: Any) -> requests.Response:
        return self.call("POST", "/install/AWS", json=body)
