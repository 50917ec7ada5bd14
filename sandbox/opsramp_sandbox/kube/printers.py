"""The Table columns kube-apiserver prints for the built-in kinds a user lists in the sandbox (`kubectl get ns`,
`get secrets`, `get deploy -o wide`, ...), after pkg/printers/internalversion/printers.go of Kubernetes 1.37."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]
# (name, type, description, priority, cell): priority 1 columns show with `-o wide` only.
Column = tuple[str, str, str, int, Callable[[Obj], Any]]


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _selector(selector: Any) -> str:
    """A label selector as kubectl and the apiserver print it (`app=web,tier in (a,b)`), `<none>` when empty."""
    if not isinstance(selector, dict):
        return "<none>"
    structured = "matchLabels" in selector or "matchExpressions" in selector  # a LabelSelector, else a plain map
    labels = (selector.get("matchLabels") or {}) if structured else selector
    parts = [f"{k}={v}" for k, v in sorted((labels or {}).items()) if isinstance(v, str)]
    for expression in (selector.get("matchExpressions") or []) if structured else []:
        operator, key, values = expression.get("operator"), expression.get("key"), expression.get("values") or []
        if operator in ("In", "NotIn"):
            parts.append(f"{key} {operator.lower()} ({','.join(sorted(values))})")
        elif operator == "Exists":
            parts.append(key)
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or "<none>"


def _ports(service: Obj) -> str:
    ports = []
    for port in _get(service, "spec", "ports") or []:
        node = f":{port['nodePort']}" if port.get("nodePort") else ""
        ports.append(f"{port.get('port')}{node}/{port.get('protocol', 'TCP')}")
    return ",".join(ports) or "<none>"


def _external_ip(service: Obj) -> str:
    spec = service.get("spec") or {}
    kind = spec.get("type", "ClusterIP")
    ingress = [i.get("ip") or i.get("hostname") for i in _get(service, "status", "loadBalancer", "ingress") or []]
    external = list(spec.get("externalIPs") or [])
    if kind == "ExternalName":
        return str(spec.get("externalName", ""))
    if kind == "LoadBalancer":
        return ",".join([*ingress, *external]) or "<pending>"
    return ",".join(external) or "<none>"


def _containers(obj: Obj, field: str) -> str:
    return ",".join(str(c.get(field, "")) for c in _get(obj, "spec", "template", "spec", "containers") or [])


_AGE_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
    "guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It "
    "is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More "
    "info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
AGE = "Age"

COLUMNS: dict[tuple[str, str], list[Column]] = {
    ("", "namespaces"): [
        ("Status", "string", "The status of the namespace", 0, lambda o: _get(o, "status", "phase") or ""),
        (AGE, "string", _AGE_DESCRIPTION, 0, lambda o: None),
    ],
    ("", "secrets"): [
        ("Type", "string", "The type of the secret", 0, lambda o: o.get("type", "")),
        ("Data", "integer", "The number of entries in the data", 0, lambda o: len(o.get("data") or {})),
        (AGE, "string", _AGE_DESCRIPTION, 0, lambda o: None),
    ],
    ("", "configmaps"): [
        (
            "Data",
            "integer",
            "Data contains the configuration data.",
            0,
            lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}),
        ),
        (AGE, "string", _AGE_DESCRIPTION, 0, lambda o: None),
    ],
    ("", "services"): [
        ("Type", "string", "The type of the service", 0, lambda o: _get(o, "spec", "type") or "ClusterIP"),
        (
            "Cluster-IP",
            "string",
            "The IP address of the service",
            0,
            lambda o: _get(o, "spec", "clusterIP") or "<none>",
        ),
        ("External-IP", "string", "The external IP addresses of the service", 0, _external_ip),
        ("Port(s)", "string", "The ports of the service", 0, _ports),
        (AGE, "string", _AGE_DESCRIPTION, 0, lambda o: None),
        (
            "Selector",
            "string",
            "The label selector of the service",
            1,
            lambda o: _selector(_get(o, "spec", "selector")),
        ),
    ],
    ("apps", "deployments"): [
        (
            "Ready",
            "string",
            "Number of the pod with ready state",
            0,
            lambda o: f"{_get(o, 'status', 'readyReplicas') or 0}/{_get(o, 'spec', 'replicas') or 0}",
        ),
        (
            "Up-to-date",
            "integer",
            "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            0,
            lambda o: _get(o, "status", "updatedReplicas") or 0,
        ),
        (
            "Available",
            "integer",
            "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            0,
            lambda o: _get(o, "status", "availableReplicas") or 0,
        ),
        (AGE, "string", _AGE_DESCRIPTION, 0, lambda o: None),
        ("Containers", "string", "Names of each container in the template.", 1, lambda o: _containers(o, "name")),
        (
            "Images",
            "string",
            "Images referenced by each container in the template.",
            1,
            lambda o: _containers(o, "image"),
        ),
        (
            "Selector",
            "string",
            "Label selector for pods. Existing ReplicaSets whose pods are selected by this will "
            "be the ones affected by this deployment.",
            1,
            lambda o: _selector(_get(o, "spec", "selector")),
        ),
    ],
}
