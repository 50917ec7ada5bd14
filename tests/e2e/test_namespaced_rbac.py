"""Namespaced mode end to end on a real API server: the operator runs as the chart's ServiceAccount with only
the chart's namespaced RBAC (a Role per watched namespace, no Secret delete), and still does everything.

The real control plane (etcd, kube-apiserver and kube-controller-manager built from source, issue 14) judges
every request by RBAC, so a verb the chart forgot fails here; the garbage collector deletes the generated External
ID Secret with its AWSIntegration, which is why the operator needs no `delete` on Secrets.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from e2e_harness import (
    ALL_OPERATORS,
    CLIENT_ID,
    CRD,
    OPSRAMP_ACCOUNT,
    TENANT,
    Kube,
    Operator,
    Sandbox,
    delete_and_wait,
    integration_resource,
    roles_owned_by,
    wait_condition,
    wait_for,
    wait_ready,
)

from opsramp_sandbox import tools
from opsramp_sandbox.aws import start_moto
from opsramp_sandbox.opsramp import ApiClient, OpsRampEmulator

realkube = pytest.importorskip("opsramp_sandbox.realkube", reason="needs the real control plane (issue 14)")

pytestmark = pytest.mark.e2e

WATCHED = ("team-a", "team-b")
VALUES = {"rbac": {"namespaced": True}, "watchNamespaces": list(WATCHED)}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, Path, str]]:
    """A real control plane, moto and an OpsRamp emulator; the operator's kubeconfig holds the chart's SA token."""
    directory = tmp_path_factory.mktemp("namespaced")
    crd = yaml.safe_load(CRD.read_text())
    secret = "ns-secret-" + uuid.uuid4().hex
    with realkube.running_control_plane(directory / "plane", crds=[crd]) as plane:
        for namespace in (*WATCHED, "elsewhere"):
            plane.ensure_namespace(namespace)
        token_config = realkube.install_operator_identity(
            plane, directory / "operator.kubeconfig", realkube.chart_rbac(VALUES)
        )
        moto = start_moto()
        opsramp = OpsRampEmulator(
            clients=[ApiClient(TENANT, CLIENT_ID, secret)],
            opsramp_aws_account_id=OPSRAMP_ACCOUNT,
            iam_endpoint_url=moto.url,
        )
        opsramp.start()
        try:
            yield Sandbox(None, moto, opsramp, plane.admin_kubeconfig, secret, directory), token_config, secret
        finally:
            opsramp.stop()
            moto.stop()


def can_i(kubeconfig: Path, *args: str) -> bool:
    result = subprocess.run(
        [str(tools.ensure_kubectl()), f"--kubeconfig={kubeconfig}", "auth", "can-i", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() == "yes"


def test_the_chart_grants_no_secret_delete_and_nothing_outside_the_watched_namespaces(
    world: tuple[Sandbox, Path, str],
) -> None:
    """As the chart's ServiceAccount: Secrets readable in the watched namespaces only, deletable nowhere."""
    _, token_config, _ = world
    assert can_i(token_config, "get", "secrets", "-n", "team-a")
    assert not can_i(token_config, "get", "secrets", "-n", "elsewhere")
    assert not can_i(token_config, "delete", "secrets", "-n", "team-a")
    assert not can_i(token_config, "list", "secrets", "-A")


def test_the_operator_reconciles_and_cleans_up_with_namespaced_rbac(world: tuple[Sandbox, Path, str]) -> None:
    """Ready, a changed credentials Secret seen through the label-selected watch, delete cleans up and the
    generated Secret goes with the resource."""
    sandbox, token_config, secret = world
    kube = Kube(sandbox.kubeconfig)
    kube.apply_secret("team-a", "opsramp-api-client", {"clientId": CLIENT_ID, "clientSecret": secret})
    operator = Operator(
        sandbox,
        extra_env={
            "KUBECONFIG": str(token_config),
            "OPERATOR_NAMESPACES": ",".join(WATCHED),
            # A slow backoff: only the Secret watch can explain a quick recovery below.
            "OPERATOR_ATTENTION_BACKOFF_SECONDS": "300",
            "OPERATOR_ATTENTION_BACKOFF_MAX_SECONDS": "600",
        },
    )
    ALL_OPERATORS.append(operator)
    operator.start()
    try:
        kube.create(integration_resource("team-a", "prod", sandbox.opsramp.url))
        obj = wait_ready(kube, "team-a", "prod", timeout=120)
        uid = obj["metadata"]["uid"]
        generated = obj["status"]["externalIdSecretName"]
        meta = kube.core.read_namespaced_secret("opsramp-api-client", "team-a").metadata
        labels = (meta.labels if meta is not None else None) or {}
        assert labels.get("integrations.opsramp.com/watch") == "true"

        # Credentials revoked, then fixed: both seen within seconds through the label-selected watch.
        kube.apply_secret("team-a", "opsramp-api-client", {"clientId": CLIENT_ID, "clientSecret": "revoked-Aa1" * 3})
        kube.patch_spec("team-a", "prod", {"regions": ["eu-west-1"]})
        wait_condition(kube, "team-a", "prod", "Stalled", "True", "OpsRampAuthFailed", timeout=60)
        kube.apply_secret("team-a", "opsramp-api-client", {"clientId": CLIENT_ID, "clientSecret": secret})
        wait_ready(kube, "team-a", "prod", timeout=60)

        delete_and_wait(kube, "team-a", "prod", timeout=90)
        assert roles_owned_by(sandbox, uid) == []
        assert sandbox.opsramp.integrations(TENANT) == []

        def gone() -> bool:
            names = [
                s.metadata.name for s in kube.core.list_namespaced_secret("team-a").items if s.metadata is not None
            ]
            return generated not in names

        wait_for("the generated Secret garbage-collected", gone, timeout=90)
        assert "Traceback" not in operator.output()
    finally:
        operator.stop()
