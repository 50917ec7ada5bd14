"""Tests that the security and upgrading guides stay linked, point at real files and match the chart they describe."""

from __future__ import annotations

import re

import pytest
import yaml
from ship_support import ROOT, Manifest, by_kind, one

DOCS = ("docs/security.md", "docs/upgrading.md", "docs/reference.md")


@pytest.mark.parametrize("doc", DOCS)
def test_readme_links_the_guide(doc: str) -> None:
    """README's Documentation list links each guide."""
    assert f"]({doc})" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_and_repository_paths_exist(doc: str) -> None:
    """Every relative Markdown link and every repository path in backticks names a file that exists."""
    path = ROOT / doc
    text = path.read_text()
    links = set(re.findall(r"\]\(([^)#:\s]+\.(?:md|json|yaml))(?:#[^)]*)?\)", text))
    paths = set(re.findall(r"`((?:deploy|charts|crds|docs|operator|examples|hack)/[^`*<> ]*)`", text))
    assert links, "the guide lost its cross-links"
    missing = sorted(link for link in links if not (path.parent / link).exists())
    missing += sorted(p for p in paths if not (ROOT / p.rstrip("/")).exists())
    assert missing == []


@pytest.mark.parametrize("doc", ["docs/security.md", "docs/upgrading.md"])
def test_yaml_and_json_snippets_parse(doc: str) -> None:
    """The YAML and JSON blocks of the guide parse (placeholders in <> are quoted strings in JSON)."""
    text = (ROOT / doc).read_text()
    blocks = re.findall(r"```(yaml|json)\n(.*?)```", text, flags=re.S)
    assert blocks
    for _, body in blocks:
        yaml.safe_load(body)  # YAML is a superset of the JSON used here


def test_rbac_table_matches_the_rendered_chart(default_docs: list[Manifest]) -> None:
    """Every (group, resource, verbs) the default chart grants is a row of security.md's RBAC table."""
    text = (ROOT / "docs" / "security.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    granted = [rule for role in by_kind(default_docs, "ClusterRole") for rule in role["rules"]]
    assert granted
    for rule in granted:
        for resource in rule["resources"]:
            row = next((r for r in rows if f"`{resource}`" in r), None)
            assert row is not None, f"{resource} is granted but not documented"
            documented = {v.strip() for v in row.split("|")[3].split(",")}
            assert set(rule["verbs"]) == documented, (resource, rule["verbs"], documented)


def test_upgrading_guide_describes_the_crd_the_chart_renders(default_docs: list[Manifest]) -> None:
    """The chart renders the CRD with `helm.sh/resource-policy: keep`, as upgrading.md and security.md say."""
    crd = one(default_docs, "CustomResourceDefinition")
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert "helm.sh/resource-policy: keep" in (ROOT / "docs" / "upgrading.md").read_text()
