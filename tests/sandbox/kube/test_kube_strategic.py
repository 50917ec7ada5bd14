"""Table of strategic merge patch cases on the chart's built-in kinds, over HTTP against the emulator and the real
control plane: what `kubectl apply` sends on a re-apply must land the same way on both."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kube_support import Api

Obj = dict[str, Any]

POD_SPEC: Obj = {
    "containers": [
        {"name": "a", "image": "a:1", "ports": [{"containerPort": 80}, {"containerPort": 81}]},
        {"name": "b", "image": "b:1"},
    ],
    "securityContext": {"runAsUser": 1},
}


def deployment() -> tuple[str, str, Obj]:
    """(group, plural, body) of a valid Deployment with POD_SPEC and two finalizers."""
    labels = {"app": "d"}
    template = {"metadata": {"labels": labels}, "spec": POD_SPEC}
    body = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "finalizers": ["example.com/x", "example.com/y"]},
            "spec": {"selector": {"matchLabels": labels}, "template": template}}  # fmt: skip
    return "apps", "deployments", body


def service() -> tuple[str, str, Obj]:
    """A Service with two named ports."""
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 80, "name": "a"}, {"port": 443, "name": "b"}]}}  # fmt: skip
    return "", "services", body


def network_policy() -> tuple[str, str, Obj]:
    """A NetworkPolicy with one ingress rule of two ports."""
    body = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "n"},
            "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 1}, {"port": 2}]}]}}  # fmt: skip
    return "networking.k8s.io", "networkpolicies", body


def cluster_role() -> tuple[str, str, Obj]:
    """A ClusterRole with two rules (cluster-scoped: named uniquely per test)."""
    rule: Obj = {"apiGroups": [""], "resources": ["configmaps"]}
    body = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": f"strategic-{uuid.uuid4().hex[:8]}"},
            "rules": [{**rule, "verbs": ["get"]}, {**rule, "verbs": ["list"]}]}  # fmt: skip
    return "rbac.authorization.k8s.io", "clusterroles", body


def pod_patch(spec: Obj) -> Obj:
    """A patch of the pod spec only."""
    return {"spec": {"template": {"spec": spec}}}


def pod(o: Obj) -> Obj:
    return dict(o["spec"]["template"]["spec"])


def names(o: Obj) -> list[str]:
    return [c["name"] for c in pod(o)["containers"]]


def only(items: list[Obj], *keys: str) -> list[Obj]:
    """Each item cut down to `keys` (what the patch set; both servers add their own defaults beside them)."""
    return [{k: item[k] for k in keys if k in item} for item in items]


CASES: list[tuple[str, Callable[[], tuple[str, str, Obj]], Obj, Callable[[Obj], Any]]] = [
    ("a keyed item with $patch: delete goes, the others stay",
     deployment, pod_patch({"containers": [{"name": "a", "$patch": "delete"}]}),
     lambda o: names(o) == ["b"]),
    ("a new keyed item goes where the apiserver orders it (first here), a matching one is merged field by field",
     deployment, pod_patch({"containers": [{"name": "c", "image": "c:1"}, {"name": "b", "args": ["x"]}]}),
     lambda o: only(pod(o)["containers"], "name", "image", "args") == [
         {"name": "c", "image": "c:1"}, {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1", "args": ["x"]}]),
    ("a new finalizer goes first too, the others keep their order",
     deployment, {"metadata": {"finalizers": ["example.com/z"]}},
     lambda o: o["metadata"]["finalizers"] == ["example.com/z", "example.com/x", "example.com/y"]),
    ("container ports merge by containerPort",
     deployment, pod_patch({"containers": [{"name": "a", "ports": [{"containerPort": 81, "name": "m"}]}]}),
     lambda o: only(pod(o)["containers"][0]["ports"], "containerPort", "name") == [
         {"containerPort": 80}, {"containerPort": 81, "name": "m"}]),
    ("$patch: replace on a map replaces it whole",
     deployment, pod_patch({"securityContext": {"$patch": "replace", "fsGroup": 2}}),
     lambda o: pod(o)["securityContext"] == {"fsGroup": 2}),
    ("$patch: delete on a map removes it (and the default empty one comes back)",
     deployment, pod_patch({"securityContext": {"$patch": "delete"}}),
     lambda o: pod(o)["securityContext"] == {}),
    ("a $patch: replace item replaces a keyed list",
     deployment, pod_patch({"containers": [{"$patch": "replace"}, {"name": "z", "image": "z"}]}),
     lambda o: only(pod(o)["containers"], "name", "image") == [{"name": "z", "image": "z"}]),
    ("$deleteFromPrimitiveList removes values from a list of scalars",
     deployment, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/x"]}},
     lambda o: o["metadata"]["finalizers"] == ["example.com/y"]),
    ("a shorter finalizers list removes nothing: finalizers merge as a set, as on a real apiserver",
     deployment, {"metadata": {"finalizers": ["example.com/y"]}},
     lambda o: sorted(o["metadata"]["finalizers"]) == ["example.com/x", "example.com/y"]),
    ("a new finalizer is added to the set",
     deployment, {"metadata": {"finalizers": ["example.com/z"]}},
     lambda o: sorted(o["metadata"]["finalizers"]) == ["example.com/x", "example.com/y", "example.com/z"]),
    ("null deletes a key (and the default empty one comes back)",
     deployment, pod_patch({"securityContext": None}),
     lambda o: pod(o)["securityContext"] == {}),
    ("Service ports merge by port",
     service, {"spec": {"ports": [{"port": 443, "targetPort": 8443}]}},
     lambda o: only(o["spec"]["ports"], "port", "name", "targetPort") == [
         {"port": 80, "name": "a", "targetPort": 80}, {"port": 443, "name": "b", "targetPort": 8443}]),
    ("a NetworkPolicy's ports have no merge key: the patch replaces them",
     network_policy, {"spec": {"ingress": [{"ports": [{"port": 3}]}]}},
     lambda o: o["spec"]["ingress"] == [{"ports": [{"port": 3, "protocol": "TCP"}]}]),
    ("RBAC rules are atomic: the patch replaces them",
     cluster_role, {"rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["watch"]}]},
     lambda o: o["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["watch"]}]),
    ("$setElementOrder puts named items first in that order, server-only ones after",
     deployment, pod_patch({"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}),
     lambda o: names(o) == ["b", "a"]),
]  # fmt: skip


def url_of(api: Api, group: str, plural: str, body: Obj) -> str:
    """The collection URL for the body's kind (cluster-scoped RBAC kinds have no namespace)."""
    version = body["apiVersion"].rsplit("/", 1)[-1]
    return api.path(plural, ns=None if plural.startswith("cluster") else "", group=group, version=version)


@pytest.mark.parametrize(("name", "make", "patch", "check"), CASES, ids=[c[0] for c in CASES])
def test_strategic_merge_patch(
    api: Api, name: str, make: Callable[[], tuple[str, str, Obj]], patch: Obj, check: Callable[[Obj], Any]
) -> None:
    """Each case's patch gives the object the apiserver stores, with no `$` directive left in it."""
    group, plural, body = make()
    url = url_of(api, group, plural, body)
    created = api.post(url, body)
    assert created.status_code == 201, created.text
    patched = api.patch(f"{url}/{body['metadata']['name']}", patch, kind="strategic")
    assert patched.status_code == 200, patched.text
    stored = api.get(f"{url}/{body['metadata']['name']}").json()
    assert check(stored), stored
    assert "$" not in repr(stored)


def test_keyed_item_without_its_key_is_refused(api: Api) -> None:
    """An item of a keyed list without its merge key cannot be placed: refused, the object unchanged (kube-apiserver
    answers 500 with Go's wording, and so does the emulator)."""
    group, plural, body = deployment()
    url = f"{url_of(api, group, plural, body)}/d"
    assert api.post(url.rsplit("/", 1)[0], body).status_code == 201
    refused = api.patch(url, pod_patch({"containers": [{"image": "nameless"}]}), kind="strategic")
    assert refused.status_code == 500, refused.text
    assert "map[image:nameless] does not contain declared merge key: name" in refused.json()["message"]
    assert names(api.get(url).json()) == ["a", "b"]
