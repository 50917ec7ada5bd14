"""OpsRamp's wire contract: every detail the public docs leave open, and the pure encoding and decoding of it.

`WireFormat` names each guess; docs/opsramp-api-assumptions.md lists the same items as a checklist to confirm
against a live tenant (and `opsramp-aws-operator probe` answers them), and the sandbox emulator can answer each of
them every plausible way (its contract switches). Where a guess can be checked from OpsRamp's answers, the client
does not rely on it: `Dialect` holds what it learned per tenant. Nothing here does I/O.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final


class WireFormat:
    """Everything about OpsRamp's wire format that the public docs do not settle, in one place.

    Marks as in reference/opsramp-api.md: [C] confirmed, [L] likely, [G] guess. Each [G] and [L] item is on
    the checklist in docs/opsramp-api-assumptions.md. The sandbox emulator encodes the same guesses on its
    side, so a change here needs the matching change there.
    """

    # [C] current path; the legacy path is tried once when the current one answers 404 (older pods).
    TOKEN_PATH: Final = "/tenancy/auth/oauth/token"  # noqa: S105 (a path, not a password)
    LEGACY_TOKEN_PATH: Final = "/auth/oauth/token"  # noqa: S105
    # [C] v2 resource base.
    API_BASE: Final = "/api/v2/tenants/{tenant_id}/integrations"
    INSTALL_AWS_PATH: Final = API_BASE + "/install/AWS"
    INSTALLED_PATH: Final = API_BASE + "/installed/{integration_id}"
    SEARCH_PATH: Final = API_BASE + "/installed/search"

    ENABLE_PATH: Final = INSTALLED_PATH + "/enable"
    DISABLE_PATH: Final = INSTALLED_PATH + "/disable"
    ACTIVITY_PATH: Final = API_BASE + "/activity"
    DISCOVERY_PATH: Final = "/api/v2/tenants/{tenant_id}/policies/discovery"
    DISCOVERY_PROFILE_PATH: Final = DISCOVERY_PATH + "/{profile_id}"
    DISCOVERY_SEARCH_PATH: Final = DISCOVERY_PATH + "/search"
    DISCOVERY_SCAN_PATH: Final = DISCOVERY_PATH + "/action/scan/{profile_id}"

    # [C] credentialType for AWS. [G] AWSType for the console's "External ID" install type (Q1): only "IAM" and
    # "IAM with AssumeRole" appear in OpsRamp's OpenAPI examples. The client tries these in order and keeps, per
    # tenant, the first one OpsRamp accepts (a 400 naming AWSType moves to the next).
    CREDENTIAL_TYPE: Final = "AWS"
    AWS_TYPE_CHOICES: Final = ("External ID", "ExternalId", "IAM with AssumeRole")
    AWS_TYPE_EXTERNAL_ID: Final = AWS_TYPE_CHOICES[0]
    # [?] Q2: AccessKey/SecurityKey absent for the External-ID type; a 400 naming them makes the client send them
    # empty for that tenant.
    KEY_FIELDS: Final = ("AccessKey", "SecurityKey")
    # [G] Q3: no documented API field for the console's "Install All Linked Accounts" checkbox. Sent inside
    # `credential` as "true"/"false" only when the user asked for linked accounts (or to switch them off again),
    # so a server that refuses unknown keys refuses only those resources, with a condition saying why.
    LINKED_ACCOUNTS_KEY: Final = "InstallAllLinkedAccounts"
    # [C] "All" or one region code. [G] several regions: one comma-separated string, no spaces (Q4).
    ALL_REGIONS: Final = "All"
    REGIONS_SEPARATOR: Final = ","
    # [L] OpsRamp's examples name the credential set an install creates "<displayName> AWS Integration"; with
    # no displayName in an answer, this is how the operator recognises its integration by name (Q5).
    CREDENTIAL_NAME_SUFFIX: Final = " AWS Integration"
    # [L] "AWS" is the integration type id (uId) and CLOUD_INTEGRATION its category, inferred from search
    # examples (Q12). There is no documented displayName search key, so we list every AWS integration and filter
    # on the name here. A tenant that refuses the query (400 naming queryString) is listed without it.
    SEARCH_QUERY: Final = "category:CLOUD_INTEGRATION+uId:AWS"
    SEARCH_PAGE_SIZE: Final = 100  # [L] the largest page OpsRamp serves for installed/search; halved on a 400 (Q13)
    AWS_INTEGRATION_ID: Final = "AWS"
    # [?] Q17: how OpsRamp answers an id it does not know: 404, or 400 / 500 with a "not found" message. A 400 or
    # 500 carrying one of these is confirmed against the listing before the id is taken for gone.
    NOT_FOUND_MARKERS: Final = ("not found", "no installed integration", "does not exist", "no such")
    # [?] Q14: how a duplicate display name is refused, if it is.
    DUPLICATE_MARKERS: Final = ("already exist", "duplicate")
    # [?] Q7: how an update that may not change the credential is refused, if it is.
    CREDENTIAL_IMMUTABLE_MARKERS: Final = ("cannot be changed", "can not be changed", "not allowed to change")
    # [?] Q20: integration status values (enabled/disabled documented; compared case-insensitively).
    STATUS_ENABLED: Final = frozenset({"enabled", "active"})
    STATUS_DISABLED: Final = frozenset({"disabled", "inactive"})
    # [C] Activity verdicts (integrations/activity): status SUCCESS / FAILED, processedTime in epoch milliseconds.
    ACTIVITY_OK: Final = frozenset({"SUCCESS", "COMPLETE"})
    ACTIVITY_FAILED: Final = frozenset({"FAILED", "FAILURE", "ERROR"})
    # [L] Discovery profile (OpenAPI /policies/discovery): filter rules by resource type; [G] tag rules as
    # {"filterType": type, "key": "tag:<key>", "operator": "Equals", "value": value}.
    DISCOVERY_TAG_KEY_PREFIX: Final = "tag:"
    DISCOVERY_MANAGE_ACTION: Final = "MANAGE DEVICE"
    # [?] How an expired or revoked access token is signalled: 401 per the status table, 407 "Token expired"
    # per the same table, and (python-opsramp's experience) sometimes 400 with an auth message. We re-auth once
    # on any of these and retry the call.
    TOKEN_REJECTED_STATUSES: Final = frozenset({401, 407})
    TOKEN_REJECTED_400_MARKERS: Final = ("invalid_token", "unable to authenticate", "token expired")
    # A refusal that says the token itself is invalid or expired (revoked), rather than that the client may not act.
    TOKEN_INVALID_MARKERS: Final = ("invalid_token", "invalid access token", "expired", "unable to authenticate")
    # [G] How OpsRamp reports that it could not assume the role at install/update (wrong trust policy, wrong
    # External ID, or a role IAM has not propagated yet): a 400 whose message mentions assuming the role. An
    # asynchronous tenant says the same in a FAILED activity record instead (Q8).
    # (Not a bare "assumerole": the AWSType "IAM with AssumeRole" appears in messages about the type.)
    ASSUME_ROLE_FAILURE_MARKERS: Final = ("assume role", "assume the role", "sts:assumerole on")
    # [C] Rate-limit headers; values may arrive quoted (HPE's Terraform provider strips quotes).
    RATE_LIMIT_RESET_HEADER: Final = "X-RateLimit-Reset"
    RETRY_AFTER_HEADER: Final = "Retry-After"
    # Keys never copied into `InstalledIntegration.raw`, whatever their nesting (compared case-insensitively).
    SECRET_KEYS: Final = frozenset(
        {
            "externalid",
            "securitykey",
            "accesskey",
            "secretkey",
            "token",
            "password",
            "keystorepassword",
            "managementcertificatepassphrase",
            "client_secret",
            "access_token",
        }
    )


@dataclass(frozen=True)
class AwsIntegrationRequest:
    """What the operator wants installed in OpsRamp for one AWS account."""

    display_name: str
    account_number: str  # the customer's 12-digit AWS account
    role_arn: str
    external_id: str = field(repr=False)  # a secret: never in repr, logs or messages
    regions: tuple[str, ...]
    install_all_linked_accounts: bool = False
    # Send the linked-accounts key even when false: OpsRamp was told "true" before and must be told otherwise.
    send_linked_accounts: bool = False


@dataclass
class Dialect:
    """How one tenant wants the install body, and what it is known to do: learned from its answers.

    Starts at the first guesses of `WireFormat`; the client moves on when OpsRamp refuses a guess with a 400 that
    names the field, and keeps what worked for every later call to that tenant (process memory).
    """

    aws_type_index: int = 0
    empty_keys: bool = False
    page_size: int = WireFormat.SEARCH_PAGE_SIZE
    search_query: bool = True
    # "unknown" until an update's read-back shows whether OpsRamp applies credential changes (Q7).
    credential_updates: str = "unknown"

    @property
    def aws_type(self) -> str:
        return WireFormat.AWS_TYPE_CHOICES[self.aws_type_index]

    def describe(self) -> dict[str, Any]:
        return {
            "aws_type": self.aws_type,
            "access_keys": "empty" if self.empty_keys else "absent",
            "page_size": self.page_size,
            "search_query": self.search_query,
            "credential_updates": self.credential_updates,
        }


@dataclass(frozen=True)
class InstalledIntegration:
    """An AWS integration as OpsRamp reports it (secrets stripped from `raw`). None: OpsRamp did not say."""

    id: str
    display_name: str | None
    role_arn: str | None
    regions: tuple[str, ...] | None
    install_all_linked_accounts: bool | None
    account_number: str | None
    status: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    credential_name: str | None = None
    aws_type: str | None = None

    @property
    def name(self) -> str | None:
        """The display name, from `displayName` or else from the credential set's "<name> AWS Integration"."""
        if self.display_name:
            return self.display_name
        if self.credential_name and self.credential_name.endswith(WireFormat.CREDENTIAL_NAME_SUFFIX):
            return self.credential_name[: -len(WireFormat.CREDENTIAL_NAME_SUFFIX)]
        return None

    @property
    def enabled(self) -> bool | None:
        if self.status is None:
            return None
        word = self.status.strip().lower()
        if word in WireFormat.STATUS_ENABLED:
            return True
        if word in WireFormat.STATUS_DISABLED:
            return False
        return None


def encode_regions(regions: tuple[str, ...]) -> str:
    """Regions as OpsRamp's single `Regions` string."""
    if not regions or any(r.lower() == WireFormat.ALL_REGIONS.lower() for r in regions):
        return WireFormat.ALL_REGIONS
    return WireFormat.REGIONS_SEPARATOR.join(regions)


def decode_regions(value: Any) -> tuple[str, ...]:
    """`Regions` back to a tuple; accepts a comma string or a list (in case OpsRamp answers with one)."""
    if isinstance(value, list):
        items = [str(v) for v in value]
    elif isinstance(value, str):
        items = value.split(WireFormat.REGIONS_SEPARATOR)
    else:
        return ()
    cleaned = tuple(i.strip() for i in items if i.strip())
    if any(i.lower() == WireFormat.ALL_REGIONS.lower() for i in cleaned):
        return (WireFormat.ALL_REGIONS,)
    return cleaned


def _decode_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    return None


def install_body(spec: AwsIntegrationRequest, dialect: Dialect | None = None) -> dict[str, Any]:
    """The JSON body for install/AWS and for an update that sets every field, in the tenant's dialect."""
    dialect = dialect or Dialect()
    credential: dict[str, Any] = {
        "credentialType": WireFormat.CREDENTIAL_TYPE,
        "AWSType": dialect.aws_type,
        "AccountNumber": spec.account_number,
        "AssumeRoleARN": spec.role_arn,
        "ExternalId": spec.external_id,
        "Regions": encode_regions(spec.regions),
    }
    if dialect.empty_keys:
        credential.update(dict.fromkeys(WireFormat.KEY_FIELDS, ""))
    # Optional keys only when asked for: a strict server refuses unknown keys, a lenient one ignores them.
    if spec.install_all_linked_accounts or spec.send_linked_accounts:
        credential[WireFormat.LINKED_ACCOUNTS_KEY] = "true" if spec.install_all_linked_accounts else "false"
    return {"displayName": spec.display_name, "credential": credential}


def strip_secrets(value: Any) -> Any:
    """A deep copy of a JSON value without any key named like a secret."""
    if isinstance(value, Mapping):
        return {k: strip_secrets(v) for k, v in value.items() if str(k).lower() not in WireFormat.SECRET_KEYS}
    if isinstance(value, list):
        return [strip_secrets(v) for v in value]
    return value


def parse_integration(body: Mapping[str, Any]) -> InstalledIntegration:
    """An installed-integration JSON object into our dataclass; a field OpsRamp left out stays None."""
    credential = body.get("credential")
    cred: Mapping[str, Any] = credential if isinstance(credential, Mapping) else {}
    role_arn = cred.get("AssumeRoleARN")
    account = cred.get("AccountNumber")
    status = body.get("status")
    name = cred.get("Name")
    aws_type = cred.get("AWSType")
    return InstalledIntegration(
        id=str(body.get("id", "")),
        display_name=str(body["displayName"]) if body.get("displayName") else None,
        role_arn=str(role_arn) if role_arn else None,
        regions=decode_regions(cred["Regions"]) if cred.get("Regions") else None,
        install_all_linked_accounts=_decode_bool(cred.get(WireFormat.LINKED_ACCOUNTS_KEY)),
        account_number=str(account) if account else None,
        status=str(status) if status is not None else None,
        raw=strip_secrets(dict(body)),
        credential_name=str(name) if name else None,
        aws_type=str(aws_type) if aws_type else None,
    )


def mentions(text: str, markers: tuple[str, ...] | frozenset[str]) -> bool:
    lowered = text.lower()
    return any(m in lowered for m in markers)


_NO_SUCH = re.compile(r"\bno\b[\w\s]{0,60}\bfound\b")


def says_not_found(text: str) -> bool:
    """Whether an error message says the thing asked for does not exist ("not found", "No ... found ...")."""
    return mentions(text, WireFormat.NOT_FOUND_MARKERS) or bool(_NO_SUCH.search(text.lower()))


def is_aws_record(body: Mapping[str, Any]) -> bool:
    integration = body.get("integration")
    if isinstance(integration, Mapping) and integration.get("id") is not None:
        return str(integration.get("id")).upper() == WireFormat.AWS_INTEGRATION_ID
    # No type on the record: accept it, the search already asked for AWS only.
    return True


def _header_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.strip().strip('"'))
    except ValueError:
        return None


def server_wait_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """How long the server asked us to wait: Retry-After (seconds) first, else X-RateLimit-Reset (epoch)."""
    retry_after = _header_seconds(headers.get(WireFormat.RETRY_AFTER_HEADER))
    if retry_after is not None:
        return max(0.0, retry_after)
    reset = _header_seconds(headers.get(WireFormat.RATE_LIMIT_RESET_HEADER))
    if reset is not None:
        # Reset is UTC epoch seconds; a small value is a relative delay from a server that misreads the docs.
        wall = time.time() if now is None else now
        return max(0.0, reset - wall) if reset > 1e9 else max(0.0, reset)
    return None


# Error bodies: how OpsRamp says what went wrong, and how we make that safe to show a user.

_MAX_MESSAGE = 300


class Scrubber:
    """Removes known secret values and token-looking strings from text a server sent us."""

    # UUID-like or long opaque strings: OpsRamp tokens are UUIDs; External IDs are long random strings.
    _OPAQUE = re.compile(
        r"[A-Za-z0-9+/=_\-]{32,}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    )
    _ARN = re.compile(r"arn:aws[\w-]*:[\w-]*:[\w-]*:\d{12}:[\w+=,.@/-]+")

    def __init__(self, secrets: list[str]) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        # Keep ARNs (they help the user and are not secret) while masking opaque blobs around them.
        arns: list[str] = []

        def keep(m: re.Match[str]) -> str:
            arns.append(m.group(0))
            return f"\x00{len(arns) - 1}\x00"

        text = self._ARN.sub(keep, text)
        text = self._OPAQUE.sub("***", text)
        text = re.sub(r"\x00(\d+)\x00", lambda m: arns[int(m.group(1))], text)
        text = " ".join(text.split())
        return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def error_text(text: str) -> str:
    """The human part of an OpsRamp error body (shape varies: OAuth-style, message, list of messages)."""
    try:
        body = json.loads(text)
    except ValueError:
        return text[:_MAX_MESSAGE] if text else ""
    parts: list[str] = []
    items = body if isinstance(body, list) else [body]
    for item in items:
        if isinstance(item, Mapping):
            for key in ("message", "error_description", "errorMessage", "error", "code"):
                value = item.get(key)
                if isinstance(value, str | int) and str(value) not in parts:
                    parts.append(str(value))
                    if key in ("message", "error_description", "errorMessage"):
                        break
        elif isinstance(item, str):
            parts.append(item)
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------------------
# Shared process-wide state: one connection pool per endpoint, one token cache per (endpoint, client id)
# ---------------------------------------------------------------------------------------------------------
