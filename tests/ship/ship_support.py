"""Paths and small manifest helpers shared by the packaging tests (a plain module: conftest is not importable)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "opsramp-aws-operator"
NAMESPACED_VALUES = CHART / "ci" / "namespaced-values.yaml"
CRD_FILE = ROOT / "crds" / "awsintegrations.integrations.opsramp.com.yaml"
DEPLOY = ROOT / "deploy"
ARGOCD = DEPLOY / "argocd"
CUSTOMIZATION = ARGOCD / "resource_customizations" / "integrations.opsramp.com" / "AWSIntegration"
RELEASE = "opsramp-aws-operator"
NAMESPACE = "opsramp-system"

Manifest = dict[str, Any]
# render(*values_files, sets=(...), namespace=...) -> the documents helm template printed.
Renderer = Callable[..., list[Manifest]]


def load_docs(text: str) -> list[Manifest]:
    """Parse a multi-document YAML stream, dropping empty documents."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind(docs: list[Manifest], kind: str) -> list[Manifest]:
    """The documents of one kind."""
    return [doc for doc in docs if doc.get("kind") == kind]


def one(docs: list[Manifest], kind: str) -> Manifest:
    """The single document of one kind (fails when there is not exactly one)."""
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]
