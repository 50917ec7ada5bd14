"""The real kubectl (1.37) as a client of the emulator: apply, get, patch, label selectors, tables, delete."""

from __future__ import annotations

import copy
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kube_support import WIDGET_CRD

from opsramp_sandbox.kube import KubeEmulator, load_crds
from opsramp_sandbox.launcher import project_crd_files
from opsramp_sandbox.tools import ensure_kubectl

pytestmark = pytest.mark.skipif(os.environ.get("KUBE_EMULATOR") == "kmock", reason="project emulator only")


@pytest.fixture
def kubectl(tmp_path: Path) -> Iterator[tuple[KubeEmulator, object]]:
    """An empty emulator and a function running kubectl against it."""
    binary = ensure_kubectl()
    with KubeEmulator() as emulator:
        kubeconfig = tmp_path / "kubeconfig"
        emulator.write_kubeconfig(kubeconfig)

        def run(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
            result = subprocess.run(
                [str(binary), f"--kubeconfig={kubeconfig}", "--request-timeout=10s", *args],
                input=stdin, capture_output=True, text=True, timeout=30, check=False,
                env={"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "")},
            )  # fmt: skip
            if check:
                assert result.returncode == 0, result.stderr
            return result

        yield emulator, run


def widget_yaml(name: str, size: int, labels: dict[str, str] | None = None) -> str:
    body = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"size": size}}  # fmt: skip
    return yaml.safe_dump(body)


def test_kubectl_apply_crd_then_cr_and_get_yaml(kubectl: tuple[KubeEmulator, object]) -> None:
    """kubectl apply registers a CRD over HTTP, applies a CR (twice: create then patch) and reads it back."""
    _, run = kubectl
    run("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(copy.deepcopy(WIDGET_CRD)))  # type: ignore[operator]
    run("apply", "--validate=false", "-f", "-", stdin=widget_yaml("w1", 1))  # type: ignore[operator]
    run("apply", "--validate=false", "-f", "-", stdin=widget_yaml("w1", 3))  # type: ignore[operator]
    got = yaml.safe_load(run("get", "widgets", "w1", "-o", "yaml").stdout)  # type: ignore[operator]
    assert got["spec"] == {"size": 3, "color": "red"} and got["metadata"]["generation"] == 2


def test_kubectl_patch_label_selector_and_delete(kubectl: tuple[KubeEmulator, object]) -> None:
    """kubectl patch --type=merge, get -l, and delete (which waits for the object to go) all work."""
    _, run = kubectl
    run("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(copy.deepcopy(WIDGET_CRD)))  # type: ignore[operator]
    run("apply", "--validate=false", "-f", "-", stdin=widget_yaml("a", 1, {"app": "alpha"}))  # type: ignore[operator]
    run("apply", "--validate=false", "-f", "-", stdin=widget_yaml("b", 1, {"app": "beta"}))  # type: ignore[operator]
    run("patch", "widget", "a", "--type=merge", "-p", '{"spec":{"size":5}}')  # type: ignore[operator]
    assert run("get", "widgets", "a", "-o", "jsonpath={.spec.size}").stdout == "5"  # type: ignore[operator]
    selected = run("get", "widgets", "-l", "app=beta", "-o", "name").stdout.split()  # type: ignore[operator]
    assert selected == ["widget.example.com/b"]
    run("delete", "widget", "a", "--timeout=10s")  # type: ignore[operator]
    missing = run("get", "widget", "a", check=False)  # type: ignore[operator]
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_kubectl_core_kinds_namespaces_and_secrets(kubectl: tuple[KubeEmulator, object]) -> None:
    """kubectl finds core kinds through discovery: apply a namespace and a secret, read them back.

    (Imperative `kubectl create namespace` sends protobuf, which the emulator does not decode.)
    """
    _, run = kubectl
    manifest = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "team-a"},
         "stringData": {"clientId": "abc"}},
    ]  # fmt: skip
    run("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump_all(manifest))  # type: ignore[operator]
    assert "team-a" in run("get", "namespaces", "-o", "name").stdout  # type: ignore[operator]
    data = run("-n", "team-a", "get", "secret", "creds", "-o", "jsonpath={.data.clientId}").stdout  # type: ignore[operator]
    assert data == "YWJj"


def test_kubectl_get_awsintegrations_prints_printer_columns(tmp_path: Path) -> None:
    """`kubectl get awsintegrations` prints the project CRD's columns from the server's Table answer."""
    binary = ensure_kubectl()
    crds = load_crds(project_crd_files())
    assert crds, "crds/ holds no CRD: run `make crds`"
    with KubeEmulator(crds=crds) as emulator:
        kubeconfig = tmp_path / "kubeconfig"
        emulator.write_kubeconfig(kubeconfig)
        plural = emulator.store.resolve("integrations.opsramp.com", "v1alpha1", "awsintegrations")
        emulator.call(
            emulator.store.create, plural, "default",
            {"metadata": {"name": "demo"}, "spec": {"regions": ["us-east-1"], "opsramp": {
                "endpoint": "https://x.example.com", "tenantId": "client_1",
                "credentialsSecretRef": {"name": "creds"}}}},
            field_validation="Ignore",
        )  # fmt: skip
        result = subprocess.run(
            [str(binary), f"--kubeconfig={kubeconfig}", "get", "awsintegrations"],
            capture_output=True, text=True, timeout=30, env={"HOME": str(tmp_path)}, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0].split()
    assert header[:3] == ["NAME", "READY", "REASON"] and "AGE" in header
    assert result.stdout.splitlines()[1].startswith("demo")
