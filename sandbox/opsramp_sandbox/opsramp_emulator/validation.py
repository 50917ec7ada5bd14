"""Validation the OpsRamp emulator applies to AWS install and update bodies, as OpsRamp would (400 + message).

The External-ID install type's exact wire form is undocumented; the emulator accepts the same guesses as the
operator's client (see docs/opsramp-api-assumptions.md), so both change together when a tenant settles them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from opsramp_sandbox.opsramp_emulator.trust import ROLE_ARN_RE

# [C] documented types; [G] "External ID" is the console's label for the External-ID type.
AWS_TYPE_IAM = "IAM"
AWS_TYPE_ASSUME_ROLE = "IAM with AssumeRole"
AWS_TYPE_EXTERNAL_ID = "External ID"
AWS_TYPES = frozenset({AWS_TYPE_IAM, AWS_TYPE_ASSUME_ROLE, AWS_TYPE_EXTERNAL_ID})
LINKED_ACCOUNTS_KEY = "InstallAllLinkedAccounts"  # [G]
ALL_REGIONS = "All"

ACCOUNT_RE = re.compile(r"^\d{12}$")
REGION_RE = re.compile(
    r"^[a-z]{2}(?:-gov|-iso[a-z]?)?-(?:north|south|east|west|central|northeast|northwest|southeast|southwest)-\d$"
)
# IAM's rule for sts:ExternalId values: 2-1224 characters of [\w+=,.@:/-].
EXTERNAL_ID_RE = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
MAX_DISPLAY_NAME = 255


class ValidationFailed(Exception):
    """A body OpsRamp would refuse; the message is safe to return (it never quotes a secret)."""


def _require_str(credential: Mapping[str, Any], key: str) -> str:
    value = credential.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(f"credential.{key} is required")
    return value


def validate_regions(value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed("credential.Regions is required")
    if value == ALL_REGIONS:
        return
    for region in value.split(","):
        if not REGION_RE.match(region):
            raise ValidationFailed(f"credential.Regions has an invalid region code: {region[:40]!r}")


def validate_aws_install(body: Any) -> dict[str, Any]:
    """The stored form of a valid AWS install body; raises ValidationFailed otherwise."""
    if not isinstance(body, Mapping):
        raise ValidationFailed("request body must be a JSON object")
    display_name = body.get("displayName")
    if not isinstance(display_name, str) or not display_name.strip():
        raise ValidationFailed("displayName is required")
    if len(display_name) > MAX_DISPLAY_NAME:
        raise ValidationFailed(f"displayName must be at most {MAX_DISPLAY_NAME} characters")
    credential = body.get("credential")
    if not isinstance(credential, Mapping):
        raise ValidationFailed("credential is required")
    if credential.get("credentialType") != "AWS":
        raise ValidationFailed("credential.credentialType must be AWS")
    aws_type = credential.get("AWSType")
    if aws_type not in AWS_TYPES:
        raise ValidationFailed(f"credential.AWSType must be one of {sorted(AWS_TYPES)}")
    account = _require_str(credential, "AccountNumber")
    if not ACCOUNT_RE.match(account):
        raise ValidationFailed("credential.AccountNumber must be a 12-digit AWS account number")
    validate_regions(credential.get("Regions"))
    if aws_type in (AWS_TYPE_IAM, AWS_TYPE_ASSUME_ROLE):
        _require_str(credential, "AccessKey")
        _require_str(credential, "SecurityKey")
    if aws_type in (AWS_TYPE_ASSUME_ROLE, AWS_TYPE_EXTERNAL_ID):
        role_arn = _require_str(credential, "AssumeRoleARN")
        match = ROLE_ARN_RE.match(role_arn)
        if not match:
            raise ValidationFailed("credential.AssumeRoleARN is not a valid IAM role ARN")
        if match.group(1) != account:
            raise ValidationFailed("credential.AssumeRoleARN does not belong to credential.AccountNumber")
    if aws_type == AWS_TYPE_EXTERNAL_ID:
        external_id = credential.get("ExternalId")
        if not isinstance(external_id, str) or not external_id:
            raise ValidationFailed("credential.ExternalId is required for the External ID type")
        if not EXTERNAL_ID_RE.match(external_id):
            raise ValidationFailed("credential.ExternalId has invalid characters or length")
    linked = credential.get(LINKED_ACCOUNTS_KEY)
    if linked is not None and linked not in (True, False, "true", "false"):
        raise ValidationFailed(f"credential.{LINKED_ACCOUNTS_KEY} must be true or false")
    return {"displayName": display_name, "credential": dict(credential)}


def merge_update(stored: Mapping[str, Any], body: Any) -> dict[str, Any]:
    """Apply a (partial) update body to a stored record and return the full install-shaped body to validate."""
    if not isinstance(body, Mapping):
        raise ValidationFailed("request body must be a JSON object")
    merged_credential = dict(stored.get("credential") or {})
    credential = body.get("credential")
    if credential is not None:
        if not isinstance(credential, Mapping):
            raise ValidationFailed("credential must be an object")
        merged_credential.update(credential)
    return {
        "displayName": body.get("displayName", stored.get("displayName")),
        "credential": merged_credential,
    }
