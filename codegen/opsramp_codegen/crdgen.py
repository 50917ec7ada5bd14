"""Generates the AWSIntegration CustomResourceDefinition from the pydantic models (`make crds`).

The models are the one source of truth: pydantic's JSON schema is turned into a Kubernetes structural schema
(references inlined, `anyOf [X, null]` collapsed to X, titles dropped, defaults kept) and wrapped in the CRD
with its printer columns, short names and categories. `tests/unit/test_crd.py` fails when the committed file
differs from what this module produces.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from opsramp_aws_operator.constants import CATEGORIES, GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION
from opsramp_aws_operator.models import AWSIntegrationSpec, AWSIntegrationStatus

CRD_FILENAME = f"{PLURAL}.{GROUP}.yaml"

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": "Whether the role and the integration match the spec.",
    },
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        "description": "Why the resource is (not) Ready.",
    },
    {
        "name": "Role ARN",
        "type": "string",
        "jsonPath": ".status.roleArn",
        "description": "The IAM role OpsRamp assumes.",
    },
    {
        "name": "Integration",
        "type": "string",
        "jsonPath": ".status.integrationId",
        "description": "The installed integration's id in OpsRamp.",
    },
    {
        "name": "Accounts",
        "type": "string",
        "jsonPath": ".status.accountsReady",
        "description": "Many accounts: Ready accounts / selected accounts.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

# Keys of pydantic's JSON schema that have no place (or no meaning) in a Kubernetes structural schema.
_DROP_KEYS = {"title", "examples", "$defs"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline `$ref`s, collapse optional unions and drop keys Kubernetes does not accept."""
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").rsplit("/", 1)[-1]])
        # The field's own description wins over the model's docstring.
        target.update({k: v for k, v in node.items() if k not in _DROP_KEYS})
        node = target
    if "anyOf" in node:
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express a union of {len(branches)} types in a structural schema")
        if node.get("default", ...) is None:
            del node["default"]
        return _resolve({**branches[0], **node}, defs)
    if node.get("examples"):
        node["example"] = node["examples"][0]
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS:
            continue
        if key == "properties":
            out[key] = {name: _resolve(prop, defs) for name, prop in value.items()}
        else:
            out[key] = _resolve(value, defs)
    if "properties" in out and out.get("additionalProperties") is False:
        # Structural schemas forbid additionalProperties beside properties; unknown fields are refused by
        # strict field validation instead (see strict_schema below).
        del out["additionalProperties"]
    if out.get("type") == "object" and out.get("additionalProperties") is True:
        # A free-form map: Kubernetes expresses "keep whatever is there" this way.
        del out["additionalProperties"]
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _default_nested_objects(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Give optional sub-objects with a default factory `default: {}` so their fields' defaults apply."""
    for field_name, field in model.model_fields.items():
        alias = field.alias or field_name
        prop = schema.get("properties", {}).get(alias)
        if prop is None:
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if field.default_factory is not None:
                prop["default"] = {}
            _default_nested_objects(prop, annotation)


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema: dict[str, Any] = _resolve(raw, defs)
    _default_nested_objects(schema, model)
    return schema


def open_api_schema() -> dict[str, Any]:
    spec = model_schema(AWSIntegrationSpec)
    status = model_schema(AWSIntegrationStatus)
    return {
        "type": "object",
        "description": (
            "AWSIntegration connects one AWS account to OpsRamp: the operator creates an IAM role that trusts "
            "OpsRamp's AWS account only with the External ID, attaches OpsRamp's read-only policy, and installs "
            "the AWS integration in OpsRamp with that role."
        ),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as strict field validation applies it: unknown fields refused wherever fields are declared.

    Kubernetes refuses unknown fields of a structural schema (kubectl's default `--validate=strict`); a JSON
    Schema validator needs `additionalProperties: false` to do the same.
    """
    out = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
                node.setdefault("additionalProperties", False)
            for key, value in node.items():
                if key == "properties":
                    for prop in value.values():
                        walk(prop)
                elif key in ("items", "additionalProperties"):
                    walk(value)

    walk(out)
    out["properties"]["metadata"] = {"type": "object"}
    return out


def build_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {
                "app.kubernetes.io/name": "opsramp-aws-operator",
                "app.kubernetes.io/part-of": "opsramp",
            },
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": open_api_schema()},
                }
            ],
        },
    }


def render_crd() -> str:
    header = "# Generated by `make crds` from operator/opsramp_aws_operator/models.py. Do not edit by hand.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=120, allow_unicode=True)


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def crd_path(root: Path | None = None) -> Path:
    return (root or repo_root()) / "crds" / CRD_FILENAME


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="write crds/ instead of printing")
    parser.add_argument("--check", action="store_true", help="exit 1 if crds/ is stale")
    args = parser.parse_args(argv)
    text = render_crd()
    path = crd_path()
    if args.check:
        if not path.exists() or path.read_text() != text:
            print(f"{path} is stale: run `make crds`", file=sys.stderr)
            return 1
        return 0
    if args.write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
