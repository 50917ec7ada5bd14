"""The real control plane's own promises: RBAC judges a ServiceAccount token, the audit log records it, a restart
keeps the data, a ConnectionCutter ends watches, and the build cache key follows the pins."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from opsramp_sandbox import controlplane
from opsramp_sandbox.realkube import (
    OPERATOR_NAMESPACE,
    ConnectionCutter,
    ControlPlane,
    install_operator_identity,
    running_control_plane,
)

SA = "probe"
ROLE: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SA, "namespace": OPERATOR_NAMESPACE}},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
     "metadata": {"name": SA, "namespace": OPERATOR_NAMESPACE},
     "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
     "metadata": {"name": SA, "namespace": OPERATOR_NAMESPACE},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SA},
     "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": OPERATOR_NAMESPACE}]},
]  # fmt: skip


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_control_plane(tmp_path_factory.mktemp("realkube")) as started:
        yield started


def token_session(kubeconfig: Path, plane: ControlPlane) -> requests.Session:
    """A session carrying the bearer token of a kubeconfig written by install_operator_identity."""
    token = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"]
    session = plane.session()
    session.cert = None
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def test_a_service_account_token_is_judged_by_rbac_and_audited(plane: ControlPlane, tmp_path: Path) -> None:
    """The TokenRequest token authenticates as the ServiceAccount; RBAC allows what its Role grants and refuses the
    rest; the audit log records both with their codes."""
    kubeconfig = install_operator_identity(plane, tmp_path / "probe.kubeconfig", ROLE)
    session = token_session(kubeconfig, plane)
    base = f"{plane.url}/api/v1/namespaces/{OPERATOR_NAMESPACE}"
    assert session.get(f"{base}/configmaps", timeout=10).status_code == 200
    assert session.get(f"{base}/secrets", timeout=10).status_code == 403
    user = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{SA}"
    codes = {(e["objectRef"]["resource"], e["responseStatus"]["code"]) for e in plane.audit_events(user)}
    assert {("configmaps", 200), ("secrets", 403)} <= codes


def test_restarting_the_apiserver_keeps_objects_and_ends_watches(plane: ControlPlane) -> None:
    """restart_apiserver(): the same URL answers again with every object kept, and open watch streams end."""
    base = f"{plane.url}/api/v1/namespaces/default/configmaps"
    created = plane.session().post(base, json={"metadata": {"name": "kept"}, "data": {"k": "v"}}, timeout=10)
    assert created.status_code == 201, created.text
    ended = threading.Event()

    def watch() -> None:
        try:
            with plane.session().get(base, params={"watch": "true"}, stream=True, timeout=(5, 120)) as response:
                for _ in response.iter_lines():
                    pass
        except requests.RequestException:
            pass
        ended.set()

    threading.Thread(target=watch, daemon=True).start()
    plane.restart_apiserver()
    assert ended.wait(30), "the watch outlived the apiserver"
    assert plane.session().get(f"{base}/kept", timeout=10).json()["data"] == {"k": "v"}


def test_connection_cutter_ends_open_streams(plane: ControlPlane) -> None:
    """cut() drops every connection through the relay; new ones still go through."""
    cutter = ConnectionCutter(plane.url)
    try:
        url = f"{cutter.url}/api/v1/namespaces/default/configmaps"
        ended = threading.Event()

        def watch() -> None:
            try:
                with plane.session().get(url, params={"watch": "true"}, stream=True, timeout=(5, 120)) as response:
                    for _ in response.iter_lines():
                        pass
            except requests.RequestException:
                pass
            ended.set()

        threading.Thread(target=watch, daemon=True).start()
        while cutter.cut() == 0:  # until the watch's connection is open
            time.sleep(0.01)
        assert ended.wait(30)
        assert plane.session().get(url, timeout=10).status_code == 200
    finally:
        cutter.close()


def test_build_key_follows_the_pins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache key is stable for the same sources and changes with a go.sum (a new pin builds anew)."""
    copy = tmp_path / "controlplane"
    shutil.copytree(controlplane.SOURCE_DIR, copy)
    monkeypatch.setattr(controlplane, "SOURCE_DIR", copy)
    monkeypatch.setattr(controlplane, "ETCD_DIR", copy / "etcd")
    first = controlplane.build_key()
    assert controlplane.build_key() == first
    (copy / "etcd" / "go.sum").write_text((copy / "etcd" / "go.sum").read_text() + "\n")
    assert controlplane.build_key() != first
