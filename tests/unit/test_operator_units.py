"""Small pure pieces of the operator: settings, redaction, retry delays, integration diffs, names."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from opsramp_aws_operator import redaction
from opsramp_aws_operator.errors import NeedsAttention, OperatorError, TransientError
from opsramp_aws_operator.handlers import describe_validation_error, parse_spec, retry_delay
from opsramp_aws_operator.integrations import Applied, differences
from opsramp_aws_operator.kube import Secrets
from opsramp_aws_operator.models import EXTERNAL_ID_PATTERN, AWSIntegrationSpec
from opsramp_aws_operator.opsramp import AwsIntegrationRequest, InstalledIntegration
from opsramp_aws_operator.roles import RoleOutcome
from opsramp_aws_operator.service import Service, generate_external_id, generated_secret_name, parse_role_arn
from opsramp_aws_operator.settings import Settings, SettingsError


def test_settings_defaults() -> None:
    """No environment: production defaults (all namespaces, 10-minute resync, JSON logs)."""
    settings = Settings.from_env({})
    assert settings.namespaces == ()
    assert settings.resync_interval_seconds == 600.0
    assert settings.log_format == "json"
    assert settings.peering_name is None


def test_settings_from_env() -> None:
    """Every documented variable is read."""
    settings = Settings.from_env(
        {
            "OPERATOR_NAMESPACES": "a, b,,",
            "OPERATOR_OPSRAMP_AWS_ACCOUNT_ID": "123456789012",
            "OPERATOR_RESYNC_INTERVAL_SECONDS": "30",
            "OPERATOR_LOG_LEVEL": "debug",
            "OPERATOR_LOG_FORMAT": "text",
            "OPERATOR_PEERING_NAME": "opsramp",
        }
    )
    assert settings.namespaces == ("a", "b")
    assert settings.default_opsramp_aws_account_id == "123456789012"
    assert settings.resync_interval_seconds == 30.0
    assert (settings.log_level, settings.log_format, settings.peering_name) == ("DEBUG", "text", "opsramp")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OPERATOR_OPSRAMP_AWS_ACCOUNT_ID", "12345"),
        ("OPERATOR_RESYNC_INTERVAL_SECONDS", "soon"),
        ("OPERATOR_RESYNC_INTERVAL_SECONDS", "0"),
        ("OPERATOR_LOG_FORMAT", "xml"),
        ("OPERATOR_LOG_LEVEL", "LOUD"),
        ("OPERATOR_HEALTH_PORT", "-1"),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str) -> None:
    """A bad setting stops startup with a message naming the variable."""
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_redaction_masks_registered_secrets_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    """A registered secret never reaches a log record, in the message, its args or an exception."""
    secret = "s3cr3t-value-" + generate_external_id()
    redaction.register(secret)
    handler = logging.StreamHandler()
    handler.addFilter(redaction.RedactingFilter())
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "token %s in %s", (secret, "msg"), None)
    try:
        raise ValueError(f"boom {secret}")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    handler.filter(record)
    assert secret not in record.getMessage()
    assert redaction.MASK in record.getMessage()
    assert record.exc_text is not None
    assert secret not in record.exc_text
    assert redaction.redact(f"x{secret}y") == f"x{redaction.MASK}y"


def test_redaction_masks_every_occurrence_among_thousands_of_secrets() -> None:
    """With a fleet's worth of External IDs registered, each one is masked wherever it appears: several in one
    text, back to back, at the very start and end, and a secret that contains another is masked whole."""
    many = [generate_external_id() for _ in range(2000)]
    redaction.register(*many)
    a, b = many[7], many[1999]
    outer = "outer-" + a + "-tail"
    redaction.register(outer)
    text = f"{a} and {b}{b}, then {outer}: {a}"
    masked = redaction.redact(text)
    assert masked == f"{redaction.MASK} and {redaction.MASK}{redaction.MASK}, then {redaction.MASK}: {redaction.MASK}"
    assert redaction.redact("nothing secret here") == "nothing secret here"
    assert redaction.redact(a[:-1]) == a[:-1]  # a prefix of a secret is not the secret


def test_short_values_are_not_registered() -> None:
    """Very short values would mask ordinary words, so they are ignored."""
    redaction.register("ab")
    assert redaction.redact("about") == "about"


def test_generated_external_id() -> None:
    """Generated External IDs are ≥ 32 characters from IAM's set and differ every time."""
    values = {generate_external_id() for _ in range(50)}
    assert len(values) == 50
    assert all(len(v) >= 32 and re.match(EXTERNAL_ID_PATTERN, v) for v in values)


def test_generated_secret_name_fits() -> None:
    """The External ID Secret's name is deterministic and within 253 characters."""
    assert generated_secret_name("prod") == "prod-opsramp-external-id"
    long = generated_secret_name("x" * 253)
    assert len(long) <= 253
    assert long == generated_secret_name("x" * 253)


@pytest.mark.parametrize(
    ("arn", "parsed"),
    [
        ("arn:aws:iam::123456789012:role/opsramp/r1", ("123456789012", "/opsramp/", "r1")),
        ("arn:aws:iam::123456789012:role/r1", ("123456789012", "/", "r1")),
        ("arn:aws-us-gov:iam::123456789012:role/a/b/r", ("123456789012", "/a/b/", "r")),
        ("arn:aws:iam::123456789012:policy/p", None),
    ],
)
def test_parse_role_arn(arn: str, parsed: tuple[str, str, str] | None) -> None:
    """Role ARNs split into account, path and name (used to retire a renamed role)."""
    assert parse_role_arn(arn) == parsed


def test_retry_delay_backs_off_and_caps() -> None:
    """Needs-attention retries double to the cap; transient ones honour retry_after and stay bounded."""
    settings = Settings(attention_backoff_seconds=30, attention_backoff_max_seconds=600)
    attention = [retry_delay(NeedsAttention("X", "y"), n, settings) for n in range(8)]
    assert attention[:5] == [30, 60, 120, 240, 480]
    assert attention[5:] == [600, 600, 600]
    assert retry_delay(TransientError("X", "y", 7), 0, settings) == 7
    assert retry_delay(TransientError("X", "y", 7), 50, settings) == 120
    # A wait whose end is known is kept as asked, however many retries came before.
    assert retry_delay(TransientError("X", "y", 7, exact=True), 5, settings) == 7


def _installed(**overrides: object) -> InstalledIntegration:
    values: dict[str, object] = {
        "id": "INTG-1",
        "display_name": "d",
        "role_arn": "arn:aws:iam::123456789012:role/r",
        "regions": ("us-east-1",),
        "install_all_linked_accounts": False,
        "account_number": "123456789012",
        "status": "enabled",
        "raw": {},
    }
    values.update(overrides)
    return InstalledIntegration(**values)  # type: ignore[arg-type]


DESIRED = AwsIntegrationRequest(
    display_name="d",
    account_number="123456789012",
    role_arn="arn:aws:iam::123456789012:role/r",
    external_id="e" * 40,
    regions=("us-east-1",),
    install_all_linked_accounts=False,
)


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (_installed(), []),
        (_installed(regions=("us-east-1", "eu-west-1")), ["regions"]),
        (_installed(display_name="other"), ["display name"]),
        (_installed(role_arn="arn:aws:iam::123456789012:role/x"), ["role ARN"]),
        (_installed(install_all_linked_accounts=True), ["linked accounts"]),
        (_installed(role_arn=None, install_all_linked_accounts=None, account_number=None), []),
        (_installed(display_name=None, role_arn=None, regions=None, status=None, account_number=None), []),
        (_installed(display_name=None, credential_name="other AWS Integration"), ["display name"]),
        (_installed(display_name=None, credential_name="d AWS Integration"), []),
    ],
    ids=["same", "regions", "name", "role", "linked", "not-echoed", "openapi-shape", "name-from-set", "set-same"],
)
def test_integration_differences(current: InstalledIntegration, expected: list[str]) -> None:
    """Only real differences cause an update; fields OpsRamp does not show are not compared (the name is read
    from the credential set "<name> AWS Integration" when displayName is missing)."""
    assert differences(current, DESIRED) == expected


APPLIED = Applied.of(DESIRED)


@pytest.mark.parametrize(
    ("current", "desired", "expected"),
    [
        (_installed(role_arn=None, regions=None), DESIRED, []),
        (
            _installed(role_arn=None, regions=None),
            replace(DESIRED, role_arn="arn:aws:iam::123456789012:role/new"),
            ["role ARN"],
        ),
        (_installed(regions=None), replace(DESIRED, regions=("eu-west-1",)), ["regions"]),
        (
            _installed(install_all_linked_accounts=None),
            replace(DESIRED, install_all_linked_accounts=True),
            ["linked accounts"],
        ),
        # Shown fields win over what was sent: someone changed the regions in the console.
        (_installed(regions=("eu-west-1",)), DESIRED, ["regions"]),
    ],
    ids=["unchanged", "renamed-role", "regions", "linked", "console-drift"],
)
def test_fields_opsramp_leaves_out_are_compared_with_what_was_sent(
    current: InstalledIntegration, desired: AwsIntegrationRequest, expected: list[str]
) -> None:
    """With status.appliedIntegration, a spec change reaches OpsRamp even where OpsRamp shows no such field, and an
    unchanged spec sends nothing."""
    assert differences(current, desired, APPLIED) == expected


def test_invalid_spec_message_names_fields() -> None:
    """A spec that slipped past the schema is refused with the field path in the message."""
    with pytest.raises(NeedsAttention) as info:
        parse_spec({"regions": ["All", "us-east-1"], "opsramp": {"endpoint": "ftp://x"}})
    assert info.value.reason == "InvalidSpec"
    assert "spec.regions" in info.value.message
    assert "spec.opsramp.endpoint" in info.value.message


def test_validation_error_is_described_one_field_per_problem() -> None:
    """Each problem reads `spec.<dotted path>: <what is wrong>`, all of them after "Invalid spec: ", in order."""
    with pytest.raises(ValidationError) as info:
        AWSIntegrationSpec.model_validate({"regions": "us-east-1", "aws": {"externalId": "abcdef"}})
    assert describe_validation_error(info.value) == (
        "Invalid spec: spec.regions: Input should be a valid list; spec.opsramp: Field required; "
        "spec.aws: Value error, aws.externalId is only used together with aws.assumeRoleArn"
    )


def _service(now: datetime) -> Service:
    return Service(Settings(assume_grace_seconds=120), secrets_api=Secrets(), clock=lambda: now)


def test_unknown_region_is_refused_by_name() -> None:
    """A region that matches the pattern but does not exist gets UnknownRegion naming it; real ones pass."""
    spec = parse_spec(
        {
            "regions": ["us-east-1", "us-middle-9"],
            "opsramp": {
                "endpoint": "https://x.api.opsramp.com",
                "tenantId": "client_1",
                "credentialsSecretRef": {"name": "c"},
            },
        }
    )
    service = _service(datetime.now(UTC))
    with pytest.raises(NeedsAttention) as info:
        service.check_regions(spec)
    assert info.value.reason == "UnknownRegion"
    assert "us-middle-9" in info.value.message
    assert "'us-east-1'" not in info.value.message
    service.check_regions(spec.model_copy(update={"regions": ["All"]}))
    service.check_regions(spec.model_copy(update={"regions": ["eu-west-1", "ap-southeast-2", "us-gov-west-1"]}))


def _escalate_at_age(age: float) -> OperatorError:
    """What OpsRamp's failure to assume a role last changed `age` seconds ago becomes (grace 120 s)."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    outcome = RoleOutcome(
        arn="arn:aws:iam::123456789012:role/r",
        account_id="123456789012",
        policy_arns=(),
        policy_digest="",
        changes=(),
        created=False,
        last_changed=now - timedelta(seconds=age),
    )
    return _service(now)._escalate_assume_failure(TransientError("OpsRampCannotAssumeRole", "x", 20), outcome)


@pytest.mark.parametrize(("age", "kind"), [(30, TransientError), (600, NeedsAttention)])
def test_cannot_assume_escalates_only_on_a_settled_role(age: int, kind: type[Exception]) -> None:
    """OpsRamp failing to assume a young role is retried; on a role settled for minutes it needs a person."""
    error = _escalate_at_age(age)
    assert type(error) is kind
    assert error.reason == "OpsRampCannotAssumeRole"


@pytest.mark.parametrize(("age", "retry_after"), [(30, 20.0), (110, 11.0), (119.5, 1.5)])
def test_cannot_assume_retries_no_later_than_the_grace_end(age: float, retry_after: float) -> None:
    """Within the grace the retry lands just after it runs out (not a grown backoff later), so a settled
    mistake is reported on time."""
    error = _escalate_at_age(age)
    assert isinstance(error, TransientError)
    assert error.exact
    assert error.retry_after == pytest.approx(retry_after)


def test_probe_is_a_subcommand_of_the_console_script(capsys: pytest.CaptureFixture[str]) -> None:
    """`opsramp-aws-operator probe --help` reaches the probe (not the operator), and it refuses to run without
    credentials in the environment rather than on the command line."""
    from opsramp_aws_operator import main as main_module

    with pytest.raises(SystemExit) as exited:
        main_module.main(["probe", "--help"])
    assert exited.value.code == 0
    assert "--scratch" in capsys.readouterr().out
    from opsramp_aws_operator.opsramp import probe

    with pytest.raises(SystemExit) as refused:
        probe.main(["--endpoint", "https://x.api.opsramp.com", "--tenant-id", "client_1"], env={})
    assert refused.value.code == 2
    assert "OPSRAMP_CLIENT_SECRET" in capsys.readouterr().err
