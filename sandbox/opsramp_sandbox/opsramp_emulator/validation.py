"""Validation the OpsRamp emulator applies to AWS install and update bodies, as OpsRamp would (400 + message).

The External-ID install type's exact wire form is undocumented; a `Contract` (contract.py) says which answer this
tenant gives to each open question (the AWSType string, whether access keys must be absent or empty, whether the
linked-accounts key is known), and the defaults are the operator client's first guesses
(docs/opsramp-api-assumptions.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from opsramp_sandbox.opsramp_emulator.contract import Contract
from opsramp_sandbox.opsramp_emulator.trust import ROLE_ARN_RE

# [C] documented types; [G] "External ID" is the console's label for the External-ID type.
AWS_TYPE_IAM = "IAM"
AWS_TYPE_ASSUME_ROLE = "IAM with AssumeRole"
AWS_TYPE_EXTERNAL_ID = "External ID"
LINKED_ACCOUNTS_KEY = "InstallAllLinkedAccounts"  # [G]
KEY_FIELDS = ("AccessKey", "SecurityKey")
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


def aws_types(contract: Contract) -> list[str]:
    """The AWSType strings this tenant accepts: the documented two, and its name for the External-ID type."""
    return sorted({AWS_TYPE_IAM, AWS_TYPE_ASSUME_ROLE, contract.aws_type})


def is_external_id_type(credential: Mapping[str, Any], contract: Contract) -> bool:
    """Whether a credential installs by role + External ID with OpsRamp's own account (no keys of ours)."""
    aws_type = credential.get("AWSType")
    if aws_type == contract.aws_type and aws_type != AWS_TYPE_ASSUME_ROLE:
        return True
    # A tenant whose External-ID type is "IAM with AssumeRole" takes that type without keys.
    return bool(aws_type == AWS_TYPE_ASSUME_ROLE == contract.aws_type and not credential.get("AccessKey"))


def validate_aws_install(body: Any, contract: Contract | None = None) -> dict[str, Any]:
    """The stored form of a valid AWS install body; raises ValidationFailed otherwise."""
    contract = contract or Contract()
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
    credential = dict(credential)
    if credential.get("credentialType") != "AWS":
        raise ValidationFailed("credential.credentialType must be AWS")
    aws_type = credential.get("AWSType")
    if aws_type not in aws_types(contract):
        raise ValidationFailed(f"credential.AWSType must be one of {aws_types(contract)}")
    account = _require_str(credential, "AccountNumber")
    if not ACCOUNT_RE.match(account):
        raise ValidationFailed("credential.AccountNumber must be a 12-digit AWS account number")
    validate_regions(credential.get("Regions"))
    external_type = is_external_id_type(credential, contract)
    if external_type:
        if contract.access_keys == "absent" and any(k in credential for k in KEY_FIELDS):
            raise ValidationFailed("credential.AccessKey and credential.SecurityKey are not allowed for this AWSType")
        if contract.access_keys == "empty" and any(credential.get(k) != "" for k in KEY_FIELDS):
            raise ValidationFailed("credential.AccessKey and credential.SecurityKey are required, empty, for this type")
        credential = {k: v for k, v in credential.items() if k not in KEY_FIELDS}
    else:
        _require_str(credential, "AccessKey")
        _require_str(credential, "SecurityKey")
    if aws_type == AWS_TYPE_ASSUME_ROLE or external_type:
        role_arn = _require_str(credential, "AssumeRoleARN")
        match = ROLE_ARN_RE.match(role_arn)
        if not match:
            raise ValidationFailed("credential.AssumeRoleARN is not a valid IAM role ARN")
        if match.group(1) != account:
            raise ValidationFailed("credential.AssumeRoleARN does not belong to credential.AccountNumber")
    if external_type and contract.external_id == "client":
        external_id = credential.get("ExternalId")
        if not isinstance(external_id, str) or not external_id:
            raise ValidationFailed("credential.ExternalId is required for the External ID type")
        if not EXTERNAL_ID_RE.match(external_id):
            raise ValidationFailed("credential.ExternalId has invalid characters or length")
    if LINKED_ACCOUNTS_KEY in credential:
        linked = credential[LINKED_ACCOUNTS_KEY]
        if contract.linked_accounts == "rejected":
            raise ValidationFailed(f"Unrecognized field credential.{LINKED_ACCOUNTS_KEY}")
        if linked not in (True, False, "true", "false"):
            raise ValidationFailed(f"credential.{LINKED_ACCOUNTS_KEY} must be true or false")
        if contract.linked_accounts == "ignored":
            credential.pop(LINKED_ACCOUNTS_KEY)
    return {"displayName": display_name, "credential": credential}


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
