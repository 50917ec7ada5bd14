"""What one tenant's names and secrets can do to another's: collide, leak through a repr, or mask their logs."""

from __future__ import annotations

import base64
import json
import logging
import re
import types
import urllib.parse
from datetime import UTC, datetime

import pytest

from opsramp_aws_operator import redaction
from opsramp_aws_operator.aws import ObservedRole
from opsramp_aws_operator.errors import NeedsAttention
from opsramp_aws_operator.kube import SecretData
from opsramp_aws_operator.models import (
    DISPLAY_NAME_PATTERN,
    ROLE_NAME_PATTERN,
    default_display_name,
    default_role_name,
    label_value,
)
from opsramp_aws_operator.opsramp import AwsIntegrationRequest, OpsRampClient
from opsramp_aws_operator.opsramp.auth import Token
from opsramp_aws_operator.policies import trust_policy
from opsramp_aws_operator.ratelimit import RateLimiter, WaitTooLong
from opsramp_aws_operator.roles import DesiredRole, Owner
from opsramp_aws_operator.service import OpsRampCredentials, check_external_id, generate_external_id

SECRET = "Zq8vK2pLx9Tw4RmN7bYc"  # 20 characters, mixed: what the registry accepts


# --- names ----------------------------------------------------------------------------------------------------

PAIRS = [
    (("team-a", "prod"), ("team", "a-prod")),
    (("a-b", "c"), ("a", "b-c")),
    (("x" * 60, "y"), ("x" * 59, "x-y")),
]


@pytest.mark.parametrize(("first", "second"), PAIRS)
def test_default_role_and_display_names_never_collide_across_namespaces(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    """team-a/prod and team/a-prod get different default role and display names (the old scheme gave both
    `opsramp-team-a-prod` and `team-a-prod`)."""
    assert default_role_name(*first) != default_role_name(*second)
    assert default_display_name(*first) != default_display_name(*second)


@pytest.mark.parametrize(
    ("namespace", "name"), [("team-a", "prod"), ("a" * 63, "b" * 253), ("ns", "name.with.dots"), ("n", "x" * 55)]
)
def test_default_names_are_valid_and_stable(namespace: str, name: str) -> None:
    """Valid for IAM and OpsRamp, within their lengths, the same on every call."""
    role, display = default_role_name(namespace, name), default_display_name(namespace, name)
    assert len(role) <= 64 and re.match(ROLE_NAME_PATTERN, role)
    assert len(display) <= 128 and re.match(DISPLAY_NAME_PATTERN, display)
    assert (role, display) == (default_role_name(namespace, name), default_display_name(namespace, name))


def test_a_shortened_name_never_equals_a_whole_one() -> None:
    """Shortened names carry a character no whole name has (`+` for roles, `:` for display names)."""
    long_role = default_role_name("ns", "x" * 80)
    assert "+" in long_role and "+" not in default_role_name("ns", "x" * 40)
    assert ":" in default_display_name("ns", "x" * 200)


@pytest.mark.parametrize("name", ["prod", "a" * 63, "a" * 62 + "-b", "x" * 62 + ".y" * 40, "a" * 253, "a-" * 40])
def test_label_value_is_valid_for_any_resource_name(name: str) -> None:
    """The generated Secret's label value is a valid label value for every valid resource name, and distinct."""
    value = label_value(name)
    assert len(value) <= 63
    assert re.match(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", value), value
    assert label_value(name + "z") != value


# --- External IDs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("opsramp", "ExternalIdTooShort"),
        ("123456789012345", "ExternalIdTooShort"),
        ("has spaces in it, 20+", "ExternalIdInvalid"),
        ("3f1c2b9e-7a4d-4e21-9c8b-5d6e7f8a9b0c", None),  # a UUID, as consoles show
        ("0123456789abcdef0123456789abcdef", None),  # 32 hex digits
        ("a" * 16, None),
    ],
)
def test_external_id_must_be_long_enough_to_be_a_secret(value: str, reason: str | None) -> None:
    """Shorter than 16 characters is refused (ExternalIdTooShort); console-style values pass."""
    if reason is None:
        check_external_id(value, "Secret ns/x")
        return
    with pytest.raises(NeedsAttention) as caught:
        check_external_id(value, "Secret ns/x")
    assert caught.value.reason == reason
    assert value not in caught.value.message


# --- redaction --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        lambda s: f"client_secret={urllib.parse.quote_plus(s + '+/=')}&grant_type=client_credentials",
        lambda s: json.dumps({"error": f'bad "{s}"'}),
        lambda s: base64.b64encode(s.encode()).decode(),
        lambda s: base64.b64encode(f"client-id:{s}".encode()).decode(),  # Basic auth: inside a longer base64
        lambda s: base64.urlsafe_b64encode(f"xy{s}".encode()).decode(),
    ],
    ids=["url-encoded", "json-escaped", "base64", "base64-inside", "base64url-offset-2"],
)
def test_redaction_catches_encoded_forms(form: object) -> None:
    """A registered secret is masked also URL-encoded, JSON-escaped and base64-encoded at any alignment."""
    secret = SECRET + '+/"x'
    redaction.register(secret)
    text = form(secret)  # type: ignore[operator]
    cleaned = redaction.redact(text)
    assert redaction.MASK in cleaned, text
    encoded = {urllib.parse.quote_plus(secret), json.dumps(secret)[1:-1], base64.b64encode(secret.encode()).decode()}
    assert not any(e in cleaned for e in encoded)


@pytest.mark.parametrize(
    "value",
    ["Ready", "opsramp-aws-operator", "team-a_prod-role", "arn", "abcdefghijklmnopqrstuvwxyz", "aaaaaaaaaaaaaaaaaaaa1"],
)
def test_a_tenant_cannot_register_ordinary_strings_for_masking(value: str, caplog: pytest.LogCaptureFixture) -> None:
    """Short, single-kind or repetitive values (a 'client secret' a tenant chose) mask nothing in others' logs."""
    redaction.register(value)
    line = f"Reconciled team-b/prod: created role opsramp-team-b_prod ({value} {value.upper()})"
    assert redaction.redact(line) == line


def test_generated_external_ids_always_register() -> None:
    """Every External ID the operator generates is secret-looking, so the second wall always masks it."""
    assert all(redaction.looks_secret(generate_external_id()) for _ in range(200))


def test_log_filter_masks_encoded_forms(caplog: pytest.LogCaptureFixture) -> None:
    """The logging filter applies the same masking to every record."""
    redaction.register(SECRET)
    logger = logging.getLogger("test.redaction.encoded")
    handler = logging.StreamHandler()
    handler.addFilter(redaction.RedactingFilter())
    logger.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger="test.redaction.encoded"):
            logger.info("body %s", base64.b64encode(SECRET.encode()).decode())
    finally:
        logger.removeHandler(handler)
    assert SECRET not in caplog.text and base64.b64encode(SECRET.encode()).decode() not in caplog.text


# --- no secret in a repr ----------------------------------------------------------------------------------------


def test_no_secret_in_any_dataclass_repr() -> None:
    """Objects holding secrets print without them (a traceback's locals or a debug line would carry them)."""
    policy = trust_policy("999988887777", SECRET)
    owner = Owner("uid", "ns", "n")
    objects: list[object] = [
        SecretData("creds", {"clientSecret": SECRET}, (), (), False),
        Token(SECRET, 0.0, SECRET),
        OpsRampCredentials("id", SECRET),
        AwsIntegrationRequest("d", "123456789012", "arn:aws:iam::1:role/x", SECRET, ("us-east-1",)),
        DesiredRole("r", "/", policy, 3600, None, {}, None, (), owner),
        ObservedRole("r", "/", "arn", "id", policy, 3600, "", None, {}, datetime.now(UTC)),
        OpsRampClient("https://acme.api.opsramp.com", "client_1", "id", SECRET),
    ]
    for obj in objects:
        assert SECRET not in repr(obj), type(obj).__name__
        assert SECRET not in str(obj), type(obj).__name__


# --- partitions -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("partition", ["aws", "aws-cn", "aws-us-gov"])
def test_trust_principal_is_in_the_roles_own_partition(partition: str) -> None:
    """An aws-cn role trusts an aws-cn principal (an aws one would never match)."""
    policy = trust_policy("999988887777", SECRET, partition)
    assert policy["Statement"][0]["Principal"]["AWS"] == f"arn:{partition}:iam::999988887777:root"
    with pytest.raises(ValueError, match="partition"):
        trust_policy("999988887777", SECRET, "gcp")


# --- the rate limiter never holds a worker beyond the bound -------------------------------------------------------


def test_acquire_with_a_bound_raises_instead_of_sleeping() -> None:
    """A pause (a server's 429) longer than the bound: WaitTooLong at once, no sleep at all."""
    now = [0.0]
    slept: list[float] = []
    limiter = RateLimiter(5, 60.0, "t", clock=lambda: now[0], sleep=slept.append)
    limiter.pause(86400)
    with pytest.raises(WaitTooLong) as caught:
        limiter.acquire(max_wait=10)
    assert caught.value.delay == pytest.approx(86400)
    assert slept == []
    limiter.pause(0)
    now[0] = 86401.0
    assert limiter.acquire(max_wait=10) == 0.0


# --- assumed-role sessions are bounded by number and age ------------------------------------------------------------


def test_assumed_role_sessions_are_bounded_by_size_and_age(monkeypatch: pytest.MonkeyPatch) -> None:
    """Distinct targets beyond the size evict the least recently used; an old session is built anew."""
    from opsramp_aws_operator import aws

    now = [1000.0]
    monkeypatch.setattr(aws, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    sessions = aws.AwsSessions(
        aws.AwsSettings(region="us-east-1", endpoint_url="http://127.0.0.1:9", session_cache_size=3,
                        session_cache_seconds=60),
        limiter=RateLimiter(1000, 1.0, "t"),
    )  # fmt: skip
    arns = [f"arn:aws:iam::123456789012:role/t-{n}" for n in range(5)]
    first = sessions.for_target(arns[0])
    assert sessions.for_target(arns[0]) is first  # cached
    for arn in arns[1:]:
        sessions.for_target(arn)
    assert sessions.cached_targets() == 3
    assert sessions.for_target(arns[0]) is not first  # evicted, least recently used
    again = sessions.for_target(arns[4])
    now[0] += 61
    assert sessions.for_target(arns[4]) is not again  # too old
    assert sessions.cached_targets() <= 3
