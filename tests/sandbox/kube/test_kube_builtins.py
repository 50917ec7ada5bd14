"""Table of the apiserver's validation of the chart's built-in kinds, run on the emulator's store in-process."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from opsramp_sandbox.kube import ApiError, Store

RBAC = "rbac.authorization.k8s.io"
RULE = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
REF = {"apiGroup": RBAC, "kind": "ClusterRole", "name": "r"}


def deployment(**spec: Any) -> dict[str, Any]:
    """A valid Deployment with spec fields overridden."""
    body: dict[str, Any] = {
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
        },
    }
    body["spec"].update(spec)
    return body


def service(**spec: Any) -> dict[str, Any]:
    """A Service with the given spec."""
    return {"metadata": {"name": "s"}, "spec": spec}


# (case, group, plural, namespaced, body, field named in the 422)
INVALID: list[tuple[str, str, str, bool, dict[str, Any], str]] = [
    ("Service without ports", "", "services", True, service(), "spec.ports"),
    ("Service port out of range", "", "services", True, service(ports=[{"port": 70000}]), "spec.ports[0].port"),
    ("unnamed port of a multi-port Service", "", "services", True,
     service(ports=[{"port": 1, "name": "a"}, {"port": 2}]), "spec.ports[1].name"),
    ("ExternalName Service without externalName", "", "services", True, service(type="ExternalName"),
     "spec.externalName"),
    ("Deployment without selector", "apps", "deployments", True, deployment(selector=None), "spec.selector"),
    ("Deployment with an empty selector", "apps", "deployments", True, deployment(selector={}), "spec.selector"),
    ("Deployment selector that misses the labels", "apps", "deployments", True,
     deployment(selector={"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["d"]}]}),
     "spec.template.metadata.labels"),
    ("Recreate with rollingUpdate", "apps", "deployments", True,
     deployment(strategy={"type": "Recreate", "rollingUpdate": {}}), "spec.strategy.rollingUpdate"),
    ("container without image", "apps", "deployments", True,
     deployment(template={"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c"}]}}),
     "spec.template.spec.containers[0].image"),
    ("negative replicas", "apps", "deployments", True, deployment(replicas=-1), "spec.replicas"),
    ("rule without verbs", RBAC, "roles", True, {"metadata": {"name": "r"}, "rules": [{"apiGroups": [""],
     "resources": ["x"]}]}, "rules[0].verbs"),
    ("nonResourceURLs in a Role", RBAC, "roles", True,
     {"metadata": {"name": "r"}, "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]},
     "rules[0].nonResourceURLs"),
    ("binding without roleRef", RBAC, "rolebindings", True, {"metadata": {"name": "b"}}, "roleRef"),
    ("ClusterRoleBinding to a Role", RBAC, "clusterrolebindings", False,
     {"metadata": {"name": "b"}, "roleRef": {**REF, "kind": "Role"}}, "roleRef.kind"),
    ("ServiceAccount subject of a ClusterRoleBinding without namespace", RBAC, "clusterrolebindings", False,
     {"metadata": {"name": "b"}, "roleRef": REF, "subjects": [{"kind": "ServiceAccount", "name": "sa"}]},
     "subjects[0].namespace"),
    ("NetworkPolicy with an unknown protocol", "networking.k8s.io", "networkpolicies", True,
     {"metadata": {"name": "n"}, "spec": {"ingress": [{"ports": [{"protocol": "ICMP"}]}]}},
     "spec.ingress[0].ports[0].protocol"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "group", "plural", "namespaced", "body", "field"), INVALID, ids=[c[0] for c in INVALID]
)
def test_invalid_objects_are_422_naming_the_field(
    case: str, group: str, plural: str, namespaced: bool, body: dict[str, Any], field: str
) -> None:
    """Each invalid body is refused with 422 Invalid and the cause names the offending field."""
    store = Store()
    rt = store.resolve(group, "v1", plural)
    with pytest.raises(ApiError) as caught:
        store.create(rt, "default" if namespaced else None, copy.deepcopy(body))
    assert caught.value.code == 422, caught.value.message
    assert (caught.value.details or {})["causes"][0]["field"] == field


def test_service_cluster_ips_are_distinct_and_kept_across_a_put() -> None:
    """Each Service gets its own ClusterIP; a PUT without one keeps it; changing it is 422."""
    store = Store()
    rt = store.resolve("", "v1", "services")
    first = store.create(rt, "default", service(ports=[{"port": 80}]))
    second = store.create(rt, "default", {**service(ports=[{"port": 80}]), "metadata": {"name": "t"}})
    assert first["spec"]["clusterIP"] != second["spec"]["clusterIP"]
    replaced = store.replace(rt, "default", "s", service(ports=[{"port": 81}]))
    assert replaced["spec"]["clusterIP"] == first["spec"]["clusterIP"]
    with pytest.raises(ApiError) as caught:
        store.replace(rt, "default", "s", service(ports=[{"port": 81}], clusterIP="10.96.9.9"))
    assert caught.value.code == 422


def test_reapplying_the_same_deployment_is_a_no_op() -> None:
    """Defaults are applied on every write, so writing the same manifest again keeps resourceVersion."""
    store = Store()
    rt = store.resolve("apps", "v1", "deployments")
    created = store.create(rt, "default", deployment())
    again = store.replace(rt, "default", "d", deployment())
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert again["metadata"]["generation"] == 1
