"""Decode the protobuf request bodies kubectl 1.37 sends for built-in kinds into the JSON form the store takes.

kubectl's typed clients (`kubectl create namespace`, `create secret`, `create configmap`, `create serviceaccount`,
`create role|clusterrole|rolebinding|clusterrolebinding`) POST `application/vnd.kubernetes.protobuf` and, unlike
for CBOR, client-go does not fall back to JSON on a 415. The envelope is `k8s\\0` + a `runtime.Unknown` message whose
`raw` holds the object's own message (k8s.io/api/*/v1/generated.proto). Only the kinds those commands create are
decoded; any other kind is refused with 415 naming the kinds that are understood.
"""

from __future__ import annotations

import base64
from typing import Any

MAGIC = b"k8s\x00"

# A field is (name, how): "string", "bytes", "bool", "int", "strings" (repeated string), "map" (string->string),
# "bytesmap" (string->bytes, base64 in JSON), or a message table (optional) / [table] (repeated).
Table = dict[int, tuple[str, Any]]

_TIME: Table = {1: ("seconds", "int"), 2: ("nanos", "int")}
_OWNER_REFERENCE: Table = {
    1: ("kind", "string"), 3: ("name", "string"), 4: ("uid", "string"), 5: ("apiVersion", "string"),
    6: ("controller", "bool"), 7: ("blockOwnerDeletion", "bool"),
}  # fmt: skip
_OBJECT_META: Table = {
    1: ("name", "string"), 2: ("generateName", "string"), 3: ("namespace", "string"), 5: ("uid", "string"),
    6: ("resourceVersion", "string"), 7: ("generation", "int"), 8: ("creationTimestamp", _TIME),
    10: ("deletionGracePeriodSeconds", "int"), 11: ("labels", "map"), 12: ("annotations", "map"),
    13: ("ownerReferences", [_OWNER_REFERENCE]), 14: ("finalizers", "strings"),
}  # fmt: skip
_OBJECT_REFERENCE: Table = {
    1: ("kind", "string"), 2: ("namespace", "string"), 3: ("name", "string"), 4: ("uid", "string"),
    5: ("apiVersion", "string"), 6: ("resourceVersion", "string"), 7: ("fieldPath", "string"),
}  # fmt: skip
_LOCAL_OBJECT_REFERENCE: Table = {1: ("name", "string")}

_POLICY_RULE: Table = {
    1: ("verbs", "strings"), 2: ("apiGroups", "strings"), 3: ("resources", "strings"),
    4: ("resourceNames", "strings"), 5: ("nonResourceURLs", "strings"),
}  # fmt: skip
_SUBJECT: Table = {1: ("kind", "string"), 2: ("apiGroup", "string"), 3: ("name", "string"), 4: ("namespace", "string")}
_ROLE_REF: Table = {1: ("apiGroup", "string"), 2: ("kind", "string"), 3: ("name", "string")}
_LABEL_SELECTOR: Table = {
    1: ("matchLabels", "map"),
    2: ("matchExpressions", [{1: ("key", "string"), 2: ("operator", "string"), 3: ("values", "strings")}]),
}
_RBAC = "rbac.authorization.k8s.io/v1"

# (apiVersion, kind) -> the object's message.
KINDS: dict[tuple[str, str], Table] = {
    ("v1", "Namespace"): {1: ("metadata", _OBJECT_META), 2: ("spec", {1: ("finalizers", "strings")})},
    ("v1", "Secret"): {
        1: ("metadata", _OBJECT_META), 2: ("data", "bytesmap"), 3: ("type", "string"), 4: ("stringData", "map"),
        5: ("immutable", "bool"),
    },
    ("v1", "ConfigMap"): {
        1: ("metadata", _OBJECT_META), 2: ("data", "map"), 3: ("binaryData", "bytesmap"), 4: ("immutable", "bool"),
    },
    ("v1", "ServiceAccount"): {
        1: ("metadata", _OBJECT_META), 2: ("secrets", [_OBJECT_REFERENCE]),
        3: ("imagePullSecrets", [_LOCAL_OBJECT_REFERENCE]), 4: ("automountServiceAccountToken", "bool"),
    },
    (_RBAC, "Role"): {1: ("metadata", _OBJECT_META), 2: ("rules", [_POLICY_RULE])},
    (_RBAC, "ClusterRole"): {
        1: ("metadata", _OBJECT_META), 2: ("rules", [_POLICY_RULE]),
        3: ("aggregationRule", {1: ("clusterRoleSelectors", [_LABEL_SELECTOR])}),
    },
    (_RBAC, "RoleBinding"): {1: ("metadata", _OBJECT_META), 2: ("subjects", [_SUBJECT]), 3: ("roleRef", _ROLE_REF)},
    (_RBAC, "ClusterRoleBinding"): {
        1: ("metadata", _OBJECT_META), 2: ("subjects", [_SUBJECT]), 3: ("roleRef", _ROLE_REF),
    },
}  # fmt: skip
_UNKNOWN: Table = {1: ("typeMeta", {1: ("apiVersion", "string"), 2: ("kind", "string")}), 2: ("raw", "raw")}


class Unsupported(ValueError):
    """The body is protobuf of a kind (or a shape) this decoder does not know."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise Unsupported("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: an int for varints, bytes for length-delimited fields."""
    pos = 0
    out: list[tuple[int, int | bytes]] = []
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            out.append((number, data[pos : pos + length]))
            pos += length
        elif wire == 1:
            out.append((number, int.from_bytes(data[pos : pos + 8], "little")))
            pos += 8
        elif wire == 5:
            out.append((number, int.from_bytes(data[pos : pos + 4], "little")))
            pos += 4
        else:
            raise Unsupported(f"wire type {wire}")
    return out


def _decode(data: bytes, table: Table) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for number, value in _fields(data):
        if number not in table:
            continue  # a field kubectl leaves empty, or one the store would drop anyway
        name, how = table[number]
        if how == "raw":
            obj[name] = value
        elif how == "string":
            text = bytes(value).decode() if isinstance(value, bytes) else str(value)
            if text:  # Go writes "" where JSON omits the field (omitempty)
                obj[name] = text
        elif how == "int":
            obj[name] = value
        elif how == "bool":
            obj[name] = bool(value)
        elif how == "strings":
            obj.setdefault(name, []).append(bytes(value).decode() if isinstance(value, bytes) else str(value))
        elif how in ("map", "bytesmap") and isinstance(value, bytes):
            entry = {n: v for n, v in _fields(value)}
            key = bytes(entry.get(1, b"")).decode() if isinstance(entry.get(1, b""), bytes) else ""
            raw = entry.get(2, b"")
            raw = raw if isinstance(raw, bytes) else b""
            obj.setdefault(name, {})[key] = base64.b64encode(raw).decode() if how == "bytesmap" else raw.decode()
        elif isinstance(how, list) and isinstance(value, bytes):
            obj.setdefault(name, []).append(_decode(value, how[0]))
        elif isinstance(how, dict) and isinstance(value, bytes):
            obj[name] = _decode(value, how)
    return obj


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object of a kind in KINDS; Unsupported otherwise."""
    if not body.startswith(MAGIC):
        raise Unsupported("the body does not start with the protobuf envelope's magic bytes")
    envelope = _decode(body[len(MAGIC) :], _UNKNOWN)
    type_meta = envelope.get("typeMeta") or {}
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    table = KINDS.get((api_version, kind))
    if table is None:
        known = ", ".join(k for _, k in KINDS)
        raise Unsupported(f"{kind or 'this kind'} ({api_version}) in protobuf; send JSON, or protobuf of {known}")
    obj = _decode(envelope.get("raw", b""), table)
    meta = obj.get("metadata") or {}
    # An unset Time is an empty message: no timestamp, as in JSON.
    meta.pop("creationTimestamp", None)
    return {"apiVersion": api_version, "kind": kind, **obj}
