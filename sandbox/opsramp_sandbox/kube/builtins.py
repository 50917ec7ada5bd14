"""Write rules of the built-in workload, networking and RBAC kinds: the apiserver's defaults and validation."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

# Storage keys (group, plural) of the kinds this module knows.
SERVICES = ("", "services")
DEPLOYMENTS = ("apps", "deployments")
ROLES = ("rbac.authorization.k8s.io", "roles")
CLUSTER_ROLES = ("rbac.authorization.k8s.io", "clusterroles")
ROLE_BINDINGS = ("rbac.authorization.k8s.io", "rolebindings")
CLUSTER_ROLE_BINDINGS = ("rbac.authorization.k8s.io", "clusterrolebindings")
NETWORK_POLICIES = ("networking.k8s.io", "networkpolicies")

RBAC_GROUP = "rbac.authorization.k8s.io"
# The default service CIDR of kubeadm and kind; only used to hand out distinct, plausible ClusterIPs.
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")


@dataclass
class Invalid(Exception):
    """A field the apiserver's validation rejects; the store turns it into a 422 Invalid naming the field."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"


def _required(path: str) -> Invalid:
    return Invalid(path, "Required value", "FieldValueRequired")


def _immutable(path: str, value: Any) -> Invalid:
    return Invalid(path, f"Invalid value: {value!r}: field is immutable")


def apply_rules(storage_key: tuple[str, str], obj: Obj, old: Obj | None, allocate_cluster_ip: Callable[[], str]) -> Obj:
    """Default and validate one write of a built-in kind (others pass through); raises Invalid."""
    rules = _RULES.get(storage_key)
    return rules(obj, old, allocate_cluster_ip) if rules is not None else obj


# ---- Service ----------------------------------------------------------------------------------------------


def _service(obj: Obj, old: Obj | None, allocate: Callable[[], str]) -> Obj:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        raise Invalid("spec", "Invalid value: must be an object")
    kind = spec.setdefault("type", "ClusterIP")
    if kind not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        raise Invalid(
            "spec.type", f'Unsupported value: "{kind}": supported values: "ClusterIP", "ExternalName", '
            '"LoadBalancer", "NodePort"', "FieldValueNotSupported",
        )  # fmt: skip
    old_spec = (old or {}).get("spec") or {}
    # Like the apiserver's update path: a PUT without the allocated ClusterIP keeps the one it has.
    if old is not None and not spec.get("clusterIP") and old_spec.get("clusterIP") and kind != "ExternalName":
        spec["clusterIP"] = old_spec["clusterIP"]
        spec.setdefault("clusterIPs", old_spec.get("clusterIPs") or [old_spec["clusterIP"]])
    changed = old is not None and old_spec.get("clusterIP") and spec.get("clusterIP") != old_spec["clusterIP"]
    if changed and "ExternalName" not in (kind, old_spec.get("type")):
        raise _immutable("spec.clusterIPs[0]", spec.get("clusterIP"))
    headless = spec.get("clusterIP") == "None"
    ports: list[Obj] = spec.get("ports") or []
    if kind == "ExternalName":
        if not spec.get("externalName"):
            raise _required("spec.externalName")
    elif not ports and not headless:
        raise _required("spec.ports")
    seen_names: set[str] = set()
    for index, port in enumerate(ports):
        where = f"spec.ports[{index}]"
        number = port.get("port")
        if not isinstance(number, int) or not 1 <= number <= 65535:
            raise Invalid(f"{where}.port", f"Invalid value: {number!r}: must be between 1 and 65535, inclusive")
        if len(ports) > 1 and not port.get("name"):
            raise _required(f"{where}.name")
        if port.get("name") in seen_names:
            raise Invalid(f"{where}.name", f"Duplicate value: {port['name']!r}", "FieldValueDuplicate")
        seen_names.add(port.get("name", ""))
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", number)
    if kind != "ExternalName":
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        if not spec.get("clusterIP"):
            spec["clusterIP"] = allocate()
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        if not headless:
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
    status = obj.setdefault("status", {"loadBalancer": {}})
    ingress = ((status or {}).get("loadBalancer") or {}).get("ingress") or []
    if ingress and kind != "LoadBalancer":
        raise Invalid(
            "status.loadBalancer.ingress",
            "Forbidden: may only be used when `spec.type` is 'LoadBalancer'",
            "FieldValueForbidden",
        )
    for entry in ingress:
        if isinstance(entry, dict) and entry.get("ip"):
            entry.setdefault("ipMode", "VIP")
    return obj


def next_cluster_ip(used: Iterable[str]) -> str:
    """The lowest free address of the service CIDR after .1 (which belongs to the `kubernetes` Service)."""
    taken = set(used)
    for address in SERVICE_CIDR.hosts():
        text = str(address)
        if text != "10.96.0.1" and text not in taken:
            return text
    raise Invalid("spec.clusterIPs", "Internal error: failed to allocate a serviceIP: range is full")


# ---- Deployment -------------------------------------------------------------------------------------------


def _selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    """metav1.LabelSelector semantics: every matchLabels pair and every matchExpressions requirement."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def _probe_defaults(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)):
        probe.setdefault(key, value)
    if isinstance(probe.get("httpGet"), dict):
        probe["httpGet"].setdefault("path", "/")
        probe["httpGet"].setdefault("scheme", "HTTP")


def _pull_policy(image: str) -> str:
    # The apiserver's rule: `:latest` or no tag (and no digest) means Always, anything else IfNotPresent.
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _pod_template(template: Obj, path: str) -> None:
    """SetDefaults_PodSpec / SetDefaults_Container as a pod template gets them, plus the checks that matter."""
    spec = template.get("spec")
    if not isinstance(spec, dict):
        raise _required(f"{path}.spec")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    if not spec.get("containers"):
        raise _required(f"{path}.spec.containers")
    names: set[str] = set()
    for field_name in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(field_name) or []):
            where = f"{path}.spec.{field_name}[{index}]"
            if not container.get("name"):
                raise _required(f"{where}.name")
            if container["name"] in names:
                raise Invalid(f"{where}.name", f"Duplicate value: {container['name']!r}", "FieldValueDuplicate")
            names.add(container["name"])
            if not container.get("image"):
                raise _required(f"{where}.image")
            container.setdefault("resources", {})
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            container.setdefault("imagePullPolicy", _pull_policy(container["image"]))
            for port in container.get("ports") or []:
                port.setdefault("protocol", "TCP")
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                _probe_defaults(container.get(probe))
            for env in container.get("env") or []:
                field_ref = (env.get("valueFrom") or {}).get("fieldRef")
                if isinstance(field_ref, dict):
                    field_ref.setdefault("apiVersion", "v1")
    for volume in spec.get("volumes") or []:
        for source in ("secret", "configMap", "projected", "downwardAPI"):
            if isinstance(volume.get(source), dict):
                volume[source].setdefault("defaultMode", 0o644)


def _deployment(obj: Obj, old: Obj | None, allocate: Callable[[], str]) -> Obj:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise _required("spec")
    spec.setdefault("replicas", 1)
    if not isinstance(spec["replicas"], int) or spec["replicas"] < 0:
        raise Invalid("spec.replicas", f"Invalid value: {spec['replicas']!r}: must be greater than or equal to 0")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    elif strategy["type"] == "Recreate":
        if "rollingUpdate" in strategy:
            raise Invalid(
                "spec.strategy.rollingUpdate",
                "Forbidden: may not be specified when strategy `type` is 'Recreate'",
                "FieldValueForbidden",
            )
    else:
        raise Invalid(
            "spec.strategy.type",
            f'Unsupported value: "{strategy["type"]}": supported values: "Recreate", "RollingUpdate"',
            "FieldValueNotSupported",
        )
    selector = spec.get("selector")
    if not isinstance(selector, dict):
        raise _required("spec.selector")
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        raise Invalid("spec.selector", "Invalid value: {}: empty selector is invalid for deployment")
    template = spec.get("template")
    if not isinstance(template, dict):
        raise _required("spec.template")
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not _selector_matches(selector, labels):
        raise Invalid(
            "spec.template.metadata.labels",
            f"Invalid value: {labels!r}: `selector` does not match template `labels`",
        )
    _pod_template(template, "spec.template")
    if template["spec"]["restartPolicy"] != "Always":
        raise Invalid(
            "spec.template.spec.restartPolicy",
            f'Unsupported value: "{template["spec"]["restartPolicy"]}": supported values: "Always"',
            "FieldValueNotSupported",
        )
    old_selector = ((old or {}).get("spec") or {}).get("selector")
    if old is not None and old_selector != selector:
        # apps/v1 made the selector immutable: a new one would orphan the old ReplicaSets.
        raise _immutable("spec.selector", selector)
    # No controller ever writes it, so status stays as the apiserver leaves a new Deployment: empty.
    obj.setdefault("status", {})
    return obj


# ---- RBAC -------------------------------------------------------------------------------------------------


def _rules(obj: Obj, *, cluster: bool) -> None:
    for index, rule in enumerate(obj.get("rules") or []):
        where = f"rules[{index}]"
        if not isinstance(rule, dict):
            raise Invalid(where, "Invalid value: must be an object")
        if not rule.get("verbs"):
            raise _required(f"{where}.verbs")
        if rule.get("nonResourceURLs"):
            if not cluster:
                raise Invalid(
                    f"{where}.nonResourceURLs",
                    "Invalid value: rules with nonResourceURLs are only allowed in a ClusterRole",
                )
            if rule.get("resources") or rule.get("apiGroups"):
                raise Invalid(
                    f"{where}.nonResourceURLs",
                    "Invalid value: rules cannot apply to both regular resources and non-resource URLs",
                )
            continue
        if not rule.get("apiGroups"):
            raise _required(f"{where}.apiGroups")
        if not rule.get("resources"):
            raise _required(f"{where}.resources")


def _role(obj: Obj, old: Obj | None, allocate: Callable[[], str]) -> Obj:
    _rules(obj, cluster=False)
    return obj


def _cluster_role(obj: Obj, old: Obj | None, allocate: Callable[[], str]) -> Obj:
    # aggregationRule is stored as written: no aggregation controller fills in the rules.
    _rules(obj, cluster=True)
    return obj


def _binding(obj: Obj, old: Obj | None, *, cluster: bool) -> Obj:
    role_ref = obj.get("roleRef")
    if not isinstance(role_ref, dict):
        role_ref = obj["roleRef"] = {}
    # rbac/v1 defaulting: an empty apiGroup means RBAC's own (so a missing roleRef fails on its kind, as in 1.37).
    if not role_ref.get("apiGroup"):
        role_ref["apiGroup"] = RBAC_GROUP
    allowed = ("ClusterRole",) if cluster else ("Role", "ClusterRole")
    if role_ref.get("apiGroup") != RBAC_GROUP:
        raise Invalid("roleRef.apiGroup", f'Unsupported value: "{role_ref.get("apiGroup")}"', "FieldValueNotSupported")
    if role_ref.get("kind") not in allowed:
        raise Invalid("roleRef.kind", f'Unsupported value: "{role_ref.get("kind")}"', "FieldValueNotSupported")
    if not role_ref.get("name"):
        raise _required("roleRef.name")
    if old is not None and old.get("roleRef") != role_ref:
        # Kubernetes 1.37's wording (older releases said "cannot change roleRef").
        shown = {"APIGroup": role_ref.get("apiGroup"), "Kind": role_ref.get("kind"), "Name": role_ref.get("name")}
        raise Invalid("roleRef", f"Invalid value: {json.dumps(shown, separators=(',', ':'))}: field is immutable")
    for index, subject in enumerate(obj.get("subjects") or []):
        where = f"subjects[{index}]"
        kind = subject.get("kind")
        if not subject.get("name"):
            raise _required(f"{where}.name")
        if kind == "ServiceAccount":
            if subject.get("apiGroup"):
                raise Invalid(f"{where}.apiGroup", f'Unsupported value: "{subject["apiGroup"]}"')
            if cluster and not subject.get("namespace"):
                raise _required(f"{where}.namespace")
        elif kind in ("User", "Group"):
            if subject.get("apiGroup") != RBAC_GROUP:
                raise Invalid(f"{where}.apiGroup", f'Unsupported value: "{subject.get("apiGroup")}"')
        else:
            raise Invalid(
                f"{where}.kind",
                f'Unsupported value: "{kind}": supported values: "Group", "ServiceAccount", "User"',
                "FieldValueNotSupported",
            )
    return obj


def _role_binding(obj: Obj, old: Obj | None, allocate: Callable[[], str]) -> Obj:
    return _binding(obj, old, cluster=False)


def _cluster_role_binding(obj: Obj, old: Obj | None, allocate: Callable[[], str]) -> Obj:
    return _binding(obj, old, cluster=True)


# ---- NetworkPolicy ----------------------------------------------------------------------------------------


def _network_policy(obj: Obj, old: Obj | None, allocate: Callable[[], str]) -> Obj:
    spec = obj.setdefault("spec", {})
    spec.setdefault("podSelector", {})
    if "policyTypes" not in spec:
        spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]
    for direction in ("ingress", "egress"):
        for rule_index, rule in enumerate(spec.get(direction) or []):
            for port_index, port in enumerate(rule.get("ports") or []):
                port.setdefault("protocol", "TCP")
                if port["protocol"] not in ("TCP", "UDP", "SCTP"):
                    raise Invalid(
                        f"spec.{direction}[{rule_index}].ports[{port_index}].protocol",
                        f'Unsupported value: "{port["protocol"]}": supported values: "SCTP", "TCP", "UDP"',
                        "FieldValueNotSupported",
                    )
    for index, kind in enumerate(spec["policyTypes"]):
        if kind not in ("Ingress", "Egress"):
            raise Invalid(
                f"spec.policyTypes[{index}]",
                f'Unsupported value: "{kind}": supported values: "Egress", "Ingress"',
                "FieldValueNotSupported",
            )
    return obj


_RULES: dict[tuple[str, str], Callable[[Obj, Obj | None, Callable[[], str]], Obj]] = {
    SERVICES: _service,
    DEPLOYMENTS: _deployment,
    ROLES: _role,
    CLUSTER_ROLES: _cluster_role,
    ROLE_BINDINGS: _role_binding,
    CLUSTER_ROLE_BINDINGS: _cluster_role_binding,
    NETWORK_POLICIES: _network_policy,
}
