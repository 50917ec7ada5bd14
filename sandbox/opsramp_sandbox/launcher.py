"""Start, inspect and stop the sandbox (Kubernetes emulator, moto, OpsRamp emulator, operator) as processes."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_FILE = "sandbox.json"
ENV_FILE = "env"
TENANT_ID = "client_1"
# OpsRamp's own AWS account in the sandbox: deliberately not moto's account (123456789012), as in real life.
OPSRAMP_AWS_ACCOUNT_ID = "999988887777"
AWS_REGION = "us-east-1"
READY_TIMEOUT = 30.0
# The real control plane starts etcd, kube-apiserver and kube-controller-manager and applies the chart's RBAC (and
# may first fetch helm and kubectl): minutes on a first run on a loaded machine, seconds afterwards.
REAL_KUBE_READY_TIMEOUT = 300.0
# Which Kubernetes `up` starts: "emulator" (the project's, Python only), "real" (etcd + kube-apiserver +
# kube-controller-manager built from source, see opsramp_sandbox.controlplane; built on the spot when Go is there and
# the cache has no build, announced first) or "auto" (real when its binaries are already built, else the emulator: it
# never starts a build of many minutes unasked). The default comes from this variable, else "auto".
KUBE_ENV = "OPSRAMP_SANDBOX_KUBE"
KUBE_CHOICES = ("emulator", "real", "auto")
STOP_TIMEOUT = 5.0
# Components `status` requires; the operator is optional (--no-operator, or the stub that exits at once).
REQUIRED = ("moto", "opsramp", "kube")


class LauncherError(Exception):
    """Something the user must see; never carries a secret."""


@dataclass
class Component:
    """One started process and how to recognise it again."""

    name: str
    pid: int
    start_time: str
    log: str
    url: str = ""
    exited: int | None = None  # exit code seen while `up` still watched it
    kind: str = ""  # for `kube`: "emulator" or "real"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "start_time": self.start_time, "log": self.log,
                "url": self.url, "exited": self.exited, "kind": self.kind}  # fmt: skip


def project_crd_files(crd_dir: Path | None = None) -> list[Path]:
    """The project's CRD files (`crds/*.yaml` of the source tree), sorted."""
    directory = crd_dir or REPO_ROOT / "crds"
    return sorted(directory.glob("*.yaml")) if directory.is_dir() else []


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def is_running(component: Component) -> bool:
    """Whether the very process we started is still alive (not a zombie, not a reused pid)."""
    try:
        stat = Path(f"/proc/{component.pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state != "Z" and _start_time(component.pid) == component.start_time


def _spawn(
    name: str, cmd: list[str], directory: Path, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], Component]:
    log_path = directory / "logs" / f"{name}.log"
    with open(log_path, "wb") as log:
        # A session of its own: `down` stops the whole process group, and the terminal's Ctrl-C does not.
        process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=directory, start_new_session=True,
        )  # fmt: skip
    component = Component(name, process.pid, _start_time(process.pid), str(log_path))
    (directory / f"{name}.pid").write_text(f"{process.pid}\n")
    return process, component


def _wait_ready(process: subprocess.Popen[bytes], component: Component, timeout: float = READY_TIMEOUT) -> str:
    """The URL from the component's `READY <url>` line, or an error quoting the end of its log."""
    deadline = time.monotonic() + timeout
    log = Path(component.log)
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("READY "):
                return line.split(" ", 1)[1].strip()
        if process.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise LauncherError(f"{component.name} exited with code {process.returncode}; log tail:\n{tail}")
        time.sleep(0.05)
    raise LauncherError(f"{component.name} did not become ready within {timeout:.0f}s (see {log})")


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    # moto must not load AWS-managed policies (slow start, and tests create what they need).
    env.pop("MOTO_IAM_LOAD_MANAGED_POLICIES", None)
    sandbox_root = str(REPO_ROOT / "sandbox")
    operator_root = str(REPO_ROOT / "operator")
    extra = [p for p in (sandbox_root, operator_root) if Path(p).is_dir()]
    env["PYTHONPATH"] = os.pathsep.join([*extra, *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _write_state(directory: Path, components: list[Component]) -> None:
    state = {"components": [c.as_dict() for c in components]}
    (directory / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


def read_state(directory: Path) -> list[Component]:
    """The components `up` recorded in DIR, in start order."""
    path = directory / STATE_FILE
    if not path.is_file():
        return []
    return [Component(**item) for item in json.loads(path.read_text())["components"]]


def read_env(directory: Path) -> dict[str, str]:
    """DIR/env as a dict."""
    path = directory / ENV_FILE
    if not path.is_file():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def default_kube() -> str:
    """The `--kube` choice when none is given: $OPSRAMP_SANDBOX_KUBE, else "auto"."""
    return os.environ.get(KUBE_ENV) or "auto"


def choose_kube(choice: str) -> tuple[str, str]:
    """("emulator" or "real", one line saying why) for a `--kube` choice; never builds anything."""
    from . import controlplane

    if choice not in KUBE_CHOICES:
        raise LauncherError(f"--kube must be one of {', '.join(KUBE_CHOICES)}, not {choice!r}")
    if choice == "emulator":
        return "emulator", "Kubernetes: the project's emulator (--kube emulator)"
    found = controlplane.built()
    if found is not None:
        where = found["etcd"].parent
        return "real", f"Kubernetes: the real control plane, kube-apiserver {_kube_version()} (built, in {where})"
    has_go = shutil.which("go") is not None
    if choice == "real":
        if not has_go:
            raise LauncherError("--kube real: the control plane is not built and `go` (>= 1.26) is not on PATH")
        return "real", (
            "Kubernetes: the real control plane, not built yet: building it now (Go; the first build takes 7-15 "
            "minutes, later ones reuse the cache)"
        )
    if has_go:
        why = "the real control plane is not built yet: `make controlplane` builds it once, in 7-15 minutes"
    else:
        why = "no Go toolchain here to build the real control plane"
    return "emulator", f"Kubernetes: the project's emulator ({why})"


def _kube_version() -> str:
    from . import controlplane

    try:
        return controlplane.kubernetes_version()
    except controlplane.BuildError:
        return "1.37"


def resolve_kube(choice: str) -> str:
    """ "emulator" or "real" for a `--kube` choice; "real" builds the control plane first when Go can."""
    kind, _ = choose_kube(choice)
    if kind == "real":
        from . import controlplane

        try:
            controlplane.ensure_built(log=True)
        except controlplane.BuildError as exc:
            raise LauncherError(str(exc)) from exc
    return kind


def up(
    directory: Path, *, operator: bool = True, crd_dir: Path | None = None, kube: str | None = None
) -> dict[str, str]:
    """Start every component, write DIR/env and return its values; on failure stop what was started."""
    directory = directory.resolve()
    kind = resolve_kube(kube or default_kube())
    if any(is_running(c) for c in read_state(directory)):
        raise LauncherError(f"a sandbox is already running in {directory}; run `opsramp-sandbox down` first")
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    env = _python_env()
    components: list[Component] = []
    try:
        moto_cmd = [sys.executable, "-m", "opsramp_sandbox.launcher", "moto"]
        process, moto = _spawn("moto", moto_cmd, directory, env)
        components.append(moto)
        moto.url = _wait_ready(process, moto)

        client_id = f"sandbox-{secrets.token_hex(4)}"
        client_secret = secrets.token_urlsafe(24)
        # Credentials go through a private file, not the command line, where `ps` would show them.
        clients = directory / "opsramp-clients.json"
        clients.touch(mode=0o600)
        clients.write_text(json.dumps({"clients": [
            {"tenant_id": TENANT_ID, "client_id": client_id, "client_secret": client_secret}]}))  # fmt: skip
        opsramp_cmd = [
            sys.executable, "-m", "opsramp_sandbox.opsramp", "--port", "0", "--config", str(clients),
            "--opsramp-aws-account-id", OPSRAMP_AWS_ACCOUNT_ID, "--iam-endpoint", moto.url,
        ]  # fmt: skip
        process, opsramp = _spawn("opsramp", opsramp_cmd, directory, env)
        components.append(opsramp)
        opsramp.url = _wait_ready(process, opsramp)

        kubeconfig = directory / "kubeconfig"
        operator_kubeconfig = kubeconfig
        if kind == "real":
            # The operator connects as the chart's ServiceAccount (a TokenRequest token), never as the admin.
            operator_kubeconfig = directory / "operator.kubeconfig"
            kube_cmd = [sys.executable, "-m", "opsramp_sandbox.realkube", "--dir", str(directory / "kube"),
                        "--kubeconfig", str(kubeconfig), "--operator-kubeconfig", str(operator_kubeconfig)]  # fmt: skip
            timeout = REAL_KUBE_READY_TIMEOUT
        else:
            kube_cmd = [sys.executable, "-m", "opsramp_sandbox.kube", "--port", "0", "--kubeconfig", str(kubeconfig)]
            timeout = READY_TIMEOUT
        for crd in project_crd_files(crd_dir):
            kube_cmd += ["--crd", str(crd)]
        process, kube_component = _spawn("kube", kube_cmd, directory, env)
        components.append(kube_component)
        kube_component.url = _wait_ready(process, kube_component, timeout)
        kube_component.kind = kind

        values = {
            "SANDBOX_KUBE": kind,
            "KUBECONFIG": str(kubeconfig),
            "OPERATOR_KUBECONFIG": str(operator_kubeconfig),
            "AWS_ENDPOINT_URL": moto.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": AWS_REGION,
            "OPSRAMP_ENDPOINT": opsramp.url,
            "OPSRAMP_TENANT_ID": TENANT_ID,
            "OPSRAMP_CLIENT_ID": client_id,
            "OPSRAMP_CLIENT_SECRET": client_secret,
            "OPSRAMP_AWS_ACCOUNT_ID": OPSRAMP_AWS_ACCOUNT_ID,
            "OPSRAMP_ADMIN_URL": f"{opsramp.url}/_emulator",
        }
        env_path = directory / ENV_FILE
        env_path.touch(mode=0o600)
        env_path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))

        if operator:
            components.append(_start_operator(directory, env, values))
    except BaseException:
        _stop_all(components)
        _write_state(directory, [])
        raise
    finally:
        _write_state(directory, components)
    return values


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_operator(directory: Path, env: dict[str, str], values: dict[str, str]) -> Component:
    script = Path(sys.executable).with_name("opsramp-aws-operator")
    command = [str(script)] if script.exists() else [shutil.which("opsramp-aws-operator") or "opsramp-aws-operator"]
    operator_env = {
        **env,
        **values,
        "KUBECONFIG": values["OPERATOR_KUBECONFIG"],
        "OPERATOR_OPSRAMP_AWS_ACCOUNT_ID": values["OPSRAMP_AWS_ACCOUNT_ID"],
        # The guardrails send credentials only to OpsRamp's own domains: the sandbox adds its emulator by name.
        "OPERATOR_ALLOWED_OPSRAMP_HOSTS": f"*.opsramp.com,{urlsplit(values['OPSRAMP_ENDPOINT']).netloc}",
        # Free ports, so two sandboxes (and a real operator) can run side by side.
        "OPERATOR_HEALTH_PORT": str(_free_port()),
        "OPERATOR_METRICS_PORT": str(_free_port()),
        "OPERATOR_METRICS_ADDRESS": "127.0.0.1",
        "OPERATOR_LOG_FORMAT": "text",
        # The sandbox's IAM (moto) is consistent at once and its OpsRamp emulator has no propagation delay by
        # default: a short settle keeps the demo quick while still exercising the wait.
        "OPERATOR_ROLE_SETTLE_SECONDS": "2",
        "OPERATOR_RESYNC_INTERVAL_SECONDS": "60",
        **{k: v for k, v in os.environ.items() if k.startswith("OPERATOR_")},
    }
    process, component = _spawn("operator", command, directory, operator_env)
    # The operator has no READY line; give it a moment so an immediate exit shows in `status`.
    with contextlib.suppress(subprocess.TimeoutExpired):
        component.exited = process.wait(timeout=1.0)
    return component


def _stop_all(components: list[Component]) -> list[str]:
    """SIGTERM each live component's process group (newest first), then SIGKILL what lingers."""
    stopped = []
    live = [c for c in reversed(components) if is_running(c)]
    for component in live:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(component.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for component in live:
        while is_running(component) and time.monotonic() < deadline:
            _reap(component.pid)
            time.sleep(0.05)
        if is_running(component):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(component.pid, signal.SIGKILL)
            while is_running(component):
                _reap(component.pid)
                time.sleep(0.02)
        stopped.append(component.name)
    for component in components:
        _reap(component.pid)
    return stopped


def _reap(pid: int) -> None:
    """Collect a child's exit status when `up` and `down` run in one process (tests); others are not ours."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def down(directory: Path) -> list[str]:
    """Stop everything `up` started in DIR (by pid) and forget it; logs stay."""
    directory = directory.resolve()
    components = read_state(directory)
    stopped = _stop_all(components)
    for component in components:
        with contextlib.suppress(FileNotFoundError):
            (directory / f"{component.name}.pid").unlink()
    for name in (STATE_FILE, ENV_FILE, "opsramp-clients.json", "kubeconfig", "operator.kubeconfig"):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    return stopped


def status(directory: Path) -> tuple[bool, list[str]]:
    """(every required component runs, one line per component)."""
    components = read_state(directory.resolve())
    if not components:
        return False, [f"no sandbox recorded in {directory}"]
    lines = []
    running = set()
    for component in components:
        if is_running(component):
            running.add(component.name)
            state = "running"
        elif component.exited is not None:
            state = f"exited (code {component.exited})"
        else:
            state = "not running"
        url = f"  {component.url}" if component.url else ""
        name = f"{component.name} ({component.kind})" if component.kind else component.name
        lines.append(f"{name:<16} pid {component.pid:<8} {state}{url}  log {component.log}")
    return all(name in running for name in REQUIRED), lines


def serve_moto() -> int:
    """`python -m opsramp_sandbox.launcher moto`: moto's IAM/STS on a free port, printing READY <url>."""
    from .aws import start_moto

    handle = start_moto(0)
    print(f"READY {handle.url}", flush=True)
    stop = False

    def on_signal(_signum: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop:
        time.sleep(0.1)
    handle.stop()
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["moto"]:
        raise SystemExit(serve_moto())
    raise SystemExit("usage: python -m opsramp_sandbox.launcher moto")
