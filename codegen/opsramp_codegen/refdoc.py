"""Render docs/reference.md, the AWSIntegration resource reference, from the CRD's schema and descriptions.

The CRD (crds/, itself generated from the pydantic models) is the single source: every field's type, default,
validation and description come from its `openAPIV3Schema`, so the reference cannot drift from what the API
server enforces. `python -m opsramp_codegen.refdoc --write` refreshes the file; `--check` exits 1 when it
is stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

PROG: Final = "opsramp_codegen.refdoc"
# The repository this module sits in (operator/opsramp_aws_operator/ -> the root); the CLI takes --root too.
DEFAULT_ROOT: Final = Path(__file__).resolve().parents[2]
CRD_FILE: Final = Path("crds/awsintegrations.integrations.opsramp.com.yaml")
REFERENCE_FILE: Final = Path("docs/reference.md")
# Fields every Kubernetes object has; the reference covers only what this CRD defines.
_SKIPPED_TOP: Final = frozenset({"apiVersion", "kind", "metadata"})
# kopf's private bookkeeping under status: documented in one line, not field by field.
_INTERNAL: Final = frozenset({"status.kopf"})


@dataclass(frozen=True)
class Field:
    """One row of a table: a field of an object in the schema."""

    path: str
    type: str
    required: bool
    default: str
    validation: str
    description: str


@dataclass(frozen=True)
class ObjectTable:
    """One table: an object in the schema (spec, spec.role, status.conditions[], ...) and its direct fields."""

    path: str
    description: str
    fields: tuple[Field, ...]


def type_name(schema: Mapping[str, Any]) -> str:
    """A Go-like type for a schema node: string, integer, []string, map[string]string, object."""
    kind = str(schema.get("type", "object" if "properties" in schema else "any"))
    if kind == "array":
        return "[]" + type_name(schema.get("items", {}))
    if kind == "object" and isinstance(schema.get("additionalProperties"), Mapping):
        return "map[string]" + type_name(schema["additionalProperties"])
    if kind == "string" and "format" in schema:
        return f"string ({schema['format']})"
    return kind


def validation_text(schema: Mapping[str, Any]) -> str:
    """Every constraint on a node (and on its items or map values), as short `key: value` phrases."""
    parts: list[str] = []
    for key, label in (
        ("enum", "one of"),
        ("minimum", "min"),
        ("maximum", "max"),
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
        ("maxProperties", "max entries"),
        ("pattern", "pattern"),
    ):
        if key in schema:
            value = schema[key]
            shown = ", ".join(f"`{v}`" for v in value) if key == "enum" else f"`{value}`"
            parts.append(f"{label} {shown}")
    if schema.get("x-kubernetes-list-type") == "set":
        parts.append("unique items")
    if schema.get("x-kubernetes-list-type") == "map":
        keys = ", ".join(f"`{k}`" for k in schema.get("x-kubernetes-list-map-keys", []))
        parts.append(f"one item per {keys}")
    for rule in schema.get("x-kubernetes-validations", []):
        parts.append(f"rule: {rule.get('message') or rule['rule']}")
    items = schema.get("items")
    if isinstance(items, Mapping) and "properties" not in items:
        inner = validation_text(items)
        if inner:
            parts.append(f"each item: {inner}")
    values = schema.get("additionalProperties")
    if isinstance(values, Mapping):
        inner = validation_text(values)
        if inner:
            parts.append(f"each value: {inner}")
    return "; ".join(parts)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped (GFM honours `\\|` in code spans too)."""
    return " ".join(text.split()).replace("|", "\\|")


def _prose(text: str) -> str:
    """Free text for a cell or a paragraph: like `_cell`, and `<name>` shown as text rather than taken for HTML."""
    return _cell(text).replace("<", "&lt;").replace(">", "&gt;")


def _object_schema(schema: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The schema whose properties form a table: an object itself, or the items of an array of objects."""
    if "properties" in schema:
        return schema
    items = schema.get("items")
    if isinstance(items, Mapping) and "properties" in items:
        return items
    return None


def object_tables(schema: Mapping[str, Any], path: str = "") -> Iterator[ObjectTable]:
    """The tables for `schema` and every object below it, depth first in schema order."""
    required = set(schema.get("required", []))
    rows: list[Field] = []
    children: list[tuple[str, Mapping[str, Any]]] = []
    for name, prop in schema.get("properties", {}).items():
        if not path and name in _SKIPPED_TOP:
            continue
        field_path = f"{path}.{name}" if path else name
        default = json.dumps(prop["default"]) if "default" in prop else ""
        description = str(prop.get("description", ""))
        if field_path in _INTERNAL:
            description += " Internal: do not rely on or edit it."
        rows.append(Field(field_path, type_name(prop), name in required, default, validation_text(prop), description))
        inner = _object_schema(prop)
        if inner is not None and field_path not in _INTERNAL:
            suffix = "[]" if inner is not prop else ""
            children.append((field_path + suffix, inner))
    yield ObjectTable(path, str(schema.get("description", "")), tuple(rows))
    for child_path, child in children:
        yield from object_tables(child, child_path)


def render(crd: Mapping[str, Any]) -> str:
    """The whole reference page for the CRD's storage version."""
    spec = crd["spec"]
    names = spec["names"]
    version = next(v for v in spec["versions"] if v.get("storage"))
    schema = version["schema"]["openAPIV3Schema"]
    lines = [
        f"# {names['kind']} reference",
        "",
        f"<!-- Generated by `python -m {PROG} --write` from {CRD_FILE}. Do not edit by hand. -->",
        "",
        _prose(str(schema.get("description", ""))),
        "",
        "| | |",
        "|---|---|",
        f"| apiVersion | `{spec['group']}/{version['name']}` |",
        f"| kind | `{names['kind']}` (list: `{names.get('listKind', names['kind'] + 'List')}`) |",
        f"| scope | {spec['scope']} |",
        f"| plural / singular | `{names['plural']}` / `{names.get('singular', '')}` |",
        f"| short names | {', '.join(f'`{n}`' for n in names.get('shortNames', [])) or '-'} |",
        f"| categories | {', '.join(f'`{c}`' for c in names.get('categories', [])) or '-'} |",
        f"| subresources | {', '.join(f'`{s}`' for s in version.get('subresources', {})) or '-'} |",
        "",
        "Columns of `kubectl get awsint`:",
        "",
        "| column | type | from | description |",
        "|---|---|---|---|",
    ]
    for column in version.get("additionalPrinterColumns", []):
        lines.append(
            f"| {column['name']} | {column['type']} | `{_cell(column['jsonPath'])}` | "
            f"{_prose(column.get('description', ''))} |"
        )
    lines += [
        "",
        "Defaults are applied by the API server from the schema (the operator never writes to `spec`). "
        "Validation is enforced by the API server; `rule:` lines are CEL rules (Kubernetes 1.25 and later).",
    ]
    for table in object_tables(schema):
        # The top level holds only spec and status, whose own tables follow with the same descriptions.
        if not table.path or not table.fields:
            continue
        lines += ["", f"## `{table.path}`", ""]
        if table.description:
            lines += [_prose(table.description), ""]
        lines += ["| field | type | required | default | validation | description |", "|---|---|---|---|---|---|"]
        for row in table.fields:
            default = f"`{row.default}`" if row.default else ""
            lines.append(
                f"| `{row.path}` | {_cell(row.type)} | {'yes' if row.required else ''} | {_cell(default)} | "
                f"{_cell(row.validation)} | {_prose(row.description)} |"
            )
    lines += [
        "",
        "## Condition types",
        "",
        "`Ready` summarises the others: `True` once the role is usable and the integration matches the spec for the "
        "current `metadata.generation`. `RoleReady` and `IntegrationReady` report each external resource; "
        "`Reconciling` is `True` while the operator is still converging, and `Stalled` is `True` when it needs a "
        "person (the reason says why). Every reason and what to do about it: "
        "[troubleshooting.md](troubleshooting.md).",
        "",
    ]
    return "\n".join(lines)


def load_crd(root: Path) -> dict[str, Any]:
    """The CRD document from crds/."""
    crd: dict[str, Any] = yaml.safe_load((root / CRD_FILE).read_text())
    return crd


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print the reference (default), --write docs/reference.md, or --check it (exit 1 when stale)."""
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"write {REFERENCE_FILE}")
    mode.add_argument("--check", action="store_true", help=f"exit 1 when {REFERENCE_FILE} is stale")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    content = render(load_crd(args.root))
    target = args.root / REFERENCE_FILE
    if args.check:
        if not target.exists() or target.read_text() != content:
            print(f"stale: {REFERENCE_FILE} (run: python -m {PROG} --write)", file=sys.stderr)
            return 1
        return 0
    if args.write:
        if not target.exists() or target.read_text() != content:
            target.write_text(content)
        return 0
    sys.stdout.write(content)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
