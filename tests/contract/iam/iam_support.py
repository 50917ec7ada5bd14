"""Helpers for the IAM contract tests: a call recorder on botocore's event hooks and spec builders."""

from __future__ import annotations

import dataclasses
from typing import Any

from opsramp_aws_operator.aws import AwsSessions, AwsSettings
from opsramp_aws_operator.policies import trust_policy
from opsramp_aws_operator.ratelimit import RateLimiter
from opsramp_aws_operator.roles import DesiredRole, Owner

OPSRAMP_ACCOUNT = "111122223333"
EXTERNAL_ID = "opsramp-ext-0123456789abcdef0123456789"
PATH = "/opsramp/"
OWNER = Owner(uid="0d6c3b1e-1111-4c5e-9a55-000000000001", namespace="team-a", name="prod")
OTHER_OWNER = Owner(uid="0d6c3b1e-2222-4c5e-9a55-000000000002", namespace="team-b", name="prod")

READ_PREFIXES = ("Get", "List")


class CallLog:
    """Operation names of every API call a client makes, recorded by a `before-call` event hook."""

    def __init__(self, *clients: Any) -> None:
        self.calls: list[str] = []
        for client in clients:
            service = client.meta.service_model.service_id.hyphenize()
            client.meta.events.register(f"before-call.{service}", self._record)

    def _record(self, model: Any, **_: Any) -> None:
        self.calls.append(model.name)

    def writes(self) -> list[str]:
        """The calls that are not reads (Get*/List*)."""
        return [c for c in self.calls if not c.startswith(READ_PREFIXES)]

    def clear(self) -> None:
        self.calls.clear()


def permission_policy(*actions: str) -> dict[str, Any]:
    """A small read-only permission policy with the given actions."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Read", "Effect": "Allow", "Action": list(actions or ("ec2:Describe*",)), "Resource": "*"}
        ],
    }


def big_policy(actions: int = 700) -> dict[str, Any]:
    """A policy too large for one managed policy (more than 6,144 characters), so it splits into parts."""
    return permission_policy(*(f"ec2:DescribeSomethingNumber{i:04d}" for i in range(actions)))


def desired(name: str = "opsramp-team-a-prod", owner: Owner = OWNER, **changes: Any) -> DesiredRole:
    """A DesiredRole like the service builds it, with `changes` applied."""
    base = DesiredRole(
        name=name,
        path=PATH,
        trust_policy=trust_policy(OPSRAMP_ACCOUNT, EXTERNAL_ID),
        max_session_duration=3600,
        permissions_boundary_arn=None,
        tags={"team": "a", "env": "prod"},
        permission_policy=permission_policy("ec2:Describe*", "cloudwatch:Get*", "cloudwatch:List*"),
        extra_managed_policy_arns=(),
        owner=owner,
        description="OpsRamp integration role for team-a/prod",
    )
    return dataclasses.replace(base, **changes)


def make_sessions(endpoint_url: str, **settings: Any) -> AwsSessions:
    """Sessions with a private, generous limiter (the process-wide one belongs to production code)."""
    options: dict[str, Any] = {"endpoint_url": endpoint_url, "connect_timeout": 2.0, "read_timeout": 10.0}
    options.update(settings)
    return AwsSessions(AwsSettings(**options), limiter=RateLimiter(100_000, 1.0, name="test-aws"))


def tags_of(items: list[dict[str, str]]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items}
