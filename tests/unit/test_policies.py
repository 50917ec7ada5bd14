"""Unit tests for the IAM policy functions: trust policy, parsing, comparison by meaning, size, split, digest."""

from __future__ import annotations

import copy
import json
import random
import re
import urllib.parse
from typing import Any

import pytest
from trust_eval import Caller, can_assume

from opsramp_aws_operator.policies import (
    MAX_MANAGED_POLICY_CHARS,
    canonical_policy,
    load_opsramp_policy,
    parse_policy,
    policies_equal,
    policy_actions,
    policy_digest,
    policy_size,
    split_policy,
    trust_policy,
)

OPSRAMP = "111122223333"
OTHER = "444455556666"
EXTERNAL_ID = "opsramp-ext-7f3a9c2e1b"


def _iam_encoded(doc: Any) -> str:
    """Encode a document the way IAM's GetRole / GetPolicyVersion return it."""
    return urllib.parse.quote(json.dumps(doc))


# ---------------------------------------------------------------- trust policy


def test_trust_policy_has_the_documented_shape() -> None:
    """The trust policy is exactly one Allow of sts:AssumeRole to OpsRamp's root, gated by the External ID."""
    assert trust_policy(OPSRAMP, EXTERNAL_ID) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{OPSRAMP}:root"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}},
            }
        ],
    }


@pytest.mark.parametrize(
    ("account", "external_id"),
    [
        ("11112222333", EXTERNAL_ID),  # 11 digits
        ("1111222233334", EXTERNAL_ID),  # 13 digits
        ("11112222333a", EXTERNAL_ID),
        ("", EXTERNAL_ID),
        (OPSRAMP, "x"),  # shorter than IAM's 2 characters
        (OPSRAMP, "a" * 1225),  # longer than 1224
        (OPSRAMP, "secret with spaces"),
        (OPSRAMP, 'sec"ret'),  # would break out of the JSON string in a hand-built policy
    ],
)
def test_trust_policy_rejects_invalid_inputs_without_echoing_them(account: str, external_id: str) -> None:
    """Bad account ids and External IDs raise ValueError whose text never contains the External ID."""
    with pytest.raises(ValueError, match=r"account id|External ID") as info:
        trust_policy(account, external_id)
    if len(external_id) > 1:
        assert external_id not in str(info.value)


GOOD = {"sts:ExternalId": EXTERNAL_ID}


@pytest.mark.parametrize(
    ("caller", "allowed"),
    [
        pytest.param(Caller(arn=f"arn:aws:iam::{OPSRAMP}:root", context=GOOD), True, id="opsramp-root-right-id"),
        pytest.param(
            Caller(arn=f"arn:aws:sts::{OPSRAMP}:assumed-role/opsramp-collector/s1", context=GOOD),
            True,
            id="opsramp-role-session-right-id",  # the root principal delegates to the whole OpsRamp account
        ),
        pytest.param(
            Caller(arn=f"arn:aws:iam::{OPSRAMP}:root", context={"sts:ExternalId": "opsramp-ext-0000000000"}),
            False,
            id="wrong-external-id",
        ),
        pytest.param(
            Caller(arn=f"arn:aws:iam::{OPSRAMP}:root", context={"sts:ExternalId": EXTERNAL_ID.upper()}),
            False,
            id="external-id-other-case",
        ),
        pytest.param(
            Caller(arn=f"arn:aws:iam::{OPSRAMP}:root", context={"sts:ExternalId": EXTERNAL_ID + "x"}),
            False,
            id="external-id-with-suffix",
        ),
        pytest.param(
            Caller(arn=f"arn:aws:iam::{OPSRAMP}:root", context={"sts:ExternalId": ""}),
            False,
            id="empty-external-id",
        ),
        pytest.param(Caller(arn=f"arn:aws:iam::{OPSRAMP}:root"), False, id="missing-external-id"),
        pytest.param(
            Caller(arn=f"arn:aws:sts::{OPSRAMP}:assumed-role/opsramp-collector/s1"),
            False,
            id="opsramp-role-missing-external-id",
        ),
        pytest.param(Caller(arn=f"arn:aws:iam::{OTHER}:root", context=GOOD), False, id="other-account-root"),
        pytest.param(
            Caller(arn=f"arn:aws:iam::{OTHER}:role/opsramp-collector", context=GOOD),
            False,
            id="same-role-name-other-account",
        ),
        pytest.param(
            Caller(arn=f"arn:aws:sts::{OTHER}:assumed-role/x/s", context=GOOD), False, id="other-account-session"
        ),
        pytest.param(
            Caller(arn=f"arn:aws:iam::{OTHER}:user/{OPSRAMP}", context=GOOD),
            False,
            id="opsramp-account-id-as-user-name",
        ),
        pytest.param(Caller(service="ec2.amazonaws.com", context=GOOD), False, id="service-principal"),
        pytest.param(Caller(context=GOOD), False, id="anonymous"),
    ],
)
def test_trust_policy_admits_only_opsramp_with_the_external_id(caller: Caller, allowed: bool) -> None:
    """Evaluated as IAM would, the trust policy lets OpsRamp's account in only with the right External ID."""
    assert can_assume(trust_policy(OPSRAMP, EXTERNAL_ID), caller) is allowed


def test_trust_policy_grants_only_assume_role() -> None:
    """Even OpsRamp with the right External ID cannot use the trust policy for other STS actions."""
    caller = Caller(arn=f"arn:aws:iam::{OPSRAMP}:root", context=GOOD)
    policy = trust_policy(OPSRAMP, EXTERNAL_ID)
    assert can_assume(policy, caller, "sts:AssumeRole")
    assert not can_assume(policy, caller, "sts:AssumeRoleWithWebIdentity")
    assert not can_assume(policy, caller, "sts:TagSession")


def test_trust_policy_survives_the_iam_round_trip() -> None:
    """The URL-encoded form IAM returns still admits OpsRamp and still equals what we built."""
    built = trust_policy(OPSRAMP, EXTERNAL_ID)
    returned = parse_policy(_iam_encoded(built))
    assert can_assume(returned, Caller(arn=f"arn:aws:iam::{OPSRAMP}:root", context=GOOD))
    assert policies_equal(built, _iam_encoded(built))


# ---------------------------------------------------------------- the evaluator itself


@pytest.mark.parametrize(
    ("policy", "caller", "allowed"),
    [
        pytest.param(
            {"Statement": {"Effect": "Allow", "Principal": {"AWS": OPSRAMP}, "Action": "sts:*"}},
            Caller(arn=f"arn:aws:iam::{OPSRAMP}:user/u"),
            True,
            id="bare-account-and-action-wildcard",
        ),
        pytest.param(
            {
                "Statement": [
                    {"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"},
                    {"Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"}, "Action": "sts:*"},
                ]
            },
            Caller(arn=f"arn:aws:iam::{OTHER}:role/r"),
            False,
            id="explicit-deny-wins",
        ),
        pytest.param(
            {
                "Statement": {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{OPSRAMP}:role/only"},
                    "Action": "sts:AssumeRole",
                }
            },
            Caller(arn=f"arn:aws:iam::{OPSRAMP}:role/other"),
            False,
            id="role-principal-is-only-that-role",
        ),
        pytest.param(
            {
                "Statement": {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{OPSRAMP}:role/only"},
                    "Action": "sts:AssumeRole",
                }
            },
            Caller(arn=f"arn:aws:sts::{OPSRAMP}:assumed-role/only/session"),
            True,
            id="role-session-is-its-role",
        ),
        pytest.param(
            {
                "Statement": {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringNotEquals": {"sts:ExternalId": "x"}},
                }
            },
            Caller(arn=f"arn:aws:iam::{OTHER}:root"),
            True,
            id="negated-operator-holds-on-missing-key",
        ),
        pytest.param(
            {
                "Statement": {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEqualsIfExists": {"sts:ExternalId": "x"}},
                }
            },
            Caller(arn=f"arn:aws:iam::{OTHER}:root"),
            True,
            id="if-exists-holds-on-missing-key",
        ),
        pytest.param(
            {
                "Statement": {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "sts:AssumeRole",
                    "Condition": {"Null": {"sts:ExternalId": "false"}},
                }
            },
            Caller(arn=f"arn:aws:iam::{OTHER}:root"),
            False,
            id="null-false-needs-the-key",
        ),
        pytest.param({"Statement": []}, Caller(arn=f"arn:aws:iam::{OPSRAMP}:root"), False, id="implicit-deny"),
    ],
)
def test_trust_evaluator_models_iam_rules(policy: dict[str, Any], caller: Caller, allowed: bool) -> None:
    """The test-only evaluator applies IAM's principal, wildcard, deny-wins and condition rules."""
    assert can_assume(policy, caller) is allowed


def test_trust_evaluator_refuses_unknown_condition_operators() -> None:
    """An operator the evaluator does not model raises instead of silently matching."""
    policy = {
        "Statement": {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "sts:AssumeRole",
            "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}},
        }
    }
    with pytest.raises(ValueError, match="not modelled"):
        can_assume(policy, Caller(arn=f"arn:aws:iam::{OPSRAMP}:root", context={"aws:CurrentTime": "x"}))


# ---------------------------------------------------------------- parsing


def test_parse_policy_accepts_encoded_text_and_mappings() -> None:
    """URL-encoded JSON, plain JSON text and a dict all parse to the same plain dict."""
    doc = trust_policy(OPSRAMP, EXTERNAL_ID)
    assert parse_policy(_iam_encoded(doc)) == doc
    assert parse_policy(json.dumps(doc, indent=2)) == doc
    assert parse_policy(doc) == doc


def test_parse_policy_keeps_plus_signs() -> None:
    """A literal '+' (legal in IAM names) survives decoding; it is not turned into a space."""
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "a+b"}]}
    assert parse_policy(urllib.parse.quote(json.dumps(doc), safe="+"))["Statement"][0]["Resource"] == "a+b"


def test_parse_policy_returns_an_independent_copy() -> None:
    """Changing the parsed result never changes the caller's document."""
    doc = trust_policy(OPSRAMP, EXTERNAL_ID)
    parsed = parse_policy(doc)
    parsed["Statement"][0]["Action"] = "sts:*"
    assert doc["Statement"][0]["Action"] == "sts:AssumeRole"


@pytest.mark.parametrize(
    "text",
    [
        '{"Statement": [{"Condition": {"StringEquals": {"sts:ExternalId": "s3cr3t-value"}}',
        "%7B%22sts%3AExternalId%22%3A%22s3cr3t-value%22",
        '["s3cr3t-value"]',
        "",
    ],
)
def test_parse_policy_rejects_bad_text_without_echoing_it(text: str) -> None:
    """Broken or non-object JSON raises ValueError that does not repeat the document (it may hold secrets)."""
    with pytest.raises(ValueError, match="policy document") as info:
        parse_policy(text)
    assert "s3cr3t" not in str(info.value)


# ---------------------------------------------------------------- comparison by meaning

BASE: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "Read",
            "Effect": "Allow",
            "Action": ["ec2:DescribeInstances", "ec2:DescribeVolumes"],
            "Resource": "*",
        },
        {
            "Effect": "Allow",
            "Principal": {"AWS": [f"arn:aws:iam::{OPSRAMP}:root", f"arn:aws:iam::{OTHER}:root"]},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": [EXTERNAL_ID, "second-id"]}},
        },
    ],
}


def _rewrite_reordered(doc: dict[str, Any]) -> Any:
    out = copy.deepcopy(doc)
    out["Statement"].reverse()
    out["Statement"][1]["Action"].reverse()
    out["Statement"][0]["Principal"]["AWS"].reverse()
    out["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"].reverse()
    return {k: out[k] for k in reversed(list(out))}


def _rewrite_keys_reversed(doc: dict[str, Any]) -> Any:
    def rev(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: rev(value[k]) for k in reversed(list(value))}
        if isinstance(value, list):
            return [rev(v) for v in value]
        return value

    return rev(doc)


SINGLE: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": [f"arn:aws:iam::{OPSRAMP}:root"]},
            "Action": ["sts:AssumeRole"],
            "Condition": {"StringEquals": {"sts:ExternalId": [EXTERNAL_ID]}},
        }
    ],
}


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(BASE, _iam_encoded(BASE), id="url-encoded"),
        pytest.param(BASE, json.dumps(BASE, indent=4), id="json-text"),
        pytest.param(BASE, _rewrite_reordered(BASE), id="lists-and-statements-reordered"),
        pytest.param(BASE, _rewrite_keys_reversed(BASE), id="keys-reordered"),
        pytest.param(SINGLE, trust_policy(OPSRAMP, EXTERNAL_ID), id="one-element-lists-vs-scalars"),
        pytest.param(SINGLE, {**SINGLE, "Statement": SINGLE["Statement"][0]}, id="statement-object-vs-list"),
        pytest.param(
            trust_policy(OPSRAMP, EXTERNAL_ID),
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": OPSRAMP},
                        "Action": "STS:assumerole",
                        "Condition": {"StringEquals": {"STS:ExternalID": EXTERNAL_ID}},
                    }
                ],
            },
            id="bare-account-id-action-and-key-case",
        ),
        pytest.param(
            BASE,
            {**copy.deepcopy(BASE), "Id": "x", "Statement": [{**s, "Sid": "Other"} for s in BASE["Statement"]]},
            id="sid-and-id-are-labels",
        ),
        pytest.param(
            BASE,
            {
                **copy.deepcopy(BASE),
                "Statement": [
                    {"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"},
                    {"Effect": "Allow", "Action": ["ec2:describevolumes", "ec2:DescribeVolumes"], "Resource": ["*"]},
                    BASE["Statement"][1],
                    BASE["Statement"][1],
                ],
            },
            id="split-statements-and-duplicates",
        ),
        pytest.param(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "x:Y", "Condition": {"Bool": {"aws:SecureTransport": True}}}
                ],
            },
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "x:Y", "Condition": {"Bool": {"aws:SecureTransport": "true"}}}
                ],
            },
            id="boolean-vs-string-condition-value",
        ),
    ],
)
def test_policies_differing_only_by_aws_rewrites_compare_equal(a: Any, b: Any) -> None:
    """Rewrites AWS applies (encoding, order, scalars, case, labels) do not change the meaning."""
    assert policies_equal(a, b)
    assert policies_equal(b, a)
    assert policy_digest(parse_policy(a)) == policy_digest(parse_policy(b))


def _trust_with(**changes: Any) -> dict[str, Any]:
    doc = trust_policy(OPSRAMP, EXTERNAL_ID)
    stmt = doc["Statement"][0]
    for key, value in changes.items():
        if value is None:
            del stmt[key]
        else:
            stmt[key] = value
    return doc


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(trust_policy(OPSRAMP, "opsramp-ext-other"), id="other-external-id"),
        pytest.param(trust_policy(OTHER, EXTERNAL_ID), id="other-account"),
        pytest.param(_trust_with(Principal={"AWS": f"arn:aws:iam::{OPSRAMP}:role/x"}), id="role-not-root"),
        pytest.param(_trust_with(Principal="*"), id="any-principal"),
        pytest.param(_trust_with(Action="sts:AssumeRoleWithSAML"), id="other-action"),
        pytest.param(_trust_with(Action=["sts:AssumeRole", "sts:TagSession"]), id="extra-action"),
        pytest.param(_trust_with(Effect="Deny"), id="deny-vs-allow"),
        pytest.param(_trust_with(Condition=None), id="missing-condition"),
        pytest.param(_trust_with(Condition={"StringLike": {"sts:ExternalId": EXTERNAL_ID}}), id="other-operator"),
        pytest.param(
            _trust_with(Condition={"StringEquals": {"sts:ExternalId": EXTERNAL_ID.upper()}}),
            id="external-id-case-matters",
        ),
        pytest.param(
            _trust_with(Condition={"StringEquals": {"sts:ExternalId": [EXTERNAL_ID, "second"]}}),
            id="extra-condition-value",
        ),
        pytest.param(_trust_with(NotAction="sts:AssumeRole", Action=None), id="notaction-vs-action"),
        pytest.param({**trust_policy(OPSRAMP, EXTERNAL_ID), "Version": "2008-10-17"}, id="other-version"),
        pytest.param({**trust_policy(OPSRAMP, EXTERNAL_ID), "Statement": []}, id="no-statements"),
    ],
)
def test_policies_with_a_different_meaning_compare_unequal(other: dict[str, Any]) -> None:
    """Any change in who, what, effect or condition makes policies unequal and changes the digest."""
    ours = trust_policy(OPSRAMP, EXTERNAL_ID)
    assert not policies_equal(ours, other)
    assert not policies_equal(_iam_encoded(other), ours)
    assert policy_digest(ours) != policy_digest(other)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(
            {"Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::Bucket"}]},
            {"Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::bucket"}]},
            id="resource-case-matters",
        ),
        pytest.param(
            {"Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]},
            {"Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "NotResource": "*"}]},
            id="resource-vs-notresource",
        ),
        pytest.param(
            {"Statement": [{"Effect": "Allow", "Action": ["a:B", "a:C"], "Resource": "*"}]},
            {"Statement": [{"Effect": "Allow", "Action": "a:B", "Resource": "*"}]},
            id="dropped-action",
        ),
    ],
)
def test_permission_policy_differences_are_seen(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Resource case, NotResource and a dropped action all count as different permission policies."""
    assert not policies_equal(a, b)


def test_canonical_form_is_json_and_order_free() -> None:
    """The canonical form serialises to JSON and is identical for a document and its reordered rewrite."""
    a = canonical_policy(BASE)
    b = canonical_policy(_rewrite_reordered(BASE))
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# ---------------------------------------------------------------- digest

_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{16}$")


def test_digest_format_and_stability() -> None:
    """Digests look like sha256:<16 hex>, repeat across calls and do not depend on the argument's shape."""
    doc = load_opsramp_policy()
    digest = policy_digest(doc)
    assert _DIGEST_RE.match(digest)
    assert policy_digest(copy.deepcopy(doc)) == digest
    assert policy_digest([doc]) == digest
    assert policy_digest((doc, doc)) == digest


def test_digest_of_split_parts_equals_digest_of_the_whole() -> None:
    """A policy and its split parts, in any order, share one digest; dropping a part changes it."""
    doc = load_opsramp_policy()
    parts = split_policy(doc, 1500)
    assert len(parts) > 2
    assert policy_digest(parts) == policy_digest(doc)
    assert policy_digest(list(reversed(parts))) == policy_digest(doc)
    assert policy_digest(parts[:-1]) != policy_digest(doc)


def test_digest_of_an_unchanged_policy_is_pinned() -> None:
    """The digest of a fixed document never moves between releases (status.policyDigest would churn)."""
    assert policy_digest(trust_policy(OPSRAMP, "opsramp-ext-pinned")) == "sha256:df971994ed1f81bd"


# ---------------------------------------------------------------- size


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({}, 2),
        ({"a": "b"}, 9),
        ({"a": "b c"}, 10),  # whitespace inside strings is not counted either
        ({"a": ["x", "y"]}, 15),
    ],
)
def test_policy_size_counts_non_whitespace_compact_json(doc: dict[str, Any], expected: int) -> None:
    """Size is the number of non-whitespace characters of the compact JSON."""
    assert policy_size(doc) == expected


def test_policy_size_ignores_layout() -> None:
    """Pretty-printing a document does not change its size (IAM ignores whitespace)."""
    doc = load_opsramp_policy()
    pretty = json.dumps(doc, indent=8)
    assert policy_size(doc) == sum(1 for c in pretty if not c.isspace())


# ---------------------------------------------------------------- split


def _synthetic_policy(actions: int, statements: int, seed: int = 7) -> dict[str, Any]:
    """A large policy: several plain Allow statements, plus ones that must not be cut."""
    rng = random.Random(seed)
    services = ["ec2", "rds", "elasticloadbalancing", "cloudwatch", "s3", "dynamodb", "lambda"]
    names = [
        f"{rng.choice(services)}:Describe{''.join(rng.choices('ABCDEFGHIJKLMNOPQRSTUVWXYZ', k=rng.randint(4, 24)))}{i}"
        for i in range(actions)
    ]
    per = len(names) // statements
    stmts: list[dict[str, Any]] = [
        {"Sid": f"Part{i}", "Effect": "Allow", "Action": names[i * per : (i + 1) * per], "Resource": "*"}
        for i in range(statements)
    ]
    stmts[-1]["Action"] += names[statements * per :]
    stmts.insert(
        1,
        {
            "Sid": "Conditional",
            "Effect": "Allow",
            "Action": [f"ssm:GetParameter{i}" for i in range(40)],
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:RequestedRegion": ["eu-west-1", "us-east-1"]}},
        },
    )
    stmts.insert(
        3, {"Sid": "NoWrites", "Effect": "Deny", "Action": [f"iam:Put{i}" for i in range(30)], "Resource": "*"}
    )
    stmts.append({"Effect": "Allow", "NotAction": ["iam:*", "organizations:*"], "Resource": "arn:aws:s3:::b/*"})
    return {"Version": "2012-10-17", "Statement": stmts}


def _statement_key(stmt: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in stmt.items() if k != "Action"}, sort_keys=True)


def _assert_exact_split(doc: dict[str, Any], parts: list[dict[str, Any]], max_chars: int) -> None:
    assert parts, "no parts"
    for part in parts:
        assert policy_size(part) <= max_chars
        assert part["Version"] == doc["Version"]
        sids = [s["Sid"] for s in part["Statement"] if "Sid" in s]
        assert len(sids) == len(set(sids)), "duplicate Sid inside one managed policy"
    # Together: every original statement comes back, in order, with its actions in order; nothing else.
    pieces = [s for part in parts for s in part["Statement"]]
    rebuilt: list[dict[str, Any]] = []
    for piece in pieces:
        if (
            rebuilt
            and isinstance(piece.get("Action"), list)
            and _statement_key(rebuilt[-1]) == _statement_key(piece)
            and len(rebuilt[-1]["Action"]) < len(doc["Statement"][len(rebuilt) - 1].get("Action", []))
        ):
            rebuilt[-1] = {**rebuilt[-1], "Action": rebuilt[-1]["Action"] + piece["Action"]}
        else:
            rebuilt.append(piece)
    assert rebuilt == doc["Statement"]
    assert policy_actions(parts) == policy_actions(doc)
    assert policy_digest(parts) == policy_digest(doc)


def test_oversized_policy_splits_into_fitting_parts_that_grant_exactly_the_original() -> None:
    """2,000 generated actions over several statements split into ≤ 6,144-character parts granting the same."""
    doc = _synthetic_policy(actions=2000, statements=5)
    assert policy_size(doc) > 5 * MAX_MANAGED_POLICY_CHARS
    parts = split_policy(doc)
    _assert_exact_split(doc, parts, MAX_MANAGED_POLICY_CHARS)
    # The packing is not wasteful: the parts are close to the fewest the total size allows.
    assert len(parts) <= policy_size(doc) // (MAX_MANAGED_POLICY_CHARS - 200) + 2
    print(f"\n2000 actions, {policy_size(doc)} chars -> {len(parts)} parts: {[policy_size(p) for p in parts]}")


@pytest.mark.parametrize("max_chars", [1200, 1500, 2500, 4096, 6144, 10240])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_split_is_exact_for_many_limits(max_chars: int, seed: int) -> None:
    """For several limits and generated policies, every part fits and the union is exactly the original."""
    doc = _synthetic_policy(actions=300, statements=3, seed=seed)
    _assert_exact_split(doc, split_policy(doc, max_chars), max_chars)


def test_split_is_deterministic() -> None:
    """Splitting the same document twice gives identical parts, in the same order."""
    doc = _synthetic_policy(actions=800, statements=4)
    assert split_policy(doc) == split_policy(copy.deepcopy(doc))


def test_split_leaves_a_fitting_policy_whole() -> None:
    """A policy under the limit comes back as its only part, unchanged."""
    doc = load_opsramp_policy()
    assert split_policy(doc) == [doc]


def test_split_does_not_cut_conditional_deny_or_notaction_statements() -> None:
    """Statements with a Condition, a Deny or a NotAction appear whole in exactly one part."""
    doc = _synthetic_policy(actions=600, statements=3)
    parts = split_policy(doc, 1500)
    whole = [s for s in doc["Statement"] if "Condition" in s or s["Effect"] == "Deny" or "NotAction" in s]
    pieces = [s for p in parts for s in p["Statement"]]
    for stmt in whole:
        assert pieces.count(stmt) == 1


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param({"Effect": "Deny"}, id="deny"),
        pytest.param({"Effect": "Allow", "Condition": {"Bool": {"aws:SecureTransport": "true"}}}, id="condition"),
    ],
)
def test_split_moves_an_uncuttable_statement_whole_to_the_next_part(tail: dict[str, Any]) -> None:
    """A Deny or conditional statement that does not fit beside others starts a new part instead of being cut."""
    filler = {"Effect": "Allow", "Action": [f"ec2:DescribeThing{i}" for i in range(40)], "Resource": "*"}
    big = {"Action": [f"iam:PutSomething{i}" for i in range(40)], "Resource": "*", **tail}
    doc = {"Version": "2012-10-17", "Statement": [filler, big]}
    parts = split_policy(doc, 1200)
    assert [p["Statement"] for p in parts] == [[filler], [big]]


@pytest.mark.parametrize(
    ("doc", "max_chars", "message"),
    [
        pytest.param(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": [f"ec2:Describe{i}" for i in range(50)],
                        "Resource": "*",
                        "Condition": {"Bool": {"aws:SecureTransport": "true"}},
                    }
                ],
            },
            400,
            "cannot be split",
            id="conditional-statement-too-big",
        ),
        pytest.param(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": ["a:" + "B" * 200, "a:C"], "Resource": "*"}],
            },
            120,
            "single action",
            id="one-action-too-big",
        ),
    ],
)
def test_split_raises_a_clear_error_when_a_statement_cannot_fit(
    doc: dict[str, Any], max_chars: int, message: str
) -> None:
    """A statement that cannot fit even alone raises ValueError naming the statement and the limit."""
    with pytest.raises(ValueError, match=message) as info:
        split_policy(doc, max_chars)
    assert str(max_chars) in str(info.value)


# ---------------------------------------------------------------- actions and the shipped policy


def test_policy_actions_lists_only_allowed_actions_lower_cased() -> None:
    """Allow actions are collected lower-cased; Deny and NotAction statements contribute nothing."""
    doc = {
        "Statement": [
            {"Effect": "Allow", "Action": ["EC2:DescribeInstances", "ec2:describeinstances"], "Resource": "*"},
            {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"},
            {"Effect": "Deny", "Action": "iam:PutRolePolicy", "Resource": "*"},
            {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
        ]
    }
    assert policy_actions(doc) == {"ec2:describeinstances", "s3:listallmybuckets"}
    assert policy_actions(_iam_encoded(doc)) == policy_actions(doc)


def test_shipped_policy_loads_as_one_plain_allow_statement() -> None:
    """The packaged OpsRamp policy is one Allow statement on every resource, with explicit actions only."""
    doc = load_opsramp_policy()
    assert doc["Version"] == "2012-10-17"
    [stmt] = doc["Statement"]
    assert stmt["Effect"] == "Allow"
    assert stmt["Resource"] == "*"
    assert set(stmt) <= {"Sid", "Effect", "Action", "Resource"}
    assert all("*" not in a and "?" not in a for a in stmt["Action"])
    assert len(policy_actions(doc)) == len(stmt["Action"]), "duplicate actions"
    print(f"\nshipped policy: {len(stmt['Action'])} actions, {policy_size(doc)} chars, {policy_digest(doc)}")


def test_shipped_policy_fits_the_managed_policy_limit_after_split() -> None:
    """The operator can attach the shipped policy: split_policy gives parts within 6,144 characters."""
    doc = load_opsramp_policy()
    parts = split_policy(doc)
    assert all(policy_size(p) <= MAX_MANAGED_POLICY_CHARS for p in parts)
    assert policy_actions(parts) == policy_actions(doc)


def test_split_keeps_the_original_version_in_every_part() -> None:
    """Parts repeat the original's Version (even the old default), so the split never changes its grammar."""
    doc = {
        "Version": "2008-10-17",
        "Statement": [{"Effect": "Allow", "Action": [f"ec2:DescribeThing{i}" for i in range(200)], "Resource": "*"}],
    }
    parts = split_policy(doc, 1000)
    assert len(parts) > 1
    assert {p["Version"] for p in parts} == {"2008-10-17"}
    assert policy_digest(parts) == policy_digest(doc)


@pytest.mark.parametrize("statement", [None, "ec2:DescribeInstances", 3, ["not-an-object"]])
def test_malformed_statements_raise_value_error(statement: Any) -> None:
    """A Statement that is not an object or a list of objects is refused with ValueError, not a crash."""
    with pytest.raises(ValueError, match=r"[Ss]tatement"):
        canonical_policy({"Version": "2012-10-17", "Statement": statement})
