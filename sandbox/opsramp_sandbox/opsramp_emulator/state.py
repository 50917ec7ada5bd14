"""The OpsRamp emulator's state: API clients, tokens, installed integrations, rate windows, faults, counters.

One lock guards everything, because the aiohttp handlers run on the emulator's loop thread while tests and
the admin methods of `OpsRampEmulator` touch the same state from other threads. Nothing here awaits.
"""

from __future__ import annotations

import copy
import math
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from opsramp_sandbox.opsramp_emulator.contract import Contract, Contracts

# OpsRamp's documented per-tenant, per-minute limits for "other APIs" (integrations, discovery), client tier.
DEFAULT_RATE_LIMITS: dict[str, int] = {"gets": 500, "paged_gets": 50, "writes": 50}
# Keys of the credential object the emulator keeps but never returns (OpsRamp does not echo secrets).
HIDDEN_CREDENTIAL_KEYS = frozenset({"ExternalId", "SecurityKey", "AccessKey"})


@dataclass
class ApiClient:
    """An OpsRamp API client (a "Custom Integration" key and secret) and the tenant it belongs to."""

    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)


@dataclass
class Faults:
    """Fault switches; all off by default. Counters (`*_next`) count down as requests consume them."""

    # Share (0..1) of API requests answered with `error_status` (random, seeded by `seed`).
    error_rate: float = 0.0
    error_status: int = 500
    # The next N API requests (matching `error_method` when set) get `error_status`.
    error_next: int = 0
    error_method: str | None = None
    # Only requests whose path contains this (e.g. "/install/AWS"), and only this tenant's (None: any).
    error_route: str | None = None
    error_tenant: str | None = None
    # Apply the request first, then answer with the error (a create that "succeeded" behind a 5xx).
    error_after_apply: bool = False
    # The next N API requests get a 429 with rate-limit headers; `throttle_retry_after` adds Retry-After.
    throttle_next: int = 0
    throttle_reset_seconds: float = 1.0
    throttle_retry_after: float | None = None
    # Only this tenant's API requests are throttled (None: every tenant's): one tenant's 429s beside others.
    throttle_tenant: str | None = None
    # Seconds added before answering any API or token request.
    latency_seconds: float = 0.0
    # Share of requests, or the next N, whose connection is closed without an answer.
    drop_rate: float = 0.0
    drop_next: int = 0
    seed: int | None = None
    # OpsRamp's role check fails for roles in these AWS accounts, whatever their trust (as a service control policy
    # there denying OpsRamp's AssumeRole would): one member account of a fleet that OpsRamp cannot monitor.
    refuse_assume_accounts: list[str] = field(default_factory=list)

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault switches: {sorted(unknown)}")
        for key, value in changes.items():
            setattr(self, key, value)


@dataclass
class Token:
    value: str
    tenant_id: str
    expires_at: float
    client_id: str = ""
    revoked: bool = False


@dataclass
class RateWindow:
    """A fixed window per (tenant, category), aligned to multiples of the window length on the wall clock."""

    start: float
    count: int = 0


@dataclass
class RequestRecord:
    """One request as the emulator saw it (for tests that check what arrived and when)."""

    at: float
    method: str
    route: str
    path: str  # the concrete path (ids filled in), to tell which integration a request was about
    tenant_id: str | None
    status: int
    category: str | None


class EmulatorState:
    """All mutable state of one emulator instance."""

    def __init__(
        self,
        clients: list[ApiClient],
        *,
        token_lifetime: float,
        rate_window_seconds: float,
        rate_limits: dict[str, int] | None = None,
        expires_in_as_string: bool = True,
    ) -> None:
        self.lock = threading.RLock()
        self.clients = {c.client_id: c for c in clients}
        self.token_lifetime = token_lifetime
        self.rate_window_seconds = rate_window_seconds
        self.rate_limits = dict(DEFAULT_RATE_LIMITS, **(rate_limits or {}))
        self.expires_in_as_string = expires_in_as_string
        self.tokens: dict[str, Token] = {}
        # tenant -> integration id -> stored record (credential includes the hidden keys)
        self.integrations: dict[str, dict[str, dict[str, Any]]] = {}
        self.windows: dict[tuple[str, str], RateWindow] = {}
        self.faults = Faults()
        self._rng = random.Random()
        self.request_counts: Counter[str] = Counter()
        self.requests: list[RequestRecord] = []
        self.throttled = 0
        self.role_checks: list[dict[str, Any]] = []
        self.contracts = Contracts()
        # tenant -> the External ID OpsRamp's console shows on its "Install AWS Integration" page
        self.console_external_ids: dict[str, str] = {}
        # tenant -> integration activity records (newest last), as integrations/activity serves them
        self.activity: dict[str, list[dict[str, Any]]] = {}
        # tenant -> discovery profile id -> profile
        self.discovery: dict[str, dict[int, dict[str, Any]]] = {}
        self._next_profile_id = 100

    def contract(self, tenant_id: str | None) -> Contract:
        return self.contracts.for_tenant(tenant_id)

    def console_external_id(self, tenant_id: str) -> str:
        """The tenant's External ID as OpsRamp's console shows it (what `external_id: generated` assumes with)."""
        with self.lock:
            value = self.console_external_ids.get(tenant_id)
            if value is None:
                value = self.console_external_ids[tenant_id] = "opsramp-" + secrets.token_hex(16)
            return value

    # -- clients and tokens -------------------------------------------------------------------------------

    def add_client(self, client: ApiClient) -> None:
        with self.lock:
            self.clients[client.client_id] = client

    def client_tenant(self, client_id: str) -> str | None:
        with self.lock:
            client = self.clients.get(client_id)
            return client.tenant_id if client is not None else None

    def issue_token(self, client_id: str, client_secret: str) -> Token | None:
        with self.lock:
            client = self.clients.get(client_id)
            if client is None or not secrets.compare_digest(client.client_secret, client_secret):
                return None
            now = time.monotonic()
            if self.contract(client.tenant_id).token_reuse:
                # Spring's token store: the same token again while it is valid (a revoked one is gone from it).
                for token in self.tokens.values():
                    if token.client_id == client_id and token.expires_at > now:
                        return token
            token = Token(str(uuid.uuid4()), client.tenant_id, now + self.token_lifetime, client_id)
            self.tokens[token.value] = token
            return token

    def token_lifetime_field(self, token: Token | None = None) -> int | str:
        # OpsRamp's OpenAPI types expires_in as a string ("7199"); its current guide shows an integer.
        remaining = self.token_lifetime if token is None else math.ceil(token.expires_at - time.monotonic() - 0.01)
        lifetime = max(0, math.floor(remaining) - 1) if remaining >= 2 else 1
        as_string = self.expires_in_as_string and (
            token is None or self.contract(token.tenant_id).expires_in == "string"
        )
        return str(lifetime) if as_string else lifetime

    def check_token(self, value: str) -> tuple[Token | None, str]:
        """(token, problem) where problem is "", "unknown" or "expired"."""
        with self.lock:
            token = self.tokens.get(value)
            if token is None:
                return None, "unknown"
            if time.monotonic() >= token.expires_at:
                return None, "expired"
            return token, ""

    def expire_tokens(self) -> int:
        """Revoke every issued token now (as a credential rotation or OpsRamp's own cleanup would)."""
        with self.lock:
            now = time.monotonic()
            for token in self.tokens.values():
                token.expires_at = min(token.expires_at, now)
                token.revoked = True
            return len(self.tokens)

    # -- rate limits --------------------------------------------------------------------------------------

    def take_rate_slot(self, tenant_id: str, category: str) -> tuple[bool, int, int, float]:
        """(allowed, limit, remaining, reset epoch seconds) for one request of `category`."""
        with self.lock:
            limit = self.rate_limits[category]
            now = time.time()
            length = self.rate_window_seconds
            start = math.floor(now / length) * length
            key = (tenant_id, category)
            window = self.windows.get(key)
            if window is None or window.start != start:
                window = RateWindow(start)
                self.windows[key] = window
            reset = start + length
            if window.count >= limit:
                self.throttled += 1
                return False, limit, 0, reset
            window.count += 1
            return True, limit, limit - window.count, reset

    def note_throttled(self) -> None:
        with self.lock:
            self.throttled += 1

    # -- faults -------------------------------------------------------------------------------------------

    def set_faults(self, changes: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.faults.update(changes)
            if "seed" in changes:
                self._rng.seed(changes["seed"])
            return asdict(self.faults)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults = Faults()

    def should_drop(self) -> bool:
        with self.lock:
            f = self.faults
            if f.drop_next > 0:
                f.drop_next -= 1
                return True
            return f.drop_rate > 0 and self._rng.random() < f.drop_rate

    def should_throttle(self, tenant_id: str | None = None) -> tuple[bool, float, float | None]:
        with self.lock:
            f = self.faults
            if f.throttle_tenant is not None and tenant_id != f.throttle_tenant:
                return False, 0.0, None
            if f.throttle_next > 0:
                f.throttle_next -= 1
                self.throttled += 1
                return True, f.throttle_reset_seconds, f.throttle_retry_after
            return False, 0.0, None

    def injected_error(self, method: str, path: str = "", tenant_id: str | None = None) -> tuple[int | None, bool]:
        """(status to answer or None, whether to apply the request first)."""
        with self.lock:
            f = self.faults
            if (f.error_route is not None and f.error_route not in path) or (
                f.error_tenant is not None and f.error_tenant != tenant_id
            ):
                return None, False
            if f.error_next > 0 and (f.error_method is None or f.error_method.upper() == method.upper()):
                f.error_next -= 1
                return f.error_status, f.error_after_apply
            if f.error_rate > 0 and self._rng.random() < f.error_rate:
                return f.error_status, f.error_after_apply
            return None, False

    # -- integrations -------------------------------------------------------------------------------------

    def add_integration(self, tenant_id: str, record: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            record = copy.deepcopy(record)
            record.setdefault("id", f"INTG-{uuid.uuid4()}")
            record.setdefault("installedBy", "opsramp_api_user")
            record.setdefault("installedTime", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S%z"))
            record["status"] = "disabled" if str(record.get("status", "enabled")).lower() in DISABLED else "enabled"
            self.integrations.setdefault(tenant_id, {})[record["id"]] = record
            return copy.deepcopy(record)

    def get_integration(self, tenant_id: str, integration_id: str) -> dict[str, Any] | None:
        with self.lock:
            record = self.integrations.get(tenant_id, {}).get(integration_id)
            return copy.deepcopy(record) if record is not None else None

    def replace_integration(self, tenant_id: str, record: dict[str, Any]) -> None:
        with self.lock:
            self.integrations.setdefault(tenant_id, {})[record["id"]] = copy.deepcopy(record)

    def remove_integration(self, tenant_id: str, integration_id: str) -> bool:
        with self.lock:
            return self.integrations.get(tenant_id, {}).pop(integration_id, None) is not None

    def list_integrations(self, tenant_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(r) for r in self.integrations.get(tenant_id, {}).values()]

    def set_enabled(self, tenant_id: str, integration_id: str, enabled: bool) -> bool:
        with self.lock:
            record = self.integrations.get(tenant_id, {}).get(integration_id)
            if record is None:
                return False
            record["status"] = "enabled" if enabled else "disabled"
            return True

    # -- activity and discovery ---------------------------------------------------------------------------

    def add_activity(self, tenant_id: str, integration_id: str, ok: bool, message: str) -> None:
        with self.lock:
            record = self.integrations.get(tenant_id, {}).get(integration_id)
            self.activity.setdefault(tenant_id, []).append(
                {
                    "installedintgId": integration_id,
                    "intgName": (record or {}).get("displayName", "AWS"),
                    "resourceId": "",
                    "resourceType": "",
                    "status": "SUCCESS" if ok else "FAILED",
                    "statusMessage": message,
                    "intgMode": "OUTBOUND",
                    # Milliseconds since the epoch, as OpsRamp's examples show.
                    "processedTime": int(time.time() * 1000),
                }
            )

    def list_activity(self, tenant_id: str) -> list[dict[str, Any]]:
        # The records: never changed once added, so a copy of the list will do (a deep copy of every record per
        # request made a thousand-resource fleet's paged reads the emulator's largest CPU cost).
        with self.lock:
            return list(self.activity.get(tenant_id, []))

    def add_profile(self, tenant_id: str, profile: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self._next_profile_id += 1
            stored = copy.deepcopy(profile)
            stored["id"] = self._next_profile_id
            policy = stored.get("policy")
            if isinstance(policy, dict):
                policy.setdefault("id", self._next_profile_id + 50_000)
                policy.setdefault("uid", f"POLICY-{uuid.uuid4()}")
            self.discovery.setdefault(tenant_id, {})[stored["id"]] = stored
            return copy.deepcopy(stored)

    def replace_profile(self, tenant_id: str, profile: dict[str, Any]) -> dict[str, Any] | None:
        with self.lock:
            profiles = self.discovery.setdefault(tenant_id, {})
            old = profiles.get(profile.get("id"))  # type: ignore[arg-type]
            if old is None:
                return None
            stored = copy.deepcopy(profile)
            policy, old_policy = stored.get("policy"), old.get("policy")
            if isinstance(policy, dict) and isinstance(old_policy, dict):
                policy.setdefault("id", old_policy.get("id"))
                policy.setdefault("uid", old_policy.get("uid"))
            profiles[stored["id"]] = stored
            return copy.deepcopy(stored)

    def get_profile(self, tenant_id: str, profile_id: int) -> dict[str, Any] | None:
        with self.lock:
            found = self.discovery.get(tenant_id, {}).get(profile_id)
            return copy.deepcopy(found) if found is not None else None

    def list_profiles(self, tenant_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(p) for p in self.discovery.get(tenant_id, {}).values()]

    def remove_profile(self, tenant_id: str, profile_id: int) -> bool:
        with self.lock:
            return self.discovery.get(tenant_id, {}).pop(profile_id, None) is not None

    def remove_profiles_of(self, tenant_id: str, integration_id: str) -> None:
        """Uninstalling an integration takes its discovery profiles with it."""
        with self.lock:
            profiles = self.discovery.get(tenant_id, {})
            for pid in [p for p, v in profiles.items() if v.get("installedIntegrationId") == integration_id]:
                profiles.pop(pid)

    # -- bookkeeping --------------------------------------------------------------------------------------

    def record(
        self, method: str, route: str, path: str, tenant_id: str | None, status: int, category: str | None
    ) -> None:
        with self.lock:
            self.request_counts[f"{method} {route}"] += 1
            self.requests.append(RequestRecord(time.time(), method, route, path, tenant_id, status, category))

    def reset(self) -> None:
        with self.lock:
            self.tokens.clear()
            self.integrations.clear()
            self.windows.clear()
            self.faults = Faults()
            self.request_counts.clear()
            self.requests.clear()
            self.throttled = 0
            self.role_checks.clear()
            self.activity.clear()
            self.discovery.clear()

    def snapshot(self) -> dict[str, Any]:
        """The admin view: no secrets (no client secrets, tokens or External IDs)."""
        with self.lock:
            return {
                "tenants": {
                    tenant: {"integrations": [public_view(r) for r in records.values()]}
                    for tenant, records in self.integrations.items()
                },
                "clients": [{"tenant_id": c.tenant_id} for c in self.clients.values()],
                "requests": dict(self.request_counts),
                "request_log": [asdict(r) for r in self.requests],
                "throttled": self.throttled,
                "role_checks": list(self.role_checks),
                "faults": asdict(self.faults),
                "rate_limits": dict(self.rate_limits),
                "rate_window_seconds": self.rate_window_seconds,
                "token_lifetime": self.token_lifetime,
                "discovery": {t: list(p.values()) for t, p in self.discovery.items()},
                "activity": {t: list(a) for t, a in self.activity.items()},
                "contracts": self.contracts.snapshot(),
            }


DISABLED = frozenset({"disabled", "inactive", "false"})


def public_view(record: dict[str, Any], contract: Contract | None = None, *, search: bool = False) -> dict[str, Any]:
    """An integration as OpsRamp returns it: the credential without its secret fields.

    With a contract, only the fields it echoes (in a search answer: the ones its search echoes), in its forms.
    """
    out = copy.deepcopy(record)
    for key in [k for k in out if k.startswith("_")]:
        out.pop(key)
    credential = out.get("credential")
    if contract is None:
        if isinstance(credential, dict):
            for key in HIDDEN_CREDENTIAL_KEYS:
                credential.pop(key, None)
        return out
    shown = contract.search_fields if search else contract.echo
    for key in [k for k in out if k not in ("id", "integration", "credential")]:
        if key not in shown:
            out.pop(key)
    if "status" in out:
        out["status"] = contract.status_word(str(record.get("status")) != "disabled")
    if isinstance(credential, dict):
        for key in list(credential):
            if f"credential.{key}" not in shown:
                credential.pop(key)
        if contract.regions_echo == "list" and isinstance(credential.get("Regions"), str):
            credential["Regions"] = credential["Regions"].split(",")
    return out
