"""The OpsRamp emulator's "can OpsRamp assume this role?" check: read the role from IAM, judge its trust policy.

moto accepts any AssumeRole, so the emulator does the judging itself, the way STS would for a call from
OpsRamp's AWS account carrying the install's External ID: an explicit Deny wins, then an Allow whose
Principal, Action and Condition all match. On top of STS, two stricter rules make operator bugs visible:
a trust policy without an `sts:ExternalId` condition is refused (it is the confused-deputy hole the External
ID exists to close), and a role created less than `propagation_delay` ago is refused, as IAM's eventual consistency
does to a real AssumeRole. A trust policy changed less than `propagation_delay` ago may still be served in its old
version by some of STS's endpoints and already in its new one by others, so only a call both versions allow succeeds
then (a rotation that adds a new External ID beside the old one keeps the old one working throughout).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

log = logging.getLogger(__name__)

ROLE_ARN_RE = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})$")


@dataclass(frozen=True)
class RoleView:
    """What the emulator learned about a role from IAM."""

    arn: str
    trust_policy: dict[str, Any]
    created_at: float  # epoch seconds


@dataclass(frozen=True)
class TrustVerdict:
    """The outcome of the check: ok, or why not (the reason is for logs and the admin state only)."""

    ok: bool
    reason: str = ""


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _principal_matches(principal: Any, opsramp_account: str) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        return False
    for entry in _as_list(principal.get("AWS")):
        if entry in ("*", opsramp_account, f"arn:aws:iam::{opsramp_account}:root"):
            return True
    return False


def _action_matches(action: Any) -> bool:
    return any(fnmatch.fnmatchcase("sts:assumerole", str(a).lower()) for a in _as_list(action))


def _condition_holds(condition: Any, external_id: str) -> tuple[bool, bool]:
    """(holds, checks_external_id) for one statement's Condition block against the call's context."""
    if condition is None:
        return True, False
    if not isinstance(condition, Mapping):
        return False, False
    checks_external_id = False
    for operator, clauses in condition.items():
        if not isinstance(clauses, Mapping):
            return False, checks_external_id
        for key, expected in clauses.items():
            if str(key).lower() != "sts:externalid":
                # The call from OpsRamp carries no other context we model: an unknown key cannot match.
                return False, checks_external_id
            checks_external_id = True
            values = [str(v) for v in _as_list(expected)]
            op = str(operator)
            if op == "StringEquals":
                ok = external_id in values
            elif op == "StringLike":
                ok = any(fnmatch.fnmatchcase(external_id, v) for v in values)
            else:
                ok = False
            if not ok:
                return False, checks_external_id
    return True, checks_external_id


def evaluate_trust(
    policy: Mapping[str, Any],
    opsramp_account: str,
    external_id: str,
    *,
    require_external_id_condition: bool = True,
) -> TrustVerdict:
    """Would STS let `opsramp_account`'s principals assume a role with this trust policy and External ID?"""
    allowed = False
    reason = "no statement allows OpsRamp's account to assume the role"
    for statement in _as_list(policy.get("Statement")):
        if not isinstance(statement, Mapping):
            continue
        if not _principal_matches(statement.get("Principal"), opsramp_account):
            continue
        if not _action_matches(statement.get("Action")):
            continue
        holds, checks_external_id = _condition_holds(statement.get("Condition"), external_id)
        effect = statement.get("Effect")
        if effect == "Deny" and holds:
            return TrustVerdict(False, "an explicit Deny matches")
        if effect == "Allow":
            if not holds:
                reason = "the External ID condition does not match"
            elif require_external_id_condition and not checks_external_id:
                reason = "the trust policy has no sts:ExternalId condition"
            else:
                allowed = True
    return TrustVerdict(True) if allowed else TrustVerdict(False, reason)


def parse_policy_document(document: Any) -> dict[str, Any]:
    """IAM returns trust policies URL-encoded (boto3 usually decodes them); accept either form."""
    if isinstance(document, Mapping):
        return dict(document)
    if isinstance(document, str):
        text = document
        if text.lstrip().startswith("%7B") or "%22" in text:
            text = urllib.parse.unquote(text)
        loaded = json.loads(text)
        if isinstance(loaded, dict):
            return loaded
    raise ValueError("unreadable trust policy")


class RoleSource(Protocol):
    """Where the checker reads roles from (IAM via boto3, or a fake in tests)."""

    def read(self, role_arn: str) -> RoleView | None: ...


class RoleReader:
    """Reads roles from an IAM endpoint (moto in the sandbox) with boto3; None when the role is missing."""

    def __init__(self, endpoint_url: str) -> None:
        import boto3  # the sandbox may import boto3; only the operator's adapter may not share it

        self._client = boto3.client(
            "iam",
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # moto accepts any key
        )
        self._account = threading.local()
        # moto serves several accounts; this header picks the one the role ARN names (TOOLS.md).
        self._client.meta.events.register("before-sign.iam.*", self._add_account_header)

    def _add_account_header(self, request: Any, **_: Any) -> None:
        account = getattr(self._account, "value", None)
        if account:
            request.headers["x-moto-account-id"] = account

    def read(self, role_arn: str) -> RoleView | None:
        match = ROLE_ARN_RE.match(role_arn)
        if not match:
            return None
        account, name = match.group(1), match.group(2)
        self._account.value = account
        try:
            role = self._client.get_role(RoleName=name)["Role"]
        except self._client.exceptions.NoSuchEntityException:
            return None
        finally:
            self._account.value = None
        if role.get("Arn") != role_arn:
            # Same name, different path: STS would not find the ARN OpsRamp was given.
            return None
        created = role.get("CreateDate")
        created_at = created.timestamp() if isinstance(created, datetime) else time.time()
        return RoleView(role_arn, parse_policy_document(role.get("AssumeRolePolicyDocument")), created_at)


class TrustChecker:
    """The full check: role exists, trust policy admits OpsRamp with this External ID, IAM has propagated."""

    def __init__(
        self,
        reader: RoleSource | None,
        opsramp_account: str,
        *,
        propagation_delay: float = 0.0,
        require_external_id_condition: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reader = reader
        self.opsramp_account = opsramp_account
        self.propagation_delay = propagation_delay
        self.require_external_id_condition = require_external_id_condition
        self._clock = clock
        self._lock = threading.Lock()
        # role ARN -> (trust policy as canonical JSON, when we first saw that version, the version before it)
        self._seen: dict[str, tuple[str, float, dict[str, Any] | None]] = {}

    def check(self, role_arn: str, external_id: str) -> TrustVerdict:
        if self.reader is None:
            return TrustVerdict(True, "no IAM endpoint configured: check skipped")
        try:
            role = self.reader.read(role_arn)
        except Exception as exc:  # an unreachable IAM looks like "cannot assume" to OpsRamp too
            log.warning("IAM read failed for the role check: %s", type(exc).__name__)
            return TrustVerdict(False, f"IAM unreachable ({type(exc).__name__})")
        if role is None:
            return TrustVerdict(False, "the role does not exist")
        now = self._clock()
        canonical = json.dumps(role.trust_policy, sort_keys=True)
        with self._lock:
            seen = self._seen.get(role_arn)
            if seen is None or seen[0] != canonical:
                # First sight counts as a change only if we saw an older version before.
                changed_at = now if seen is not None else role.created_at
                before = json.loads(seen[0]) if seen is not None else None
                self._seen[role_arn] = (canonical, changed_at, before)
            _, changed_at, before = self._seen[role_arn]
        if now - role.created_at < self.propagation_delay:
            return TrustVerdict(False, "the role is inside its propagation delay")
        verdict = self._judge(role.trust_policy, external_id)
        if now - changed_at < self.propagation_delay:
            # Either version may answer: the call must pass both.
            old = self._judge(before, external_id) if before is not None else TrustVerdict(False)
            if not (verdict.ok and old.ok):
                return TrustVerdict(False, "the role is inside its propagation delay")
        return verdict

    def _judge(self, policy: Mapping[str, Any], external_id: str) -> TrustVerdict:
        return evaluate_trust(
            policy,
            self.opsramp_account,
            external_id,
            require_external_id_condition=self.require_external_id_condition,
        )
