"""A small evaluator of IAM trust policies, used only in tests because moto does not evaluate them.

It models what decides an `sts:AssumeRole` against a role's trust policy: explicit Deny wins, then an
Allow whose Principal, Action and Condition all match; otherwise the implicit deny. Principals follow IAM:
`arn:aws:iam::<acct>:root` (or the bare account id) stands for the whole account, so any principal of that
account matches it, while a user or role ARN matches only that principal (and a role's sessions). Conditions
cover the string, Bool and Null operators with `...IfExists`; anything else raises, so a test never passes
on an operator the evaluator does not understand.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_ACCOUNT_ID_RE = re.compile(r"^\d{12}$")
_IAM_ARN_RE = re.compile(r"^arn:aws:(?:iam|sts)::(\d{12}):(.+)$")


@dataclass(frozen=True)
class Caller:
    """Who asks to assume the role: an AWS principal ARN, or a service principal name."""

    arn: str = ""
    service: str = ""
    context: Mapping[str, str] = field(default_factory=dict)

    @property
    def account(self) -> str | None:
        match = _IAM_ARN_RE.match(self.arn)
        return match.group(1) if match else None

    @property
    def identity_arns(self) -> set[str]:
        """ARNs a trust policy may name to mean this caller (a role session is its role)."""
        match = _IAM_ARN_RE.match(self.arn)
        if not match:
            return set()
        account, resource = match.groups()
        names = {self.arn}
        if resource.startswith("assumed-role/"):
            role = resource.split("/")[1]
            names.add(f"arn:aws:iam::{account}:role/{role}")
        return names


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _aws_principal_matches(name: str, caller: Caller) -> bool:
    if not caller.arn:
        return False
    if name == "*":
        return True
    if _ACCOUNT_ID_RE.match(name):
        name = f"arn:aws:iam::{name}:root"
    match = _IAM_ARN_RE.match(name)
    if match and match.group(2) == "root":
        # The account root in a trust policy delegates to the account: any of its principals matches.
        return caller.account == match.group(1)
    return name in caller.identity_arns


def _principal_matches(principal: Any, caller: Caller) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        raise ValueError('Principal must be "*" or an object')
    for kind, names in principal.items():
        for name in _as_list(names):
            if kind == "AWS" and _aws_principal_matches(str(name), caller):
                return True
            if kind == "Service" and caller.service and name == caller.service:
                return True
    return False


def _action_matches(patterns: Any, action: str) -> bool:
    # Action names are case-insensitive and may hold `*` and `?` wildcards.
    return any(fnmatch.fnmatchcase(action.lower(), str(p).lower()) for p in _as_list(patterns))


def _string_test(operator: str, actual: str, expected: str) -> bool:
    if operator == "StringEquals":
        return actual == expected
    if operator == "StringEqualsIgnoreCase":
        return actual.lower() == expected.lower()
    if operator == "StringLike":
        return fnmatch.fnmatchcase(actual, expected)
    raise ValueError(f"condition operator {operator!r} is not modelled")


def _condition_holds(operator: str, key: str, expected: Any, context: Mapping[str, str]) -> bool:
    lowered = {k.lower(): v for k, v in context.items()}
    actual = lowered.get(key.lower())
    values = [str(v).lower() if isinstance(v, bool) else str(v) for v in _as_list(expected)]
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    if base == "Null":
        # Null:true means "the key is absent"; Null:false means "present".
        return any((actual is None) == (v.lower() == "true") for v in values)
    if actual is None:
        # Missing key: IfExists passes; negated operators hold (nothing to be unequal to); others fail.
        return if_exists or base.startswith("StringNot")
    if base == "Bool":
        return any(actual.lower() == v.lower() for v in values)
    if base.startswith("StringNot"):
        positive = base.replace("StringNot", "String", 1)
        return not any(_string_test(positive, actual, v) for v in values)
    return any(_string_test(base, actual, v) for v in values)


def _conditions_hold(condition: Any, context: Mapping[str, str]) -> bool:
    if condition is None:
        return True
    # Every operator block and every key in it must hold; several values for one key are any-of.
    return all(
        _condition_holds(operator, key, expected, context)
        for operator, block in condition.items()
        for key, expected in block.items()
    )


def _statement_applies(stmt: Mapping[str, Any], caller: Caller, action: str) -> bool:
    if "Principal" in stmt:
        if not _principal_matches(stmt["Principal"], caller):
            return False
    elif "NotPrincipal" in stmt:
        if _principal_matches(stmt["NotPrincipal"], caller):
            return False
    else:
        raise ValueError("a trust policy statement needs a Principal")
    if "Action" in stmt:
        if not _action_matches(stmt["Action"], action):
            return False
    elif "NotAction" in stmt:
        if _action_matches(stmt["NotAction"], action):
            return False
    else:
        return False
    return _conditions_hold(stmt.get("Condition"), caller.context)


def can_assume(trust: Mapping[str, Any], caller: Caller, action: str = "sts:AssumeRole") -> bool:
    """Tell whether `caller` may perform `action` on a role with this trust policy."""
    raw = trust.get("Statement", [])
    statements = [raw] if isinstance(raw, Mapping) else list(raw)
    applicable = [s for s in statements if _statement_applies(s, caller, action)]
    if any(s.get("Effect") == "Deny" for s in applicable):
        return False
    return any(s.get("Effect") == "Allow" for s in applicable)
