"""The operator's Secrets adapter against the Kubernetes emulator: the read cache and what keeps it current."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
import requests

from opsramp_aws_operator import kube
from opsramp_aws_operator.kube import OwnerReference, Secrets
from opsramp_sandbox.kube import KubeEmulator
from opsramp_sandbox.testing import running_kube

NS = "default"


@pytest.fixture
def emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeEmulator]:
    with running_kube() as emu:
        config = tmp_path / "kubeconfig"
        emu.write_kubeconfig(config)
        # The client reads KUBECONFIG once, at import: point its default at the emulator's file instead.
        monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(config))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        kube.reset_client()
        yield emu
        kube.reset_client()


def reads(emu: KubeEmulator, name: str) -> int:
    """Secret GETs the operator's client (the official one) sent; this test's own requests are not counted."""
    rows = requests.get(f"{emu.url}/_emulator/requests", timeout=10).json()["requests"]
    return sum(
        r["count"]
        for r in rows
        if r["verb"] == "get" and r["resource"] == "secrets" and r["client"].startswith("OpenAPI-Generator")
    )


def put(emu: KubeEmulator, name: str, value: str) -> None:
    url = f"{emu.url}/api/v1/namespaces/{NS}/secrets"
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"k": value}}
    if requests.get(f"{url}/{name}", timeout=10).status_code == 200:
        assert requests.put(f"{url}/{name}", json=body, timeout=10).status_code == 200
    else:
        assert requests.post(url, json=body, timeout=10).status_code == 201


def test_cached_reads_go_to_the_api_server_once_until_the_secret_changes(emulator: KubeEmulator) -> None:
    """Repeated gets are answered from memory; `changed` (the watch) makes the next one read the new value."""
    put(emulator, "creds", "v1")
    secrets = Secrets(cache_seconds=300)
    before = reads(emulator, "creds")
    assert [secrets.get(NS, "creds").data["k"] for _ in range(5)] == ["v1"] * 5  # type: ignore[union-attr]
    assert reads(emulator, "creds") - before == 1

    put(emulator, "creds", "v2")
    assert secrets.get(NS, "creds").data["k"] == "v1"  # type: ignore[union-attr]  # no watch event yet
    secrets.changed(NS, "creds")
    assert secrets.get(NS, "creds").data["k"] == "v2"  # type: ignore[union-attr]
    assert reads(emulator, "creds") - before == 2


def test_absent_secret_is_cached_until_created(emulator: KubeEmulator) -> None:
    secrets = Secrets(cache_seconds=300)
    assert secrets.get(NS, "later") is None
    put(emulator, "later", "x")
    secrets.changed(NS, "later")  # the ADDED event
    assert secrets.get(NS, "later") is not None


def test_a_read_that_races_a_change_is_not_kept(emulator: KubeEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A change heard of while a read is in flight means that read may be old: it is returned, not cached."""
    put(emulator, "racy", "old")
    secrets = Secrets(cache_seconds=300)
    real_read = secrets._read

    def read_then_hear_change(namespace: str, name: str) -> kube.SecretData | None:
        value = real_read(namespace, name)
        put(emulator, "racy", "new")
        secrets.changed(namespace, name)
        return value

    monkeypatch.setattr(secrets, "_read", read_then_hear_change)
    assert secrets.get(NS, "racy").data["k"] == "old"  # type: ignore[union-attr]
    monkeypatch.setattr(secrets, "_read", real_read)
    assert secrets.get(NS, "racy").data["k"] == "new"  # type: ignore[union-attr]


def test_our_own_writes_and_fresh_reads_bypass_the_cache(emulator: KubeEmulator) -> None:
    """After our finalizer patch or create the next get reads again; `fresh=True` always reads."""
    put(emulator, "shared", "v")
    secrets = Secrets(cache_seconds=300)
    first = secrets.get(NS, "shared")
    assert first is not None
    secrets.add_finalizer(NS, first, "example.com/in-use")
    assert "example.com/in-use" in secrets.get(NS, "shared").finalizers  # type: ignore[union-attr]
    before = reads(emulator, "shared")
    secrets.get(NS, "shared", fresh=True)
    assert reads(emulator, "shared") - before == 1

    owner = OwnerReference("v1", "ConfigMap", "o", "00000000-0000-0000-0000-000000000001")
    assert secrets.get(NS, "made") is None
    assert secrets.create(NS, "made", {"k": "v"}, owner, {})
    assert secrets.get(NS, "made") is not None


def test_a_deleted_secret_is_no_longer_tracked(emulator: KubeEmulator) -> None:
    put(emulator, "gone", "v")
    secrets = Secrets(cache_seconds=300)
    secrets.get(NS, "gone")
    secrets.changed(NS, "gone", deleted=True)
    assert ("default", "gone") not in secrets._versions
    assert ("default", "gone") not in secrets._cache


def test_without_a_cache_every_get_reads(emulator: KubeEmulator) -> None:
    put(emulator, "plain", "v")
    secrets = Secrets()
    before = reads(emulator, "plain")
    secrets.get(NS, "plain")
    secrets.get(NS, "plain")
    assert reads(emulator, "plain") - before == 2


def test_the_echo_of_our_own_write_is_recognised_and_a_later_change_is_not(emulator: KubeEmulator) -> None:
    """The watch event showing a Secret as our create or finalizer patch left it is ours; anyone's later
    change (a new resourceVersion) is news again."""
    owner = OwnerReference("v1", "ConfigMap", "o", "00000000-0000-0000-0000-000000000001")
    secrets = Secrets(cache_seconds=300)
    assert secrets.create(NS, "ours", {"k": "v"}, owner, {})
    url = f"{emulator.url}/api/v1/namespaces/{NS}/secrets/ours"
    version = requests.get(url, timeout=10).json()["metadata"]["resourceVersion"]
    assert secrets.is_own_write(NS, "ours", version)

    current = secrets.get(NS, "ours", fresh=True)
    assert current is not None
    secrets.add_finalizer(NS, current, "example.com/in-use")
    version = requests.get(url, timeout=10).json()["metadata"]["resourceVersion"]
    assert secrets.is_own_write(NS, "ours", version)

    put(emulator, "ours", "changed by someone")
    version = requests.get(url, timeout=10).json()["metadata"]["resourceVersion"]
    assert not secrets.is_own_write(NS, "ours", version)
    assert not secrets.is_own_write(NS, "ours", None)
