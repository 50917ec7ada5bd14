"""The floor: the least a program must send to create N OpsRamp AWS integrations, timed the same way.

No Kubernetes, no kopf, no reconciler: for each integration, straight through with boto3 and requests against
the same emulators and with the same concurrency as the operator,

    IAM CreateRole (trust policy with the External ID, tags)  ->  IAM CreatePolicy (OpsRamp's read-only policy)
    ->  IAM AttachRolePolicy  ->  OpsRamp POST install/AWS  ->  OpsRamp POST policies/discovery (the profile
    without which OpsRamp discovers nothing)

after one STS GetCallerIdentity and one OpsRamp token for the whole run; then, as the operator does before it calls
an integration Ready, it waits for OpsRamp's verdict on each role: pages of integrations/activity (newest first, 100
a page) read until every integration has one. The verification phase is the least
a drift check must read per integration: IAM GetRole (trust, tags), ListAttachedRolePolicies, GetPolicy and
GetPolicyVersion (the document), and OpsRamp GETs of the installed integration and of its discovery profile.
`cleanup` removes it all.

Run as `python -m opsramp_sandbox.bench.floor create|verify|cleanup --n N --concurrency C --prefix P`, with
the sandbox's env (AWS_ENDPOINT_URL, OPSRAMP_*); it prints one JSON line: the phase's seconds and errors.
The bench counts the calls at the emulators, so a floor that sent more than it says would show.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import boto3
import botocore.exceptions
import requests
from botocore.config import Config
from botocore.parsers import ResponseParserError

from opsramp_aws_operator.opsramp import AwsIntegrationRequest, DiscoveryRequest, WireFormat, install_body, profile_body
from opsramp_aws_operator.policies import load_opsramp_policy, trust_policy

PATH = "/opsramp/"
REGIONS = ("us-east-1", "eu-west-1")


class Floor:
    """The minimal sequence, against the endpoints in `env`."""

    def __init__(self, env: dict[str, str], concurrency: int) -> None:
        self.env = env
        self.concurrency = concurrency
        config = Config(
            region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
            retries={"mode": "standard", "total_max_attempts": 3},
            max_pool_connections=concurrency,
        )
        session = boto3.session.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"]
        )
        self.iam = session.client("iam", endpoint_url=env["AWS_ENDPOINT_URL"], config=config)
        self.sts = session.client("sts", endpoint_url=env["AWS_ENDPOINT_URL"], config=config)
        self.http = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=concurrency)
        self.http.mount("http://", adapter)
        self.endpoint = env["OPSRAMP_ENDPOINT"]
        self.base = self.endpoint + WireFormat.API_BASE.format(tenant_id=env["OPSRAMP_TENANT_ID"])
        self.policy = json.dumps(load_opsramp_policy())
        self._token = ""
        self._lock = threading.Lock()
        self.account_id = ""
        self.installed: dict[str, str] = {}  # role name -> integration id
        self.profiles: dict[str, int] = {}  # role name -> discovery profile id
        self.discovery = self.endpoint + WireFormat.DISCOVERY_PATH.format(tenant_id=env["OPSRAMP_TENANT_ID"])

    def token(self) -> str:
        with self._lock:
            if not self._token:
                response = self.http.post(
                    self.endpoint + WireFormat.TOKEN_PATH,
                    data={
                        "grant_type": "client_credentials",
                        "client_id": self.env["OPSRAMP_CLIENT_ID"],
                        "client_secret": self.env["OPSRAMP_CLIENT_SECRET"],
                    },
                    timeout=30,
                )
                response.raise_for_status()
                self._token = str(response.json()["access_token"])
            return self._token

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}", "Content-Type": "application/json"}

    def create(self, name: str) -> None:
        external_id = secrets.token_urlsafe(24)
        tags: list[Any] = [{"Key": "app.kubernetes.io/managed-by", "Value": "opsramp-bench-floor"}]
        trust = json.dumps(trust_policy(self.env["OPSRAMP_AWS_ACCOUNT_ID"], external_id))
        role_arn = f"arn:aws:iam::{self.account_id}:role{PATH}{name}"
        policy_arn = f"arn:aws:iam::{self.account_id}:policy{PATH}{name}-1"
        retried(lambda: self.iam.create_role(RoleName=name, Path=PATH, AssumeRolePolicyDocument=trust, Tags=tags))
        retried(
            lambda: self.iam.create_policy(PolicyName=f"{name}-1", Path=PATH, PolicyDocument=self.policy, Tags=tags)
        )
        retried(lambda: self.iam.attach_role_policy(RoleName=name, PolicyArn=policy_arn))
        # The same wire body as the operator's (one encoder, so the two cannot drift apart).
        body = install_body(
            AwsIntegrationRequest(
                display_name=name,
                account_number=self.account_id,
                role_arn=role_arn,
                external_id=external_id,
                regions=REGIONS,
            )
        )
        response = self.http.post(f"{self.base}/install/AWS", json=body, headers=self._headers(), timeout=30)
        response.raise_for_status()
        integration_id = str(response.json()["id"])
        profile = profile_body(
            DiscoveryRequest(f"{name} discovery", integration_id, name + WireFormat.CREDENTIAL_NAME_SUFFIX)
        )
        response = self.http.post(self.discovery, json=[profile], headers=self._headers(), timeout=30)
        response.raise_for_status()
        with self._lock:
            self.installed[name] = integration_id
            self.profiles[name] = int(response.json()[0]["id"])

    def await_verdicts(self, timeout: float = 300.0) -> int:
        """Read integrations/activity, newest first, until every installed integration has a SUCCESS verdict;
        the paged GETs it took."""
        activity = self.base + "/activity"
        waiting = set(self.installed.values())
        reads = 0
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            page = 1
            while waiting:
                params = {"pageNo": str(page), "pageSize": "100", "isDescendingOrder": "true"}
                response = self.http.get(activity, params=params, headers=self._headers(), timeout=30)
                response.raise_for_status()
                reads += 1
                results = response.json().get("results") or []
                waiting -= {str(r.get("installedintgId")) for r in results if r.get("status") == "SUCCESS"}
                if len(results) < 100:
                    break
                page += 1
            if waiting:
                time.sleep(0.5)
        if waiting:
            raise RuntimeError(f"{len(waiting)} integrations without OpsRamp's verdict after {timeout:.0f}s")
        return reads

    def verify(self, name: str) -> None:
        retried(lambda: self.iam.get_role(RoleName=name))
        attached = retried(lambda: self.iam.list_attached_role_policies(RoleName=name))["AttachedPolicies"]
        for policy in attached:
            arn: str = policy["PolicyArn"]
            version: str = retried(partial(self.iam.get_policy, PolicyArn=arn))["Policy"]["DefaultVersionId"]
            retried(partial(self.iam.get_policy_version, PolicyArn=arn, VersionId=version))
        response = self.http.get(f"{self.base}/installed/{self.installed[name]}", headers=self._headers(), timeout=30)
        response.raise_for_status()
        response = self.http.get(f"{self.discovery}/{self.profiles[name]}", headers=self._headers(), timeout=30)
        response.raise_for_status()

    def cleanup(self, name: str) -> None:
        integration = self.installed.get(name)
        if name in self.profiles:
            self.http.delete(f"{self.discovery}/{self.profiles[name]}", headers=self._headers(), timeout=30)
        if integration:
            self.http.delete(f"{self.base}/installed/{integration}", headers=self._headers(), timeout=30)
        policy_arn = f"arn:aws:iam::{self.account_id}:policy{PATH}{name}-1"
        retried(lambda: self.iam.detach_role_policy(RoleName=name, PolicyArn=policy_arn))
        retried(lambda: self.iam.delete_policy(PolicyArn=policy_arn))
        retried(lambda: self.iam.delete_role(RoleName=name))

    def run(self, action: Callable[[str], None], names: list[str]) -> tuple[float, list[str]]:
        """`action` on every name with `concurrency` threads; seconds from first call to last answer, errors."""
        errors: list[str] = []

        def one(name: str) -> None:
            try:
                action(name)
            except Exception as exc:
                errors.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")

        started = time.monotonic()
        with ThreadPoolExecutor(self.concurrency) as pool:
            list(pool.map(one, names))
        return time.monotonic() - started, errors


def retried(call: Callable[[], Any], attempts: int = 4) -> Any:
    """One IAM write, tried again when moto's threaded server answers an (HTML) 500 under load, as it now and
    then does; a write that went through before the error counts as done (EntityAlreadyExists, NoSuchEntity)."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("EntityAlreadyExists", "NoSuchEntity") and attempt > 1:
                return None  # the first attempt went through before the error
            if attempt == attempts:
                raise
        except ResponseParserError:
            if attempt == attempts:
                raise
        time.sleep(0.05 * attempt)
    return None


def names_for(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opsramp_sandbox.bench.floor", description=__doc__)
    parser.add_argument("phases", nargs="+", choices=["create", "verify", "cleanup"])
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--prefix", default="floor")
    args = parser.parse_args(argv)
    floor = Floor(dict(os.environ), args.concurrency)
    names = names_for(args.prefix, args.n)
    # The phases run in one process (the integration ids live here); the bench reads the counters between them
    # by waiting for each phase's line and answering on stdin.
    for phase in args.phases:
        if phase == "create":
            # Once per run, like any client: who we are in AWS, and an OpsRamp token.
            started = time.monotonic()
            floor.account_id = str(floor.sts.get_caller_identity()["Account"])
            floor.token()
            _, errors = floor.run(floor.create, names)
            if not errors:
                floor.await_verdicts()
            seconds = time.monotonic() - started
        elif phase == "verify":
            seconds, errors = floor.run(floor.verify, names)
        else:
            seconds, errors = floor.run(floor.cleanup, names)
        result: dict[str, Any] = {"phase": phase, "n": args.n, "seconds": round(seconds, 3), "errors": errors[:5]}
        result["error_count"] = len(errors)
        print(json.dumps(result), flush=True)
        sys.stdin.readline()  # the bench says when it has read the counters
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
