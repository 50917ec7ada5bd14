"""`helm template … | kubectl apply` and `kubectl apply -k deploy/` go through against the emulator and against a
real kube-apiserver alike."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from real_cluster import RealCluster
from ship_support import CHART, DEPLOY, NAMESPACE, NAMESPACED_VALUES, RELEASE, load_docs

from opsramp_sandbox.kube import KubeEmulator

NETWORK_POLICY_VALUES = CHART / "ci" / "networkpolicy-values.yaml"

# Everything the chart renders in any mode, as `kubectl api-resources -o name` spells it. The custom kinds
# (ServiceMonitor, kopf peerings) are registered below from minimal CRDs, as their operators would install them.
NEEDED = {
    "customresourcedefinitions.apiextensions.k8s.io",
    "namespaces",
    "serviceaccounts",
    "services",
    "deployments.apps",
    "clusterroles.rbac.authorization.k8s.io",
    "clusterrolebindings.rbac.authorization.k8s.io",
    "roles.rbac.authorization.k8s.io",
    "rolebindings.rbac.authorization.k8s.io",
    "networkpolicies.networking.k8s.io",
}


def minimal_crd(group: str, kind: str, plural: str, scope: str) -> dict[str, object]:
    """A CRD that accepts any object of the kind (stands in for prometheus-operator's and kopf's CRDs)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }


@pytest.fixture(params=["emulator", "real"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path, kubectl: Path) -> Iterator[dict[str, str]]:
    """A fresh emulator, or a fresh real control plane, with third-party CRDs; yields the environment that
    points kubectl at it."""
    crds = [
        minimal_crd("monitoring.coreos.com", "ServiceMonitor", "servicemonitors", "Namespaced"),
        minimal_crd("kopf.dev", "KopfPeering", "kopfpeerings", "Namespaced"),
        minimal_crd("kopf.dev", "ClusterKopfPeering", "clusterkopfpeerings", "Cluster"),
    ]
    if request.param == "real":
        real = RealCluster(tmp_path, crds=crds)
        try:
            yield {**os.environ, "KUBECONFIG": str(real.kubeconfig)}
        finally:
            real.stop()
        return
    emulator = KubeEmulator(crds=crds)
    emulator.start()
    try:
        config = tmp_path / "kubeconfig"
        config.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: emu, cluster: {{server: '{emulator.url}'}}}}]\n"
            "users: [{name: emu, user: {token: test}}]\n"
            "contexts: [{name: emu, context: {cluster: emu, user: emu}}]\n"
            "current-context: emu\n"
        )
        env = {**os.environ, "KUBECONFIG": str(config)}
        served = kubectl_run(kubectl, env, "api-resources", "-o", "name").stdout.split()
        assert set(served) >= NEEDED, f"the Kubernetes emulator does not serve {sorted(NEEDED - set(served))}"
        yield env
    finally:
        emulator.stop()


def kubectl_run(
    kubectl: Path, env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run kubectl against the emulator; fail with its output when it fails."""
    result = subprocess.run([str(kubectl), *args], input=stdin, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"kubectl {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def create_namespaces(kubectl: Path, env: dict[str, str], *names: str) -> None:
    """Create namespaces with `kubectl apply`."""
    manifest = "".join(f"---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n" for name in names)
    kubectl_run(kubectl, env, "apply", "-f", "-", stdin=manifest)


def apply_and_compare(kubectl: Path, env: dict[str, str], manifest: str) -> None:
    """Apply a stream (validated by the server: unknown fields are refused) and read every object back."""
    kubectl_run(kubectl, env, "apply", "-f", "-", stdin=manifest)
    for doc in load_docs(manifest):
        meta = doc["metadata"]
        where = ["-n", meta["namespace"]] if meta.get("namespace") else []
        kind = f"{doc['kind']}.{doc['apiVersion'].split('/')[0]}" if "/" in doc["apiVersion"] else doc["kind"]
        got = kubectl_run(kubectl, env, "get", kind, meta["name"], *where, "-o", "name").stdout.strip()
        assert got.endswith(f"/{meta['name']}"), got


def test_helm_template_applies_to_the_emulator(helm: Path, kubectl: Path, cluster: dict[str, str]) -> None:
    """The default render (CRD included) applies without errors and every object can be read back."""
    create_namespaces(kubectl, cluster, NAMESPACE)
    out = subprocess.run(
        [str(helm), "template", RELEASE, str(CHART), "--namespace", NAMESPACE],
        capture_output=True,
        text=True,
        check=True,
    )
    apply_and_compare(kubectl, cluster, out.stdout)
    names = kubectl_run(kubectl, cluster, "get", "crd", "-o", "name").stdout
    assert "awsintegrations.integrations.opsramp.com" in names


def test_namespaced_render_applies_to_the_emulator(helm: Path, kubectl: Path, cluster: dict[str, str]) -> None:
    """Namespaced mode (Roles per namespace, peering objects, ServiceMonitor) applies without errors."""
    create_namespaces(kubectl, cluster, NAMESPACE, "team-a", "team-b")
    out = subprocess.run(
        [str(helm), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--values", str(NAMESPACED_VALUES)],
        capture_output=True,
        text=True,
        check=True,
    )
    apply_and_compare(kubectl, cluster, out.stdout)


def test_kustomize_applies_to_the_emulator(kubectl: Path, cluster: dict[str, str]) -> None:
    """`kubectl apply -k deploy/` creates the namespace, the CRD and the operator's objects."""
    kubectl_run(kubectl, cluster, "apply", "-k", str(DEPLOY))
    built = kubectl_run(kubectl, cluster, "kustomize", str(DEPLOY)).stdout
    apply_and_compare(kubectl, cluster, built)


def helm_template(helm: Path, *args: str) -> str:
    """The chart rendered into NAMESPACE with extra helm arguments."""
    cmd = [str(helm), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def test_network_policy_render_applies_to_the_emulator(helm: Path, kubectl: Path, cluster: dict[str, str]) -> None:
    """The opt-in NetworkPolicy render applies and the policy reads back with both policy types."""
    create_namespaces(kubectl, cluster, NAMESPACE)
    apply_and_compare(kubectl, cluster, helm_template(helm, "--values", str(NETWORK_POLICY_VALUES)))
    out = kubectl_run(kubectl, cluster, "get", "networkpolicies", "-n", NAMESPACE, "-o", "json").stdout
    (policy,) = json.loads(out)["items"]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]


def test_upgrade_by_reapplying_changes_only_what_changed(helm: Path, kubectl: Path, cluster: dict[str, str]) -> None:
    """Re-applying a changed render (kubectl's strategic merge patch) updates the Deployment in place, intact."""
    create_namespaces(kubectl, cluster, NAMESPACE)
    apply_and_compare(kubectl, cluster, helm_template(helm))
    get = ("get", "deployments.apps", "-n", NAMESPACE, "-o", "json")
    (before,) = json.loads(kubectl_run(kubectl, cluster, *get).stdout)["items"]
    changed = helm_template(helm, "--set", "image.tag=9.9.9", "--set-json", 'extraEnv=[{"name":"EXTRA","value":"1"}]')
    apply_and_compare(kubectl, cluster, changed)
    (after,) = json.loads(kubectl_run(kubectl, cluster, *get).stdout)["items"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    (old_container,) = before["spec"]["template"]["spec"]["containers"]
    (container,) = after["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(":9.9.9")
    assert [e["name"] for e in container["env"]] == [e["name"] for e in old_container["env"]] + ["EXTRA"]
    unchanged = {k: v for k, v in container.items() if k not in ("image", "env")}
    assert unchanged == {k: v for k, v in old_container.items() if k not in ("image", "env")}
    # A third apply of the same render is a no-op: nothing moves, not even resourceVersion.
    apply_and_compare(kubectl, cluster, changed)
    (again,) = json.loads(kubectl_run(kubectl, cluster, *get).stdout)["items"]
    assert again["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]
