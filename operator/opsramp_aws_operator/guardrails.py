"""What a tenant may ask for: the cluster admin's rules, checked on every spec before anything is read or written.

A tenant who may create `AWSIntegration`s chooses the spec; the admin who installs the operator chooses these
rules (environment variables, set from the Helm values under `guardrails`). The chart renders the same values
into a ValidatingAdmissionPolicy, so a refused spec fails at `kubectl apply`; this module is the second line and
holds where that policy is not installed. Every refusal names the setting that would allow the request.

Patterns (`*` any run of characters, `?` one character) follow IAM's `ArnLike`; the chart turns them into the
same regular expressions as `glob_regex` does here (tests/ship proves the two agree on a real API server).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from .errors import NeedsAttention

# The target entry for "the operator's own credentials" (no spec.aws.assumeRoleArn).
DEFAULT_TARGET: Final = "default"
ANY_NAMESPACE: Final = "*"
# OpsRamp's own API domains (acme.api.opsramp.com, api.opsramp.com, *.api.try.opsramp.com, ...).
DEFAULT_OPSRAMP_HOSTS: Final = ("*.opsramp.com",)
DEFAULT_NAMESPACE_TARGETS: Final = {ANY_NAMESPACE: (DEFAULT_TARGET,)}
# Existing roles (not created by the operator) a namespace may adopt or bring: by default any role the namespace's
# targets reach, subject to the proofs every adoption and every brought role must pass (docs/lifecycle.md).
ANY_ROLE: Final = "*"
DEFAULT_NAMESPACE_EXISTING_ROLES: Final = {ANY_NAMESPACE: (ANY_ROLE,)}

# Environment variables (and their Helm values), named in every refusal.
ENV_ACCOUNTS: Final = "OPERATOR_ALLOWED_OPSRAMP_AWS_ACCOUNT_IDS"
ENV_DEFAULT_ACCOUNT: Final = "OPERATOR_OPSRAMP_AWS_ACCOUNT_ID"
ENV_POLICIES: Final = "OPERATOR_ALLOWED_MANAGED_POLICY_ARNS"
ENV_BOUNDARY: Final = "OPERATOR_PERMISSIONS_BOUNDARY_ARN"
ENV_TARGETS: Final = "OPERATOR_NAMESPACE_TARGETS"
ENV_HOSTS: Final = "OPERATOR_ALLOWED_OPSRAMP_HOSTS"
ENV_EXISTING_ROLES: Final = "OPERATOR_NAMESPACE_EXISTING_ROLES"
ENV_ORGANIZATIONS: Final = "OPERATOR_NAMESPACE_ORGANIZATIONS"
# The entry that lets a namespace select a whole organization (and any of its OUs).
ANY_ORGANIZATION_UNIT: Final = "*"
HELM: Final = {
    ENV_ORGANIZATIONS: "guardrails.namespaceOrganizations",
    ENV_EXISTING_ROLES: "guardrails.namespaceExistingRoles",
    ENV_ACCOUNTS: "guardrails.allowedOpsRampAwsAccountIds",
    ENV_DEFAULT_ACCOUNT: "operator.opsrampAwsAccountId",
    ENV_POLICIES: "guardrails.allowedManagedPolicyArns",
    ENV_BOUNDARY: "guardrails.permissionsBoundaryArn",
    ENV_TARGETS: "guardrails.namespaceTargets",
    ENV_HOSTS: "guardrails.allowedOpsRampHosts",
}

_ACCOUNT_RE: Final = re.compile(r"^[0-9]{12}$")
# What an allow-list pattern may contain: ARN characters and the two wildcards, nothing a regex would read.
_PATTERN_RE: Final = re.compile(r"^[A-Za-z0-9_+=,.@:/*?-]+$")
_HOST_PATTERN_RE: Final = re.compile(r"^[A-Za-z0-9.*?-]+(:[0-9]{1,5})?$")
_NAMESPACE_PATTERN_RE: Final = re.compile(r"^[a-z0-9*?-]{1,63}$")
_POLICY_ARN_RE: Final = re.compile(r"^arn:aws(-[a-z]+)*:iam::([0-9]{12}|aws):policy/[\x21-\x7E]+$")
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}


class GuardrailsError(ValueError):
    """A guardrail setting has a value the operator cannot use; the message names the variable."""


def glob_regex(pattern: str) -> str:
    """The anchored RE2/Python regular expression for an ArnLike-style pattern (`*`, `?`)."""
    out = ["^"]
    for char in pattern:
        out.append(".*" if char == "*" else "." if char == "?" else re.escape(char))
    out.append("$")
    return "".join(out)


def glob_match(pattern: str, value: str) -> bool:
    return re.match(glob_regex(pattern), value) is not None


def target_regex(entry: str) -> str:
    """The regex a namespace target entry stands for: `default`, an account id (any role in it), or an ARN glob."""
    if entry == DEFAULT_TARGET:
        return "^default$"
    if _ACCOUNT_RE.match(entry):
        return f"^arn:aws(-[a-z]+)*:iam::{entry}:role/.*$"
    return glob_regex(entry)


def existing_role_regex(entry: str) -> str:
    """The regex an existing-roles entry stands for: an account id (any role in it) or a role ARN glob (`*`: any)."""
    if _ACCOUNT_RE.match(entry):
        return f"^arn:aws(-[a-z]+)*:iam::{entry}:role/.*$"
    return glob_regex(entry)


def endpoint_hostport(endpoint: str) -> str:
    """`host` (lower case) of an endpoint URL, with `:port` only when the port is not the scheme's default."""
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is None or port == _DEFAULT_PORTS.get(parts.scheme):
        return host
    return f"{host}:{port}"


def _split(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.replace("\n", ",").split(",") if item.strip())


@dataclass(frozen=True)
class Guardrails:
    """The admin's rules; the defaults are the safe ones (see docs/configuration.md)."""

    default_opsramp_account: str | None = None
    # Besides the default account: which OpsRamp AWS accounts a role may trust.
    opsramp_accounts: tuple[str, ...] = ()
    managed_policy_patterns: tuple[str, ...] = ()
    permissions_boundary_arn: str | None = None
    # Namespace (glob) → targets: "default", an account id, or an assume-role ARN glob.
    namespace_targets: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_NAMESPACE_TARGETS))
    opsramp_hosts: tuple[str, ...] = DEFAULT_OPSRAMP_HOSTS
    # Namespace (glob) → existing roles it may adopt (spec.adopt.role) or bring (spec.role.arn).
    namespace_existing_roles: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_NAMESPACE_EXISTING_ROLES)
    )
    # Namespace (glob) → organizational unit / root ids it may select with spec.organization ("*": any, and the whole
    # organization). Default: none, so no namespace reads the organization unless the admin says so.
    namespace_organizations: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Guardrails:
        default = env.get(ENV_DEFAULT_ACCOUNT, "").strip() or None
        if default is not None and not _ACCOUNT_RE.match(default):
            raise GuardrailsError(f"{ENV_DEFAULT_ACCOUNT}={default!r} is not a 12-digit AWS account id")
        accounts = _split(env.get(ENV_ACCOUNTS, ""))
        for account in accounts:
            if not _ACCOUNT_RE.match(account):
                raise GuardrailsError(f"{ENV_ACCOUNTS}: {account!r} is not a 12-digit AWS account id")
        policies = _split(env.get(ENV_POLICIES, ""))
        for pattern in policies:
            if not _PATTERN_RE.match(pattern) or not pattern.startswith("arn:"):
                raise GuardrailsError(f"{ENV_POLICIES}: {pattern!r} is not a policy ARN pattern (arn:..., * and ?)")
        boundary = env.get(ENV_BOUNDARY, "").strip() or None
        if boundary is not None and not _POLICY_ARN_RE.match(boundary):
            raise GuardrailsError(f"{ENV_BOUNDARY}={boundary!r} is not a managed policy ARN")
        hosts = _split(env.get(ENV_HOSTS, "")) or DEFAULT_OPSRAMP_HOSTS
        for host in hosts:
            if not _HOST_PATTERN_RE.match(host):
                raise GuardrailsError(f"{ENV_HOSTS}: {host!r} is not a host pattern (host or host:port, * and ?)")
        return cls(
            default_opsramp_account=default,
            opsramp_accounts=accounts,
            managed_policy_patterns=policies,
            permissions_boundary_arn=boundary,
            namespace_targets=_parse_targets(env.get(ENV_TARGETS, "")),
            opsramp_hosts=tuple(h.lower() for h in hosts),
            namespace_existing_roles=_parse_existing_roles(env.get(ENV_EXISTING_ROLES, "")),
            namespace_organizations=_parse_organizations(env.get(ENV_ORGANIZATIONS, "")),
        )

    # --- the rules -------------------------------------------------------------------------------------------

    @property
    def allowed_accounts(self) -> tuple[str, ...]:
        default = (self.default_opsramp_account,) if self.default_opsramp_account else ()
        return tuple(dict.fromkeys((*default, *self.opsramp_accounts)))

    def targets_for(self, namespace: str) -> tuple[str, ...]:
        """Every target entry that applies to `namespace` (the union of the matching keys)."""
        found: list[str] = []
        for key, targets in self.namespace_targets.items():
            if glob_match(key, namespace):
                found.extend(targets)
        return tuple(dict.fromkeys(found))

    def check_endpoint(self, endpoint: str) -> None:
        hostport = endpoint_hostport(endpoint)
        if not any(glob_match(p, hostport) for p in self.opsramp_hosts):
            raise NeedsAttention(
                "EndpointNotAllowed",
                f"spec.opsramp.endpoint host {hostport!r} is not an allowed OpsRamp API host, so the operator sends "
                f"it no credentials; allowed: {', '.join(self.opsramp_hosts)}. Use your tenant's OpsRamp API host, "
                f"or ask the cluster admin to add it to {ENV_HOSTS} (Helm: {HELM[ENV_HOSTS]}).",
            )

    def opsramp_account(self, spec_account: str | None) -> str:
        """The OpsRamp AWS account the role will trust: the spec's (if allowed) or the default."""
        if spec_account is None:
            if self.default_opsramp_account is None:
                raise NeedsAttention(
                    "InvalidSpec",
                    "OpsRamp's AWS account id is unknown: set spec.opsramp.awsAccountId (shown on OpsRamp's 'Install "
                    f"AWS Integration' page) or the operator's {ENV_DEFAULT_ACCOUNT} "
                    f"(Helm: {HELM[ENV_DEFAULT_ACCOUNT]}).",
                )
            return self.default_opsramp_account
        if spec_account not in self.allowed_accounts:
            allowed = ", ".join(self.allowed_accounts) or "none"
            raise NeedsAttention(
                "OpsRampAccountNotAllowed",
                f"spec.opsramp.awsAccountId {spec_account} is not an OpsRamp AWS account this cluster lets a role "
                f"trust (allowed: {allowed}); nothing was created. Remove the field to use the default, or ask the "
                f"cluster admin to add it to {ENV_ACCOUNTS} (Helm: {HELM[ENV_ACCOUNTS]}).",
            )
        return spec_account

    def check_managed_policies(self, arns: tuple[str, ...] | list[str]) -> None:
        refused = [a for a in arns if not any(glob_match(p, a) for p in self.managed_policy_patterns)]
        if refused:
            allowed = ", ".join(self.managed_policy_patterns) or "none"
            raise NeedsAttention(
                "ManagedPolicyNotAllowed",
                f"spec.role.managedPolicyArns has {', '.join(refused)}, which this cluster does not let a role "
                f"OpsRamp assumes carry (allowed: {allowed}); nothing was created. Remove it, or ask the cluster "
                f"admin to add it to {ENV_POLICIES} (Helm: {HELM[ENV_POLICIES]}).",
            )

    def permissions_boundary(self, spec_boundary: str | None) -> str | None:
        """The boundary the role gets: the required one (when set), else the spec's."""
        required = self.permissions_boundary_arn
        if required is None:
            return spec_boundary
        if spec_boundary is not None and spec_boundary != required:
            raise NeedsAttention(
                "PermissionsBoundaryNotAllowed",
                f"spec.role.permissionsBoundaryArn {spec_boundary} is not the boundary every role here must carry "
                f"({required}); nothing was created. Remove the field (the operator sets the required one), or ask "
                f"the cluster admin to change {ENV_BOUNDARY} (Helm: {HELM[ENV_BOUNDARY]}).",
            )
        return required

    def check_target(self, namespace: str, assume_role_arn: str | None) -> None:
        target = assume_role_arn or DEFAULT_TARGET
        allowed = self.targets_for(namespace)
        if any(re.match(target_regex(entry), target) for entry in allowed):
            return
        what = (
            f"spec.aws.assumeRoleArn {assume_role_arn}"
            if assume_role_arn
            else "the operator's own AWS credentials (no spec.aws.assumeRoleArn)"
        )
        raise NeedsAttention(
            "TargetNotAllowed",
            f"Namespace {namespace} may not act through {what} (allowed here: {', '.join(allowed) or 'nothing'}); "
            f"nothing was created. Ask the cluster admin to allow it for this namespace in {ENV_TARGETS} "
            f"(Helm: {HELM[ENV_TARGETS]}).",
        )

    def existing_roles_for(self, namespace: str) -> tuple[str, ...]:
        found: list[str] = []
        for key, entries in self.namespace_existing_roles.items():
            if glob_match(key, namespace):
                found.extend(entries)
        return tuple(dict.fromkeys(found))

    def check_existing_role(self, namespace: str, role_arn: str, what: str) -> None:
        """May `namespace` take over (adopt) or bring (spec.role.arn) the existing role `role_arn`?"""
        allowed = self.existing_roles_for(namespace)
        if any(re.match(existing_role_regex(entry), role_arn) for entry in allowed):
            return
        raise NeedsAttention(
            "RoleNotAllowed",
            f"Namespace {namespace} may not use the existing IAM role {role_arn} ({what}; allowed here: "
            f"{', '.join(allowed) or 'none'}); nothing was changed. Ask the cluster admin to allow it for this "
            f"namespace in {ENV_EXISTING_ROLES} (Helm: {HELM[ENV_EXISTING_ROLES]}).",
        )

    def organization_units_for(self, namespace: str) -> tuple[str, ...]:
        found: list[str] = []
        for key, entries in self.namespace_organizations.items():
            if glob_match(key, namespace):
                found.extend(entries)
        return tuple(dict.fromkeys(found))

    def check_organization(self, namespace: str, units: tuple[str, ...] | list[str]) -> None:
        """May `namespace` select these OUs (none: the whole organization) with spec.organization?"""
        allowed = self.organization_units_for(namespace)
        if ANY_ORGANIZATION_UNIT in allowed:
            return
        if not units:
            what = "the whole organization (spec.organization without organizationalUnits)"
        else:
            refused = [u for u in units if u not in allowed]
            if not refused:
                return
            what = f"organizational unit(s) {', '.join(refused)}"
        raise NeedsAttention(
            "OrganizationNotAllowed",
            f"Namespace {namespace} may not select {what} (allowed here: {', '.join(allowed) or 'none'}); nothing "
            f"was read or created. Select allowed OUs, or ask the cluster admin to allow them for this namespace in "
            f"{ENV_ORGANIZATIONS} (Helm: {HELM[ENV_ORGANIZATIONS]}).",
        )

    def member_target_allowed(self, namespace: str, role_arn: str) -> bool:
        """May `namespace` act in a member account through `role_arn` (the same rule as spec.aws.assumeRoleArn)?"""
        return any(re.match(target_regex(entry), role_arn) for entry in self.targets_for(namespace))

    def check_member_targets(self, namespace: str, role_arns: list[str]) -> None:
        refused = [arn for arn in role_arns if not self.member_target_allowed(namespace, arn)]
        if refused:
            shown = ", ".join(refused[:5]) + (f" and {len(refused) - 5} more" if len(refused) > 5 else "")
            raise NeedsAttention(
                "TargetNotAllowed",
                f"Namespace {namespace} may not act in spec.accounts through {shown} (allowed here: "
                f"{', '.join(self.targets_for(namespace)) or 'nothing'}); nothing was created. Remove those "
                f"accounts, or ask the cluster admin to allow them for this namespace in {ENV_TARGETS} "
                f"(Helm: {HELM[ENV_TARGETS]}).",
            )

    def to_env(self) -> dict[str, str]:
        """The environment variables that give these rules (the sandbox and tests start operators with them)."""
        env = {
            ENV_ACCOUNTS: ",".join(self.opsramp_accounts),
            ENV_POLICIES: ",".join(self.managed_policy_patterns),
            ENV_BOUNDARY: self.permissions_boundary_arn or "",
            ENV_TARGETS: json.dumps({k: list(v) for k, v in self.namespace_targets.items()}),
            ENV_HOSTS: ",".join(self.opsramp_hosts),
            ENV_EXISTING_ROLES: json.dumps({k: list(v) for k, v in self.namespace_existing_roles.items()}),
            ENV_ORGANIZATIONS: json.dumps({k: list(v) for k, v in self.namespace_organizations.items()}),
        }
        if self.default_opsramp_account:
            env[ENV_DEFAULT_ACCOUNT] = self.default_opsramp_account
        return env


def _parse_targets(raw: str) -> dict[str, tuple[str, ...]]:
    if not raw.strip():
        return dict(DEFAULT_NAMESPACE_TARGETS)
    try:
        value = json.loads(raw)
    except ValueError:
        raise GuardrailsError(f"{ENV_TARGETS} is not JSON (an object: namespace -> list of targets)") from None
    if not isinstance(value, dict):
        raise GuardrailsError(f"{ENV_TARGETS} must be a JSON object: namespace -> list of targets")
    targets: dict[str, tuple[str, ...]] = {}
    for namespace, entries in value.items():
        if not isinstance(namespace, str) or not _NAMESPACE_PATTERN_RE.match(namespace):
            raise GuardrailsError(f"{ENV_TARGETS}: {namespace!r} is not a namespace name or pattern")
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise GuardrailsError(f"{ENV_TARGETS}[{namespace!r}] must be a list of strings")
        for entry in entries:
            if (
                entry != DEFAULT_TARGET
                and not _ACCOUNT_RE.match(entry)
                and not (entry.startswith("arn:") and _PATTERN_RE.match(entry))
            ):
                raise GuardrailsError(
                    f"{ENV_TARGETS}[{namespace!r}]: {entry!r} is not 'default', an account id or a role ARN pattern"
                )
        targets[namespace] = tuple(entries)
    return targets


def _parse_existing_roles(raw: str) -> dict[str, tuple[str, ...]]:
    if not raw.strip():
        return dict(DEFAULT_NAMESPACE_EXISTING_ROLES)
    try:
        value = json.loads(raw)
    except ValueError:
        raise GuardrailsError(f"{ENV_EXISTING_ROLES} is not JSON (an object: namespace -> list of roles)") from None
    if not isinstance(value, dict):
        raise GuardrailsError(f"{ENV_EXISTING_ROLES} must be a JSON object: namespace -> list of roles")
    rules: dict[str, tuple[str, ...]] = {}
    for namespace, entries in value.items():
        if not isinstance(namespace, str) or not _NAMESPACE_PATTERN_RE.match(namespace):
            raise GuardrailsError(f"{ENV_EXISTING_ROLES}: {namespace!r} is not a namespace name or pattern")
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise GuardrailsError(f"{ENV_EXISTING_ROLES}[{namespace!r}] must be a list of strings")
        for entry in entries:
            if (
                entry != ANY_ROLE
                and not _ACCOUNT_RE.match(entry)
                and not (entry.startswith("arn:") and _PATTERN_RE.match(entry))
            ):
                raise GuardrailsError(
                    f"{ENV_EXISTING_ROLES}[{namespace!r}]: {entry!r} is not '*', an account id or a role ARN pattern"
                )
        rules[namespace] = tuple(entries)
    return rules


_ORG_ENTRY_RE: Final = re.compile(r"^(\*|r-[0-9a-z]{4,32}|ou-[0-9a-z]{4,32}-[a-z0-9]{8,32})$")


def _parse_organizations(raw: str) -> dict[str, tuple[str, ...]]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise GuardrailsError(f"{ENV_ORGANIZATIONS} is not JSON (an object: namespace -> list of OU ids)") from None
    if not isinstance(value, dict):
        raise GuardrailsError(f"{ENV_ORGANIZATIONS} must be a JSON object: namespace -> list of OU ids")
    rules: dict[str, tuple[str, ...]] = {}
    for namespace, entries in value.items():
        if not isinstance(namespace, str) or not _NAMESPACE_PATTERN_RE.match(namespace):
            raise GuardrailsError(f"{ENV_ORGANIZATIONS}: {namespace!r} is not a namespace name or pattern")
        if not isinstance(entries, list) or not all(isinstance(e, str) and _ORG_ENTRY_RE.match(e) for e in entries):
            raise GuardrailsError(
                f"{ENV_ORGANIZATIONS}[{namespace!r}] must be a list of '*', root ids (r-...) or OU ids (ou-...)"
            )
        rules[namespace] = tuple(entries)
    return rules
