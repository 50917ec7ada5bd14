"""In-process sandbox pieces for pytest: start the emulators once per session and hand tests their endpoints."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .aws import MotoHandle, start_moto
from .kube import KubeEmulator, load_crds
from .launcher import AWS_REGION, OPSRAMP_AWS_ACCOUNT_ID, TENANT_ID, project_crd_files
from .realkube import running_control_plane

__all__ = ["Sandbox", "isolate_aws_env", "running_control_plane", "running_kube", "running_sandbox"]


@contextmanager
def running_kube(crds: Iterable[dict[str, Any]] | None = None, **options: Any) -> Iterator[KubeEmulator]:
    """A started KubeEmulator; `crds=None` registers the project's crds/*.yaml."""
    chosen = list(crds) if crds is not None else load_crds(project_crd_files())
    emulator = KubeEmulator(crds=chosen, **options)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@dataclass
class Sandbox:
    """The running pieces and the same values `opsramp-sandbox up` writes to DIR/env."""

    kube: KubeEmulator
    moto: MotoHandle
    opsramp: Any  # opsramp_sandbox.opsramp.OpsRampEmulator
    kubeconfig: Path
    env: dict[str, str] = field(repr=False)

    def __getattr__(self, name: str) -> str:
        # sandbox.OPSRAMP_ENDPOINT etc. read like the env file's keys.
        env = self.__dict__.get("env", {})
        if name in env:
            return str(env[name])
        raise AttributeError(name)


@contextmanager
def running_sandbox(
    *, crds: Iterable[dict[str, Any]] | None = None, directory: Path | None = None
) -> Iterator[Sandbox]:
    """Kubernetes emulator + moto + OpsRamp emulator in this process, wired like `opsramp-sandbox up`."""
    from .opsramp import ApiClient, OpsRampEmulator

    with tempfile.TemporaryDirectory(prefix="opsramp-sandbox-") as scratch:
        base = directory or Path(scratch)
        base.mkdir(parents=True, exist_ok=True)
        with running_kube(crds) as kube:
            moto = start_moto(0)
            client = ApiClient(TENANT_ID, f"sandbox-{secrets.token_hex(4)}", secrets.token_urlsafe(24))
            opsramp = OpsRampEmulator(
                clients=[client], opsramp_aws_account_id=OPSRAMP_AWS_ACCOUNT_ID, iam_endpoint_url=moto.url
            )
            opsramp.start()
            try:
                kubeconfig = base / "kubeconfig"
                kube.write_kubeconfig(kubeconfig)
                env = {
                    "SANDBOX_KUBE": "emulator",
                    "KUBECONFIG": str(kubeconfig),
                    "OPERATOR_KUBECONFIG": str(kubeconfig),
                    "AWS_ENDPOINT_URL": moto.url,
                    "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": AWS_REGION,
                    "OPSRAMP_ENDPOINT": opsramp.url,
                    "OPSRAMP_TENANT_ID": TENANT_ID,
                    "OPSRAMP_CLIENT_ID": client.client_id,
                    "OPSRAMP_CLIENT_SECRET": client.client_secret,
                    "OPSRAMP_AWS_ACCOUNT_ID": OPSRAMP_AWS_ACCOUNT_ID,
                    "OPSRAMP_ADMIN_URL": opsramp.admin_url,
                }
                yield Sandbox(kube=kube, moto=moto, opsramp=opsramp, kubeconfig=kubeconfig, env=env)
            finally:
                opsramp.stop()
                moto.stop()


# Variables that would point boto3 at the machine's own AWS setup instead of the test's moto server.
_AWS_MACHINE_VARIABLES = (
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_IAM",
    "AWS_ENDPOINT_URL_STS",
    "AWS_SESSION_TOKEN",
)


def isolate_aws_env(monkeypatch: Any, directory: Path) -> None:
    """Credentials and config only from the environment (moto's test key), never from the machine.

    `monkeypatch` is pytest's fixture; `directory` a temporary folder for the (absent) config files.
    """
    for name in _AWS_MACHINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", AWS_REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(directory / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(directory / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
