"""The object store: every apiserver write rule the operator relies on, applied synchronously in one place."""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import re
import secrets
import string
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import builtins
from .patching import PatchError, json_patch, merge_patch
from .schema import SchemaValidator
from .selectors import Matcher, SelectorError, parse_field_selector, parse_label_selector
from .strategic import MergeKeyMissing, strategic_merge_patch
from .watch import Change, EventLog, Watcher

Obj = dict[str, Any]

DEFAULT_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_GENERATE_SUFFIX = string.ascii_lowercase + string.digits
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def now_rfc3339() -> str:
    """The apiserver's timestamp format: RFC 3339, UTC, whole seconds."""
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """An error answer, rendered as a `Status` object with the apiserver's code and reason."""

    def __init__(self, code: int, reason: str, message: str, *, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> Obj:
        """The `Status` body the apiserver sends with this error."""
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        }
        if self.reason:  # an internal error (500) carries none
            body["reason"] = self.reason
        if self.details is not None:
            body["details"] = self.details
        return body


@dataclass(frozen=True)
class ResourceType:
    """One served group/version/resource, with what discovery and the write rules need to know."""

    group: str
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    printer_columns: tuple[Obj, ...] = ()
    validator: SchemaValidator | None = field(default=None, compare=False)
    crd_name: str | None = None

    @property
    def group_version(self) -> str:
        """`apiVersion` of the objects: `v1` for the core group, else `group/version`."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_key(self) -> tuple[str, str]:
        """Every version of a resource shares one storage (no conversion: only apiVersion differs)."""
        return (self.group, self.plural)

    @property
    def qualified(self) -> str:
        """`plural.group`, as in the apiserver's error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        """Whether status is written only through the `/status` subresource."""
        return "status" in self.subresources


BUILTIN_TYPES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", "namespace", False, ("ns",), (), frozenset({"status"})),
    ResourceType("", "v1", "secrets", "Secret", "secret", True),
    ResourceType("", "v1", "configmaps", "ConfigMap", "configmap", True, ("cm",)),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", "serviceaccount", True, ("sa",)),
    ResourceType("", "v1", "events", "Event", "event", True, ("ev",)),
    ResourceType("events.k8s.io", "v1", "events", "Event", "event", True, ("ev",)),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", "lease", True),
    # What a chart installs. Stored, defaulted and validated like the apiserver does; no controller acts on
    # them (a Deployment makes no ReplicaSet or Pod, a Service no Endpoints, RBAC is not enforced).
    ResourceType("", "v1", "services", "Service", "service", True, ("svc",), ("all",), frozenset({"status"})),
    ResourceType(
        "apps", "v1", "deployments", "Deployment", "deployment", True, ("deploy",), ("all",), frozenset({"status"})
    ),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", "role", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", "rolebinding", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", "clusterrole", False),
    ResourceType(
        "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", "clusterrolebinding", False
    ),
    ResourceType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", "networkpolicy", True, ("netpol",)),
    # Stored only: the emulator evaluates no CEL (tests/ship/test_admission_policy.py uses a real API server).
    ResourceType(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicies",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicy",
        False,
        (),
        ("api-extensions",),
        frozenset({"status"}),
    ),
    ResourceType(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicybindings",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybinding",
        False,
        (),
        ("api-extensions",),
    ),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        "customresourcedefinition",
        False,
        ("crd", "crds"),
        ("api-extensions",),
        frozenset({"status"}),
    ),
)
CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACE_KEY = ("", "namespaces")
CORE_EVENTS_KEY = ("", "events")


def types_from_crd(crd: Obj) -> list[ResourceType]:
    """The resource types a CRD serves, one per served version."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    result = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        result.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                singular=names.get("singular") or names["kind"].lower(),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=frozenset((version.get("subresources") or {}).keys()),
                printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
                validator=SchemaValidator(schema) if schema else None,
                crd_name=(crd.get("metadata") or {}).get("name"),
            )
        )
    return result


def _meta(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
        obj["metadata"] = meta
    return meta


def _without(obj: Obj, *keys: str) -> Obj:
    return {k: v for k, v in obj.items() if k not in keys}


class Store:
    """All objects, the resourceVersion counter, registered resource types and the watch event log."""

    def __init__(self, *, event_window: int = 10_000, field_validation_default: str = "Warn") -> None:
        self._rv = 100
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._storage_type: dict[tuple[str, str], ResourceType] = {}
        self._objects: dict[tuple[str, str], dict[tuple[str, str], Obj]] = {}
        self.log = EventLog(event_window)
        # A real apiserver treats a request without ?fieldValidation= as Warn (prune, warn); kubectl sends
        # Strict. Tests may raise the default to Strict to catch writes of undeclared fields.
        self.field_validation_default = field_validation_default
        for rt in BUILTIN_TYPES:
            self._register(rt)
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create(self.resolve("", "v1", "namespaces"), None, {"metadata": {"name": name}})

    # ---- resource types -------------------------------------------------------------------------------

    def _register(self, rt: ResourceType) -> None:
        self._types[(rt.group, rt.version, rt.plural)] = rt
        self._storage_type.setdefault(rt.storage_key, rt)
        self._objects.setdefault(rt.storage_key, {})

    def _unregister_crd(self, crd_name: str) -> None:
        for key, rt in list(self._types.items()):
            if rt.crd_name == crd_name:
                del self._types[key]
                self._storage_type.pop(rt.storage_key, None)
                self._objects.pop(rt.storage_key, None)

    def _register_crd(self, crd: Obj) -> None:
        name = _meta(crd).get("name", "")
        previous = {rt.storage_key for rt in self._types.values() if rt.crd_name == name}
        for key, rt in list(self._types.items()):
            if rt.crd_name == name:
                del self._types[key]
        for storage_key in previous:
            self._storage_type.pop(storage_key, None)
        for rt in types_from_crd(crd):
            self._types[(rt.group, rt.version, rt.plural)] = rt
            self._objects.setdefault(rt.storage_key, {})
        # The storage version decides the write rules (status subresource, schema).
        spec = crd.get("spec") or {}
        stored = next((v["name"] for v in spec.get("versions") or [] if v.get("storage")), None)
        for rt in types_from_crd(crd):
            if rt.version == stored or rt.storage_key not in self._storage_type:
                self._storage_type[rt.storage_key] = rt

    def types(self) -> list[ResourceType]:
        """Every served resource type, for discovery."""
        return list(self._types.values())

    def resolve(self, group: str, version: str, plural: str) -> ResourceType:
        """The resource type a URL names, or 404 like the apiserver."""
        rt = self._types.get((group, version, plural))
        if rt is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return rt

    @property
    def resource_version(self) -> str:
        """The latest resourceVersion handed out."""
        return str(self._rv)

    # ---- reads ----------------------------------------------------------------------------------------

    def _key(self, rt: ResourceType, namespace: str | None, name: str) -> tuple[str, str]:
        return ((namespace or "") if rt.namespaced else "", name)

    def _not_found(self, rt: ResourceType, name: str) -> ApiError:
        return ApiError(
            404,
            "NotFound",
            f'{rt.qualified} "{name}" not found',
            details={"name": name, "group": rt.group, "kind": rt.plural},
        )

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        """One object, or 404."""
        obj = self._objects[rt.storage_key].get(self._key(rt, namespace, name))
        if obj is None:
            raise self._not_found(rt, name)
        return obj

    def exists(self, rt: ResourceType, namespace: str | None, name: str) -> bool:
        """Whether the object is stored (being deleted counts)."""
        return self._key(rt, namespace, name) in self._objects[rt.storage_key]

    def list_objects(
        self, rt: ResourceType, namespace: str | None, label_selector: str | None, field_selector: str | None
    ) -> list[Obj]:
        """Matching objects in name order (namespace None = every namespace)."""
        labels, fields = self._selectors(label_selector, field_selector)
        items = [
            obj
            for (ns, _), obj in self._objects[rt.storage_key].items()
            if (namespace is None or not rt.namespaced or ns == namespace) and labels(obj) and fields(obj)
        ]
        return sorted(items, key=lambda o: (_meta(o).get("namespace", ""), _meta(o)["name"]))

    @staticmethod
    def _selectors(label_selector: str | None, field_selector: str | None) -> tuple[Matcher, Matcher]:
        try:
            return parse_label_selector(label_selector), parse_field_selector(field_selector)
        except SelectorError as exc:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {exc}") from exc

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        resource_version: str | None,
    ) -> tuple[list[Obj], Watcher]:
        """Initial events plus a subscribed stream, taken together so no change falls between them."""
        labels, fields = self._selectors(label_selector, field_selector)
        watcher = Watcher(rt.storage_key, namespace if rt.namespaced else None, labels, fields)
        initial: list[Obj] = []
        if resource_version in (None, "", "0"):
            for obj in self.list_objects(rt, namespace, label_selector, field_selector):
                initial.append({"type": "ADDED", "object": obj})
        else:
            if not str(resource_version).isdigit():
                raise ApiError(400, "BadRequest", f"invalid resource version {resource_version!r}")
            changes = self.log.since(int(str(resource_version)))
            if changes is None:
                raise ApiError(
                    410,
                    "Expired",
                    f"too old resource version: {resource_version} ({self.log.evicted_upto + 1})",
                )
            for change in changes:
                event = watcher.translate(change)
                if event is not None:
                    initial.append({"type": event[0], "object": event[1]})
        self.log.watchers.add(watcher)
        return initial, watcher

    def unwatch(self, watcher: Watcher) -> None:
        """Forget a stream that ended."""
        self.log.watchers.discard(watcher)

    # ---- writes ---------------------------------------------------------------------------------------

    def _commit(self, rt: ResourceType, kind: str, new: Obj, old: Obj | None) -> Obj:
        self._rv += 1
        _meta(new)["resourceVersion"] = str(self._rv)
        key = self._key(rt, _meta(new).get("namespace"), _meta(new)["name"])
        if kind == "DELETED":
            self._objects[rt.storage_key].pop(key, None)
        else:
            self._objects[rt.storage_key][key] = new
        self.log.record(Change(self._rv, rt.storage_key, kind, new, old))
        return new

    def _field_validation(self, value: str | None) -> str:
        mode = value or self.field_validation_default
        if mode not in ("Strict", "Warn", "Ignore"):
            raise ApiError(400, "BadRequest", f"fieldValidation must be Ignore, Warn or Strict, not {mode!r}")
        return mode

    def _conform(self, rt: ResourceType, obj: Obj, field_validation: str | None, warnings: list[str]) -> Obj:
        """Strict/warn on unknown fields, prune, default, then validate against the CRD schema."""
        if rt.validator is None:
            return self._conform_builtin(rt, obj, field_validation, warnings) if rt.crd_name is None else obj
        from .schema import apply_defaults, prune, unknown_fields

        mode = self._field_validation(field_validation)
        unknown = unknown_fields(obj, rt.validator.schema)
        if unknown and mode == "Strict":
            listed = ", ".join(f'unknown field "{path}"' for path in unknown)
            raise ApiError(
                400,
                "BadRequest",
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                f"strict decoding error: {listed}",
            )
        if unknown and mode == "Warn":
            warnings.extend(f'unknown field "{path}"' for path in unknown)
        obj = apply_defaults(prune(obj, rt.validator.schema), rt.validator.schema)
        problems = rt.validator.problems(obj)
        if problems:
            name = _meta(obj).get("name", "")
            text = problems[0].message if len(problems) == 1 else "[" + ", ".join(p.message for p in problems) + "]"
            raise ApiError(
                422,
                "Invalid",
                f'{rt.kind}.{rt.group} "{name}" is invalid: {text}',
                details={
                    "name": name,
                    "group": rt.group,
                    "kind": rt.kind,
                    "causes": [{"reason": p.reason, "message": p.message, "field": p.field} for p in problems],
                },
            )
        return obj

    def _conform_builtin(self, rt: ResourceType, obj: Obj, field_validation: str | None, warnings: list[str]) -> Obj:
        """A built-in kind's unknown fields (after its Kubernetes 1.37 definition): 400 with Strict, else dropped
        (with a warning unless Ignore), as kube-apiserver's decoder does."""
        from . import openapi

        mode = self._field_validation(field_validation)
        unknown = openapi.unknown_builtin_fields(obj, rt.group, rt.version, rt.kind)
        if not unknown:
            return obj
        paths = [openapi.field_path(path) for path in unknown]
        if mode == "Strict":
            listed = ", ".join(f'unknown field "{path}"' for path in paths)
            handled = f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}'
            raise ApiError(400, "BadRequest", f"{handled}: strict decoding error: {listed}")
        if mode == "Warn":
            warnings.extend(f'unknown field "{path}"' for path in paths)
        obj = copy.deepcopy(obj)
        for path in unknown:
            openapi.without(obj, path)
        return obj

    def _invalid(
        self, rt: ResourceType, name: str, field_path: str, message: str, reason: str = "FieldValueInvalid"
    ) -> ApiError:
        qualified = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
        return ApiError(
            422,
            "Invalid",
            f'{qualified} "{name}" is invalid: {field_path}: {message}',
            details={
                "name": name,
                "group": rt.group,
                "kind": rt.kind,
                "causes": [{"reason": reason, "message": message, "field": field_path}],
            },
        )

    def _check_namespace(self, rt: ResourceType, namespace: str | None) -> None:
        if not rt.namespaced:
            return
        ns = self._objects[NAMESPACE_KEY].get(("", namespace or ""))
        if ns is None:
            raise ApiError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                details={"name": namespace, "kind": "namespaces"},
            )
        if _meta(ns).get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f'{rt.plural} "" is forbidden: unable to create new content in namespace {namespace} '
                "because it is being terminated",
                details={"causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace"}]},
            )

    def create(
        self,
        rt: ResourceType,
        namespace: str | None,
        body: Any,
        *,
        dry_run: bool = False,
        field_validation: str | None = None,
        warnings: list[str] | None = None,
    ) -> Obj:
        """POST: name or generateName, uid, timestamps, generation 1, resourceVersion, schema checks."""
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request must be a JSON object")
        obj = copy.deepcopy(body)
        if obj.get("kind", rt.kind) != rt.kind or obj.get("apiVersion", rt.group_version) != rt.group_version:
            raise ApiError(
                400,
                "BadRequest",
                f"the API version in the data ({obj.get('apiVersion')}) does not match the expected "
                f"API version ({rt.group_version}) or kind ({obj.get('kind')} != {rt.kind})",
            )
        obj["apiVersion"], obj["kind"] = rt.group_version, rt.kind
        meta = _meta(obj)
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        # Core v1 Events keep the legacy rules: their names are not validated (kopf's generateName is `<name>.`).
        legacy_event = rt.storage_key == CORE_EVENTS_KEY
        pattern = _LABEL if rt.storage_key == NAMESPACE_KEY else _SUBDOMAIN
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise self._invalid(rt, "", "metadata.name", "Required value: name or generateName is required")
            # The apiserver validates the prefix as a name whose trailing dash is masked.
            masked = prefix[:-1] + "a" if prefix.endswith("-") else prefix
            if not legacy_event and not pattern.match(masked):
                raise self._invalid(
                    rt,
                    prefix,
                    "metadata.generateName",
                    f'Invalid value: "{prefix}": a lowercase RFC 1123 subdomain must consist of lower case '
                    "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                )
            meta["name"] = prefix + "".join(secrets.choice(_GENERATE_SUFFIX) for _ in range(5))
        name = meta["name"]
        if not legacy_event and (len(name) > 253 or not pattern.match(name)):
            raise self._invalid(
                rt,
                name,
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 name must consist of lower case '
                "alphanumeric characters, '-' or '.'",
            )
        self._check_namespace(rt, namespace)
        if self._key(rt, namespace, name) in self._objects[rt.storage_key]:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{rt.qualified} "{name}" already exists',
                details={"name": name, "group": rt.group, "kind": rt.plural},
            )
        for system in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion", "managedFields"):
            meta.pop(system, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if rt.has_status:
            # The apiserver resets status on create when status is a subresource.
            obj.pop("status", None)
        obj = self._conform(rt, obj, field_validation, warnings if warnings is not None else [])
        meta = _meta(obj)
        meta["generation"] = 1
        obj = self._builtin_rules(rt, obj, None)
        if dry_run:
            _meta(obj)["resourceVersion"] = ""
            return obj
        committed = self._commit(rt, "ADDED", obj, None)
        if rt.storage_key == CRD_KEY:
            self._register_crd(committed)
        return committed

    def _builtin_rules(self, rt: ResourceType, obj: Obj, old: Obj | None) -> Obj:
        meta = _meta(obj)
        if rt.storage_key == ("", "secrets"):
            if not obj.get("type"):  # kube-apiserver defaults an empty type too
                obj["type"] = "Opaque"
            data = obj.get("data") or {}
            for key, value in data.items():
                try:
                    base64.b64decode(str(value), validate=True)
                except binascii.Error as exc:
                    raise ApiError(400, "BadRequest", f"illegal base64 data in Secret key {key!r}") from exc
            for key, value in (obj.pop("stringData", None) or {}).items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            if data:
                obj["data"] = data
        elif rt.storage_key == CORE_EVENTS_KEY and not obj.get("eventTime"):
            # Legacy Events: the involved object lives in the Event's namespace (or omits it only in `default`).
            involved = (obj.get("involvedObject") or {}).get("namespace") or ""
            namespace = meta.get("namespace") or ""
            if (involved and involved != namespace) or (not involved and namespace not in ("", "default")):
                raise self._invalid(
                    rt,
                    meta["name"],
                    "involvedObject.namespace",
                    f'Invalid value: "{involved}": does not match event.namespace',
                )
        elif rt.storage_key == NAMESPACE_KEY:
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            phase = "Terminating" if meta.get("deletionTimestamp") else "Active"
            obj["status"] = {**(obj.get("status") or {}), "phase": phase}
        elif rt.storage_key == CRD_KEY:
            obj = self._crd_rules(rt, obj, old)
        elif rt.crd_name is None:
            try:
                obj = builtins.apply_rules(rt.storage_key, obj, old, self._allocate_cluster_ip)
            except builtins.Invalid as exc:
                raise self._invalid(rt, meta["name"], exc.field, exc.message, exc.reason) from exc
        return obj

    def _allocate_cluster_ip(self) -> str:
        used = ((o.get("spec") or {}).get("clusterIP", "") for o in self._objects[builtins.SERVICES].values())
        return builtins.next_cluster_ip(used)

    def _crd_rules(self, rt: ResourceType, obj: Obj, old: Obj | None) -> Obj:
        meta = _meta(obj)
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        if not spec.get("group") or not names.get("plural") or not names.get("kind") or not spec.get("versions"):
            raise self._invalid(rt, meta["name"], "spec", "Required value: group, names and versions are required")
        if meta["name"] != f"{names['plural']}.{spec['group']}":
            raise self._invalid(
                rt,
                meta["name"],
                "metadata.name",
                f'Invalid value: "{meta["name"]}": must be spec.names.plural+"."+spec.group',
            )
        if old is None:
            meta["finalizers"] = [*meta.get("finalizers", []), CRD_CLEANUP_FINALIZER]
        previous = (old or {}).get("status") or {}
        stamp = now_rfc3339()
        names = {**names, "singular": names.get("singular") or names["kind"].lower()}
        names.setdefault("listKind", names["kind"] + "List")
        obj["status"] = {
            "acceptedNames": names,
            # Keep the first transition times so a re-apply of the same CRD stays a no-op.
            "conditions": previous.get("conditions") or [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": stamp},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": stamp},
            ],
            "storedVersions": [v["name"] for v in spec["versions"] if v.get("storage")],
        }  # fmt: skip
        return obj

    def _preconditions(self, rt: ResourceType, current: Obj, rv: str | None, uid: str | None = None) -> None:
        meta = _meta(current)
        if (rv and rv != meta.get("resourceVersion")) or (uid and uid != meta.get("uid")):
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {rt.qualified} "{meta["name"]}": the object has been '
                "modified; please apply your changes to the latest version and try again",
                details={"name": meta["name"], "group": rt.group, "kind": rt.plural},
            )

    def replace(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_validation: str | None = None,
        warnings: list[str] | None = None,
    ) -> Obj:
        """PUT: a whole new object, conditional on resourceVersion when the body carries one."""
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request must be a JSON object")
        current = self.get(rt, namespace, name)
        if _meta(body).get("name") not in (None, name):
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        self._preconditions(rt, current, _meta(body).get("resourceVersion"))
        return self._update(
            rt, current, copy.deepcopy(body), subresource=subresource, dry_run=dry_run,
            field_validation=field_validation, warnings=warnings,
        )  # fmt: skip

    def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        content_type: str,
        patch: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_validation: str | None = None,
        warnings: list[str] | None = None,
    ) -> Obj:
        """PATCH with merge, JSON, server-side apply or (built-in kinds only) strategic-merge semantics."""
        if content_type == APPLY_PATCH and subresource is None:
            return self._apply(rt, namespace, name, patch, dry_run=dry_run, field_validation=field_validation,
                               warnings=warnings)  # fmt: skip
        current = self.get(rt, namespace, name)
        if content_type == STRATEGIC_PATCH and rt.crd_name is not None:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}",
            )
        if content_type in (MERGE_PATCH, STRATEGIC_PATCH):
            if not isinstance(patch, dict):
                raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
            if content_type == STRATEGIC_PATCH:
                try:
                    patched = strategic_merge_patch(current, patch)
                except MergeKeyMissing as exc:
                    # kube-apiserver passes this one through unclassified: a 500 with Go's wording.
                    raise ApiError(500, "", str(exc)) from exc
                except PatchError as exc:
                    raise ApiError(422, "Invalid", f"the server rejected our request due to an error: {exc}") from exc
            else:
                patched = merge_patch(current, patch)
            self._preconditions(rt, current, _meta(patch).get("resourceVersion") if "metadata" in patch else None)
        elif content_type == JSON_PATCH:
            try:
                patched = json_patch(current, patch)
            except PatchError as exc:
                if exc.test_failed:
                    raise ApiError(422, "Invalid", str(exc)) from exc
                raise ApiError(422, "Invalid", f"the server rejected our request due to an error: {exc}") from exc
            if not isinstance(patched, dict):
                raise ApiError(422, "Invalid", "the patched object is not a JSON object")
        else:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{JSON_PATCH}, {MERGE_PATCH}" + (f", {STRATEGIC_PATCH}" if rt.crd_name is None else ""),
            )
        return self._update(
            rt, current, patched, subresource=subresource, dry_run=dry_run,
            field_validation=field_validation, warnings=warnings,
        )  # fmt: skip

    def _apply(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        config: Any,
        *,
        dry_run: bool,
        field_validation: str | None,
        warnings: list[str] | None,
    ) -> Obj:
        """Server-side apply, simplified: creates the object when absent, else merges the applied configuration
        into it (strategic merge for built-in kinds, JSON merge for custom resources). Field ownership is not
        tracked: no conflicts with other managers, and a field an earlier apply set but this one omits stays."""
        if not isinstance(config, dict):
            raise ApiError(400, "BadRequest", "the applied configuration must be an object")
        meta: Obj = config["metadata"] if isinstance(config.get("metadata"), dict) else {}
        if meta.get("name") not in (None, name):
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        try:
            current = self.get(rt, namespace, name)
        except ApiError as exc:
            if exc.code != 404:
                raise
            body = copy.deepcopy(config)
            _meta(body)["name"] = name
            return self.create(rt, namespace, body, dry_run=dry_run, field_validation=field_validation,
                               warnings=warnings)  # fmt: skip
        if config.get("kind", rt.kind) != rt.kind or config.get("apiVersion", rt.group_version) != rt.group_version:
            raise ApiError(400, "BadRequest", f"the applied configuration is not a {rt.group_version} {rt.kind}")
        try:
            merged = strategic_merge_patch(current, config) if rt.crd_name is None else merge_patch(current, config)
        except (MergeKeyMissing, PatchError) as exc:
            raise ApiError(422, "Invalid", f"the server rejected our request due to an error: {exc}") from exc
        return self._update(
            rt, current, merged, subresource=None, dry_run=dry_run, field_validation=field_validation,
            warnings=warnings,
        )  # fmt: skip

    def _update(
        self,
        rt: ResourceType,
        current: Obj,
        new: Obj,
        *,
        subresource: str | None,
        dry_run: bool,
        field_validation: str | None,
        warnings: list[str] | None,
    ) -> Obj:
        storage_rt = self._storage_type.get(rt.storage_key, rt)
        old_meta = _meta(current)
        if subresource == "status":
            if not rt.has_status:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            # Only status moves through /status; everything else stays as stored.
            status = new.get("status")
            new = _without(current, "status")
            if status is not None:
                new["status"] = copy.deepcopy(status)
            new["metadata"] = copy.deepcopy(old_meta)
        elif subresource is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        elif rt.has_status:
            # Status written on the main resource is ignored when status is a subresource.
            new = _without(new, "status")
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
        new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
        meta = _meta(new)
        for system in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                       "deletionGracePeriodSeconds", "generation", "resourceVersion"):  # fmt: skip
            if system in old_meta:
                meta[system] = old_meta[system]
            else:
                meta.pop(system, None)
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or ()) - set(old_meta.get("finalizers") or ())
            if added:
                raise self._invalid(
                    rt,
                    old_meta["name"],
                    "metadata.finalizers",
                    f"Forbidden: no new finalizers can be added if the object is being deleted, found new "
                    f"finalizers {sorted(added)}",
                )
        if not meta.get("finalizers"):
            meta.pop("finalizers", None)
        new = self._conform(storage_rt, new, field_validation, warnings if warnings is not None else [])
        new = self._builtin_rules(storage_rt, new, current)
        # generation counts changes to everything but metadata (and status, when it is a subresource).
        ignored = ("metadata", "status") if storage_rt.has_status else ("metadata",)
        if _without(new, *ignored) != _without(current, *ignored):
            _meta(new)["generation"] = int(old_meta.get("generation", 1)) + 1
        if new == current:
            return current  # a no-op write keeps resourceVersion and sends no event, like the apiserver
        if dry_run:
            return new
        if _meta(new).get("deletionTimestamp") and not _meta(new).get("finalizers"):
            return self._remove(storage_rt, new, current)
        committed = self._commit(storage_rt, "MODIFIED", new, current)
        if storage_rt.storage_key == CRD_KEY:
            self._register_crd(committed)
        return committed

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        preconditions: Obj | None = None,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """DELETE: returns (object, gone); with finalizers it only gets a deletionTimestamp."""
        current = self.get(rt, namespace, name)
        preconditions = preconditions or {}
        self._preconditions(rt, current, preconditions.get("resourceVersion"), preconditions.get("uid"))
        if dry_run:
            return current, False
        return self._delete(self._storage_type.get(rt.storage_key, rt), current)

    def _delete(self, rt: ResourceType, current: Obj) -> tuple[Obj, bool]:
        meta = _meta(current)
        if meta.get("deletionTimestamp"):
            return current, False
        finalizers = list(meta.get("finalizers") or ())
        if rt.storage_key == NAMESPACE_KEY:
            finalizers = finalizers or ["kubernetes"]
        if not finalizers:
            return self._remove(rt, current, current), True
        new = copy.deepcopy(current)
        new_meta = _meta(new)
        new_meta["deletionTimestamp"] = now_rfc3339()
        new_meta["deletionGracePeriodSeconds"] = 0
        new_meta["generation"] = int(meta.get("generation", 1)) + 1
        if rt.storage_key == NAMESPACE_KEY:
            new["status"] = {**(new.get("status") or {}), "phase": "Terminating"}
        committed = self._commit(rt, "MODIFIED", new, current)
        if rt.storage_key == NAMESPACE_KEY:
            self._drain_namespace(meta["name"])
            return self._finish_namespace(meta["name"]) or committed, False
        if rt.storage_key == CRD_KEY:
            self._drain_crd(committed)
            return self._finish_crd(meta["name"]) or committed, False
        return committed, False

    def delete_collection(
        self, rt: ResourceType, namespace: str | None, label_selector: str | None, field_selector: str | None
    ) -> list[Obj]:
        """DELETE on a collection: each matching object as if deleted one by one."""
        result = []
        for obj in self.list_objects(rt, namespace, label_selector, field_selector):
            result.append(self._delete(self._storage_type.get(rt.storage_key, rt), obj)[0])
        return result

    def _remove(self, rt: ResourceType, final: Obj, old: Obj) -> Obj:
        removed = self._commit(rt, "DELETED", copy.deepcopy(final), old)
        meta = _meta(removed)
        if rt.storage_key == CRD_KEY:
            self._unregister_crd(meta["name"])
        self._collect_dependents(meta["uid"])
        if rt.namespaced and meta.get("namespace"):
            self._finish_namespace(meta["namespace"])
        if rt.crd_name is not None:
            self._finish_crd(rt.crd_name)
        return removed

    def _all_objects(self) -> Iterable[tuple[ResourceType, Obj]]:
        for storage_key, objects in list(self._objects.items()):
            rt = self._storage_type.get(storage_key)
            if rt is not None:
                for obj in list(objects.values()):
                    yield rt, obj

    def _collect_dependents(self, uid: str) -> None:
        """Garbage-collect objects whose every owner is gone (background propagation)."""
        live = None
        for rt, obj in self._all_objects():
            refs = _meta(obj).get("ownerReferences") or ()
            if not any(ref.get("uid") == uid for ref in refs):
                continue
            if live is None:
                live = {_meta(o).get("uid") for _, o in self._all_objects()}
            if not any(ref.get("uid") in live for ref in refs if ref.get("uid") != uid):
                current = self._objects[rt.storage_key].get(
                    self._key(rt, _meta(obj).get("namespace"), _meta(obj)["name"])
                )
                if current is not None:
                    self._delete(rt, current)

    def _drain_namespace(self, namespace: str) -> None:
        for rt, obj in self._all_objects():
            if rt.namespaced and _meta(obj).get("namespace") == namespace:
                current = self._objects[rt.storage_key].get((namespace, _meta(obj)["name"]))
                if current is not None:
                    self._delete(rt, current)

    def _finish_namespace(self, namespace: str) -> Obj | None:
        ns = self._objects[NAMESPACE_KEY].get(("", namespace))
        if ns is None or not _meta(ns).get("deletionTimestamp"):
            return None
        for rt, obj in self._all_objects():
            if rt.namespaced and _meta(obj).get("namespace") == namespace:
                return None
        rt = self._storage_type[NAMESPACE_KEY]
        if _meta(ns).get("finalizers"):
            return None
        final = copy.deepcopy(ns)
        final["spec"] = {"finalizers": []}
        return self._remove(rt, final, ns)

    def _drain_crd(self, crd: Obj) -> None:
        for rt in types_from_crd(crd):
            for obj in list(self._objects.get(rt.storage_key, {}).values()):
                storage_rt = self._storage_type.get(rt.storage_key, rt)
                current = self._objects[rt.storage_key].get(
                    self._key(storage_rt, _meta(obj).get("namespace"), _meta(obj)["name"])
                )
                if current is not None:
                    self._delete(storage_rt, current)

    def _finish_crd(self, crd_name: str) -> Obj | None:
        crd = self._objects[CRD_KEY].get(("", crd_name))
        if crd is None or not _meta(crd).get("deletionTimestamp"):
            return None
        if any(self._objects.get(rt.storage_key) for rt in types_from_crd(crd)):
            return None
        rt = self._storage_type[CRD_KEY]
        final = copy.deepcopy(crd)
        remaining = [f for f in _meta(final).get("finalizers", []) if f != CRD_CLEANUP_FINALIZER]
        _meta(final)["finalizers"] = remaining
        if remaining:
            return self._commit(rt, "MODIFIED", final, crd)
        _meta(final).pop("finalizers")
        return self._remove(rt, final, crd)
