"""The cluster admin's guardrails as pure rules: each attack a tenant can write is refused, naming the setting."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from opsramp_aws_operator.conditions import PassResult
from opsramp_aws_operator.errors import NeedsAttention
from opsramp_aws_operator.guardrails import Guardrails, endpoint_hostport, glob_regex, target_regex
from opsramp_aws_operator.kube import SecretData
from opsramp_aws_operator.models import AWSIntegrationSpec
from opsramp_aws_operator.service import ResourceRef, Service, salvage_spec
from opsramp_aws_operator.settings import Settings, SettingsError

OPSRAMP = "999988887777"
ATTACKER = "444455556666"
ROLES = "arn:aws:iam::111122223333:role/"


def spec(**changes: Any) -> AWSIntegrationSpec:
    body: dict[str, Any] = {
        "regions": ["us-east-1"],
        "opsramp": {
            "endpoint": "https://acme.api.opsramp.com",
            "tenantId": "client_1",
            "credentialsSecretRef": {"name": "creds"},
        },
        "generateExternalId": True,
    }
    for path, value in changes.items():
        node = body
        keys = path.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return AWSIntegrationSpec.model_validate(body)


def rules(**env: str) -> Guardrails:
    return Guardrails.from_env({"OPERATOR_OPSRAMP_AWS_ACCOUNT_ID": OPSRAMP, **env})


class NoSecrets:
    """A Secrets stand-in that fails the test if anything is read: refusals come before any Secret."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, str]] = []

    def get(self, namespace: str, name: str, **_: Any) -> SecretData | None:
        self.reads.append((namespace, name))
        raise AssertionError(f"Secret {namespace}/{name} was read before the guardrails refused the spec")


class NoAws:
    def for_target(self, *_: Any) -> Any:
        raise AssertionError("AWS was contacted before the guardrails refused the spec")


def refuse(service_env: dict[str, str], desired: AWSIntegrationSpec, namespace: str = "team-a") -> NeedsAttention:
    """Run a pass with nothing reachable; the refusal must come before anything is read."""
    settings = Settings.from_env({"OPERATOR_OPSRAMP_AWS_ACCOUNT_ID": OPSRAMP, **service_env})
    secrets = NoSecrets()

    def no_opsramp(*_: Any, **__: Any) -> Any:
        raise AssertionError("an OpsRamp client was made before the guardrails refused the spec")

    service = Service(settings, secrets_api=secrets, aws=NoAws(), opsramp_factory=no_opsramp)  # type: ignore[arg-type]
    with pytest.raises(NeedsAttention) as caught:
        service.reconcile(desired, ResourceRef(namespace, "prod", "uid-1"), {}, PassResult())
    assert secrets.reads == []
    return caught.value


# --- each attack, as a tenant would write it ------------------------------------------------------------------

ATTACKS = [
    # (name, spec changes, reason, setting named, env that allows it)
    (
        "own AWS account as the trusted principal",
        {"opsramp.awsAccountId": ATTACKER},
        "OpsRampAccountNotAllowed",
        "OPERATOR_ALLOWED_OPSRAMP_AWS_ACCOUNT_IDS",
        {"OPERATOR_ALLOWED_OPSRAMP_AWS_ACCOUNT_IDS": ATTACKER},
    ),
    (
        "AdministratorAccess on the role",
        {"role.managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]},
        "ManagedPolicyNotAllowed",
        "OPERATOR_ALLOWED_MANAGED_POLICY_ARNS",
        {"OPERATOR_ALLOWED_MANAGED_POLICY_ARNS": "arn:aws:iam::aws:policy/Administrator*"},
    ),
    (
        "hop into another account",
        {"aws.assumeRoleArn": f"arn:aws:iam::{ATTACKER}:role/OrganizationAccountAccessRole"},
        "TargetNotAllowed",
        "OPERATOR_NAMESPACE_TARGETS",
        {"OPERATOR_NAMESPACE_TARGETS": json.dumps({"team-*": [ATTACKER]})},
    ),
    (
        "a fake OpsRamp endpoint to steal the client secret",
        {"opsramp.endpoint": "https://evil.example.com"},
        "EndpointNotAllowed",
        "OPERATOR_ALLOWED_OPSRAMP_HOSTS",
        {"OPERATOR_ALLOWED_OPSRAMP_HOSTS": "*.opsramp.com,evil.example.com"},
    ),
    (
        "an IP literal and a port on an OpsRamp-looking name",
        {"opsramp.endpoint": "https://10.0.0.7:8443"},
        "EndpointNotAllowed",
        "OPERATOR_ALLOWED_OPSRAMP_HOSTS",
        {"OPERATOR_ALLOWED_OPSRAMP_HOSTS": "10.0.0.7:8443"},
    ),
    (
        "a boundary of its own choosing where one is required",
        {"role.permissionsBoundaryArn": "arn:aws:iam::123456789012:policy/wide-open"},
        "PermissionsBoundaryNotAllowed",
        "OPERATOR_PERMISSIONS_BOUNDARY_ARN",
        None,
    ),
]


@pytest.mark.parametrize(("what", "changes", "reason", "setting", "allow"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attack_is_refused_before_any_read_naming_the_setting(
    what: str, changes: dict[str, Any], reason: str, setting: str, allow: dict[str, str] | None
) -> None:
    """Refused with a Stalled reason naming the setting, before a Secret is read or AWS/OpsRamp is touched."""
    env = {"OPERATOR_PERMISSIONS_BOUNDARY_ARN": "arn:aws:iam::123456789012:policy/opsramp-boundary"}
    error = refuse(env, spec(**changes))
    assert error.reason == reason, what
    assert setting in error.message
    if allow is not None:
        # Once the admin allows it, the guardrails let it through (the pass goes on to read the Secrets).
        with pytest.raises(AssertionError, match="was read before"):
            refuse({**env, **allow}, spec(**changes))


def test_external_id_in_spec_is_refused() -> None:
    """spec.aws.externalId (a secret in plain sight) is refused with a reason saying where it goes instead."""
    desired = spec(**{"aws.assumeRoleArn": "arn:aws:iam::123456789012:role/x", "aws.externalId": "x" * 20})
    error = refuse({"OPERATOR_NAMESPACE_TARGETS": json.dumps({"*": ["123456789012"]})}, desired)
    assert error.reason == "ExternalIdInSpec"
    assert "externalIdSecretRef" in error.message


def test_no_spec_account_uses_the_default_and_a_spec_account_must_be_allowed() -> None:
    """The default is trusted; a spec value only if listed; with neither, InvalidSpec names the default's setting."""
    assert rules().opsramp_account(None) == OPSRAMP
    assert rules().opsramp_account(OPSRAMP) == OPSRAMP
    with pytest.raises(NeedsAttention, match="OPERATOR_OPSRAMP_AWS_ACCOUNT_ID"):
        Guardrails.from_env({}).opsramp_account(None)
    with pytest.raises(NeedsAttention) as caught:
        Guardrails.from_env({}).opsramp_account(OPSRAMP)
    assert caught.value.reason == "OpsRampAccountNotAllowed"


def test_required_boundary_is_applied_when_the_spec_names_none() -> None:
    """A required boundary is the role's boundary whatever the spec omits; without one the spec's is used."""
    required = "arn:aws:iam::123456789012:policy/opsramp-boundary"
    assert rules(OPERATOR_PERMISSIONS_BOUNDARY_ARN=required).permissions_boundary(None) == required
    assert rules(OPERATOR_PERMISSIONS_BOUNDARY_ARN=required).permissions_boundary(required) == required
    assert rules().permissions_boundary("arn:aws:iam::aws:policy/x") == "arn:aws:iam::aws:policy/x"


@pytest.mark.parametrize(
    ("targets", "namespace", "arn", "allowed"),
    [
        ({}, "team-a", None, True),  # default: every namespace may use the operator's own credentials
        ({}, "team-a", "arn:aws:iam::111122223333:role/x", False),
        ({"*": None, "ops": ["default"]}, "team-a", None, False),
        ({"team-*": ["111122223333"]}, "team-a", "arn:aws:iam::111122223333:role/any/path/x", True),
        ({"team-*": ["111122223333"]}, "team-a", "arn:aws-cn:iam::111122223333:role/x", True),
        ({"team-*": ["111122223333"]}, "other", "arn:aws:iam::111122223333:role/x", False),
        ({"team-a": ["arn:aws:iam::111122223333:role/opsramp-*"]}, "team-a", "arn:aws:iam::111122223333:role/x", False),
        (
            {"team-a": ["arn:aws:iam::111122223333:role/opsramp-*"]},
            "team-a",
            "arn:aws:iam::111122223333:role/opsramp-1",
            True,
        ),
        ({"team-a": ["111122223333"]}, "team-ab", "arn:aws:iam::111122223333:role/x", False),
    ],
)
def test_namespace_targets(targets: dict[str, Any], namespace: str, arn: str | None, allowed: bool) -> None:
    """A namespace may act only through the targets its entries (and the `*` entry) list."""
    base: dict[str, Any] = {"*": ["default"]}
    base.update(targets)
    base = {k: v for k, v in base.items() if v is not None}
    guard = rules(OPERATOR_NAMESPACE_TARGETS=json.dumps(base))
    if allowed:
        guard.check_target(namespace, arn)
    else:
        with pytest.raises(NeedsAttention) as caught:
            guard.check_target(namespace, arn)
        assert caught.value.reason == "TargetNotAllowed"
        assert "OPERATOR_NAMESPACE_TARGETS" in caught.value.message
        # The message tells this namespace its own targets, never another namespace's.
        listed = re.search(r"\(allowed here: ([^)]*)\)", caught.value.message)
        assert listed is not None
        own = [e for k, entries in base.items() if re.match(glob_regex(k), namespace) for e in entries]
        assert listed.group(1) == (", ".join(own) or "nothing")


@pytest.mark.parametrize(
    ("endpoint", "hostport"),
    [
        ("https://Acme.API.opsramp.com", "acme.api.opsramp.com"),
        ("https://acme.api.opsramp.com:443/", "acme.api.opsramp.com"),
        ("https://acme.api.opsramp.com:8443", "acme.api.opsramp.com:8443"),
        ("http://127.0.0.1:39999", "127.0.0.1:39999"),
        ("http://localhost", "localhost"),
    ],
)
def test_endpoint_hostport(endpoint: str, hostport: str) -> None:
    """The host is compared in lower case, with a port only when it is not the scheme's default."""
    assert endpoint_hostport(endpoint) == hostport


@pytest.mark.parametrize(
    ("endpoint", "allowed"),
    [
        ("https://acme.api.opsramp.com", True),
        ("https://api.opsramp.com", True),
        ("https://myintegrations.api.try.opsramp.com", True),
        ("https://acme.api.opsramp.com:8443", False),  # a port must be allowed explicitly
        ("https://opsramp.com.evil.example", False),
        ("https://evilopsramp.com", False),
        ("http://127.0.0.1:8080", False),
    ],
)
def test_default_hosts_are_opsramps_own(endpoint: str, allowed: bool) -> None:
    """By default only OpsRamp's own domains (default port) receive credentials."""
    guard = Guardrails.from_env({})
    if allowed:
        guard.check_endpoint(endpoint)
    else:
        with pytest.raises(NeedsAttention, match="OPERATOR_ALLOWED_OPSRAMP_HOSTS"):
            guard.check_endpoint(endpoint)


def test_patterns_match_like_arnlike() -> None:
    """`*` is any run of characters, `?` one, everything else literal (a `.` is not a regex dot)."""
    assert re.match(glob_regex("arn:aws:iam::aws:policy/ReadOnly*"), "arn:aws:iam::aws:policy/ReadOnlyAccess")
    assert not re.match(glob_regex("arn:aws:iam::aws:policy/a.b"), "arn:aws:iam::aws:policy/aXb")
    assert re.match(glob_regex("a?c"), "abc") and not re.match(glob_regex("a?c"), "abbc")
    assert re.match(target_regex("default"), "default")
    assert not re.match(target_regex("111122223333"), "arn:aws:iam::111122223333:user/x")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OPERATOR_ALLOWED_OPSRAMP_AWS_ACCOUNT_IDS", "12345"),
        ("OPERATOR_ALLOWED_MANAGED_POLICY_ARNS", "AdministratorAccess"),
        ("OPERATOR_ALLOWED_MANAGED_POLICY_ARNS", "arn:aws:iam::aws:policy/(a|b)"),
        ("OPERATOR_PERMISSIONS_BOUNDARY_ARN", "arn:aws:iam::aws:role/x"),
        ("OPERATOR_NAMESPACE_TARGETS", "team-a=default"),
        ("OPERATOR_NAMESPACE_TARGETS", '{"team-a": "default"}'),
        ("OPERATOR_NAMESPACE_TARGETS", '{"team-a": ["somewhere"]}'),
        ("OPERATOR_NAMESPACE_TARGETS", '{"Team_A": ["default"]}'),
        ("OPERATOR_ALLOWED_OPSRAMP_HOSTS", "https://acme.api.opsramp.com"),
    ],
)
def test_bad_guardrail_settings_stop_the_operator_naming_the_variable(name: str, value: str) -> None:
    """A guardrail setting the operator cannot read stops it at start, naming the variable."""
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_settings_round_trip_through_the_environment() -> None:
    """`to_env` (what the sandbox and tests start operators with) gives back the same rules."""
    guard = rules(
        OPERATOR_ALLOWED_OPSRAMP_AWS_ACCOUNT_IDS="111122223333",
        OPERATOR_ALLOWED_MANAGED_POLICY_ARNS="arn:aws:iam::aws:policy/ReadOnlyAccess",
        OPERATOR_NAMESPACE_TARGETS=json.dumps({"ops": ["default", "222233334444"]}),
        OPERATOR_ALLOWED_OPSRAMP_HOSTS="127.0.0.1:8080",
    )
    assert Guardrails.from_env(guard.to_env()) == guard


# --- deletion of a resource whose stored spec no longer parses -------------------------------------------------


def test_salvage_takes_what_cleanup_needs_from_the_parts_that_parse_and_status() -> None:
    """A broken field elsewhere does not stop cleanup: opsramp and aws parse, the role comes from status."""
    raw = {
        "regions": ["not a region"],
        "role": {"name": "bad name!"},
        "displayName": "team-a/prod",
        "opsramp": {"endpoint": "https://acme.api.opsramp.com", "tenantId": "client_1",
                    "credentialsSecretRef": {"name": "creds"}},
    }  # fmt: skip
    status = {"roleArn": "arn:aws:iam::123456789012:role/opsramp/opsramp-team-a_prod", "integrationId": "i-1"}
    salvaged = salvage_spec(raw, status)
    assert salvaged is not None
    assert salvaged.role.name == "opsramp-team-a_prod" and salvaged.role.path == "/opsramp/"
    assert salvaged.opsramp.credentials_secret_ref.name == "creds"
    assert salvaged.display_name == "team-a/prod"
    assert salvage_spec({**raw, "opsramp": {"endpoint": "ftp://x"}}, status) is None
