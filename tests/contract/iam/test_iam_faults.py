"""Contract tests of the adapter's error edge over real HTTP: retries, throttling, 5xx, AccessDenied, limits."""

from __future__ import annotations

import json
from typing import Any

import pytest
from iam_support import CallLog, desired, make_sessions
from prometheus_client import REGISTRY

from opsramp_aws_operator.aws import LIMITER_KEY, AwsSessions, AwsSettings
from opsramp_aws_operator.errors import NeedsAttention, TransientError
from opsramp_aws_operator.ratelimit import RateLimiter, shared_limiter
from opsramp_aws_operator.roles import ensure_role
from opsramp_sandbox.aws import MotoHandle, create_account_key
from opsramp_sandbox.faultproxy import FaultProxy

WRITES = ("CreateRole", "CreatePolicy", "AttachRolePolicy")


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_throttling_is_retried_and_reconciles(proxy: FaultProxy, raw_iam: Any) -> None:
    """Every call answered once with Throttling still converges, and the resync then only reads."""
    sessions = make_sessions(proxy.url)
    account = sessions.default()
    calls = CallLog(account.iam_client)
    proxy.set_faults(throttle=1.0, max_consecutive=1, actions=("GetRole", *WRITES))

    outcome = ensure_role(account, desired())

    counters = proxy.counters
    print(f"fault proxy: {counters}")
    assert counters.throttled >= 4
    assert outcome.created
    assert raw_iam.get_role(RoleName=desired().name)["Role"]["Arn"] == outcome.arn
    assert len(raw_iam.list_attached_role_policies(RoleName=desired().name)["AttachedPolicies"]) == 1
    calls.clear()
    assert ensure_role(account, desired()).changes == ()
    assert calls.writes() == []


def test_throttles_botocore_retried_are_counted_per_attempt(proxy: FaultProxy) -> None:
    """A Throttling botocore retried on its own still shows in api_errors_total, once per failed attempt."""
    account = make_sessions(proxy.url).default()
    labels = {"service": "iam", "operation": "GetRole", "code": "Throttling"}
    before = sample("opsramp_operator_api_errors_total", labels)
    proxy.set_faults(throttle=1.0, max_consecutive=2, actions=("GetRole",))
    assert account.iam.get_role("counted-throttles") is None
    assert proxy.counters.throttled == 2
    assert sample("opsramp_operator_api_errors_total", labels) == before + 2


def test_persistent_throttling_is_a_temporary_error(proxy: FaultProxy) -> None:
    """When retries run out, throttling surfaces as a TransientError with the AWS code, after a real retry."""
    account = make_sessions(proxy.url, max_attempts=2).default()
    proxy.set_faults(throttle=1.0, actions=("GetRole",))
    with pytest.raises(TransientError) as caught:
        ensure_role(account, desired())
    assert caught.value.reason == "AwsThrottling"
    assert proxy.counters.throttled == 2  # the first attempt and botocore's one retry


def test_server_errors_are_temporary(proxy: FaultProxy) -> None:
    """A 5xx that outlasts the retries is a TransientError, not a needs-attention one."""
    account = make_sessions(proxy.url, max_attempts=2).default()
    proxy.set_faults(server_error=1.0, actions=("GetRole",))
    with pytest.raises(TransientError) as caught:
        ensure_role(account, desired())
    assert caught.value.reason == "AwsServiceUnavailable"


def test_access_denied_needs_attention(proxy: FaultProxy, raw_iam: Any) -> None:
    """AccessDenied on a write is a NeedsAttention with the code in the reason, naming the role, no key."""
    account = make_sessions(proxy.url).default()
    proxy.set_faults(access_denied=1.0, actions=("CreateRole",))
    with pytest.raises(NeedsAttention) as caught:
        ensure_role(account, desired())
    assert caught.value.reason == "AwsAccessDenied"
    assert desired().name in caught.value.message
    assert "testing" not in str(caught.value)
    assert proxy.counters.access_denied == 1  # not retried: retrying cannot help
    assert raw_iam.list_roles()["Roles"] == []


def test_access_denied_on_assume_role_hides_the_external_id(proxy: FaultProxy, moto: MotoHandle) -> None:
    """A refused AssumeRole is NeedsAttention naming the role ARN, never the External ID or a key."""
    key = create_account_key(moto.url, "222233334444")
    external_id = "central-external-id-very-secret-1234"
    sessions = make_sessions(proxy.url)
    proxy.set_faults(access_denied=1.0, actions=("AssumeRole",))
    target = sessions.for_target("arn:aws:iam::222233334444:role/opsramp-operator-access", external_id)
    with pytest.raises(NeedsAttention) as caught:
        target.caller_account_id()
    text = str(caught.value)
    assert caught.value.reason == "AwsAccessDenied"
    assert "opsramp-operator-access" in text
    assert external_id not in text and key.access_key_id not in text


def test_unreachable_endpoint_is_temporary() -> None:
    """A connection refused (nothing listens) is a TransientError, so the handler retries later."""
    labels = {"service": "iam", "operation": "GetRole", "code": "EndpointConnectionError"}
    before = sample("opsramp_operator_api_errors_total", labels)
    sessions = make_sessions("http://127.0.0.1:9", max_attempts=1, connect_timeout=1.0)
    with pytest.raises(TransientError) as caught:
        sessions.default().iam.get_role("anything")
    assert caught.value.reason == "AwsConnectionError"
    assert sample("opsramp_operator_api_errors_total", labels) == before + 1


def test_new_version_prunes_the_oldest_non_default_one(sessions: AwsSessions, raw_iam: Any) -> None:
    """At IAM's 5-version limit a new version replaces the oldest non-default one instead of failing."""
    iam = sessions.default().iam
    first = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:List*", "Resource": "*"}]}
    arn = iam.create_policy("manual", "/", first, "", {})
    for i in range(4):
        doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": f"s3:Get{i}", "Resource": "*"}]}
        raw_iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(doc), SetAsDefault=i == 0)
    # Now v1..v5 exist and v2 is the default: v1 is the oldest non-default one.
    version = iam.create_policy_version(arn, first)
    versions = {v["VersionId"]: v["IsDefaultVersion"] for v in raw_iam.list_policy_versions(PolicyArn=arn)["Versions"]}
    assert version == "v6"
    assert versions == {"v2": False, "v3": False, "v4": False, "v5": False, "v6": True}


def test_malformed_policy_needs_attention(sessions: AwsSessions) -> None:
    """A policy IAM refuses as malformed is NeedsAttention("AwsMalformedPolicyDocument")."""
    with pytest.raises(NeedsAttention) as caught:
        sessions.default().iam.create_policy("bad", "/", {"Statement": [{"Action": "s3:Get*"}]}, "", {})
    assert caught.value.reason == "AwsMalformedPolicyDocument"
    assert "policy bad" in caught.value.message


def test_calls_and_errors_are_counted(sessions: AwsSessions) -> None:
    """Each API call counts in API_CALLS; a failed one also in API_ERRORS with its AWS code."""
    calls = {"service": "iam", "operation": "GetRole"}
    errors = {"service": "iam", "operation": "GetRole", "code": "NoSuchEntity"}
    before_calls = sample("opsramp_operator_api_calls_total", calls)
    before_errors = sample("opsramp_operator_api_errors_total", errors)
    assert sessions.default().iam.get_role("not-there") is None
    assert sessions.default().iam.get_role("not-there-either") is None
    assert sample("opsramp_operator_api_calls_total", calls) == before_calls + 2
    assert sample("opsramp_operator_api_errors_total", errors) == before_errors + 2


def test_every_http_attempt_takes_a_rate_limiter_slot(proxy: FaultProxy) -> None:
    """Calls and their retries wait for the shared limiter, and the wait is recorded."""
    now = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(2, 60.0, name="test", clock=lambda: now[0], sleep=sleep)
    sessions = AwsSessions(AwsSettings(endpoint_url=proxy.url), limiter=limiter)
    waited_before = sample("opsramp_operator_rate_limit_wait_seconds_total", {"service": "iam", "category": "aws"})
    proxy.set_faults(throttle=1.0, max_consecutive=1, actions=("GetRole",))
    sessions.default().iam.get_role("x")  # throttled once, retried: two HTTP attempts, two slots
    assert limiter.in_window() == 2
    assert slept == []
    proxy.clear()
    sessions.default().iam.get_role("y")  # the third attempt waits for the window
    assert slept and sum(slept) == pytest.approx(60.0, abs=1.0)
    waited = sample("opsramp_operator_rate_limit_wait_seconds_total", {"service": "iam", "category": "aws"})
    assert waited - waited_before == pytest.approx(60.0, abs=1.0)


def test_sessions_share_one_process_wide_limiter(moto: MotoHandle) -> None:
    """Without an explicit limiter every AwsSessions uses the one shared "aws" limiter."""
    first = AwsSessions(AwsSettings(endpoint_url=moto.url))
    second = AwsSessions(AwsSettings(endpoint_url=moto.url, rate_limit=999))
    assert first.limiter is second.limiter
    assert first.limiter is shared_limiter(LIMITER_KEY, 1, 1.0)
