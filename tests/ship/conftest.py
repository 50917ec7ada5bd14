"""Shared fixtures for the packaging tests: the helm/kubectl binaries, the chart rendered per values file, and
real control planes (fresh, or with the chart installed)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from real_cluster import RealCluster
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


@pytest.fixture
def real_cluster(tmp_path: Path) -> Iterator[RealCluster]:
    """A fresh real control plane (etcd, kube-apiserver, kube-controller-manager) with nothing installed."""
    cluster = RealCluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def chart_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    """A real control plane with the chart installed by `helm install` (default values), shared by a module.

    Whatever the chart installs is there and enforced: the CRD (schema, CEL rules), the RBAC, and any admission
    policy it ships. Tests must leave it as they found it (use their own namespaces).
    """
    cluster = RealCluster(tmp_path_factory.mktemp("chart-cluster"))
    try:
        cluster.install_chart()
        yield cluster
    finally:
        cluster.stop()
