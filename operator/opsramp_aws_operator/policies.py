"""Build, parse, compare, size, split and digest IAM policy documents, as pure functions."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any, Final

PolicyDocument = dict[str, Any]

# AWS's limit for one customer managed policy, counted without whitespace.
MAX_MANAGED_POLICY_CHARS: Final = 6144

POLICY_VERSION: Final = "2012-10-17"
# IAM's own default when a document has no Version: the old grammar without policy variables.
_DEFAULT_VERSION: Final = "2008-10-17"

_ACCOUNT_ID_RE: Final = re.compile(r"^\d{12}$")
# IAM's ExternalId constraints (sts:AssumeRole API reference): 2-1224 chars of [\w+=,.@:/-].
_EXTERNAL_ID_RE: Final = re.compile(r"^[\w+=,.@:/-]{2,1224}$", re.ASCII)
_PACKAGE: Final = "opsramp_aws_operator"
_OPSRAMP_POLICY_FILE: Final = "opsramp-readonly-policy.json"

# Statement fields holding a set of strings: order, duplicates, one element vs scalar carry no meaning.
_STRING_SET_FIELDS: Final = ("Resource", "NotResource")
_PRINCIPAL_FIELDS: Final = ("Principal", "NotPrincipal")
# Labels only: they change nothing about what a statement grants, so comparison ignores them.
_LABEL_FIELDS: Final = ("Sid",)


_PARTITION_RE: Final = re.compile(r"^aws(-[a-z]+)*$")


def trust_policy(
    opsramp_account_id: str, external_id: str, partition: str = "aws", *, also_accept: Sequence[str] = ()
) -> PolicyDocument:
    """Return the trust policy that lets OpsRamp's account assume the role only with our External ID.

    The principal is in the role's own partition (an aws-cn role can only trust an aws-cn account). `also_accept`:
    External IDs accepted besides `external_id` (the old one while a rotation overlaps both).
    """
    if not _PARTITION_RE.match(partition):
        raise ValueError(f"{partition!r} is not an AWS partition")
    if not isinstance(opsramp_account_id, str) or not _ACCOUNT_ID_RE.match(opsramp_account_id):
        raise ValueError("OpsRamp account id must be 12 digits")
    # The value itself never goes into the message: it is a secret.
    for value in (external_id, *also_accept):
        if not isinstance(value, str) or not _EXTERNAL_ID_RE.match(value):
            raise ValueError("External ID must be 2-1224 characters of letters, digits and +=,.@:/-_")
    accepted = sorted({*also_accept, external_id})
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{opsramp_account_id}:root"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": accepted[0] if len(accepted) == 1 else accepted}},
            }
        ],
    }


def parse_policy(doc: str | Mapping[str, Any]) -> PolicyDocument:
    """Return a policy as a plain dict, from URL-encoded JSON (as IAM returns it), JSON text or a mapping."""
    if isinstance(doc, Mapping):
        return copy.deepcopy(dict(doc))
    if not isinstance(doc, str):
        raise TypeError(f"policy document must be str or mapping, not {type(doc).__name__}")
    text = doc.strip()
    if not text.startswith("{"):
        # IAM returns documents percent-encoded (RFC 3986). `unquote`, not `unquote_plus`: a literal "+"
        # (legal in role names and ARNs) must stay a "+".
        text = urllib.parse.unquote(text).strip()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        # Position only: the text may hold an External ID.
        raise ValueError(f"policy document is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(parsed, dict):
        raise ValueError("policy document must be a JSON object")
    return parsed


def _statements(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    raw = doc.get("Statement", [])
    # A single statement may be written as an object instead of a one-element list.
    if isinstance(raw, Mapping):
        items = [raw]
    elif isinstance(raw, list | tuple):
        items = list(raw)
    else:
        raise ValueError("policy Statement must be an object or a list of objects")
    for item in items:
        if not isinstance(item, Mapping):
            raise ValueError("every policy statement must be a JSON object")
    return items


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _scalar_text(value: Any) -> str:
    # IAM compares condition values as text: true and "true", 3600 and "3600" mean the same.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _string_set(value: Any) -> list[str]:
    return sorted({_scalar_text(v) for v in _as_list(value)})


def _canonical_principal(value: Any) -> Any:
    if isinstance(value, str):
        return value  # "*"
    if not isinstance(value, Mapping):
        return _canonical_generic(value)
    out: dict[str, Any] = {}
    for kind, ids in value.items():
        names = _string_set(ids)
        if kind == "AWS":
            # IAM stores a bare account id as the account's root ARN; both mean "that account".
            names = sorted({f"arn:aws:iam::{n}:root" if _ACCOUNT_ID_RE.match(n) else n for n in names})
        out[kind] = names
    return out


def _canonical_condition(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return _canonical_generic(value)
    out: dict[str, Any] = {}
    for operator, block in value.items():
        if not isinstance(block, Mapping):
            out[operator] = _canonical_generic(block)
            continue
        keys: dict[str, list[str]] = {}
        for key, values in block.items():
            # Condition key names are case-insensitive in IAM; their values are not.
            merged = set(keys.get(key.lower(), [])) | set(_string_set(values))
            keys[key.lower()] = sorted(merged)
        out[operator] = keys
    return out


def _canonical_generic(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _canonical_generic(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical_generic(v) for v in value]
    return value


def _sort_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canonical_statements(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One entry per (statement, action): a statement grants (or denies) the union of its actions."""
    out: dict[str, dict[str, Any]] = {}
    for stmt in _statements(doc):
        base: dict[str, Any] = {}
        for key, value in stmt.items():
            if key in _LABEL_FIELDS or key == "Action":
                continue
            if key == "NotAction":
                base[key] = sorted({str(a).lower() for a in _as_list(value)})
            elif key in _STRING_SET_FIELDS:
                base[key] = _string_set(value)
            elif key in _PRINCIPAL_FIELDS:
                base[key] = _canonical_principal(value)
            elif key == "Condition":
                base[key] = _canonical_condition(value)
            else:
                base[key] = _canonical_generic(value)
        if "Action" in stmt:
            # Action names are case-insensitive in IAM. Splitting the list into one statement per action
            # keeps the meaning (Action is an any-of), and makes a split policy compare equal to its whole.
            actions = sorted({str(a).lower() for a in _as_list(stmt["Action"])})
            exploded = [{**base, "Action": a} for a in actions] or [base]
        else:
            exploded = [base]
        for item in exploded:
            out[_sort_key(item)] = item
    return [out[k] for k in sorted(out)]


def canonical_policy(doc: str | Mapping[str, Any]) -> Any:
    """Return a normal form of a policy in which documents of the same meaning are equal.

    Ignored: key order, order and duplicates of statements/actions/resources/principals/condition values,
    one-element lists vs scalars, the case of action names and condition keys, `Sid` and the document `Id`
    (labels only). A statement with several actions is treated as one statement per action.
    """
    return copy.deepcopy(_canonical(_key(doc)))


def _key(doc: str | Mapping[str, Any]) -> str:
    """A document as text, for the caches below (a reconcile pass compares the same few documents every time)."""
    return doc if isinstance(doc, str) else json.dumps(doc, sort_keys=True, default=str)


@lru_cache(maxsize=512)
def _canonical(text: str) -> Any:
    # Read-only: callers outside this module get a copy (canonical_policy).
    parsed = parse_policy(text)
    return {
        "Version": str(parsed.get("Version", _DEFAULT_VERSION)),
        "Statement": _canonical_statements(parsed),
    }


def policies_equal(a: str | Mapping[str, Any], b: str | Mapping[str, Any]) -> bool:
    """Tell whether two policy documents grant and deny exactly the same things (see canonical_policy)."""
    return bool(_canonical(_key(a)) == _canonical(_key(b)))


def _compact(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def policy_size(doc: Mapping[str, Any]) -> int:
    """Count the non-whitespace characters of a policy's compact JSON, the way IAM measures its limits."""
    # str.split() splits on exactly the characters str.isspace() calls whitespace, in C (this ran per pass).
    return len("".join(_compact(doc).split()))


def _splittable(stmt: Mapping[str, Any]) -> bool:
    # Only plain Allow statements are cut: a Deny, a Condition or a NotAction cut across documents is easy to
    # get subtly wrong and no policy we ship needs it.
    return (
        stmt.get("Effect") == "Allow"
        and "Condition" not in stmt
        and "NotAction" not in stmt
        and isinstance(stmt.get("Action"), list)
        and len(stmt["Action"]) > 1
    )


def split_policy(doc: Mapping[str, Any], max_chars: int = MAX_MANAGED_POLICY_CHARS) -> list[PolicyDocument]:
    """See `_split_policy`; the same document is split once per process (every pass asks again)."""
    return copy.deepcopy(_split_cached(_key(doc), max_chars))


@lru_cache(maxsize=64)
def _split_cached(text: str, max_chars: int) -> list[PolicyDocument]:
    return _split_policy(json.loads(text), max_chars)


def _split_policy(doc: Mapping[str, Any], max_chars: int = MAX_MANAGED_POLICY_CHARS) -> list[PolicyDocument]:
    """Split a policy into documents of at most `max_chars` that together grant exactly the original.

    Deterministic: statements keep their order and are packed first-fit into the current document; a plain
    Allow statement (no Condition, no NotAction) that does not fit is cut between actions, in order. A policy
    that already fits is returned unchanged as the only part. Raises ValueError when a single statement (or a
    single action of a cuttable one) cannot fit in an empty document.
    """
    parsed = parse_policy(doc)
    if policy_size(parsed) <= max_chars:
        return [parsed]
    # Every part repeats the original's top-level keys (Version above all: it changes how IAM reads the
    # statements), never a default of our own.
    header = {k: v for k, v in parsed.items() if k != "Statement"}

    parts: list[PolicyDocument] = []
    current: list[dict[str, Any]] = []

    def size_with(extra: dict[str, Any]) -> int:
        return policy_size({**header, "Statement": [*current, extra]})

    def close() -> None:
        nonlocal current
        if current:
            parts.append(copy.deepcopy({**header, "Statement": current}))
            current = []

    for index, raw in enumerate(_statements(parsed)):
        stmt = dict(raw)
        if size_with(stmt) <= max_chars:
            current.append(stmt)
            continue
        if not _splittable(stmt):
            close()
            if size_with(stmt) > max_chars:
                raise ValueError(
                    f"policy statement #{index} ({policy_size(stmt)} characters) cannot fit in a managed "
                    f"policy of {max_chars} characters and cannot be split"
                )
            current.append(stmt)
            continue
        actions: list[Any] = list(stmt["Action"])
        while actions:
            fit = _largest_prefix_that_fits(stmt, actions, size_with, max_chars)
            if fit == 0:
                if not current:
                    raise ValueError(
                        f"policy statement #{index}: a single action does not fit in a managed policy of "
                        f"{max_chars} characters"
                    )
                close()
                continue
            current.append({**stmt, "Action": actions[:fit]})
            actions = actions[fit:]
            if actions:
                close()
    close()
    return parts


def _largest_prefix_that_fits(
    stmt: Mapping[str, Any],
    actions: list[Any],
    size_with: Any,
    max_chars: int,
) -> int:
    """Binary search for the most leading actions that fit beside what the current document holds."""
    low, high = 0, len(actions)
    while low < high:
        mid = (low + high + 1) // 2
        if size_with({**stmt, "Action": actions[:mid]}) <= max_chars:
            low = mid
        else:
            high = mid - 1
    return low


def _documents(docs: Any) -> list[Any]:
    if isinstance(docs, str | Mapping):
        return [docs]
    if isinstance(docs, Iterable):
        return list(docs)
    raise TypeError(f"expected a policy document or a sequence of them, not {type(docs).__name__}")


def policy_digest(docs: PolicyDocument | Sequence[PolicyDocument]) -> str:
    """Return "sha256:<16 hex>" over the meaning of one document or a set of documents.

    A set of documents counts as the union of their statements, so a policy and its split_policy parts,
    in any order, have the same digest.
    """
    return _digest(tuple(_key(doc) for doc in _documents(docs)))


@lru_cache(maxsize=256)
def _digest(texts: tuple[str, ...]) -> str:
    entries: set[str] = set()
    for text in texts:
        canonical = _canonical(text)
        for stmt in canonical["Statement"]:
            entries.add(_sort_key({"Version": canonical["Version"], "Statement": stmt}))
    payload = "\n".join(sorted(entries)).encode()
    return "sha256:" + hashlib.sha256(payload).hexdigest()[:16]


def policy_actions(doc: str | Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> set[str]:
    """Return every action an Allow statement names (lower-cased), over one document or several."""
    found: set[str] = set()
    for one in _documents(doc):
        for stmt in _statements(parse_policy(one)):
            if stmt.get("Effect") == "Allow" and "Action" in stmt:
                found.update(str(a).lower() for a in _as_list(stmt["Action"]))
    return found


def load_opsramp_policy() -> PolicyDocument:
    """Return the shipped OpsRamp read-only permission policy (package data, easy to replace)."""
    return parse_policy(_opsramp_policy_text())


@lru_cache(maxsize=1)
def _opsramp_policy_text() -> str:
    return resources.files(_PACKAGE).joinpath("data", _OPSRAMP_POLICY_FILE).read_text(encoding="utf-8")


# --- judging documents someone else wrote: trust (adoption, a brought role) and permissions (a brought role) ---

_ASSUME_ACTIONS: Final = ("sts:assumerole",)


def _action_matches(pattern: str, action: str) -> bool:
    """IAM's action matching: case-insensitive, `*` any run of characters, `?` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.fullmatch(regex, action.lower()) is not None


def _statement_actions(stmt: Mapping[str, Any], action: str) -> bool:
    """Does the statement's Action (or NotAction) cover `action`?"""
    if "Action" in stmt:
        return any(_action_matches(str(a), action) for a in _as_list(stmt["Action"]))
    if "NotAction" in stmt:
        return not any(_action_matches(str(a), action) for a in _as_list(stmt["NotAction"]))
    return False


def _principal_entries(principal: Any) -> list[str]:
    """Every principal a statement names, as text ("*", ARNs, "service:...", "federated:...")."""
    if principal == "*":
        return ["*"]
    if not isinstance(principal, Mapping):
        return [str(principal)]
    found: list[str] = []
    for kind, ids in principal.items():
        for value in _as_list(ids):
            text = str(value)
            if kind == "AWS":
                found.append(f"arn:aws:iam::{text}:root" if _ACCOUNT_ID_RE.match(text) else text)
            else:
                found.append(f"{str(kind).lower()}:{text}")
    return found


def _account_root(entry: str, accounts: Iterable[str]) -> bool:
    return any(re.fullmatch(rf"arn:aws(-[a-z]+)*:iam::{a}:root", entry) for a in accounts)


def _requires_external_id(condition: Any, external_id: str | None) -> tuple[bool, bool]:
    """(requires some External ID exactly, admits `external_id`) for a statement's Condition block."""
    if not isinstance(condition, Mapping):
        return False, False
    required = False
    admits = True
    for operator, clauses in condition.items():
        if not isinstance(clauses, Mapping):
            continue
        for key, values in clauses.items():
            if str(key).lower() != "sts:externalid":
                continue
            if str(operator) == "StringEquals":
                required = True
                admits = admits and external_id is not None and external_id in {str(v) for v in _as_list(values)}
            else:
                # StringLike, ForAnyValue... and friends: not an exact requirement (a wildcard admits anyone's).
                admits = False
    return required, required and admits


def trust_problems(
    policy: Mapping[str, Any], opsramp_accounts: Sequence[str], external_id: str | None
) -> tuple[bool, list[str]]:
    """(admits OpsRamp with this External ID, the problems) of a trust policy someone else wrote.

    The first answer is the proof a role is meant for this resource: an Allow of sts:AssumeRole to an allowed OpsRamp
    account on the condition that the External ID equals this resource's (a secret only its owner knows). Only when it
    holds are the other problems listed (principals besides OpsRamp's, OpsRamp admitted without the External ID):
    another tenant's role must not be described to whoever names it. No External ID value ever appears.
    """
    admits = False
    problems: list[str] = []
    for stmt in _statements(parse_policy(policy)):
        if stmt.get("Effect") != "Allow" or not any(_statement_actions(stmt, a) for a in _ASSUME_ACTIONS):
            continue
        if "NotPrincipal" in stmt:
            problems.append("a statement uses NotPrincipal (it admits everyone it does not name)")
            continue
        entries = _principal_entries(stmt.get("Principal"))
        required, ours = _requires_external_id(stmt.get("Condition"), external_id)
        opsramp = [e for e in entries if _account_root(e, opsramp_accounts)]
        others = [e for e in entries if e not in opsramp]
        if opsramp and ours:
            admits = True
        if opsramp and not required:
            problems.append(f"it admits {', '.join(opsramp)} without requiring the External ID (sts:ExternalId)")
        for entry in others:
            problems.append(f"it also admits {entry}")
    return admits, list(dict.fromkeys(problems))


def _covers_everything(stmt: Mapping[str, Any]) -> bool:
    """An Allow that counts as granting an action: on every resource, without a condition."""
    return (
        "Condition" not in stmt
        and "NotResource" not in stmt
        and "*" in [str(r) for r in _as_list(stmt.get("Resource"))]
    )


def missing_actions(
    required: Iterable[str], grants: Sequence[Mapping[str, Any]], boundary: Mapping[str, Any] | None = None
) -> list[str]:
    """The `required` actions the `grants` documents do not allow on every resource (or that a Deny or the
    permissions `boundary` takes away), in the order given.

    Conservative where IAM would need the request to decide: an Allow with a Condition or a narrower Resource does
    not count as granting, and any Deny naming the action counts as denying. (IAM's policy simulator does this for
    real; moto has none, and the operator would need one more permission for it.)
    """
    allow = [s for doc in grants for s in _statements(parse_policy(doc)) if s.get("Effect") == "Allow"]
    deny = [s for doc in grants for s in _statements(parse_policy(doc)) if s.get("Effect") == "Deny"]
    fence = [] if boundary is None else _statements(parse_policy(boundary))
    missing: list[str] = []
    for action in dict.fromkeys(required):
        granted = any(_covers_everything(s) and _statement_actions(s, action) for s in allow)
        denied = any(_statement_actions(s, action) for s in deny)
        if boundary is not None:
            granted = granted and any(
                s.get("Effect") == "Allow" and _covers_everything(s) and _statement_actions(s, action) for s in fence
            )
            denied = denied or any(s.get("Effect") == "Deny" and _statement_actions(s, action) for s in fence)
        if not granted or denied:
            missing.append(action)
    return missing


def required_actions(doc: Mapping[str, Any]) -> list[str]:
    """The actions a policy's Allow statements name, in document order, as written (OpsRamp's read-only policy)."""
    found: list[str] = []
    for stmt in _statements(parse_policy(doc)):
        if stmt.get("Effect") == "Allow" and "Action" in stmt:
            found.extend(str(a) for a in _as_list(stmt["Action"]))
    return list(dict.fromkeys(found))


def mask_external_ids(doc: Mapping[str, Any], names: Mapping[str, str] | None = None) -> PolicyDocument:
    """A copy of a trust policy fit to show: every sts:ExternalId value replaced by a label (`names` maps values to
    labels such as "<this resource's External ID>"; any other value becomes "<another External ID>")."""
    out = parse_policy(doc)
    labels = dict(names or {})
    for stmt in _statements(out):
        condition = stmt.get("Condition") if isinstance(stmt, dict) else None
        if not isinstance(condition, dict):
            continue
        for clauses in condition.values():
            if not isinstance(clauses, dict):
                continue
            for key in list(clauses):
                if str(key).lower() == "sts:externalid":
                    values = [labels.get(str(v), "<another External ID>") for v in _as_list(clauses[key])]
                    clauses[key] = values[0] if len(values) == 1 else sorted(values)
    return out


def policy_text(doc: Mapping[str, Any]) -> str:
    """A document as stable, indented JSON (for diffs a person reads)."""
    return json.dumps(parse_policy(doc), indent=2, sort_keys=True, ensure_ascii=False)
