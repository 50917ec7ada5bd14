"""Shared fixtures for the packaging tests: the helm/kubectl binaries and the chart rendered per values file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ship_support import CHART, NAMESPACE, NAMESPACED_VALUES, RELEASE, Manifest, Renderer, load_docs

from opsramp_sandbox.tools import ensure_helm, ensure_kubectl


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary (fetched once into .tools/)."""
    return ensure_helm()


@pytest.fixture(scope="session")
def kubectl() -> Path:
    """The kubectl binary (fetched once into .tools/)."""
    return ensure_kubectl()


@pytest.fixture(scope="session")
def render(helm: Path) -> Renderer:
    """Render the chart with values files and --set pairs; raises CalledProcessError when helm refuses."""

    def _render(*values: Path, sets: tuple[str, ...] = (), namespace: str = NAMESPACE) -> list[Manifest]:
        cmd = [str(helm), "template", RELEASE, str(CHART), "--namespace", namespace]
        for path in values:
            cmd += ["--values", str(path)]
        for pair in sets:
            cmd += ["--set", pair]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return load_docs(out.stdout)

    return _render


@pytest.fixture(scope="session")
def default_docs(render: Renderer) -> list[Manifest]:
    """The chart rendered with its default values."""
    return render()


@pytest.fixture(scope="session")
def namespaced_docs(render: Renderer) -> list[Manifest]:
    """The chart rendered in namespaced mode (ci/namespaced-values.yaml)."""
    return render(NAMESPACED_VALUES)
