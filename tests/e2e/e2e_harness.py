"""The end-to-end harness: the sandbox (Kubernetes emulator, moto, OpsRamp emulator) and the real operator process.

The operator runs as a subprocess of the `opsramp-aws-operator` console script, exactly as in a pod, and talks
to every counterpart over HTTP. With `KUBECONFIG` pointing at a real cluster (and E2E_REAL_CLUSTER=1) the same
tests use that cluster instead of the emulator; AWS and OpsRamp stay emulated.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import kubernetes
import yaml
from kubernetes.client.exceptions import ApiException

from opsramp_sandbox.aws import MotoHandle, start_moto
from opsramp_sandbox.kube import KubeEmulator, load_crds
from opsramp_sandbox.opsramp import ApiClient, OpsRampEmulator

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "awsintegrations.integrations.opsramp.com.yaml"
GROUP, VERSION, PLURAL = "integrations.opsramp.com", "v1alpha1", "awsintegrations"
OPSRAMP_ACCOUNT = "999988887777"
TENANT = "client_1"
CLIENT_ID = "e2e-client"
AWS_ACCOUNT = "123456789012"  # moto's default account


def fast_settings() -> dict[str, str]:
    """Operator settings for tests: short intervals so drift and backoff show within seconds."""
    return {
        "OPERATOR_OPSRAMP_AWS_ACCOUNT_ID": OPSRAMP_ACCOUNT,
        "OPERATOR_LOG_FORMAT": "json",
        "OPERATOR_LOG_LEVEL": "INFO",
        "OPERATOR_HEALTH_PORT": "0",
        "OPERATOR_METRICS_PORT": "0",
        "OPERATOR_RESYNC_INTERVAL_SECONDS": "4",
        "OPERATOR_ROLE_SETTLE_SECONDS": "1",
        "OPERATOR_ATTENTION_BACKOFF_SECONDS": "1",
        "OPERATOR_ATTENTION_BACKOFF_MAX_SECONDS": "4",
    }


@dataclass
class Sandbox:
    kube: KubeEmulator | None
    moto: MotoHandle
    opsramp: OpsRampEmulator
    kubeconfig: Path
    client_secret: str
    workdir: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "AWS_ENDPOINT_URL": self.moto.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def iam(self) -> Any:
        return boto3.client(
            "iam",
            endpoint_url=self.moto.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@dataclass
class Operator:
    """The operator process; `start`, `stop` (SIGTERM) and `kill` (SIGKILL) like a pod's lifecycle."""

    sandbox: Sandbox
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def start(self) -> None:
        log_path = self.sandbox.workdir / f"operator-{len(self.logs)}.log"
        self.logs.append(log_path)
        env = {**os.environ, **self.sandbox.env, **fast_settings(), **self.extra_env}
        exe = Path(sys.executable).parent / "opsramp-aws-operator"
        with log_path.open("wb") as out:
            self.process = subprocess.Popen([str(exe)], env=env, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())


def start_sandbox(workdir: Path, *, propagation_delay: float = 0.5) -> Sandbox:
    client_secret = "e2e-secret-" + uuid.uuid4().hex
    kubeconfig = workdir / "kubeconfig"
    kube: KubeEmulator | None = None
    if os.environ.get("E2E_REAL_CLUSTER") == "1" and os.environ.get("KUBECONFIG"):
        kubeconfig = Path(os.environ["KUBECONFIG"])
    else:
        kube = KubeEmulator(crds=load_crds([CRD]))
        kube.start()
        kube.write_kubeconfig(kubeconfig)
    moto = start_moto()
    opsramp = OpsRampEmulator(
        clients=[ApiClient(TENANT, CLIENT_ID, client_secret)],
        opsramp_aws_account_id=OPSRAMP_ACCOUNT,
        iam_endpoint_url=moto.url,
        propagation_delay_seconds=propagation_delay,
        rate_window_seconds=60.0,
    )
    opsramp.start()
    return Sandbox(kube, moto, opsramp, kubeconfig, client_secret, workdir)


def stop_sandbox(sandbox: Sandbox) -> None:
    sandbox.opsramp.stop()
    sandbox.moto.stop()
    if sandbox.kube is not None:
        sandbox.kube.stop()


class Kube:
    """Thin helpers over the official client, as a user's scripts would use it."""

    def __init__(self, kubeconfig: Path) -> None:
        self.api_client = kubernetes.config.new_client_from_config(str(kubeconfig))
        self.core = kubernetes.client.CoreV1Api(self.api_client)
        self.custom = kubernetes.client.CustomObjectsApi(self.api_client)

    def namespace(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.core.create_namespace({"metadata": {"name": name}})
        return name

    def apply_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        body = {"metadata": {"name": name, "namespace": namespace}, "stringData": data}
        try:
            self.core.create_namespaced_secret(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.patch_namespaced_secret(
                name, namespace, {"data": None, "stringData": data} if False else {"stringData": data}
            )

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        ns = obj["metadata"]["namespace"]
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, obj)
        return result

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return result

    def patch_spec(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"spec": spec})

    def patch_meta(self, namespace: str, name: str, meta: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"metadata": meta})

    def delete(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def events(self, namespace: str, name: str) -> list[Any]:
        items = self.core.list_namespaced_event(namespace).items
        return [e for e in items if e.involved_object.name == name]


def condition(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == ctype:
            return dict(cond)
    return {}


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.3) -> Any:
    """Poll until `check()` is truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")


def integration_resource(
    namespace: str, name: str, endpoint: str, secret: str = "opsramp-api-client", **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AWSIntegration",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "regions": ["us-east-1"],
            "opsramp": {"endpoint": endpoint, "tenantId": TENANT, "credentialsSecretRef": {"name": secret}},
        },
    }
    body["spec"].update(spec)
    return body


def example_resource(namespace: str, endpoint: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "awsintegration.yaml").read_text())
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["opsramp"].update({"endpoint": endpoint, "tenantId": TENANT, "awsAccountId": OPSRAMP_ACCOUNT})
    return doc


def roles_named(sandbox: Sandbox, prefix: str) -> list[str]:
    roles = sandbox.iam().list_roles()["Roles"]
    return [r["RoleName"] for r in roles if r["RoleName"].startswith(prefix)]


def iter_lines(text: str) -> Iterator[str]:
    yield from text.splitlines()
