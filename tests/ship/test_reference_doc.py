"""Tests of docs/reference.md: generated from the CRD, committed current, complete, and well-formed Markdown."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from ship_support import CRD_FILE, ROOT

from opsramp_codegen.refdoc import REFERENCE_FILE, main, render, type_name, validation_text

REFERENCE = ROOT / REFERENCE_FILE


def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    return loaded


def schema_paths(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every field path the CRD defines (arrays of objects as `x[]`), kopf's bookkeeping not descended into."""
    for name, prop in schema.get("properties", {}).items():
        if not path and name in {"apiVersion", "kind", "metadata"}:
            continue
        field = f"{path}.{name}" if path else name
        yield field, prop
        if field == "status.kopf":
            continue
        items = prop.get("items", {})
        if "properties" in prop:
            yield from schema_paths(prop, field)
        elif "properties" in items:
            yield from schema_paths(items, field + "[]")


def test_committed_reference_is_current() -> None:
    """`--check` passes: docs/reference.md is what the CRD in crds/ renders to."""
    assert main(["--check"]) == 0, "run: .venv/bin/python -m opsramp_codegen.refdoc --write"


def test_check_notices_a_changed_description(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Changing a field's description in a copy of crds/ makes `--check` fail until `--write` runs."""
    shutil.copytree(ROOT / "crds", tmp_path / "crds")
    (tmp_path / "docs").mkdir()
    shutil.copy(REFERENCE, tmp_path / REFERENCE_FILE)
    crd_copy = tmp_path / "crds" / CRD_FILE.name
    text = crd_copy.read_text()
    assert "Stop acting on this resource" in text
    crd_copy.write_text(text.replace("Stop acting on this resource", "Pause this resource", 1))
    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert "docs/reference.md" in capsys.readouterr().err
    assert main(["--write", "--root", str(tmp_path)]) == 0
    assert "Pause this resource" in (tmp_path / REFERENCE_FILE).read_text()
    assert main(["--check", "--root", str(tmp_path)]) == 0


def test_every_field_has_a_row_with_its_description() -> None:
    """Each field of spec and status (nested ones and condition fields included) has a row naming its description."""
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([^`]+)` \|.*$", REFERENCE.read_text(), flags=re.M)}
    paths = dict(schema_paths(schema))
    assert {"spec.role.path", "spec.aws.assumeRoleArn", "status.conditions[].reason", "status.roleArn"} <= set(paths)
    text = REFERENCE.read_text()
    # spec and status are the top-level sections: a heading and their description, no row of their own.
    for top in ("spec", "status"):
        assert f"## `{top}`\n\n{paths.pop(top)['description']}\n" in text
    missing = sorted(set(paths) - set(rows))
    assert missing == []
    for path, prop in paths.items():
        words = " ".join(str(prop.get("description", "")).split()).replace("<", "&lt;").replace(">", "&gt;")
        assert words.replace("|", "\\|") in rows[path], path


def test_tables_keep_their_columns() -> None:
    """Every table row has as many cells as its header: pipes in regex patterns do not split cells."""
    lines = REFERENCE.read_text().splitlines()
    assert any("\\|" in line for line in lines), "the CRD's patterns hold '|', so some cell must escape one"
    columns = 0
    for line in lines:
        if not line.startswith("|"):
            columns = 0
            continue
        cells = len(re.split(r"(?<!\\)\|", line.strip())) - 2
        if columns == 0:
            columns = cells
        assert cells == columns, line


@pytest.mark.parametrize(
    ("schema", "type_", "validation"),
    [
        ({"type": "array", "items": {"type": "string", "pattern": "^a|b$"}, "maxItems": 9}, "[]string", "max items"),
        ({"type": "object", "additionalProperties": {"type": "string", "maxLength": 256}}, "map[string]string", "256"),
        ({"type": "string", "format": "date-time"}, "string (date-time)", ""),
        ({"type": "string", "enum": ["Delete", "Retain"]}, "string", "one of `Delete`, `Retain`"),
        (
            {"type": "array", "x-kubernetes-validations": [{"rule": "size(self) > 0", "message": "not empty"}]},
            "[]any",
            "rule: not empty",
        ),
    ],
)
def test_type_and_validation_phrases(schema: dict[str, Any], type_: str, validation: str) -> None:
    """Schema nodes read as Go-like types, and every constraint (items, map values, CEL rules) is shown."""
    assert type_name(schema) == type_
    assert validation in validation_text(schema)


def test_defaults_and_required_are_shown() -> None:
    """Server-side defaults and required markers appear in their rows."""
    text = render(crd())
    assert re.search(r"^\| `spec.role.path` \| string \|  \| `\"/opsramp/\"` \|", text, flags=re.M)
    assert re.search(r"^\| `spec.regions` \| \[\]string \| yes \|", text, flags=re.M)
    assert re.search(r"^\| `spec.deletionPolicy` .*one of `Delete`, `Retain`", text, flags=re.M)
