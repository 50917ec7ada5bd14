"""docs/sandbox.md's fidelity table names every test that runs against both the emulator and the real control plane."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import test_kube_builtins
import test_kube_strategic

HERE = Path(__file__).parent
DOC = HERE.parents[2] / "docs" / "sandbox.md"
BOTH = ["test_kube_fidelity", "test_kube_kopf", "test_kube_builtins", "test_kube_strategic", "test_kube_kubectl"]


def table_rows() -> set[tuple[str, str]]:
    """(module, test) of every row of the fidelity table, each row saying emulator and real agree."""
    rows = set()
    for line in DOC.read_text().splitlines():
        match = re.match(r"\| `(test_kube_\w+)` \| `([^`]+)` \| pass \| pass \| yes \|$", line)
        if match:
            rows.add((match.group(1), match.group(2)))
    return rows


def test_every_two_server_test_is_in_the_table() -> None:
    """Each test function (and each case of the two tables) of the two-server modules has its row."""
    rows = table_rows()
    expected = set()
    for module in BOTH:
        tree = ast.parse((HERE / f"{module}.py").read_text())
        for node in tree.body:
            if (
                isinstance(node, ast.FunctionDef)
                and node.name.startswith("test_")
                and "fixture_operator" not in node.name
            ):
                expected.add((module, node.name))
    cases = {
        ("test_kube_builtins", "test_invalid_objects_are_422_naming_the_field"): [
            c[0] for c in test_kube_builtins.INVALID
        ],
        ("test_kube_strategic", "test_strategic_merge_patch"): [c[0] for c in test_kube_strategic.CASES],
    }
    for (module, name), ids in cases.items():
        expected.discard((module, name))
        expected.update((module, f"{name} [{case}]") for case in ids)
    missing = sorted(expected - rows)
    assert not missing, f"add these rows to docs/sandbox.md (run the suite on both servers first): {missing}"
