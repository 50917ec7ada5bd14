"""The variants of OpsRamp's API: one switch per open question, with every plausible answer.

docs/opsramp-api-assumptions.md lists the questions; each switch below names its number there. The defaults are
the most likely answers (the client's first guesses, `WireFormat`); `PROFILES` names combinations, among them
`openapi-examples`, the shape OpsRamp's own OpenAPI examples show. The sandbox emulator plays any `Contract` (per
tenant), and `opsramp-aws-operator probe` tells which one a real tenant is, so both use these names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .wire import WireFormat

# Fields an installed integration may carry in a GET or search answer ("credential.X" inside `credential`). `id`
# and `integration` are always there: OpsRamp's examples show them everywhere.
ECHO_FIELDS: tuple[str, ...] = (
    "displayName",
    "status",
    "installedBy",
    "installedTime",
    "credential.credentialType",
    "credential.Name",
    "credential.AccountNumber",
    "credential.AWSType",
    "credential.Regions",
    "credential.AssumeRoleARN",
    "credential.InstallAllLinkedAccounts",
    "credential.ExternalId",
)
# Everything but the External ID: what the emulator always answered.
FULL_ECHO = frozenset(f for f in ECHO_FIELDS if f != "credential.ExternalId")
# OpsRamp's OpenAPI install examples: id, integration{id,name} and credential{Name, AccountNumber, AWSType, Regions}.
OPENAPI_ECHO = frozenset({"credential.Name", "credential.AccountNumber", "credential.AWSType", "credential.Regions"})

# The AWSType strings the client may try for the console's "External ID" type (Q1), most likely first.
AWS_TYPE_CHOICES = WireFormat.AWS_TYPE_CHOICES

CHOICES: dict[str, tuple[Any, ...]] = {
    "aws_type": AWS_TYPE_CHOICES,  # Q1: the AWSType the External-ID install must carry
    "access_keys": ("absent", "empty"),  # Q2: AccessKey/SecurityKey must be absent, or present and empty
    "linked_accounts": ("honoured", "ignored", "rejected"),  # Q3: the InstallAllLinkedAccounts key
    "regions_echo": ("string", "list"),  # Q4: how GET answers Regions
    "credential_updates": ("applied", "ignored", "rejected"),  # Q7: POST installed/{id} with a new credential
    "role_check": ("sync", "async", "never"),  # Q8: when OpsRamp tries to assume the role
    "token_rejected": (401, 407, 400),  # Q9: how an expired or revoked token is refused
    "expires_in": ("string", "integer"),  # Q10
    "token_path": ("tenancy", "legacy"),  # Q11: which token path answers
    "search_query": ("honoured", "ignored", "refused"),  # Q12: the queryString of installed/search
    "oversized_page": ("clamp", "refuse"),  # Q13: pageSize above the maximum
    "duplicate_names": ("allowed", "refused"),  # Q14
    "external_id": ("client", "generated"),  # Q15: whose External ID OpsRamp uses to assume the role
    "unknown_id": (404, 400, 500),  # Q17: an installed id OpsRamp does not know
    "foreign_tenant": (403, 401),  # Q19: a token used on another tenant's path
    "status_values": ("enabled/disabled", "ENABLED/DISABLED"),  # Q20
}


@dataclass(frozen=True)
class Contract:
    """How one OpsRamp tenant answers each open question. Immutable; `with_changes` makes a variant."""

    echo: frozenset[str] = FULL_ECHO  # Q5, Q6: fields GET (and the install answer) carry
    search_echo: frozenset[str] | None = None  # fields installed/search carries; None: as `echo`
    aws_type: str = "External ID"
    access_keys: str = "absent"
    linked_accounts: str = "honoured"
    regions_echo: str = "string"
    credential_updates: str = "applied"
    role_check: str = "sync"
    role_check_delay_seconds: float = 1.0  # async: how long after the write OpsRamp tries the role
    token_rejected: int = 401
    expires_in: str = "string"
    token_path: str = "tenancy"  # noqa: S105 (a path choice, not a password)
    token_reuse: bool = False  # a grant returns the same token until it expires (Spring's token store)
    search_query: str = "honoured"
    max_page_size: int = 100
    oversized_page: str = "clamp"
    duplicate_names: str = "allowed"
    external_id: str = "client"
    unknown_id: int = 404
    retry_after: bool = False  # Q16: Retry-After on a rate-limit 429
    foreign_tenant: int = 403
    status_values: str = "enabled/disabled"

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"contract switch {name}={getattr(self, name)!r} must be one of {list(allowed)}")
        for name in ("echo", "search_echo"):
            value = getattr(self, name)
            if value is not None and not set(value) <= set(ECHO_FIELDS):
                raise ValueError(f"contract switch {name} has unknown fields {sorted(set(value) - set(ECHO_FIELDS))}")
        if self.max_page_size < 1 or self.role_check_delay_seconds < 0:
            raise ValueError("max_page_size must be positive and role_check_delay_seconds not negative")

    @property
    def search_fields(self) -> frozenset[str]:
        return self.echo if self.search_echo is None else self.search_echo

    def status_word(self, enabled: bool) -> str:
        on, off = self.status_values.split("/")
        return on if enabled else off

    def with_changes(self, changes: Mapping[str, Any]) -> Contract:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known - {"profile"}
        if unknown:
            raise ValueError(f"unknown contract switches: {sorted(unknown)}")
        base = profile(str(changes["profile"])) if "profile" in changes else self
        values = {k: _coerce(k, v) for k, v in changes.items() if k != "profile"}
        return replace(base, **values)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["echo"] = sorted(self.echo)
        out["search_echo"] = None if self.search_echo is None else sorted(self.search_echo)
        return out

    def differences(self) -> dict[str, Any]:
        """The answers that differ from the defaults (how a variant is named when it is no profile); the emulator's
        timing knob `role_check_delay_seconds` is no answer and not named."""
        default = Contract().as_dict()
        return {k: v for k, v in self.as_dict().items() if default[k] != v and k != "role_check_delay_seconds"}


def _coerce(name: str, value: Any) -> Any:
    if name in ("echo", "search_echo"):
        return None if value is None else frozenset(str(v) for v in value)
    if name in ("token_rejected", "unknown_id", "foreign_tenant", "max_page_size"):
        return int(value)
    if name == "role_check_delay_seconds":
        return float(value)
    if name in ("token_reuse", "retry_after"):
        if not isinstance(value, bool):
            raise ValueError(f"contract switch {name} must be true or false")
        return value
    return str(value)


PROFILES: dict[str, Contract] = {
    "default": Contract(),
    # What OpsRamp's OpenAPI examples show of an installed AWS integration: no displayName, no status, no role ARN.
    "openapi-examples": Contract(echo=OPENAPI_ECHO),
    # Everything a strict server could refuse, refused.
    "strict": Contract(
        linked_accounts="rejected",
        search_query="refused",
        oversized_page="refuse",
        duplicate_names="refused",
        unknown_id=400,
        token_rejected=407,
    ),
    # OpsRamp checks the role after the install answered, and never applies credential changes on update.
    "async-immutable": Contract(role_check="async", credential_updates="ignored"),
}


def profile(name: str) -> Contract:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown contract profile {name!r}; known: {sorted(PROFILES)}") from None


def describe(switches: Mapping[str, Any]) -> str:
    """Switch values as one line, e.g. `echo=credential.Name+credential.Regions,role_check=async`."""
    parts = []
    for key, value in sorted(switches.items()):
        shown = "+".join(sorted(value)) if isinstance(value, list | set | frozenset) else str(value)
        parts.append(f"{key}={shown}")
    return ",".join(parts)


def name_of(contract: Contract) -> str:
    """The profile a contract equals, else the switches that differ from the defaults."""
    timeless = replace(contract, role_check_delay_seconds=Contract().role_check_delay_seconds)
    for name, known in PROFILES.items():
        if replace(known, role_check_delay_seconds=timeless.role_check_delay_seconds) == timeless:
            return name
    return describe(contract.differences())
