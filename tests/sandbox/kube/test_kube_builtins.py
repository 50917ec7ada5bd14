"""Table of the apiserver's validation of the chart's built-in kinds, over HTTP against the emulator and the real
control plane."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kube_support import Api

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
    ("binding without roleRef", RBAC, "rolebindings", True, {"metadata": {"name": "b"}}, "roleRef.kind"),
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
    api: Api, case: str, group: str, plural: str, namespaced: bool, body: dict[str, Any], field: str
) -> None:
    """Each invalid body is refused with 422 Invalid and the cause names the offending field."""
    url = api.path(plural, ns="" if namespaced else None, group=group, version="v1")
    response = api.post(url, copy.deepcopy(body))
    assert response.status_code == 422, response.text
    assert field in [cause.get("field") for cause in response.json()["details"]["causes"]], response.text


def test_service_cluster_ips_are_distinct_and_kept_across_a_put(api: Api) -> None:
    """Each Service gets its own ClusterIP; a PUT without one keeps it; changing it is 422."""
    url = api.path("services", group="", version="v1")
    first = api.post(url, service(ports=[{"port": 80}])).json()
    second = api.post(url, {**service(ports=[{"port": 80}]), "metadata": {"name": "t"}}).json()
    assert first["spec"]["clusterIP"] != second["spec"]["clusterIP"]
    replaced = api.put(f"{url}/s", service(ports=[{"port": 81}]))
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["spec"]["clusterIP"] == first["spec"]["clusterIP"]
    moved = api.put(f"{url}/s", service(ports=[{"port": 81}], clusterIP="10.0.0.99"))
    assert moved.status_code == 422, moved.text


def test_reapplying_the_same_deployment_is_a_no_op(api: Api) -> None:
    """Defaults are applied on every write, so writing the same manifest again keeps resourceVersion."""
    url = api.path("deployments", group="apps", version="v1")
    created = api.post(url, deployment()).json()
    again = api.put(f"{url}/d", deployment()).json()
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert again["metadata"]["generation"] == 1
