"""Pure tests of the OpsRamp client's wire encoding, header parsing and secret scrubbing (no server)."""

from __future__ import annotations

import pytest

from opsramp_aws_operator.opsramp import (
    AwsIntegrationRequest,
    Scrubber,
    WireFormat,
    decode_regions,
    encode_regions,
    install_body,
    parse_integration,
    server_wait_seconds,
    strip_secrets,
)

EXT = "ExtIdValue-0123456789abcdefghijklmnopqrstuv"


def make_spec(**kw: object) -> AwsIntegrationRequest:
    base: dict[str, object] = {
        "display_name": "team-a",
        "account_number": "123456789012",
        "role_arn": "arn:aws:iam::123456789012:role/opsramp/team-a",
        "external_id": EXT,
        "regions": ("us-east-1",),
        "install_all_linked_accounts": False,
    }
    base.update(kw)
    return AwsIntegrationRequest(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("regions", "wire"),
    [
        (("us-east-1",), "us-east-1"),
        (("us-east-1", "eu-west-1"), "us-east-1,eu-west-1"),
        (("All",), "All"),
        (("us-east-1", "all"), "All"),
        ((), "All"),
    ],
)
def test_regions_encode(regions: tuple[str, ...], wire: str) -> None:
    """Regions become OpsRamp's single Regions string; "All" anywhere means all."""
    assert encode_regions(regions) == wire


@pytest.mark.parametrize(
    ("wire", "regions"),
    [
        ("us-east-1, eu-west-1", ("us-east-1", "eu-west-1")),
        (["us-east-1", "eu-west-1"], ("us-east-1", "eu-west-1")),
        ("All", ("All",)),
        (None, ()),
    ],
)
def test_regions_decode(wire: object, regions: tuple[str, ...]) -> None:
    """Regions read back from a comma string or a list."""
    assert decode_regions(wire) == regions


def test_install_body_uses_the_wire_format_constants() -> None:
    """The install body carries the External-ID type, the role, the External ID and the linked-accounts flag."""
    body = install_body(make_spec(install_all_linked_accounts=True, regions=("us-east-1", "us-west-2")))
    cred = body["credential"]
    assert body["displayName"] == "team-a"
    assert cred["AWSType"] == WireFormat.AWS_TYPE_EXTERNAL_ID
    assert cred["credentialType"] == "AWS"
    assert cred["ExternalId"] == EXT
    assert cred["AssumeRoleARN"].endswith("/team-a")
    assert cred["Regions"] == "us-east-1,us-west-2"
    assert cred[WireFormat.LINKED_ACCOUNTS_KEY] == "true"
    assert "AccessKey" not in cred


def test_request_repr_hides_external_id() -> None:
    """repr/str of the request never shows the External ID."""
    spec = make_spec()
    assert EXT not in repr(spec)
    assert EXT not in str(spec)


def test_parse_integration_strips_secrets_and_reads_fields() -> None:
    """A response that (unexpectedly) echoes secrets yields raw without them; fields parse from strings."""
    body = {
        "id": "INTG-1",
        "displayName": "team-a",
        "status": "enabled",
        "integration": {"id": "AWS", "name": "AWS"},
        "credential": {
            "AssumeRoleARN": "arn:aws:iam::123456789012:role/x",
            "ExternalId": EXT,
            "SecurityKey": "s3cr3t",
            "Regions": "All",
            "AccountNumber": "123456789012",
            "InstallAllLinkedAccounts": "true",
        },
        "inboundConfig": {"authentication": {"token": "tok-123"}},
    }
    got = parse_integration(body)
    assert (got.id, got.display_name, got.status) == ("INTG-1", "team-a", "enabled")
    assert got.install_all_linked_accounts is True
    assert got.regions == ("All",)
    text = repr(got.raw)
    assert EXT not in text
    assert "s3cr3t" not in text
    assert "tok-123" not in text
    assert strip_secrets([{"Token": "x", "keep": 1}]) == [{"keep": 1}]


def test_server_wait_prefers_retry_after_then_reset() -> None:
    """Retry-After wins; else X-RateLimit-Reset (epoch, possibly quoted) minus now; else None."""
    now = 1_800_000_000.0
    assert server_wait_seconds({"Retry-After": "3", "X-RateLimit-Reset": str(now + 50)}, now) == 3.0
    assert server_wait_seconds({"X-RateLimit-Reset": f'"{int(now + 7)}"'}, now) == pytest.approx(7.0)
    assert server_wait_seconds({"X-RateLimit-Reset": str(now - 5)}, now) == 0.0
    assert server_wait_seconds({}, now) is None


def test_scrubber_masks_secrets_and_tokens_but_keeps_arns() -> None:
    """Known secrets and UUID/long opaque strings are masked; role ARNs stay readable."""
    scrub = Scrubber([EXT, "client-secret"])
    arn = "arn:aws:iam::123456789012:role/opsramp/some-very-long-role-name-abcdefghijkl"
    text = scrub(f"Access token expired: 6b4a5f03-7d49-4915-9792-2d964806cbd1; id {EXT}; secret client-secret; {arn}")
    assert "6b4a5f03" not in text
    assert EXT not in text
    assert "client-secret" not in text
    assert arn in text
    assert len(scrub("x" * 1000)) <= 300
