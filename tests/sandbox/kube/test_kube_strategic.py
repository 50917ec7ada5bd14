"""Table of strategic merge patch cases for the emulator's built-in kinds (pure functions, no server)."""

from __future__ import annotations

from typing import Any

import pytest

from opsramp_sandbox.kube.patching import PatchError
from opsramp_sandbox.kube.strategic import strategic_merge_patch

POD_SPEC = {
    "containers": [
        {"name": "a", "image": "a:1", "ports": [{"containerPort": 80}, {"containerPort": 81}]},
        {"name": "b", "image": "b:1"},
    ],
    "securityContext": {"runAsUser": 1},
}


def deployment(spec: dict[str, Any]) -> dict[str, Any]:
    """A Deployment-shaped object with the given pod spec."""
    return {"kind": "Deployment", "metadata": {"name": "d", "finalizers": ["x", "y"]},
            "spec": {"template": {"spec": spec}}}  # fmt: skip


def pod_patch(spec: dict[str, Any]) -> dict[str, Any]:
    """A patch of the pod spec only."""
    return {"spec": {"template": {"spec": spec}}}


CASES: list[tuple[str, dict[str, Any], dict[str, Any], Any]] = [
    ("a keyed item with $patch: delete goes, the others stay",
     deployment(POD_SPEC), pod_patch({"containers": [{"name": "a", "$patch": "delete"}]}),
     lambda o: [c["name"] for c in o["spec"]["template"]["spec"]["containers"]] == ["b"]),
    ("a new keyed item is appended, a matching one merged field by field",
     deployment(POD_SPEC), pod_patch({"containers": [{"name": "c", "image": "c:1"}, {"name": "b", "args": ["x"]}]}),
     lambda o: o["spec"]["template"]["spec"]["containers"][1:] == [
         {"name": "b", "image": "b:1", "args": ["x"]}, {"name": "c", "image": "c:1"}]),
    ("container ports merge by containerPort",
     deployment(POD_SPEC), pod_patch({"containers": [{"name": "a", "ports": [{"containerPort": 81, "name": "m"}]}]}),
     lambda o: o["spec"]["template"]["spec"]["containers"][0]["ports"] == [
         {"containerPort": 80}, {"containerPort": 81, "name": "m"}]),
    ("$patch: replace on a map replaces it whole",
     deployment(POD_SPEC), pod_patch({"securityContext": {"$patch": "replace", "fsGroup": 2}}),
     lambda o: o["spec"]["template"]["spec"]["securityContext"] == {"fsGroup": 2}),
    ("$patch: delete on a map removes it",
     deployment(POD_SPEC), pod_patch({"securityContext": {"$patch": "delete"}}),
     lambda o: "securityContext" not in o["spec"]["template"]["spec"]),
    ("a $patch: replace item replaces a keyed list",
     deployment(POD_SPEC), pod_patch({"containers": [{"$patch": "replace"}, {"name": "z", "image": "z"}]}),
     lambda o: o["spec"]["template"]["spec"]["containers"] == [{"name": "z", "image": "z"}]),
    ("$deleteFromPrimitiveList removes values from a list of scalars",
     deployment(POD_SPEC), {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}},
     lambda o: o["metadata"]["finalizers"] == ["y"]),
    ("a shorter finalizers list removes nothing: finalizers merge as a set, as on a real apiserver",
     deployment(POD_SPEC), {"metadata": {"finalizers": ["y"]}},
     lambda o: sorted(o["metadata"]["finalizers"]) == ["x", "y"]),
    ("a new finalizer is added to the set",
     deployment(POD_SPEC), {"metadata": {"finalizers": ["z"]}},
     lambda o: sorted(o["metadata"]["finalizers"]) == ["x", "y", "z"]),
    ("null deletes a key",
     deployment(POD_SPEC), pod_patch({"securityContext": None}),
     lambda o: "securityContext" not in o["spec"]["template"]["spec"]),
    ("Service ports merge by port",
     {"kind": "Service", "spec": {"ports": [{"port": 80, "name": "a"}, {"port": 443, "name": "b"}]}},
     {"spec": {"ports": [{"port": 443, "targetPort": 8443}]}},
     lambda o: o["spec"]["ports"] == [{"port": 80, "name": "a"}, {"port": 443, "name": "b", "targetPort": 8443}]),
    ("a NetworkPolicy's ports have no merge key: the patch replaces them",
     {"kind": "NetworkPolicy", "spec": {"ingress": [{"ports": [{"port": 1}, {"port": 2}]}]}},
     {"spec": {"ingress": [{"ports": [{"port": 3}]}]}},
     lambda o: o["spec"]["ingress"] == [{"ports": [{"port": 3}]}]),
    ("RBAC rules are atomic: the patch replaces them",
     {"kind": "ClusterRole", "rules": [{"verbs": ["get"]}, {"verbs": ["list"]}]},
     {"rules": [{"verbs": ["watch"]}]},
     lambda o: o["rules"] == [{"verbs": ["watch"]}]),
    ("$setElementOrder puts named items first in that order, server-only ones after",
     deployment(POD_SPEC), pod_patch({"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}),
     lambda o: [c["name"] for c in o["spec"]["template"]["spec"]["containers"]] == ["b", "a"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "original", "patch", "check"), CASES, ids=[c[0] for c in CASES])
def test_strategic_merge_patch(name: str, original: dict[str, Any], patch: dict[str, Any], check: Any) -> None:
    """Each case's patch gives the object the apiserver would store, and leaves the original untouched."""
    before = repr(original)
    result = strategic_merge_patch(original, patch)
    assert check(result), result
    assert repr(original) == before
    assert "$" not in repr(result)


def test_keyed_item_without_its_key_is_rejected() -> None:
    """An item of a keyed list without the merge key cannot be placed: a PatchError (the apiserver's 422)."""
    with pytest.raises(PatchError):
        strategic_merge_patch(deployment(POD_SPEC), pod_patch({"containers": [{"image": "nameless"}]}))
