"""`/openapi/v2` and `/openapi/v3` for the kinds the emulator serves, shaped as kube-apiserver 1.37 shapes them.

kubectl reads them for `explain` and to decide how to validate `apply`/`create`: it looks in the v3 document of the
object's group/version for a PATCH operation of its kind taking `fieldValidation`, and when it finds one it leaves
validation to the server (`fieldValidation=Strict`); without one it falls back to `/openapi/v2`.

Schemas: a CRD's `openAPIV3Schema` as kube-apiserver publishes it (`metadata` a reference to ObjectMeta, the
`x-kubernetes-group-version-kind` extension, a `...List` kind); the built-in kinds' from the Kubernetes 1.37 API
definitions the pinned `kubernetes-validate` package ships (converted back from its JSON Schema form: nullable
types, `$defs` references). Without that package the built-in kinds have no schema (explain answers "not found"
for them) and the CRDs still do.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from typing import Any

from .store import ResourceType

Obj = dict[str, Any]

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
_API_VERSION_DESCRIPTION = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should convert "
    "recognized schemas to the latest internal value, and may reject unrecognized values. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"
)
_KIND_DESCRIPTION = (
    "Kind is a string value representing the REST resource this object represents. Servers may infer this from "
    "the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
)
_METADATA_DESCRIPTION = (
    "Standard object's metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
# What each operation takes besides the body, by the action kube-apiserver names in x-kubernetes-action.
_WRITE_PARAMETERS = ("dryRun", "fieldManager", "fieldValidation")
_OPERATIONS: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "collection": {
        "get": ("list", ("labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "watch")),
        "post": ("post", _WRITE_PARAMETERS),
        "delete": ("deletecollection", ("labelSelector", "fieldSelector", "dryRun")),
    },
    "item": {
        "get": ("get", ("resourceVersion",)),
        "put": ("put", _WRITE_PARAMETERS),
        "patch": ("patch", (*_WRITE_PARAMETERS, "force")),
        "delete": ("delete", ("dryRun", "gracePeriodSeconds", "propagationPolicy")),
    },
}


def _definitions_ref(name: str) -> str:
    return f"#/components/schemas/{name}"


def _from_json_schema(node: Any) -> Any:
    """kubernetes-validate's JSON Schema form back to the OpenAPI form: one type, `$defs` refs, allOf-wrapped
    references beside a description (as kube-apiserver's v3 writes them)."""
    if isinstance(node, list):
        return [_from_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: Obj = {}
    for key, value in node.items():
        if key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            out[key] = types[0] if types else "object"
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: _from_json_schema(prop) for name, prop in value.items()}
            for name in ("apiVersion", "kind"):  # kubernetes-validate pins them with an enum; the apiserver does not
                if isinstance(out[key].get(name), dict):
                    out[key][name].pop("enum", None)
        elif key == "$ref" and isinstance(value, str):
            out[key] = _definitions_ref(value.rsplit("/", 1)[-1])
        else:
            out[key] = _from_json_schema(value)
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out["allOf"] = [{"$ref": ref}]
    return out


@functools.cache
def builtin_definitions() -> dict[str, Obj]:
    """Kubernetes 1.37's API definitions by name (`io.k8s.api.core.v1.Secret`), or {} without kubernetes-validate."""
    try:
        from importlib.resources import files

        import kubernetes_validate
    except ImportError:
        return {}
    root = files(kubernetes_validate) / "kubernetes-json-schema"
    candidates = sorted((p for p in root.iterdir() if p.name.startswith("v1.37.") and p.name.endswith("-local")),
                        key=lambda p: p.name)  # fmt: skip
    if not candidates:
        return {}
    raw = json.loads((candidates[-1] / "_definitions.json").read_text())
    definitions: dict[str, Obj] = {}
    for name, schema in raw["$defs"].items():
        converted = _from_json_schema(schema)
        if name.endswith("IntOrString"):
            converted["format"] = "int-or-string"
        definitions[name] = converted
    return definitions


def _references(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value.rsplit("/", 1)[-1])
            else:
                _references(value, found)
    elif isinstance(node, list):
        for item in node:
            _references(item, found)


def _with_dependencies(schemas: dict[str, Obj]) -> dict[str, Obj]:
    """The schemas plus every built-in definition they reference, transitively."""
    definitions = builtin_definitions()
    out = dict(schemas)
    todo: set[str] = set()
    _references(list(schemas.values()), todo)
    while todo:
        name = todo.pop()
        if name in out or name not in definitions:
            continue
        out[name] = definitions[name]
        _references(definitions[name], todo)
    return out


def _gvk(rt: ResourceType, kind: str | None = None) -> Obj:
    return {"group": rt.group, "kind": kind or rt.kind, "version": rt.version}


def _schema_name(rt: ResourceType, kind: str | None = None) -> str:
    """kube-apiserver's name for a CRD's schema: the group reversed, the version, the kind."""
    return ".".join([*reversed(rt.group.split(".")), rt.version, kind or rt.kind])


def _builtin_name(rt: ResourceType, kind: str | None = None) -> str | None:
    return _definition_of(rt.group, rt.version, kind or rt.kind)


def _crd_schemas(rt: ResourceType, crd_schema: Obj | None) -> tuple[str, str, dict[str, Obj]]:
    """(object schema name, list schema name, schemas) for a custom resource."""
    name, list_name = _schema_name(rt), _schema_name(rt, f"{rt.kind}List")
    schema: Obj = (
        copy.deepcopy(crd_schema) if crd_schema else {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    )
    properties: Obj = schema.setdefault("properties", {})
    properties["apiVersion"] = {"description": _API_VERSION_DESCRIPTION, "type": "string"}
    properties["kind"] = {"description": _KIND_DESCRIPTION, "type": "string"}
    properties["metadata"] = {"description": _METADATA_DESCRIPTION, "allOf": [{"$ref": _definitions_ref(OBJECT_META)}]}
    schema["x-kubernetes-group-version-kind"] = [_gvk(rt)]
    listing = {
        "description": f"{rt.kind}List is a list of {rt.kind}",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"description": _API_VERSION_DESCRIPTION, "type": "string"},
            "items": {
                "description": f"List of {rt.plural}. More info: "
                "https://git.k8s.io/community/contributors/devel/api-conventions.md",
                "type": "array",
                "items": {"$ref": _definitions_ref(name)},
            },
            "kind": {"description": _KIND_DESCRIPTION, "type": "string"},
            "metadata": {"description": "Standard list metadata.", "allOf": [{"$ref": _definitions_ref(LIST_META)}]},
        },
        "x-kubernetes-group-version-kind": [_gvk(rt, f"{rt.kind}List")],
    }
    return name, list_name, {name: schema, list_name: listing}


def _parameter(name: str) -> Obj:
    return {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}


def _paths(rt: ResourceType, schema_name: str, list_name: str) -> dict[str, Obj]:
    prefix = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
    scope = f"{prefix}/namespaces/{{namespace}}" if rt.namespaced else prefix
    content = {t: {"schema": {"$ref": _definitions_ref(schema_name)}} for t in ("application/json", "application/yaml")}
    list_content = {"application/json": {"schema": {"$ref": _definitions_ref(list_name)}}}
    patch_body = {t: {"schema": {"$ref": _definitions_ref("io.k8s.apimachinery.pkg.apis.meta.v1.Patch")}}
                  for t in ("application/apply-patch+yaml", "application/json-patch+json",
                            "application/merge-patch+json", *(("application/strategic-merge-patch+json",)
                                                              if rt.crd_name is None else ()))}  # fmt: skip
    paths: dict[str, Obj] = {}
    targets = {"collection": f"{scope}/{rt.plural}", "item": f"{scope}/{rt.plural}/{{name}}"}
    for where, path in targets.items():
        operations: Obj = {}
        for method, (action, parameters) in _OPERATIONS[where].items():
            operation: Obj = {
                "description": f"{action} {rt.kind}",
                "operationId": f"{action}{rt.kind}",
                "parameters": [_parameter(p) for p in parameters],
                "responses": {"200": {"description": "OK", "content": list_content if action == "list" else content}},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": _gvk(rt),
            }
            if method in ("post", "put"):
                operation["requestBody"] = {"content": content, "required": True}
            elif method == "patch":
                operation["requestBody"] = {"content": patch_body, "required": True}
            operations[method] = operation
        paths[path] = operations
    for sub in sorted(rt.subresources):
        paths[f"{targets['item']}/{sub}"] = {
            method: {**operations[method], "operationId": f"{method}{rt.kind}{sub.capitalize()}"}
            for method in ("get", "put", "patch")
        }
    return paths


def group_version_documents(types: list[ResourceType], crd_schemas: dict[tuple[str, str, str], Obj]) -> dict[str, Obj]:
    """The v3 document of each served group/version, by its path under /openapi/v3 (`api/v1`, `apis/g/v`).
    `crd_schemas` maps (group, version, kind) of a custom resource to its CRD's openAPIV3Schema."""
    documents: dict[str, Obj] = {}
    for rt in types:
        key = f"apis/{rt.group}/{rt.version}" if rt.group else f"api/{rt.version}"
        document = documents.setdefault(
            key, {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.37.0"}, "paths": {},
                  "components": {"schemas": {}}},
        )  # fmt: skip
        schemas: dict[str, Obj] = {}
        if rt.crd_name is not None:
            name, list_name, schemas = _crd_schemas(rt, crd_schemas.get((rt.group, rt.version, rt.kind)))
        else:
            found, found_list = _builtin_name(rt), _builtin_name(rt, f"{rt.kind}List")
            if found is None or found_list is None:
                continue
            name, list_name = found, found_list
            schemas = {found: builtin_definitions()[found], found_list: builtin_definitions()[found_list]}
        document["paths"].update(_paths(rt, name, list_name))
        document["components"]["schemas"].update(schemas)
    for document in documents.values():
        document["components"]["schemas"] = dict(sorted(_with_dependencies(document["components"]["schemas"]).items()))
    return documents


def digest(document: Obj) -> str:
    """The `hash` kube-apiserver puts in serverRelativeURL (a content hash: clients cache by URL)."""
    return hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest().upper()


def v2_document(documents: dict[str, Obj]) -> Obj:
    """`/openapi/v2`: every definition of the v3 documents, with v2's reference form."""
    definitions: Obj = {}
    for document in documents.values():
        definitions.update(document["components"]["schemas"])
    text = json.dumps(definitions).replace('"#/components/schemas/', '"#/definitions/')
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.37.0"}, "paths": {},
            "definitions": json.loads(text)}  # fmt: skip


@functools.cache
def _definition_of(group: str, version: str, kind: str) -> str | None:
    wanted = {"group": group, "kind": kind, "version": version}
    for name, schema in builtin_definitions().items():
        if wanted in schema.get("x-kubernetes-group-version-kind", []):
            return name
    return None


def _resolve(schema: Obj) -> Obj:
    """A schema with its reference (plain or allOf-wrapped) followed."""
    definitions = builtin_definitions()
    for _ in range(8):
        ref = schema.get("$ref")
        if ref is None and len(schema.get("allOf") or []) == 1:
            ref = schema["allOf"][0].get("$ref")
        if not isinstance(ref, str):
            return schema
        schema = definitions.get(ref.rsplit("/", 1)[-1], {})
    return schema


def _unknown(obj: Any, schema: Obj, path: tuple[str | int, ...]) -> list[tuple[str | int, ...]]:
    schema = _resolve(schema)
    found: list[tuple[str | int, ...]] = []
    if isinstance(obj, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        if properties is None and not isinstance(additional, dict):
            return found  # free-form (RawExtension, FieldsV1, JSON)
        for key, value in obj.items():
            if properties and key in properties:
                found.extend(_unknown(value, properties[key], (*path, key)))
            elif isinstance(additional, dict):
                found.extend(_unknown(value, additional, (*path, key)))
            elif not (additional is True or schema.get("x-kubernetes-preserve-unknown-fields")):
                found.append((*path, key))
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for index, value in enumerate(obj):
            found.extend(_unknown(value, schema["items"], (*path, index)))
    return found


def unknown_builtin_fields(obj: Obj, group: str, version: str, kind: str) -> list[tuple[str | int, ...]] | None:
    """Paths of the fields of a built-in kind's object its Kubernetes 1.37 definition does not declare (what
    kube-apiserver's strict decoding refuses and otherwise drops); None when the kind has no definition here."""
    name = _definition_of(group, version, kind)
    if name is None:
        return None
    return _unknown(obj, builtin_definitions()[name], ())


def field_path(path: tuple[str | int, ...]) -> str:
    """`spec.template.spec.containers[0].imagee`, as kube-apiserver names an unknown field."""
    text = ""
    for part in path:
        text = f"{text}[{part}]" if isinstance(part, int) else (f"{text}.{part}" if text else part)
    return text


def without(obj: Any, path: tuple[str | int, ...]) -> None:
    """Remove the field at `path` (in place)."""
    for part in path[:-1]:
        obj = obj[part]
    del obj[path[-1]]
