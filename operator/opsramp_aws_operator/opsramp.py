"""OpsRamp REST adapter: OAuth2 tokens, the AWS integration calls, retries, rate limits and error classification.

This is the only module that imports `requests`. It turns every HTTP outcome into an `InstalledIntegration`,
`None`, or one of our two error kinds (TransientError / NeedsAttention), with messages built from names and
status codes only: no client secret, token or External ID ever reaches an exception, a log line or a metric.

Every detail OpsRamp's public documentation leaves open lives in `WireFormat` below, and
docs/opsramp-api-assumptions.md lists the same items as a checklist to confirm against a live tenant.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from opsramp_aws_operator import failpoints, metrics
from opsramp_aws_operator.errors import NeedsAttention, TransientError
from opsramp_aws_operator.ratelimit import RateLimiter, shared_limiter

log = logging.getLogger(__name__)

SERVICE: Final = "opsramp"


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

    # [C] credentialType for AWS. [G] AWSType for the console's "External ID" install type: the console
    # label. Only "IAM" and "IAM with AssumeRole" appear in OpsRamp's OpenAPI examples.
    CREDENTIAL_TYPE: Final = "AWS"
    AWS_TYPE_EXTERNAL_ID: Final = "External ID"
    # [G] No documented API field for the console's "Install All Linked Accounts" checkbox. We send it inside
    # `credential` as the string "true"/"false" (every documented credential value is a string) and read
    # back either a string or a boolean.
    LINKED_ACCOUNTS_KEY: Final = "InstallAllLinkedAccounts"
    # [C] "All" or one region code. [G] several regions: one comma-separated string, no spaces.
    ALL_REGIONS: Final = "All"
    REGIONS_SEPARATOR: Final = ","
    # [?] Whether `POST installed/{id}` may change credential fields (role ARN, External ID, regions). We
    # assume it may and send the whole credential on update; if a live tenant proves otherwise, set this to
    # False and the reconciler must uninstall and reinstall instead (see `OpsRampClient.update`).
    UPDATE_MAY_CHANGE_CREDENTIALS: Final = True
    # [L] "AWS" is the integration type id (uId) and CLOUD_INTEGRATION its category, inferred from search
    # examples. There is no documented displayName search key, so we list every AWS integration and filter
    # on displayName here.
    SEARCH_QUERY: Final = "category:CLOUD_INTEGRATION+uId:AWS"
    SEARCH_PAGE_SIZE: Final = 100  # [L] the largest page OpsRamp serves for installed/search
    AWS_INTEGRATION_ID: Final = "AWS"
    # [?] How an expired or revoked access token is signalled: 401 per the status table, 407 "Token expired"
    # per the same table, and (python-opsramp's experience) sometimes 400 with an auth message. We re-auth once
    # on any of these and retry the call.
    TOKEN_REJECTED_STATUSES: Final = frozenset({401, 407})
    TOKEN_REJECTED_400_MARKERS: Final = ("invalid_token", "unable to authenticate", "token expired")
    # [G] How OpsRamp reports that it could not assume the role at install/update (wrong trust policy, wrong
    # External ID, or a role IAM has not propagated yet): a 400 whose message mentions assuming the role.
    ASSUME_ROLE_FAILURE_MARKERS: Final = ("assume role", "assumerole", "assume the role")
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


# ---------------------------------------------------------------------------------------------------------
# Public data types
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpsRampLimits:
    """Client-side budgets per tenant, from OpsRamp's documented per-minute limits for "other APIs"."""

    gets_per_window: int = 500
    paged_gets_per_window: int = 50
    writes_per_window: int = 50
    window_seconds: float = 60.0
    # Our limiter counts when we send; OpsRamp counts when the request arrives. A little slack keeps
    # latency jitter from pushing one call across into the server's next window: by default a sixtieth of the
    # window (1 s of the documented minute), so a scaled-down window keeps the same share of the budget.
    window_margin_seconds: float | None = None

    @property
    def margin_seconds(self) -> float:
        return self.window_seconds / 60 if self.window_margin_seconds is None else self.window_margin_seconds


@dataclass(frozen=True)
class OpsRampTimeouts:
    """Timeouts for every call and the retry policy for idempotent ones."""

    connect_seconds: float = 5.0
    read_seconds: float = 30.0
    # Total tries for a retryable call (GET, DELETE, update POST); a create is tried once (429 aside).
    max_attempts: int = 4
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 20.0
    # A server asking us to wait longer than this gets a TransientError with that delay instead of a sleep
    # in the worker thread.
    max_server_wait_seconds: float = 65.0


@dataclass(frozen=True)
class AwsIntegrationRequest:
    """What the operator wants installed in OpsRamp for one AWS account."""

    display_name: str
    account_number: str  # the customer's 12-digit AWS account
    role_arn: str
    external_id: str = field(repr=False)  # a secret: never in repr, logs or messages
    regions: tuple[str, ...]
    install_all_linked_accounts: bool = False


@dataclass(frozen=True)
class InstalledIntegration:
    """An AWS integration as OpsRamp reports it (secrets stripped from `raw`)."""

    id: str
    display_name: str
    role_arn: str | None
    regions: tuple[str, ...]
    install_all_linked_accounts: bool | None
    account_number: str | None
    status: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)


# ---------------------------------------------------------------------------------------------------------
# Wire encoding and decoding (pure functions, unit-testable)
# ---------------------------------------------------------------------------------------------------------


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


def install_body(spec: AwsIntegrationRequest) -> dict[str, Any]:
    """The JSON body for install/AWS and for an update that sets every field."""
    return {
        "displayName": spec.display_name,
        "credential": {
            "credentialType": WireFormat.CREDENTIAL_TYPE,
            "AWSType": WireFormat.AWS_TYPE_EXTERNAL_ID,
            "AccountNumber": spec.account_number,
            "AssumeRoleARN": spec.role_arn,
            "ExternalId": spec.external_id,
            "Regions": encode_regions(spec.regions),
            WireFormat.LINKED_ACCOUNTS_KEY: "true" if spec.install_all_linked_accounts else "false",
        },
    }


def strip_secrets(value: Any) -> Any:
    """A deep copy of a JSON value without any key named like a secret."""
    if isinstance(value, Mapping):
        return {k: strip_secrets(v) for k, v in value.items() if str(k).lower() not in WireFormat.SECRET_KEYS}
    if isinstance(value, list):
        return [strip_secrets(v) for v in value]
    return value


def parse_integration(body: Mapping[str, Any]) -> InstalledIntegration:
    """An installed-integration JSON object into our dataclass."""
    credential = body.get("credential")
    cred: Mapping[str, Any] = credential if isinstance(credential, Mapping) else {}
    role_arn = cred.get("AssumeRoleARN")
    account = cred.get("AccountNumber")
    status = body.get("status")
    return InstalledIntegration(
        id=str(body.get("id", "")),
        display_name=str(body.get("displayName") or ""),
        role_arn=str(role_arn) if role_arn else None,
        regions=decode_regions(cred.get("Regions")),
        install_all_linked_accounts=_decode_bool(cred.get(WireFormat.LINKED_ACCOUNTS_KEY)),
        account_number=str(account) if account else None,
        status=str(status) if status is not None else None,
        raw=strip_secrets(dict(body)),
    )


def _is_aws(body: Mapping[str, Any]) -> bool:
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


_MAX_MESSAGE = 300


class _Scrubber:
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


def _error_text(response: requests.Response) -> str:
    """The human part of an OpsRamp error body (shape varies: OAuth-style, message, list of messages)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:_MAX_MESSAGE] if response.text else ""
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

_sessions: dict[str, requests.Session] = {}
_sessions_lock = threading.Lock()


def _session_for(endpoint: str) -> requests.Session:
    with _sessions_lock:
        session = _sessions.get(endpoint)
        if session is None:
            session = requests.Session()
            # A pool big enough for kopf's worker threads; retries are ours (max_retries=0), never urllib3's,
            # so a create is never resent behind our back.
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.headers.update({"Accept": "application/json", "User-Agent": "opsramp-aws-operator"})
            _sessions[endpoint] = session
        return session


@dataclass
class _Token:
    value: str = ""
    expires_at: float = 0.0
    secret_digest: str = ""


class _Bearer(requests.auth.AuthBase):
    """`Authorization: Bearer <token>` (repr without the token)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_Bearer(<token>)"


class _TokenCache:
    """One access token per (endpoint, client id), refreshed ahead of expiry; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.token = _Token()
        self.token_path = WireFormat.TOKEN_PATH


_tokens: dict[tuple[str, str], _TokenCache] = {}
_tokens_lock = threading.Lock()


def _token_cache_for(endpoint: str, client_id: str) -> _TokenCache:
    with _tokens_lock:
        cache = _tokens.get((endpoint, client_id))
        if cache is None:
            cache = _TokenCache()
            _tokens[(endpoint, client_id)] = cache
        return cache


class _Inventory:
    """One tenant's AWS integrations by display name: listed once, kept current by this process's own writes.

    A display-name lookup means listing every AWS integration of the tenant (OpsRamp has no display-name
    search key), page by page from the paged-GET budget of 50 a minute. A fleet being created would list the
    whole tenant once per resource, so lookups share one listing while it is fresh, and our own installs,
    updates and uninstalls are applied to it as they succeed. A write whose outcome is unknown (timeout,
    dropped connection, 5xx) makes the next lookup list again, so an install that went through unseen is
    adopted rather than duplicated; a new process always lists first. Fresh means younger than a few seconds,
    or for big tenants as long as keeps listings within half the paged-GET budget.
    """

    MIN_AGE_SECONDS: Final = 5.0
    MAX_AGE_SECONDS: Final = 300.0
    # How long a lookup waits for another caller's listing before giving up (temporarily).
    WAIT_SECONDS: Final = 120.0

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.listing: _Listing | None = None
        self.items: dict[str, InstalledIntegration] = {}
        self.by_name: dict[str, dict[str, InstalledIntegration]] = {}
        self.listed_at: float | None = None
        self.pages = 1

    def _add(self, integration: InstalledIntegration) -> None:
        self._drop(integration.id)
        self.items[integration.id] = integration
        self.by_name.setdefault(integration.display_name, {})[integration.id] = integration

    def _drop(self, integration_id: str) -> None:
        old = self.items.pop(integration_id, None)
        if old is not None:
            named = self.by_name.get(old.display_name, {})
            named.pop(integration_id, None)
            if not named:
                self.by_name.pop(old.display_name, None)

    def max_age(self, limits: OpsRampLimits) -> float:
        budget_share = 2.0 * self.pages * limits.window_seconds / max(1, limits.paged_gets_per_window)
        return min(self.MAX_AGE_SECONDS, max(self.MIN_AGE_SECONDS, budget_share))

    def named(
        self, display_name: str, limits: OpsRampLimits, list_all: Callable[[], tuple[list[InstalledIntegration], int]]
    ) -> list[InstalledIntegration]:
        # Single flight, with the network call outside the lock: one caller lists, the others wait for that
        # listing and use it. When it fails (429s, 5xx), each waiter lists on its own, concurrently, and uses its
        # own answer without caching it: sharing is only an optimisation, and one request stream alone would
        # take every 429 of a burst where many in parallel get through.
        while True:
            with self.lock:
                now = time.monotonic()
                if self.listed_at is not None and now - self.listed_at <= self.max_age(limits):
                    return list(self.by_name.get(display_name, {}).values())
                listing = self.listing
                leader = listing is None
                if listing is None:
                    listing = self.listing = _Listing()
            if not leader:
                if not listing.done.wait(self.WAIT_SECONDS):
                    raise TransientError("OpsRampUnavailable", "Listing OpsRamp's AWS integrations takes too long")
                if listing.error is not None:
                    own, _ = list_all()
                    return [i for i in own if i.display_name == display_name]
                continue
            try:
                found, pages = list_all()
            except TransientError as exc:
                listing.error = exc
                raise
            else:
                with self.lock:
                    self.items, self.by_name = {}, {}
                    for integration in found:
                        self._add(integration)
                    # Our writes while the pages were read may be missing from them: apply them again.
                    for integration_id, written in listing.writes:
                        if written is None:
                            self._drop(integration_id)
                        else:
                            self._add(written)
                    self.pages = max(1, pages)
                    self.listed_at = None if listing.invalidated else time.monotonic()
            finally:
                with self.lock:
                    self.listing = None
                listing.done.set()
            with self.lock:
                return list(self.by_name.get(display_name, {}).values())

    def put(self, integration: InstalledIntegration) -> None:
        with self.lock:
            if self.listing is not None:
                self.listing.writes.append((integration.id, integration))
            if self.listed_at is not None:
                self._add(integration)

    def remove(self, integration_id: str) -> None:
        with self.lock:
            if self.listing is not None:
                self.listing.writes.append((integration_id, None))
            self._drop(integration_id)

    def invalidate(self) -> None:
        with self.lock:
            self.listed_at = None
            if self.listing is not None:
                self.listing.invalidated = True


@dataclass
class _Listing:
    """A listing in flight: its waiters, its outcome, and what happened meanwhile."""

    done: threading.Event = field(default_factory=threading.Event)
    error: TransientError | None = None
    writes: list[tuple[str, InstalledIntegration | None]] = field(default_factory=list)
    invalidated: bool = False


_inventories: dict[tuple[str, str, str], _Inventory] = {}
_inventories_lock = threading.Lock()


def _inventory_for(endpoint: str, tenant_id: str, client_id: str) -> _Inventory:
    # Per API client, not per tenant: a lookup must prove that *these* credentials may read this tenant before
    # the reconciler writes anything, which a listing made by another client would not.
    with _inventories_lock:
        return _inventories.setdefault((endpoint, tenant_id, client_id), _Inventory())


_clients: dict[tuple[str, str, str], OpsRampClient] = {}
_clients_lock = threading.Lock()


def get_client(
    endpoint: str,
    tenant_id: str,
    client_id: str,
    client_secret: str,
    *,
    limits: OpsRampLimits | None = None,
    timeouts: OpsRampTimeouts | None = None,
) -> OpsRampClient:
    """The cached client for (endpoint, tenant, client id); a rotated secret or new settings replace it."""
    key = (endpoint.rstrip("/"), tenant_id, client_id)
    limits = limits or OpsRampLimits()
    timeouts = timeouts or OpsRampTimeouts()
    with _clients_lock:
        client = _clients.get(key)
        if (
            client is None
            or not client._has_secret(client_secret)
            or client.limits != limits
            or client.timeouts != timeouts
        ):
            client = OpsRampClient(endpoint, tenant_id, client_id, client_secret, limits=limits, timeouts=timeouts)
            _clients[key] = client
        return client


def _reset_caches_for_tests() -> None:
    """Forget cached clients, tokens and sessions (tests only)."""
    with _clients_lock:
        _clients.clear()
    with _tokens_lock:
        _tokens.clear()
    with _inventories_lock:
        _inventories.clear()
    with _sessions_lock:
        for session in _sessions.values():
            session.close()
        _sessions.clear()


# ---------------------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------------------

_GETS, _PAGED, _WRITES = "gets", "paged_gets", "writes"


class OpsRampClient:
    """The AWS-integration operations of one OpsRamp tenant, through one API client's credentials."""

    def __init__(
        self,
        endpoint: str,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        *,
        limits: OpsRampLimits | None = None,
        timeouts: OpsRampTimeouts | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.tenant_id = tenant_id
        self.client_id = client_id
        self._client_secret = client_secret
        self.limits = limits or OpsRampLimits()
        self.timeouts = timeouts or OpsRampTimeouts()
        self._session = _session_for(self.endpoint)
        self._tokens = _token_cache_for(self.endpoint, client_id)
        self._inventory = _inventory_for(self.endpoint, tenant_id, client_id)
        window = self.limits.window_seconds + self.limits.margin_seconds
        prefix = f"opsramp|{self.endpoint}|{tenant_id}|"
        self._limiters: dict[str, RateLimiter] = {
            _GETS: shared_limiter(prefix + _GETS, self.limits.gets_per_window, window),
            _PAGED: shared_limiter(prefix + _PAGED, self.limits.paged_gets_per_window, window),
            _WRITES: shared_limiter(prefix + _WRITES, self.limits.writes_per_window, window),
        }

    def __repr__(self) -> str:
        return f"OpsRampClient(endpoint={self.endpoint!r}, tenant_id={self.tenant_id!r})"

    def _has_secret(self, secret: str) -> bool:
        return self._client_secret == secret

    # -- public operations --------------------------------------------------------------------------------

    def install_aws(self, spec: AwsIntegrationRequest) -> InstalledIntegration:
        """Install the AWS integration (External-ID type); tried once, since a retry could install twice."""
        with self._unknown_outcome_relists():
            body = self._call(
                "install",
                _WRITES,
                "POST",
                WireFormat.INSTALL_AWS_PATH.format(tenant_id=self.tenant_id),
                json_body=install_body(spec),
                idempotent=False,
                secrets=[spec.external_id],
            )
            if not isinstance(body, Mapping) or not body.get("id"):
                raise TransientError(
                    "OpsRampUnavailable",
                    "OpsRamp answered the AWS install without an integration id; the next reconcile looks it up",
                )
        installed = parse_integration(body)
        self._inventory.put(installed)
        failpoints.hit("opsramp:install")
        return installed

    def get(self, integration_id: str) -> InstalledIntegration | None:
        """The installed integration with this id, or None when OpsRamp has none."""
        body = self._call(
            "get",
            _GETS,
            "GET",
            self._installed_path(integration_id),
            idempotent=True,
            absent_ok=True,
        )
        if body is None:
            return None
        if not isinstance(body, Mapping) or not body.get("id"):
            # Some APIs answer 200 with an empty object for an unknown id.
            return None
        return parse_integration(body)

    def find_by_display_name(self, display_name: str) -> list[InstalledIntegration]:
        """Every AWS integration of the tenant whose displayName equals `display_name` (all pages, now)."""
        found, _ = self._list_aws()
        return [i for i in found if i.display_name == display_name]

    def named(self, display_name: str) -> list[InstalledIntegration]:
        """Like `find_by_display_name`, from the tenant's shared listing while it is fresh (see `_Inventory`).

        The credentials are checked either way (a cached token was issued for this very secret, else one is
        fetched), so a wrong clientSecret fails here, before anything is created, as a listing would.
        """
        self._access_token()
        return self._inventory.named(display_name, self.limits, self._list_aws)

    def _list_aws(self) -> tuple[list[InstalledIntegration], int]:
        """Every AWS integration of the tenant (all pages), and how many pages that took."""
        found: list[InstalledIntegration] = []
        page_no = 1
        pages = 0
        path = WireFormat.SEARCH_PATH.format(tenant_id=self.tenant_id)
        for _ in range(10_000):  # a bound, so a server that always says nextPage cannot loop us forever
            params = {
                "queryString": WireFormat.SEARCH_QUERY,
                "pageNo": str(page_no),
                "pageSize": str(WireFormat.SEARCH_PAGE_SIZE),
            }
            body = self._call("search", _PAGED, "GET", path, params=params, idempotent=True)
            pages += 1
            if not isinstance(body, Mapping):
                break
            results = body.get("results") or []
            for item in results if isinstance(results, list) else []:
                if isinstance(item, Mapping) and _is_aws(item):
                    found.append(parse_integration(item))
            if not body.get("nextPage") or not results:
                break
            next_no = body.get("nextPageNo")
            page_no = int(next_no) if isinstance(next_no, int) and next_no > page_no else page_no + 1
        return found, pages

    def update(self, integration_id: str, spec: AwsIntegrationRequest) -> InstalledIntegration:
        """Set every field of an installed integration to `spec` (a full, idempotent write).

        Assumes OpsRamp accepts credential changes on update (WireFormat.UPDATE_MAY_CHANGE_CREDENTIALS); a
        404 becomes NeedsAttention("NotFound") so the reconciler can forget the recorded id and reinstall.
        """
        with self._unknown_outcome_relists():
            body = self._call(
                "update",
                _WRITES,
                "POST",
                self._installed_path(integration_id),
                json_body=install_body(spec),
                idempotent=True,
                secrets=[spec.external_id],
            )
            if not isinstance(body, Mapping) or not body.get("id"):
                # Tolerate an empty 200: read the result back.
                again = self.get(integration_id)
                if again is None:
                    self._inventory.remove(integration_id)
                    raise NeedsAttention("NotFound", "the OpsRamp integration disappeared during the update")
                updated = again
            else:
                updated = parse_integration(body)
        self._inventory.put(updated)
        failpoints.hit("opsramp:update")
        return updated

    def uninstall(self, integration_id: str, reason: str) -> None:
        """Uninstall the integration with an uninstallReason; one that is already gone counts as done."""
        with self._unknown_outcome_relists():
            self._call(
                "uninstall",
                _WRITES,
                "DELETE",
                self._installed_path(integration_id),
                json_body={"uninstallReason": reason or "Uninstalled by opsramp-aws-operator"},
                idempotent=True,
                absent_ok=True,
            )
        self._inventory.remove(integration_id)
        failpoints.hit("opsramp:uninstall")

    @contextmanager
    def _unknown_outcome_relists(self) -> Iterator[None]:
        """A write that failed temporarily may still have happened: the next display-name lookup lists anew."""
        try:
            yield
        except TransientError:
            self._inventory.invalidate()
            raise
        except NeedsAttention as exc:
            if exc.reason == "NotFound":  # gone behind our back: what else did we miss?
                self._inventory.invalidate()
            raise

    # -- plumbing -----------------------------------------------------------------------------------------

    def _installed_path(self, integration_id: str) -> str:
        return WireFormat.INSTALLED_PATH.format(tenant_id=self.tenant_id, integration_id=quote(integration_id, safe=""))

    def _timeout(self) -> tuple[float, float]:
        return (self.timeouts.connect_seconds, self.timeouts.read_seconds)

    def _backoff(self, attempt: int) -> float:
        base = self.timeouts.backoff_base_seconds * 2.0 ** (attempt - 1)
        # Full jitter keeps a fleet of workers from retrying in lockstep.
        return min(self.timeouts.backoff_max_seconds, base) * (0.5 + random.random() / 2)

    def _scrubber(self, extra: list[str] | None = None) -> _Scrubber:
        return _Scrubber([self._client_secret, self._tokens.token.value, *(extra or [])])

    def _acquire(self, category: str) -> None:
        waited = self._limiters[category].acquire()
        if waited > 0:
            metrics.RATE_LIMIT_WAIT_SECONDS.labels(service=SERVICE, category=category).inc(waited)

    def _error(self, operation: str, code: str) -> None:
        metrics.API_ERRORS.labels(service=SERVICE, operation=operation, code=code).inc()

    def _access_token(self, force: bool = False, rejected: str = "") -> str:
        """A valid access token, fetching one when there is none, it is near expiry, or it was rejected."""
        cache = self._tokens
        digest = hashlib.sha256(self._client_secret.encode()).hexdigest()
        with cache.lock:
            tok = cache.token
            now = time.monotonic()
            stale = force and (not rejected or tok.value == rejected)
            if tok.value and not stale and tok.secret_digest == digest and now < tok.expires_at:
                return tok.value
            cache.token = self._fetch_token(cache, digest)
            return cache.token.value

    def _fetch_token(self, cache: _TokenCache, digest: str) -> _Token:
        data = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._client_secret,
        }
        scrub = self._scrubber()
        for attempt in range(1, self.timeouts.max_attempts + 1):
            metrics.API_CALLS.labels(service=SERVICE, operation="token").inc()
            try:
                response = self._session.post(
                    self.endpoint + cache.token_path,
                    data=data,
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                    timeout=self._timeout(),
                )
            except requests.RequestException as exc:
                self._error("token", type(exc).__name__)
                if attempt < self.timeouts.max_attempts:
                    time.sleep(self._backoff(attempt))
                    continue
                raise TransientError(
                    "OpsRampUnavailable", f"OpsRamp token endpoint unreachable ({type(exc).__name__})"
                ) from None
            status = response.status_code
            if status == 404 and cache.token_path != WireFormat.LEGACY_TOKEN_PATH:
                self._error("token", "404")
                log.debug("token path %s answered 404; trying the legacy path", cache.token_path)
                cache.token_path = WireFormat.LEGACY_TOKEN_PATH
                continue
            if status == 200:
                try:
                    body = response.json()
                    value = str(body["access_token"])
                    # expires_in arrives as an integer or as a string ("7199").
                    lifetime = float(body.get("expires_in", 3600))
                except (ValueError, KeyError, TypeError):
                    self._error("token", "malformed")
                    raise TransientError(
                        "OpsRampUnavailable", "OpsRamp token endpoint returned an unreadable answer"
                    ) from None
                # Refresh ahead of expiry: a minute early for real tokens, a tenth early for short ones.
                margin = min(60.0, lifetime / 10)
                log.debug("fetched an OpsRamp access token valid for %.0fs", lifetime)
                return _Token(value, time.monotonic() + lifetime - margin, digest)
            self._error("token", str(status))
            if status in (400, 401, 403):
                raise NeedsAttention(
                    "OpsRampAuthFailed",
                    f"OpsRamp refused the API client credentials (HTTP {status}: "
                    f"{scrub(_error_text(response)) or 'no detail'}); check clientId and clientSecret "
                    "in the credentials Secret and that the API client is enabled",
                )
            if status == 429 or status >= 500:
                wait = server_wait_seconds(response.headers)
                if attempt < self.timeouts.max_attempts and (wait or 0) <= self.timeouts.max_server_wait_seconds:
                    time.sleep(wait if wait is not None else self._backoff(attempt))
                    continue
                reason = "OpsRampRateLimited" if status == 429 else "OpsRampUnavailable"
                raise TransientError(reason, f"OpsRamp token endpoint answered HTTP {status}", retry_after=wait or 30.0)
            raise NeedsAttention(
                "OpsRampAuthFailed", f"OpsRamp token endpoint answered HTTP {status}; check the endpoint URL"
            )
        raise TransientError("OpsRampUnavailable", "OpsRamp token endpoint kept failing")

    def _call(
        self,
        operation: str,
        category: str,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, str] | None = None,
        idempotent: bool,
        absent_ok: bool = False,
        secrets: list[str] | None = None,
    ) -> Any:
        """One logical API call with auth, rate limiting, retries and error classification.

        Returns the decoded JSON body ({} for an empty one), or None for a 404 when `absent_ok`.
        """
        scrub = self._scrubber(secrets)
        url = self.endpoint + path
        reauthed = False
        attempt = 0
        while True:
            attempt += 1
            self._acquire(category)
            token = self._access_token()
            metrics.API_CALLS.labels(service=SERVICE, operation=operation).inc()
            log.debug("OpsRamp %s %s (attempt %d)", method, path, attempt)
            try:
                response = self._session.request(
                    method,
                    url,
                    params=params,
                    json=json_body,
                    headers={"Content-Type": "application/json"},
                    # As `auth`, not a header: requests then skips its per-request ~/.netrc lookup.
                    auth=_Bearer(token),
                    timeout=self._timeout(),
                )
            except requests.RequestException as exc:
                code = type(exc).__name__
                self._error(operation, code)
                # A connect timeout means nothing was sent, so even a create may go again.
                may_retry = idempotent or isinstance(exc, requests.ConnectTimeout)
                if may_retry and attempt < self.timeouts.max_attempts:
                    time.sleep(self._backoff(attempt))
                    continue
                hint = "" if idempotent else "; not retried since OpsRamp may have acted on it"
                raise TransientError(
                    "OpsRampUnavailable", f"OpsRamp {operation} failed: {code}{hint}", retry_after=15.0
                ) from None

            status = response.status_code
            if 200 <= status < 300:
                if not response.content:
                    return {}
                try:
                    return response.json()
                except ValueError:
                    self._error(operation, "malformed")
                    raise TransientError(
                        "OpsRampUnavailable", f"OpsRamp {operation} returned a body that is not JSON"
                    ) from None

            self._error(operation, str(status))
            text = _error_text(response)
            if self._token_rejected(status, text):
                if not reauthed:
                    # The request was refused before OpsRamp acted on it, so re-sending is safe even for a
                    # create. Only one re-auth: a second refusal means the credentials themselves are bad.
                    reauthed = True
                    attempt -= 1
                    log.debug("OpsRamp refused the access token (HTTP %d); re-authenticating", status)
                    self._access_token(force=True, rejected=token)
                    continue
                raise NeedsAttention(
                    "OpsRampAuthFailed",
                    f"OpsRamp refused a fresh access token for {operation} (HTTP {status}); check that the "
                    "API client is enabled and may act on this tenant",
                )
            if status == 429:
                wait = server_wait_seconds(response.headers)
                wait = self.timeouts.backoff_base_seconds * attempt if wait is None else wait
                # Everyone sharing this tenant's budget backs off, not only this thread.
                self._limiters[category].pause(wait)
                # A 429 is refused before any work, so a create may be re-sent too.
                if attempt < self.timeouts.max_attempts and wait <= self.timeouts.max_server_wait_seconds:
                    log.debug("OpsRamp throttled %s; waiting %.2fs as told", operation, wait)
                    continue
                raise TransientError(
                    "OpsRampRateLimited",
                    f"OpsRamp rate limit reached for {operation} (HTTP 429)",
                    retry_after=max(wait, 1.0),
                )
            if status == 404 and absent_ok:
                return None
            if status >= 500:
                wait = server_wait_seconds(response.headers)
                if idempotent and attempt < self.timeouts.max_attempts:
                    time.sleep(min(wait, self.timeouts.max_server_wait_seconds) if wait else self._backoff(attempt))
                    continue
                hint = (
                    ""
                    if idempotent
                    else "; not retried since OpsRamp may have installed it (the next reconcile looks it up)"
                )
                raise TransientError(
                    "OpsRampUnavailable",
                    f"OpsRamp {operation} answered HTTP {status}{hint}",
                    retry_after=wait or 15.0,
                )
            detail = scrub(text) or "no detail"
            if status == 404:
                raise NeedsAttention("NotFound", f"OpsRamp has no such integration ({operation}: HTTP 404)")
            if status == 403:
                raise NeedsAttention(
                    "OpsRampAuthFailed",
                    f"OpsRamp denied {operation} (HTTP 403: {detail}); the API client may lack permission "
                    "for this tenant",
                )
            if status == 410:
                raise NeedsAttention("OpsRampRejected", "OpsRamp tenant is unavailable or deactivated (HTTP 410)")
            if status == 400 and any(m in text.lower() for m in WireFormat.ASSUME_ROLE_FAILURE_MARKERS):
                # Usually IAM has not propagated the new role yet; if it persists, the trust policy or the
                # OpsRamp AWS account id is wrong. The reconciler escalates when the role is old.
                raise TransientError(
                    "OpsRampCannotAssumeRole",
                    f"OpsRamp could not assume the role ({detail}); a new role can take a minute to "
                    "propagate, otherwise check the OpsRamp AWS account id and the trust policy",
                    retry_after=20.0,
                )
            raise NeedsAttention("OpsRampRejected", f"OpsRamp rejected {operation} (HTTP {status}: {detail})")

    @staticmethod
    def _token_rejected(status: int, text: str) -> bool:
        if status in WireFormat.TOKEN_REJECTED_STATUSES:
            return True
        lowered = text.lower()
        return status == 400 and any(m in lowered for m in WireFormat.TOKEN_REJECTED_400_MARKERS)


__all__ = [
    "AwsIntegrationRequest",
    "InstalledIntegration",
    "OpsRampClient",
    "OpsRampLimits",
    "OpsRampTimeouts",
    "WireFormat",
    "decode_regions",
    "encode_regions",
    "get_client",
    "install_body",
    "parse_integration",
    "server_wait_seconds",
    "strip_secrets",
]
