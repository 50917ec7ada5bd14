"""A real control plane for the packaging tests: kubectl and helm against kube-apiserver, as a user runs them.

`RealCluster` wraps `opsramp_sandbox.realkube.ControlPlane` with the admin's kubeconfig and runners for kubectl
and helm. Fixtures (tests/ship/conftest.py) give a fresh one per test (`real_cluster`) or one per module with
the chart installed by `helm install` (`chart_cluster`), e.g. for admission-policy tests:

    def test_something_is_refused(chart_cluster: RealCluster) -> None:
        result = chart_cluster.kubectl("apply", "-f", "-", stdin=manifest, check=False)
        assert result.returncode != 0 and "denied" in result.stderr
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml
from ship_support import CHART, NAMESPACE, RELEASE, Manifest

from opsramp_sandbox.realkube import ControlPlane
from opsramp_sandbox.tools import ensure_helm, ensure_kubectl

CRD_NAME = "awsintegrations.integrations.opsramp.com"


class RealCluster:
    """A started ControlPlane in `directory` plus kubectl/helm runners using its admin kubeconfig."""

    def __init__(self, directory: Path, crds: list[Manifest] | None = None) -> None:
        self.directory = directory
        self.plane = ControlPlane(directory / "kube").start(crds=crds or [])
        self.kubeconfig = self.plane.write_kubeconfig(directory / "kubeconfig")
        # helm keeps its cache and config under HOME: a private one per cluster.
        home = directory / "home"
        home.mkdir(exist_ok=True)
        self.env = {"KUBECONFIG": str(self.kubeconfig), "HOME": str(home), "PATH": os.environ.get("PATH", "")}

    def stop(self) -> None:
        """Stop the control plane."""
        self.plane.stop()

    def run(
        self, binary: Path, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a tool against the cluster; with `check`, fail with its output unless it succeeds."""
        result = subprocess.run(
            [str(binary), *args], input=stdin, env=self.env, capture_output=True, text=True, timeout=180, check=False
        )
        if check:
            assert result.returncode == 0, f"{binary.name} {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl 1.37 as the admin."""
        return self.run(ensure_kubectl(), *args, stdin=stdin, check=check)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run helm 4 as the admin."""
        return self.run(ensure_helm(), *args, check=check)

    def get(self, kind: str, name: str = "", namespace: str | None = None) -> Any:
        """`kubectl get -o json` of one object or a list (None when it does not exist)."""
        where = ["-n", namespace] if namespace else []
        result = self.kubectl("get", kind, *([name] if name else []), *where, "-o", "json", check=False)
        if result.returncode != 0:
            assert "NotFound" in result.stderr, result.stderr
            return None
        return json.loads(result.stdout)

    def install_chart(self, *args: str) -> None:
        """`helm install` of the chart into NAMESPACE (namespace created); returns once its CRD serves."""
        self.helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace", *args)
        self.plane.wait_established(CRD_NAME)

    def apply(self, objects: list[Manifest], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`kubectl apply -f -` of objects."""
        return self.kubectl("apply", *args, "-f", "-", stdin=yaml.safe_dump_all(objects), check=check)
