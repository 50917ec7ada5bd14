"""Tests that every generated packaging file (chart CRD copy, deploy/, Argo CD copies) matches its source."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ship_support import CHART, CRD_FILE, DEPLOY, ROOT, load_docs

SYNC = ROOT / "hack" / "sync-manifests.py"


def test_chart_crd_copy_is_byte_identical() -> None:
    """The chart's files/crds copy holds the same bytes as crds/ (the chart templates the CRD from it)."""
    copy = CHART / "files" / "crds" / CRD_FILE.name
    assert copy.read_bytes() == CRD_FILE.read_bytes(), "run: python hack/sync-manifests.py"


def test_nothing_generated_is_stale() -> None:
    """`hack/sync-manifests.py --check` finds deploy/, the chart's CRD copy and the Argo CD copies current."""
    result = subprocess.run([sys.executable, str(SYNC), "--check"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("mutate", "old", "new", "reported"),
    [
        ("deploy/kustomization.yaml", "namespace.yaml", "ns.yaml", "deploy/kustomization.yaml"),
        ("crds/awsintegrations.integrations.opsramp.com.yaml", "awsint", "awsi", "files/crds/awsintegrations"),
        ("deploy/argocd/health.lua", "Suspended", "Paused", "deploy/argocd/argocd-cm.yaml"),
        ("charts/opsramp-aws-operator/values.yaml", "logLevel: INFO", "logLevel: DEBUG", "deploy/opsramp-aws-operator"),
        (
            "charts/opsramp-aws-operator/values.yaml",
            "between drift checks",
            "between checks",
            "opsramp-aws-operator/README",
        ),
        ("charts/opsramp-aws-operator/values.yaml", "# -- Tolerations.", "# Tolerations.", "undocumented value"),
    ],
)
def test_check_notices_drift(tmp_path: Path, mutate: str, old: str, new: str, reported: str) -> None:
    """In a copy of the tree, changing a source or a generated file makes --check fail naming the stale file."""
    for part in ("crds", "charts", "deploy"):
        shutil.copytree(ROOT / part, tmp_path / part)
    target = tmp_path / mutate
    text = target.read_text()
    assert old in text
    target.write_text(text.replace(old, new, 1))
    result = subprocess.run(
        [sys.executable, str(SYNC), "--check", "--root", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert reported in result.stderr, result.stderr


def test_one_run_brings_everything_current(tmp_path: Path) -> None:
    """A changed CRD reaches the chart's copy and deploy/ (rendered from that copy) in one run, not two."""
    for part in ("crds", "charts", "deploy"):
        shutil.copytree(ROOT / part, tmp_path / part)
    crd = tmp_path / "crds" / CRD_FILE.name
    crd.write_text(crd.read_text().replace("- awsint", "- awszz", 1))
    root = ["--root", str(tmp_path)]
    wrote = subprocess.run([sys.executable, str(SYNC), *root], capture_output=True, text=True, check=False)
    assert wrote.returncode == 0, wrote.stderr
    checked = subprocess.run([sys.executable, str(SYNC), "--check", *root], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    assert "- awszz" in (tmp_path / "deploy" / "opsramp-aws-operator.yaml").read_text()


def test_deploy_is_the_default_render() -> None:
    """deploy/opsramp-aws-operator.yaml is the chart with default values: the operator's objects, the CRD and the
    guardrails' admission policy with its binding."""
    docs = load_docs((DEPLOY / "opsramp-aws-operator.yaml").read_text())
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
