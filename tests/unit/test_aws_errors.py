"""Unit tests for the IAM/STS adapter's error edge: classification into our two kinds, and sanitised text."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from opsramp_aws_operator.aws import classify_error, sanitize
from opsramp_aws_operator.errors import NeedsAttention, TransientError


def client_error(code: str, status: int, message: str = "") -> ClientError:
    # botocore's stubs type the response fully; a parsed error response has only what the service sent.
    response: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "CreateRole")


@pytest.mark.parametrize(
    ("error", "kind", "reason"),
    [
        (client_error("Throttling", 400), TransientError, "AwsThrottling"),
        (client_error("ThrottlingException", 400), TransientError, "AwsThrottlingException"),
        (client_error("RequestLimitExceeded", 400), TransientError, "AwsRequestLimitExceeded"),
        (client_error("ServiceFailure", 500), TransientError, "AwsServiceFailure"),
        (client_error("SomethingNew", 503), TransientError, "AwsSomethingNew"),
        (client_error("ConcurrentModification", 409), TransientError, "AwsConcurrentModification"),
        (client_error("EntityAlreadyExists", 409), TransientError, "AwsEntityAlreadyExists"),
        (client_error("AccessDenied", 403), NeedsAttention, "AwsAccessDenied"),
        (client_error("MalformedPolicyDocument", 400), NeedsAttention, "AwsMalformedPolicyDocument"),
        (client_error("LimitExceeded", 409), NeedsAttention, "AwsLimitExceeded"),
        (client_error("InvalidInput", 400), NeedsAttention, "AwsInvalidInput"),
        (client_error("NoSuchEntity", 404), NeedsAttention, "AwsNoSuchEntity"),
        (client_error("DeleteConflict", 409), NeedsAttention, "AwsDeleteConflict"),
        (client_error("InvalidClientTokenId", 403), NeedsAttention, "AwsInvalidClientTokenId"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), TransientError, "AwsConnectionError"),
        (ConnectTimeoutError(endpoint_url="http://127.0.0.1:9"), TransientError, "AwsTimeout"),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:9"), TransientError, "AwsTimeout"),
        (NoCredentialsError(), NeedsAttention, "AwsNoCredentials"),
    ],
)
def test_errors_are_classified_by_how_they_are_retried(error: Exception, kind: type, reason: str) -> None:
    """Throttling, 5xx and network trouble are temporary; permissions, input and limits need a person."""
    classified = classify_error(error, "CreateRole", "role opsramp-team-a-prod")
    assert type(classified) is kind
    assert classified.reason == reason
    assert "role opsramp-team-a-prod" in classified.message


def test_messages_never_carry_keys_tokens_or_external_ids() -> None:
    """Access key ids, long secrets and the given External ID are scrubbed from AWS's message."""
    external_id = "my-external-id-value"
    message = (
        "User: arn:aws:sts::123456789012:assumed-role/central/s with key AKIAIOSFODNN7EXAMPLE "
        "and ASIAXXXXXXXXXXXXXXXX, secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY, "
        f"external id {external_id}, is not authorized to perform: iam:CreateRole"
    )
    classified = classify_error(client_error("AccessDenied", 403, message), "CreateRole", "role r", [external_id])
    text = str(classified)
    for secret in (
        "AKIAIOSFODNN7EXAMPLE",
        "ASIAXXXXXXXXXXXXXXXX",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        external_id,
    ):
        assert secret not in text
    assert "iam:CreateRole" in text and "assumed-role/central" in text


def test_long_messages_are_capped() -> None:
    """A huge AWS message does not flood conditions and Events."""
    assert len(sanitize("word " * 1000)) <= 400
