"""Structural-schema handling for custom resources: unknown fields, null pruning, defaulting, validation."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import jsonschema  # type: ignore[import-untyped]

# The apiserver always accepts these at the root of a custom resource, whatever the schema says.
_ROOT_FIELDS = ("apiVersion", "kind", "metadata")


@dataclass(frozen=True)
class FieldProblem:
    """One problem with one field, shaped like an apiserver StatusCause."""

    field: str
    reason: str  # FieldValueInvalid, FieldValueRequired, FieldValueNotSupported, FieldValueUnknown
    message: str


def _preserves_unknown(schema: dict[str, Any]) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def unknown_fields(obj: Any, schema: dict[str, Any], *, root: bool = True, path: str = "") -> list[str]:
    """Paths of fields the schema does not declare (what strict field validation rejects)."""
    found: list[str] = []
    if isinstance(obj, dict):
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        for key, value in obj.items():
            if (root or embedded) and key in _ROOT_FIELDS:
                continue
            sub: dict[str, Any] | None = None
            if props is not None and key in props:
                sub = props[key]
            elif isinstance(additional, dict):
                sub = additional
            elif additional is True or _preserves_unknown(schema):
                continue
            elif props is None and "type" not in schema:
                # An empty schema ({}) is only legal under preserve-unknown-fields; be lenient.
                continue
            if sub is None:
                found.append(_join(path, key))
                continue
            found.extend(unknown_fields(value, sub, root=False, path=_join(path, key)))
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for index, value in enumerate(obj):
            found.extend(unknown_fields(value, schema["items"], root=False, path=_join(path, index)))
    return found


def prune(obj: Any, schema: dict[str, Any], *, root: bool = True) -> Any:
    """Drop undeclared fields and nulls of non-nullable fields, as the apiserver does before validating."""
    if isinstance(obj, dict):
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        result: dict[str, Any] = {}
        for key, value in obj.items():
            if (root or embedded) and key in _ROOT_FIELDS:
                result[key] = value
                continue
            sub: dict[str, Any] | None
            if props is not None and key in props:
                sub = props[key]
            elif isinstance(additional, dict):
                sub = additional
            elif additional is True or _preserves_unknown(schema) or (props is None and "type" not in schema):
                result[key] = value
                continue
            else:
                continue
            if value is None and not sub.get("nullable"):
                continue
            result[key] = prune(value, sub, root=False)
        return result
    if isinstance(obj, list) and isinstance(schema.get("items"), dict):
        return [prune(value, schema["items"], root=False) for value in obj]
    return obj


def apply_defaults(obj: Any, schema: dict[str, Any]) -> Any:
    """Fill in `default` values for absent fields, recursing only into what is present (apiserver rules)."""
    if isinstance(obj, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
            if key in obj:
                obj[key] = apply_defaults(obj[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in obj:
                if key not in props:
                    obj[key] = apply_defaults(obj[key], additional)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(value, schema["items"]) for value in obj]
    return obj


def to_json_schema(schema: Any) -> Any:
    """Translate OpenAPI v3 (Kubernetes flavour) into a JSON Schema Draft 4 document."""
    if isinstance(schema, list):
        return [to_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "example", "externalDocs", "default"):
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = to_json_schema(value)
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [*out.get("anyOf", []), {"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def _describe(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


class SchemaValidator:
    """Validates one version of a custom resource against its CRD's openAPIV3Schema."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        checker = jsonschema.Draft4Validator.FORMAT_CHECKER
        self._validator = jsonschema.Draft4Validator(to_json_schema(schema), format_checker=checker)

    def problems(self, obj: dict[str, Any]) -> list[FieldProblem]:
        """Schema violations in `obj`, each naming the field the way the apiserver does."""
        body = {k: v for k, v in obj.items() if k != "metadata"}
        found: list[FieldProblem] = []
        for error in self._validator.iter_errors(body):
            path = ""
            for key in error.absolute_path:
                path = _join(path, key)
            if error.validator == "required":
                missing = error.message.split("'")[1] if "'" in error.message else "?"
                field = _join(path, missing)
                found.append(FieldProblem(field, "FieldValueRequired", f"{field}: Required value"))
            elif error.validator == "enum":
                allowed = ", ".join(_describe(v) for v in error.validator_value)
                found.append(
                    FieldProblem(
                        path,
                        "FieldValueNotSupported",
                        f"{path}: Unsupported value: {_describe(error.instance)}: supported values: {allowed}",
                    )
                )
            elif error.validator == "type":
                expected = error.validator_value
                found.append(
                    FieldProblem(
                        path,
                        "FieldValueTypeInvalid",
                        f"{path}: Invalid value: {_describe(error.instance)}: {path} in body must be of "
                        f"type {expected}",
                    )
                )
            else:
                found.append(
                    FieldProblem(
                        path or "<root>",
                        "FieldValueInvalid",
                        f"{path}: Invalid value: {_describe(error.instance)}: {error.message}",
                    )
                )
        return sorted(found, key=lambda p: (p.field, p.message))
