"""`opsramp-sandbox up/status/down` as a user runs it, and the in-process sandbox for pytest."""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import threading
import urllib.parse
import uuid
from pathlib import Path

import boto3
import pytest
import requests
import yaml

from opsramp_sandbox import launcher
from opsramp_sandbox.testing import running_sandbox
from opsramp_sandbox.tools import ensure_kubectl

REPO = Path(__file__).resolve().parents[3]
ENV_KEYS = {
    "SANDBOX_KUBE", "KUBECONFIG", "OPERATOR_KUBECONFIG",
    "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
    "OPSRAMP_ENDPOINT", "OPSRAMP_TENANT_ID", "OPSRAMP_CLIENT_ID", "OPSRAMP_CLIENT_SECRET",
    "OPSRAMP_AWS_ACCOUNT_ID", "OPSRAMP_ADMIN_URL",
}  # fmt: skip


def cli(source_root: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run `opsramp-sandbox` with the code of `source_root` (a checkout) first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(source_root / "sandbox"), str(source_root / "operator")])
    return subprocess.run(
        [sys.executable, "-m", "opsramp_sandbox.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def listening(url: str) -> bool:
    """Whether something accepts connections at the URL's host:port."""
    parts = urllib.parse.urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((parts.hostname or "", parts.port or 0)) == 0


def alive(pid: int) -> bool:
    """Whether a process with this pid exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def lifecycle(source_root: Path, directory: Path, results: dict[str, object], operator: bool) -> None:
    """up → status → down, recording what a test needs to check afterwards."""
    up = cli(source_root, "up", "--dir", str(directory), "--kube", "emulator", *([] if operator else ["--no-operator"]))
    results["up"] = up
    results["env"] = launcher.read_env(directory)
    results["pids"] = [c.pid for c in launcher.read_state(directory)]
    results["names"] = [c.name for c in launcher.read_state(directory)]
    results["listening_before"] = [listening(u) for k, u in launcher.read_env(directory).items()
                                   if k in ("AWS_ENDPOINT_URL", "OPSRAMP_ENDPOINT")]  # fmt: skip
    kube_url = next((c.url for c in launcher.read_state(directory) if c.name == "kube"), "")
    results["kube_url"] = kube_url
    results["crd_listed"] = (
        bool(kube_url)
        and requests.get(f"{kube_url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions", timeout=5).json()[
            "items"
        ]
        != []
    )
    results["status"] = cli(source_root, "status", "--dir", str(directory))
    results["down"] = cli(source_root, "down", "--dir", str(directory))
    results["status_after"] = cli(source_root, "status", "--dir", str(directory))


def test_up_status_down_two_sandboxes_in_parallel_leave_nothing_behind(tmp_path: Path) -> None:
    """A fresh clone and this tree each bring a sandbox up at once; down leaves no process and no port."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=60)
    runs: dict[str, dict[str, object]] = {"clone": {}, "tree": {}}
    threads = [
        threading.Thread(target=lifecycle, args=(clone, tmp_path / "a", runs["clone"], True)),
        threading.Thread(target=lifecycle, args=(REPO, tmp_path / "b", runs["tree"], False)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    urls = []
    for name, result in runs.items():
        up = result["up"]
        assert isinstance(up, subprocess.CompletedProcess) and up.returncode == 0, (name, up)
        env = result["env"]
        assert isinstance(env, dict) and set(env) == ENV_KEYS, name
        assert result["listening_before"] == [True, True], name
        assert result["crd_listed"], f"{name}: the project's CRD was not applied"
        status = result["status"]
        assert isinstance(status, subprocess.CompletedProcess), name
        assert status.returncode == 0, (name, status.stdout)
        assert "kube" in status.stdout and "running" in status.stdout
        after = result["status_after"]
        assert isinstance(after, subprocess.CompletedProcess) and after.returncode == 1
        pids = result["pids"]
        assert isinstance(pids, list) and not any(alive(pid) for pid in pids), f"{name}: process left behind"
        urls += [env["AWS_ENDPOINT_URL"], env["OPSRAMP_ENDPOINT"], str(result["kube_url"])]
    assert "operator" in runs["clone"]["names"]  # type: ignore[operator]
    assert "operator" not in runs["tree"]["names"]  # type: ignore[operator]
    assert len(set(urls)) == 6, "two sandboxes shared a port"
    assert not any(listening(url) for url in urls), "a port is still open after down"
    assert (tmp_path / "a" / "logs" / "kube.log").is_file()


def test_auto_takes_the_real_control_plane_only_when_built_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--kube auto` (the default) runs the real control plane when its build is cached (make test builds it first),
    the emulator otherwise, never building; the line `up` prints first says which and why."""
    assert launcher.default_kube() == "auto" or os.environ.get(launcher.KUBE_ENV)
    kind, why = launcher.choose_kube("auto")
    assert kind == "real" and why.startswith("Kubernetes: the real control plane, kube-apiserver v1.37")
    monkeypatch.setenv("OPSRAMP_CONTROLPLANE_CACHE", str(tmp_path / "empty-cache"))
    kind, why = launcher.choose_kube("auto")
    assert kind == "emulator" and "not built yet: `make controlplane`" in why
    assert launcher.choose_kube("real")[1].startswith("Kubernetes: the real control plane, not built yet: building")
    monkeypatch.setenv("PATH", str(tmp_path / "no-go-here"))
    kind, why = launcher.choose_kube("auto")
    assert kind == "emulator" and "no Go toolchain" in why
    with pytest.raises(launcher.LauncherError, match="`go`"):
        launcher.choose_kube("real")
    assert launcher.choose_kube("emulator")[0] == "emulator"


def test_status_without_a_sandbox_fails(tmp_path: Path) -> None:
    """status in a directory with no sandbox exits 1 and says so."""
    result = cli(REPO, "status", "--dir", str(tmp_path))
    assert result.returncode == 1 and "no sandbox" in result.stdout


def test_running_sandbox_wires_kube_moto_and_opsramp() -> None:
    """The in-process sandbox serves Kubernetes with the project CRD, IAM, and OpsRamp tokens for its client."""
    with running_sandbox() as sandbox:
        assert set(sandbox.env) == ENV_KEYS
        crds = requests.get(
            f"{sandbox.kube.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions", timeout=5
        ).json()["items"]
        assert "awsintegrations.integrations.opsramp.com" in [c["metadata"]["name"] for c in crds]
        iam = boto3.client(
            "iam", endpoint_url=sandbox.AWS_ENDPOINT_URL, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        # moto's backend is process-global, so other tests' roles may be here too: prove a round trip instead.
        name = f"launcher-{uuid.uuid4().hex[:8]}"
        iam.create_role(RoleName=name, AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[]}')
        assert iam.get_role(RoleName=name)["Role"]["RoleName"] == name
        iam.delete_role(RoleName=name)
        token = requests.post(
            f"{sandbox.OPSRAMP_ENDPOINT}/tenancy/auth/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": sandbox.OPSRAMP_CLIENT_ID,
                "client_secret": sandbox.OPSRAMP_CLIENT_SECRET,
            },
            timeout=5,
        )
        assert token.status_code == 200 and token.json()["access_token"]


def processes_under(directory: Path) -> list[int]:
    """Pids of live processes whose command line names `directory` (etcd, kube-apiserver, ... started there)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(directory) in cmdline and alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def test_up_with_the_real_control_plane_serves_kubectl_and_runs_the_operator_as_its_service_account(
    tmp_path: Path,
) -> None:
    """`up --kube real`: the env file and status say so, kubectl works as on a cluster (`create namespace`, which
    sends protobuf), the operator is the chart's ServiceAccount and brings a resource to Ready; `down` leaves no
    etcd, kube-apiserver or kube-controller-manager behind."""
    directory = tmp_path / "real"
    up = cli(REPO, "up", "--dir", str(directory), "--kube", "real", timeout=300)
    try:
        assert up.returncode == 0, up.stderr
        env = launcher.read_env(directory)
        assert set(env) == ENV_KEYS and env["SANDBOX_KUBE"] == "real"
        assert env["OPERATOR_KUBECONFIG"] != env["KUBECONFIG"]
        status = cli(REPO, "status", "--dir", str(directory))
        assert status.returncode == 0 and "kube (real)" in status.stdout, status.stdout
        kubectl = [str(ensure_kubectl()), f"--kubeconfig={env['KUBECONFIG']}"]
        run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=60, check=False)
        created = run([*kubectl, "create", "namespace", "from-kubectl"])
        assert created.returncode == 0, created.stderr
        whoami = run([str(ensure_kubectl()), f"--kubeconfig={env['OPERATOR_KUBECONFIG']}", "auth", "whoami"])
        assert "system:serviceaccount:opsramp-system:opsramp-aws-operator" in whoami.stdout, whoami.stdout
        # The External ID the emulated OpsRamp console shows, as a user copies it into a Secret.
        console = requests.get(f"{env['OPSRAMP_ADMIN_URL']}/tenants/{env['OPSRAMP_TENANT_ID']}/console", timeout=10)
        manifest = [
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "from-kubectl"},
             "stringData": {"clientId": env["OPSRAMP_CLIENT_ID"], "clientSecret": env["OPSRAMP_CLIENT_SECRET"]}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "external-id", "namespace": "from-kubectl"},
             "stringData": {"externalId": console.json()["externalId"]}},
            {"apiVersion": "integrations.opsramp.com/v1alpha1", "kind": "AWSIntegration",
             "metadata": {"name": "demo", "namespace": "from-kubectl"},
             "spec": {"regions": ["us-east-1"], "externalIdSecretRef": {"name": "external-id"},
                      "opsramp": {"endpoint": env["OPSRAMP_ENDPOINT"], "tenantId": env["OPSRAMP_TENANT_ID"],
                                  "awsAccountId": env["OPSRAMP_AWS_ACCOUNT_ID"],
                                  "credentialsSecretRef": {"name": "creds"}}}},
        ]  # fmt: skip
        applied = run([*kubectl, "apply", "-f", "-"], input=yaml.safe_dump_all(manifest))
        assert applied.returncode == 0, applied.stderr
        waited = run([*kubectl, "-n", "from-kubectl", "wait", "--for=condition=Ready", "awsintegration/demo",
                      "--timeout=120s"], timeout=150)  # fmt: skip
        assert waited.returncode == 0, (waited.stderr, (directory / "logs" / "operator.log").read_text()[-3000:])
    finally:
        down = cli(REPO, "down", "--dir", str(directory))
    assert down.returncode == 0 and "kube" in down.stdout
    assert processes_under(directory) == [], "a control-plane process outlived `down`"
