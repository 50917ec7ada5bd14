"""The IAM and STS adapter: the only module that imports boto3/botocore and classifies their errors.

Layers: `AwsSessions` hands out one `AwsAccount` per credential target (the default chain, or a role assumed
via STS with credentials cached per target and refreshed by botocore before they expire). An `AwsAccount`
knows which account it acts in (`caller_account_id`) and carries an `IamRoles` adapter of get / create /
update / delete primitives. Every IAM and STS request of the process goes through one shared rate limiter,
botocore's standard retry mode, and event hooks that count calls and errors for Prometheus. Every SDK error
leaves this module as a `TransientError` or a `NeedsAttention` whose message names roles and policies but
never a key, token or External ID.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import botocore.session
from botocore.config import Config
from botocore.credentials import (
    CredentialProvider,
    CredentialResolver,
    Credentials,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from . import failpoints, metrics
from .errors import NeedsAttention, OperatorError, TransientError
from .policies import parse_policy
from .ratelimit import RateLimiter, shared_limiter

log = logging.getLogger(__name__)

T = TypeVar("T")
PolicyDocument = dict[str, Any]

# IAM keeps at most five versions of a managed policy.
MAX_POLICY_VERSIONS: Final = 5
LIMITER_KEY: Final = "aws"

# Codes AWS uses for "slow down" and "try again": retried by botocore first, transient if they persist.
_TRANSIENT_CODES: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "ServiceFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalError",
        "ConcurrentModification",
        "IDPCommunicationError",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
# Access keys (AKIA/ASIA...) and long base64-ish runs (secrets, session tokens) never leave this module.
_SECRET_PATTERNS: Final = (
    re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|ANPA|AROA|AIPA|ANVA|APKA)[A-Z0-9]{12,}\b"),
    re.compile(r"[A-Za-z0-9/+=]{40,}"),
)
_MAX_MESSAGE_CHARS: Final = 400


@dataclass(frozen=True)
class AwsSettings:
    """How the adapter talks to AWS; the defaults suit production, tests shorten the timeouts."""

    # IAM is global; the region only picks the STS endpoint and the signing region.
    region: str | None = None
    # None: botocore's own resolution (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_IAM, config files, then AWS).
    endpoint_url: str | None = None
    # One budget for every IAM and STS request of the process (IAM's own limits are per account, but a
    # single operator replica acting for thousands of resources should stay well under them).
    rate_limit: int = 10
    rate_window_seconds: float = 1.0
    # Attempts per call, the first one included (botocore's standard mode retries the rest with backoff).
    max_attempts: int = 5
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    role_session_name: str = "opsramp-aws-operator"
    assume_role_duration_seconds: int = 3600
    # Each assumed-role target costs two botocore clients (0.65 to 3 MiB measured): keep at most this many, each at
    # most this long, the least recently used going first, so that any number of distinct targets costs bounded memory.
    session_cache_size: int = 16
    session_cache_seconds: float = 3600.0


def sanitize(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove keys, tokens and the given secrets from an AWS message and cap its length."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("***", text)
    if len(text) > _MAX_MESSAGE_CHARS:
        text = text[: _MAX_MESSAGE_CHARS - 3] + "..."
    return text


def classify_error(exc: Exception, operation: str, subject: str, secrets: Iterable[str] = ()) -> OperatorError:
    """Turn a botocore exception into our two error kinds, with the AWS code in the reason."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        detail = sanitize(str(error.get("Message") or ""), secrets)
        message = f"IAM/STS {operation} on {subject} failed: {code}" + (f" ({detail})" if detail else "")
        reason = "Aws" + re.sub(r"[^A-Za-z0-9]", "", code)
        if code in _TRANSIENT_CODES or status >= 500:
            return TransientError(reason, message, retry_after=10.0 if status != 400 else 5.0)
        if code == "EntityAlreadyExists":
            # Lookup comes before every create, so this only happens in a race or while IAM's read-after-write
            # is not yet consistent: the next pass finds the entity and checks it is ours.
            return TransientError(reason, message, retry_after=5.0)
        return NeedsAttention(reason, message)
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
        return TransientError("AwsTimeout", f"IAM/STS {operation} on {subject} timed out", retry_after=10.0)
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError):
        return TransientError(
            "AwsConnectionError", f"IAM/STS {operation} on {subject}: cannot reach the endpoint", retry_after=10.0
        )
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return NeedsAttention(
            "AwsNoCredentials",
            f"IAM/STS {operation} on {subject}: no AWS credentials found (IRSA, Pod Identity or environment)",
        )
    if isinstance(exc, BotoCoreError):
        # Other botocore errors (HTTP client errors, SSL problems) are about the network more often than not.
        name = type(exc).__name__
        return TransientError("AwsClientError", f"IAM/STS {operation} on {subject} failed: {name}", retry_after=15.0)
    return NeedsAttention("AwsError", f"IAM/STS {operation} on {subject} failed: {type(exc).__name__}")


def _error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "Unknown")
    return type(exc).__name__


def _tags_to_map(tags: Iterable[Mapping[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or ()}


def _tags_to_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def _as_utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.now(UTC)


@dataclass(frozen=True)
class ObservedRole:
    """A role as IAM reports it (GetRole), with its trust policy parsed."""

    name: str
    path: str
    arn: str
    role_id: str
    # Carries the External ID (sts:ExternalId): never in a repr.
    trust_policy: PolicyDocument = field(repr=False)
    max_session_duration: int
    description: str
    permissions_boundary_arn: str | None
    tags: Mapping[str, str]
    create_date: datetime


@dataclass(frozen=True)
class ObservedPolicy:
    """A customer-managed policy (GetPolicy) with its default version's document (GetPolicyVersion)."""

    arn: str
    name: str
    path: str
    default_version_id: str
    document: PolicyDocument
    tags: Mapping[str, str]
    attachment_count: int


@dataclass(frozen=True)
class PolicyVersion:
    """One version of a managed policy (ListPolicyVersions), without its document."""

    version_id: str
    is_default: bool
    create_date: datetime


class IamRoles:
    """IAM primitives for roles and their managed policies: `get_*` return None when absent, writes raise."""

    def __init__(self, client: Any, secrets: Iterable[str] = ()) -> None:
        self.client = client
        self._secrets = tuple(s for s in secrets if s)

    def _call(self, operation: str, subject: str, **params: Any) -> dict[str, Any]:
        method: Callable[..., dict[str, Any]] = getattr(self.client, _snake(operation))
        try:
            return method(**params)
        except (ClientError, BotoCoreError) as exc:
            raise classify_error(exc, operation, subject, self._secrets) from None

    def _call_absent_ok(self, operation: str, subject: str, **params: Any) -> dict[str, Any] | None:
        """Like _call, but "no such entity" answers None (reads of things that may not exist, idempotent deletes)."""
        method: Callable[..., dict[str, Any]] = getattr(self.client, _snake(operation))
        try:
            return method(**params)
        except ClientError as exc:
            if _error_code(exc) == "NoSuchEntity":
                return None
            raise classify_error(exc, operation, subject, self._secrets) from None
        except BotoCoreError as exc:
            raise classify_error(exc, operation, subject, self._secrets) from None

    def _pages(self, operation: str, key: str, subject: str, **params: Any) -> list[Any] | None:
        """All items of a paginated list call; None when the entity it lists under does not exist."""
        items: list[Any] = []
        marker: str | None = None
        while True:
            page_params = dict(params, Marker=marker) if marker else params
            page = self._call_absent_ok(operation, subject, **page_params)
            if page is None:
                return None
            items.extend(page.get(key, []))
            if not page.get("IsTruncated"):
                return items
            marker = page["Marker"]

    # --- roles -------------------------------------------------------------------------------------------

    def get_role(self, name: str) -> ObservedRole | None:
        """The role called `name` (any path), or None."""
        response = self._call_absent_ok("GetRole", f"role {name}", RoleName=name)
        if response is None:
            return None
        return _observed_role(response["Role"])

    def create_role(
        self,
        name: str,
        *,
        path: str,
        trust_policy: Mapping[str, Any],
        max_session_duration: int,
        description: str,
        permissions_boundary_arn: str | None,
        tags: Mapping[str, str],
    ) -> ObservedRole:
        """Create the role with everything at once, so an ownership-less role never exists."""
        params: dict[str, Any] = {
            "RoleName": name,
            "Path": path,
            "AssumeRolePolicyDocument": _json(trust_policy),
            "MaxSessionDuration": max_session_duration,
            "Tags": _tags_to_list(tags),
        }
        if description:
            params["Description"] = description
        if permissions_boundary_arn:
            params["PermissionsBoundary"] = permissions_boundary_arn
        response = self._call("CreateRole", f"role {name}", **params)
        return _observed_role(response["Role"])

    def update_trust(self, name: str, trust_policy: Mapping[str, Any]) -> None:
        """Replace the role's trust policy."""
        self._call("UpdateAssumeRolePolicy", f"role {name}", RoleName=name, PolicyDocument=_json(trust_policy))

    def update_role(self, name: str, max_session_duration: int, description: str) -> None:
        """Set the role's maximum session duration and description."""
        self._call(
            "UpdateRole",
            f"role {name}",
            RoleName=name,
            MaxSessionDuration=max_session_duration,
            Description=description,
        )

    def put_boundary(self, name: str, boundary_arn: str) -> None:
        """Set the role's permissions boundary."""
        self._call("PutRolePermissionsBoundary", f"role {name}", RoleName=name, PermissionsBoundary=boundary_arn)

    def delete_boundary(self, name: str) -> None:
        """Remove the role's permissions boundary (absent already: fine)."""
        self._call_absent_ok("DeleteRolePermissionsBoundary", f"role {name}", RoleName=name)

    def tag_role(self, name: str, tags: Mapping[str, str]) -> None:
        """Add or overwrite tags on the role."""
        if tags:
            self._call("TagRole", f"role {name}", RoleName=name, Tags=_tags_to_list(tags))

    def untag_role(self, name: str, keys: Iterable[str]) -> None:
        """Remove tags from the role."""
        key_list = sorted(keys)
        if key_list:
            self._call("UntagRole", f"role {name}", RoleName=name, TagKeys=key_list)

    def list_attached(self, name: str) -> tuple[str, ...] | None:
        """ARNs of the managed policies attached to the role, or None when the role does not exist."""
        items = self._pages("ListAttachedRolePolicies", "AttachedPolicies", f"role {name}", RoleName=name)
        return None if items is None else tuple(p["PolicyArn"] for p in items)

    def attach(self, name: str, policy_arn: str) -> None:
        """Attach a managed policy to the role (already attached: IAM answers success)."""
        self._call("AttachRolePolicy", f"role {name} and policy {policy_arn}", RoleName=name, PolicyArn=policy_arn)

    def detach(self, name: str, policy_arn: str) -> bool:
        """Detach a managed policy; False when the role or the attachment was already gone."""
        response = self._call_absent_ok(
            "DetachRolePolicy", f"role {name} and policy {policy_arn}", RoleName=name, PolicyArn=policy_arn
        )
        return response is not None

    def list_inline(self, name: str) -> tuple[str, ...]:
        """Names of the role's inline policies (none when the role is gone)."""
        return tuple(self._pages("ListRolePolicies", "PolicyNames", f"role {name}", RoleName=name) or ())

    def get_inline(self, name: str, policy_name: str) -> PolicyDocument | None:
        """The document of one inline policy of the role, or None when it (or the role) is gone."""
        response = self._call_absent_ok(
            "GetRolePolicy", f"role {name} inline policy {policy_name}", RoleName=name, PolicyName=policy_name
        )
        return None if response is None else parse_policy(response.get("PolicyDocument") or "{}")

    def delete_inline(self, name: str, policy_name: str) -> bool:
        """Delete an inline policy of the role; False when already gone."""
        response = self._call_absent_ok(
            "DeleteRolePolicy", f"role {name} inline policy {policy_name}", RoleName=name, PolicyName=policy_name
        )
        return response is not None

    def list_instance_profiles(self, name: str) -> tuple[str, ...]:
        """Names of the instance profiles holding the role (none when the role is gone)."""
        items = self._pages("ListInstanceProfilesForRole", "InstanceProfiles", f"role {name}", RoleName=name)
        return tuple(p["InstanceProfileName"] for p in items or ())

    def remove_from_instance_profile(self, name: str, profile: str) -> bool:
        """Take the role out of an instance profile (the profile itself is not ours); False when already out."""
        response = self._call_absent_ok(
            "RemoveRoleFromInstanceProfile",
            f"role {name} in instance profile {profile}",
            RoleName=name,
            InstanceProfileName=profile,
        )
        return response is not None

    def delete_role(self, name: str) -> bool:
        """Delete the role itself (callers detach and empty it first); False when already gone."""
        return self._call_absent_ok("DeleteRole", f"role {name}", RoleName=name) is not None

    # --- managed policies ----------------------------------------------------------------------------------

    def get_policy(self, arn: str) -> ObservedPolicy | None:
        """The managed policy and its default document, or None."""
        subject = f"policy {arn}"
        response = self._call_absent_ok("GetPolicy", subject, PolicyArn=arn)
        if response is None:
            return None
        policy = response["Policy"]
        version = self._call_absent_ok("GetPolicyVersion", subject, PolicyArn=arn, VersionId=policy["DefaultVersionId"])
        if version is None:
            return None  # deleted between the two calls
        return ObservedPolicy(
            arn=policy["Arn"],
            name=policy["PolicyName"],
            path=policy.get("Path", "/"),
            default_version_id=policy["DefaultVersionId"],
            document=parse_policy(version["PolicyVersion"]["Document"]),
            tags=_tags_to_map(policy.get("Tags")),
            attachment_count=int(policy.get("AttachmentCount", 0)),
        )

    def create_policy(
        self, name: str, path: str, document: Mapping[str, Any], description: str, tags: Mapping[str, str]
    ) -> str:
        """Create a customer-managed policy (tagged at birth) and return its ARN."""
        params: dict[str, Any] = {
            "PolicyName": name,
            "Path": path,
            "PolicyDocument": _json(document),
            "Tags": _tags_to_list(tags),
        }
        if description:
            params["Description"] = description
        response = self._call("CreatePolicy", f"policy {name}", **params)
        return str(response["Policy"]["Arn"])

    def list_policy_versions(self, arn: str) -> tuple[PolicyVersion, ...]:
        """The policy's versions, oldest first."""
        items = self._pages("ListPolicyVersions", "Versions", f"policy {arn}", PolicyArn=arn) or []
        versions = [
            PolicyVersion(v["VersionId"], bool(v.get("IsDefaultVersion")), _as_utc(v.get("CreateDate"))) for v in items
        ]
        return tuple(sorted(versions, key=lambda v: (v.create_date, _version_number(v.version_id))))

    def create_policy_version(self, arn: str, document: Mapping[str, Any], set_as_default: bool = True) -> str:
        """Add a version (the default by default), first pruning the oldest non-default ones to stay under 5."""
        versions = self.list_policy_versions(arn)
        prunable = [v for v in versions if not v.is_default]
        excess = len(versions) - (MAX_POLICY_VERSIONS - 1)
        for version in prunable[: max(0, excess)]:
            self.delete_policy_version(arn, version.version_id)
        response = self._call(
            "CreatePolicyVersion",
            f"policy {arn}",
            PolicyArn=arn,
            PolicyDocument=_json(document),
            SetAsDefault=set_as_default,
        )
        return str(response["PolicyVersion"]["VersionId"])

    def delete_policy_version(self, arn: str, version_id: str) -> bool:
        """Delete one non-default version; False when already gone."""
        response = self._call_absent_ok(
            "DeletePolicyVersion", f"policy {arn} version {version_id}", PolicyArn=arn, VersionId=version_id
        )
        return response is not None

    def tag_policy(self, arn: str, tags: Mapping[str, str]) -> None:
        """Add or overwrite tags on a managed policy."""
        if tags:
            self._call("TagPolicy", f"policy {arn}", PolicyArn=arn, Tags=_tags_to_list(tags))

    def untag_policy(self, arn: str, keys: Iterable[str]) -> None:
        """Remove tags from a managed policy."""
        key_list = sorted(keys)
        if key_list:
            self._call("UntagPolicy", f"policy {arn}", PolicyArn=arn, TagKeys=key_list)

    def delete_policy(self, arn: str) -> bool:
        """Delete a managed policy with all its versions (it must be detached); False when already gone."""
        try:
            versions = self.list_policy_versions(arn)
        except NeedsAttention as exc:
            if exc.reason == "AwsNoSuchEntity":
                return False
            raise
        for version in versions:
            if not version.is_default:
                self.delete_policy_version(arn, version.version_id)
        return self._call_absent_ok("DeletePolicy", f"policy {arn}", PolicyArn=arn) is not None


def _observed_role(role: Mapping[str, Any]) -> ObservedRole:
    boundary = role.get("PermissionsBoundary") or {}
    return ObservedRole(
        name=role["RoleName"],
        path=role.get("Path", "/"),
        arn=role["Arn"],
        role_id=role.get("RoleId", ""),
        trust_policy=parse_policy(role.get("AssumeRolePolicyDocument") or "{}"),
        max_session_duration=int(role.get("MaxSessionDuration", 3600)),
        description=role.get("Description") or "",
        permissions_boundary_arn=boundary.get("PermissionsBoundaryArn"),
        tags=_tags_to_map(role.get("Tags")),
        create_date=_as_utc(role.get("CreateDate")),
    )


def _json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


def _version_number(version_id: str) -> int:
    digits = version_id.lstrip("v")
    return int(digits) if digits.isdigit() else 0


class AwsAccount:
    """One credential target: knows its account id (cached) and carries the `IamRoles` adapter."""

    def __init__(
        self,
        iam_client: Any,
        sts_client: Any,
        label: str,
        secrets: Iterable[str] = (),
        organizations_client: Callable[[], Any] | None = None,
    ) -> None:
        self.iam = IamRoles(iam_client, secrets)
        self._organizations_client = organizations_client
        self._organizations: Organizations | None = None
        self.sts_client = sts_client
        self.label = label
        self._secrets = tuple(s for s in secrets if s)
        self._account_id: str | None = None
        self._caller_arn: str | None = None
        self._lock = threading.Lock()

    @property
    def iam_client(self) -> Any:
        """The botocore IAM client (tests register event hooks on `iam_client.meta.events`)."""
        return self.iam.client

    def _identity(self) -> tuple[str, str]:
        with self._lock:
            if self._account_id is None or self._caller_arn is None:
                try:
                    response = self.sts_client.get_caller_identity()
                except (ClientError, BotoCoreError) as exc:
                    raise classify_error(exc, "GetCallerIdentity", self.label, self._secrets) from None
                self._account_id = str(response["Account"])
                self._caller_arn = str(response["Arn"])
            return self._account_id, self._caller_arn

    def caller_account_id(self) -> str:
        """The 12-digit account these credentials act in (STS GetCallerIdentity, asked once)."""
        return self._identity()[0]

    def partition(self) -> str:
        """The ARN partition of the account ("aws", "aws-cn", "aws-us-gov"), from the caller's ARN."""
        parts = self._identity()[1].split(":")
        return parts[1] if len(parts) > 1 and parts[1] else "aws"

    @property
    def organizations(self) -> Organizations:
        """AWS Organizations as these credentials see it (the client is made on first use)."""
        with self._lock:
            if self._organizations is None:
                if self._organizations_client is None:
                    raise NeedsAttention("AwsError", f"{self.label}: no AWS Organizations client")
                self._organizations = Organizations(self._organizations_client(), self._secrets)
            return self._organizations

    def __repr__(self) -> str:
        return f"AwsAccount({self.label})"


class _FixedCredentialProvider(CredentialProvider):
    """Hands a botocore session one credentials object (our refreshable assumed-role credentials)."""

    METHOD = "opsramp-assume-role"
    CANONICAL_NAME = "custom-opsramp-assume-role"

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> Credentials:
        return self._credentials


# Operations that only read: everything else is a write (a failpoint for the chaos suite).
_READ_PREFIXES = ("Get", "List", "Describe", "Simulate")


@dataclass
class _Hooks:
    """Event handlers shared by every client: rate limit each HTTP attempt, count calls and errors."""

    limiter: RateLimiter
    calls: list[Callable[[str, str], None]] = field(default_factory=list)

    def register(self, client: Any, service: str) -> None:
        events = client.meta.events
        events.register(f"before-call.{service}", self._before_call(service))
        events.register(f"before-send.{service}", self._before_send(service))
        events.register(f"after-call.{service}", self._after_call(service))
        # needs-retry fires after every HTTP attempt, so errors botocore retried on its own are counted too.
        events.register(f"needs-retry.{service}", self._attempt_done(service))

    def _before_call(self, service: str) -> Callable[..., None]:
        def handler(model: Any, **_: Any) -> None:
            metrics.API_CALLS.labels(service=service, operation=model.name).inc()

        return handler

    def _before_send(self, service: str) -> Callable[..., None]:
        # before-send fires once per HTTP attempt, so botocore's retries are rate limited too.
        def handler(**_: Any) -> None:
            waited = self.limiter.acquire()
            if waited > 0:
                metrics.RATE_LIMIT_WAIT_SECONDS.labels(service=service, category="aws").inc(waited)

        return handler

    def _after_call(self, service: str) -> Callable[..., None]:
        def handler(http_response: Any, model: Any, **_: Any) -> None:
            if (
                http_response is not None
                and http_response.status_code < 300
                and not model.name.startswith(_READ_PREFIXES)
            ):
                failpoints.hit(f"{service}:{model.name}")

        return handler

    def _attempt_done(self, service: str) -> Callable[..., None]:
        def handler(
            response: Any = None,
            caught_exception: BaseException | None = None,
            operation: Any = None,
            **_: Any,
        ) -> None:
            name = getattr(operation, "name", "unknown")
            if caught_exception is not None:
                metrics.API_ERRORS.labels(service=service, operation=name, code=_error_code(caught_exception)).inc()
                return
            if response is None:
                return
            http_response, parsed = response
            if http_response is not None and http_response.status_code >= 300:
                code = str((parsed or {}).get("Error", {}).get("Code") or http_response.status_code)
                metrics.API_ERRORS.labels(service=service, operation=name, code=code).inc()
            # None: this hook never decides whether botocore retries.

        return handler


@functools.cache
def known_regions() -> frozenset[str]:
    """Every region code botocore knows in any partition (EC2's list, the widest), for checking spec.regions."""
    session = botocore.session.get_session()
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("ec2", partition_name=partition))
    return frozenset(regions)


class AwsSessions:
    """Factory of `AwsAccount`s: the default credential chain, or an assumed role per (ARN, External ID)."""

    def __init__(
        self,
        settings: AwsSettings | None = None,
        *,
        limiter: RateLimiter | None = None,
        base_session: botocore.session.Session | None = None,
    ) -> None:
        self.settings = settings or AwsSettings()
        self.limiter = limiter or shared_limiter(
            LIMITER_KEY, self.settings.rate_limit, self.settings.rate_window_seconds
        )
        self._base = base_session or botocore.session.Session()
        self._region = (
            self.settings.region
            or self._base.get_config_variable("region")
            or "us-east-1"  # IAM is global; any region signs, us-east-1 always exists
        )
        self._config = Config(
            region_name=self._region,
            # total_max_attempts counts the first try too (botocore's "max_attempts" counts only retries).
            retries={"mode": "standard", "total_max_attempts": self.settings.max_attempts},
            connect_timeout=self.settings.connect_timeout,
            read_timeout=self.settings.read_timeout,
            user_agent_extra="opsramp-aws-operator",
        )
        self._hooks = _Hooks(self.limiter)
        self._lock = threading.Lock()
        self._default: AwsAccount | None = None
        # key -> (created at, account), least recently used first.
        self._targets: collections.OrderedDict[tuple[str, str], tuple[float, AwsAccount]] = collections.OrderedDict()

    def _client(self, session: botocore.session.Session, service: str) -> Any:
        client = session.create_client(
            service, region_name=self._region, config=self._config, endpoint_url=self.settings.endpoint_url
        )
        self._hooks.register(client, service)
        return client

    def default(self) -> AwsAccount:
        """The account of the default credential chain (IRSA, EKS Pod Identity, environment, ...)."""
        with self._lock:
            if self._default is None:
                self._default = AwsAccount(
                    self._client(self._base, "iam"),
                    self._client(self._base, "sts"),
                    "default credentials",
                    organizations_client=lambda: self._client(self._base, "organizations"),
                )
            return self._default

    def for_target(self, assume_role_arn: str | None, external_id: str | None = None) -> AwsAccount:
        """The account to act in: the default chain, or `assume_role_arn` assumed via STS (cached per target).

        Nothing is called here: the role is assumed on the first request, and botocore refreshes the
        credentials in the background window before they expire (15 minutes ahead by default).
        """
        if not assume_role_arn:
            return self.default()
        # The cache key holds a digest of the External ID, never the value itself.
        key = (assume_role_arn, hashlib.sha256((external_id or "").encode()).hexdigest())
        with self._lock:
            hit = self._targets.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.settings.session_cache_seconds:
                self._targets.move_to_end(key)
                return hit[1]
        # Build outside the lock (sessions are not free); keep the first one if two threads race.
        account = self._assumed_account(assume_role_arn, external_id)
        with self._lock:
            hit = self._targets.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.settings.session_cache_seconds:
                self._targets.move_to_end(key)
                return hit[1]
            self._targets[key] = (time.monotonic(), account)
            self._targets.move_to_end(key)
            while len(self._targets) > self.settings.session_cache_size:
                self._targets.popitem(last=False)
            metrics.AWS_SESSIONS.set(len(self._targets))
            return account

    def cached_targets(self) -> int:
        """How many assumed-role sessions are held now."""
        with self._lock:
            return len(self._targets)

    def _assumed_account(self, role_arn: str, external_id: str | None) -> AwsAccount:
        base_sts = self.default().sts_client
        secrets = (external_id,) if external_id else ()
        subject = f"role {role_arn}"

        def refresh() -> dict[str, str]:
            params: dict[str, Any] = {
                "RoleArn": role_arn,
                "RoleSessionName": self.settings.role_session_name,
                "DurationSeconds": self.settings.assume_role_duration_seconds,
            }
            if external_id:
                params["ExternalId"] = external_id
            try:
                response = base_sts.assume_role(**params)
            except (ClientError, BotoCoreError) as exc:
                raise classify_error(exc, "AssumeRole", subject, secrets) from None
            creds = response["Credentials"]
            return {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": _as_utc(creds["Expiration"]).isoformat(),
            }

        credentials = DeferredRefreshableCredentials(refresh_using=refresh, method="opsramp-assume-role")
        session = botocore.session.Session()
        # Share the service models already loaded by the base session: thousands of targets must not each
        # parse IAM's model again.
        session.register_component("data_loader", self._base.get_component("data_loader"))
        session.register_component(
            "credential_provider", CredentialResolver(providers=[_FixedCredentialProvider(credentials)])
        )
        return AwsAccount(
            self._client(session, "iam"),
            self._client(session, "sts"),
            f"assumed role {role_arn}",
            secrets,
            organizations_client=lambda: self._client(session, "organizations"),
        )


@dataclass(frozen=True)
class OrgAccount:
    """A member account as AWS Organizations lists it."""

    account_id: str
    status: str  # ACTIVE, SUSPENDED, PENDING_CLOSURE
    parent_id: str


class Organizations:
    """AWS Organizations reads: which accounts the organization, or some of its OUs (nested ones too), holds."""

    def __init__(self, client: Any, secrets: Iterable[str] = ()) -> None:
        self.client = client
        self._secrets = tuple(s for s in secrets if s)

    def _pages(self, operation: str, key: str, subject: str, **params: Any) -> list[Any]:
        method: Callable[..., dict[str, Any]] = getattr(self.client, _snake(operation))
        items: list[Any] = []
        token: str | None = None
        while True:
            try:
                page = method(**(dict(params, NextToken=token) if token else params))
            except (ClientError, BotoCoreError) as exc:
                raise classify_error(exc, operation, subject, self._secrets) from None
            items.extend(page.get(key, []))
            token = page.get("NextToken")
            if not token:
                return items

    def roots(self) -> list[str]:
        return [str(r["Id"]) for r in self._pages("ListRoots", "Roots", "the organization")]

    def accounts_under(self, parent_id: str) -> list[OrgAccount]:
        """Every account under `parent_id` (a root or an OU), nested OUs included, breadth first."""
        found: list[OrgAccount] = []
        queue = [parent_id]
        seen: set[str] = set()
        while queue:
            parent = queue.pop(0)
            if parent in seen:
                continue
            seen.add(parent)
            for account in self._pages("ListAccountsForParent", "Accounts", parent, ParentId=parent):
                found.append(OrgAccount(str(account["Id"]), str(account.get("Status", "ACTIVE")), parent))
            for unit in self._pages("ListOrganizationalUnitsForParent", "OrganizationalUnits", parent, ParentId=parent):
                queue.append(str(unit["Id"]))
        return found
