"""Tests that the install guide's examples work: its kustomize overlay builds on deploy/ and does what it says."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import yaml
from ship_support import DEPLOY, ROOT, load_docs, one

INSTALL = ROOT / "docs" / "install.md"
REMOTE_BASE = "https://github.com/opsramp/opsramp-aws-operator//deploy?ref=v0.1.0"


def overlay_from_docs() -> str:
    """The YAML block that follows the overlay-example marker in docs/install.md."""
    text = INSTALL.read_text()
    match = re.search(r"<!-- overlay-example:[^>]*-->\n```yaml\n(.*?)```", text, flags=re.S)
    assert match, "docs/install.md lost its overlay example"
    return match.group(1)


def test_install_guide_overlay_builds_and_applies_its_settings(tmp_path: Path, kubectl: Path) -> None:
    """The documented overlay, pointed at this checkout's deploy/, sets image, IRSA role, region and account."""
    overlay = overlay_from_docs()
    assert REMOTE_BASE in overlay
    local = os.path.relpath(DEPLOY, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(overlay.replace(REMOTE_BASE, local))
    out = subprocess.run([str(kubectl), "kustomize", str(tmp_path)], capture_output=True, text=True, check=True)
    docs = load_docs(out.stdout)
    for doc in docs:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
    sa = one(docs, "ServiceAccount")
    assert sa["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/opsramp-aws-operator"
    }
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/opsramp-aws-operator:0.1.0"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["AWS_REGION"] == "us-east-1"
    assert env["OPERATOR_OPSRAMP_AWS_ACCOUNT_ID"] == "123456789012"
    # The replace patch hit the variable it names, not a neighbour.
    assert len(env) == len(container["env"])
    assert env["OPERATOR_NAMESPACES"] == ""


def test_install_guide_names_files_that_exist() -> None:
    """Every repository path the install guide mentions in backticks exists."""
    text = INSTALL.read_text()
    paths = set(re.findall(r"`((?:deploy|charts|crds|examples|hack|docs)/[^`*<> ]*)`", text))
    assert paths
    missing = sorted(p for p in paths if not (ROOT / p.rstrip("/")).exists())
    assert missing == []


def test_yaml_snippets_parse() -> None:
    """The YAML blocks in the install guide parse (a broken snippet would mislead every reader)."""
    blocks = re.findall(r"```yaml\n(.*?)```", INSTALL.read_text(), flags=re.S)
    assert len(blocks) >= 4
    for block in blocks:
        assert yaml.safe_load(block) is not None
