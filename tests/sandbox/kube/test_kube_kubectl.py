"""The real kubectl (1.37) as a client of the emulator and of the real control plane: apply, get, patch, label
selectors, tables, delete."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from kube_support import WIDGET_CRD, OurTarget, RealTarget, Target, flavours, iterate, real_control_plane

from opsramp_sandbox.kube import load_crds
from opsramp_sandbox.launcher import project_crd_files
from opsramp_sandbox.realkube import ConnectionCutter, ControlPlane
from opsramp_sandbox.tools import ensure_kubectl

pytestmark = pytest.mark.skipif(os.environ.get("KUBE_EMULATOR") == "kmock", reason="project emulator only")

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def real_plane_with_crds(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ControlPlane, ConnectionCutter]]:
    """The module's control plane, with the Widget CRD and the project's CRDs."""
    crds = [copy.deepcopy(WIDGET_CRD), *load_crds(project_crd_files())]
    with real_control_plane(tmp_path_factory.mktemp("realkube"), crds) as plane:
        yield plane


@pytest.fixture(params=[f for f in flavours() if f != "kmock"])
def kubectl(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Target, Run]]:
    """An emulator with the project's CRDs, or a fresh namespace on the control plane, and a function running
    kubectl against it in that namespace."""
    binary = ensure_kubectl()
    target: Target
    if request.param == "real":
        plane, cutter = request.getfixturevalue("real_plane_with_crds")
        target = RealTarget(plane, cutter, f"kubectl-{uuid.uuid4().hex[:8]}")
    else:
        target = OurTarget(crds=load_crds(project_crd_files()))
    kubeconfig = tmp_path / "kubeconfig"
    target.write_kubeconfig(kubeconfig)
    # The test's namespace as the context's default (a --namespace flag would clash with manifests naming one).
    config = yaml.safe_load(kubeconfig.read_text())
    for context in config["contexts"]:
        context["context"]["namespace"] = target.namespace
    kubeconfig.write_text(yaml.safe_dump(config))

    def run(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(binary), f"--kubeconfig={kubeconfig}", "--request-timeout=10s", *args],
            input=stdin, capture_output=True, text=True, timeout=30, check=False,
            env={"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "")},
        )  # fmt: skip
        if check:
            assert result.returncode == 0, result.stderr
        return result

    yield from ((t, run) for t in iterate(target))


def widget_yaml(name: str, size: int, labels: dict[str, str] | None = None) -> str:
    body = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"size": size}}  # fmt: skip
    return yaml.safe_dump(body)


def test_kubectl_apply_crd_then_cr_and_get_yaml(kubectl: tuple[Target, Run]) -> None:
    """kubectl apply registers a CRD over HTTP, applies a CR (twice: create then patch) and reads it back."""
    _, run = kubectl
    run("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(copy.deepcopy(WIDGET_CRD)))
    run("apply", "--validate=false", "-f", "-", stdin=widget_yaml("w1", 1))
    run("apply", "--validate=false", "-f", "-", stdin=widget_yaml("w1", 3))
    got = yaml.safe_load(run("get", "widgets", "w1", "-o", "yaml").stdout)
    assert got["spec"] == {"size": 3, "color": "red"} and got["metadata"]["generation"] == 2


def test_kubectl_patch_label_selector_and_delete(kubectl: tuple[Target, Run]) -> None:
    """kubectl patch --type=merge, get -l, and delete (which waits for the object to go) all work."""
    _, run = kubectl
    run("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(copy.deepcopy(WIDGET_CRD)))
    run("apply", "--validate=false", "-f", "-", stdin=widget_yaml("a", 1, {"app": "alpha"}))
    run("apply", "--validate=false", "-f", "-", stdin=widget_yaml("b", 1, {"app": "beta"}))
    run("patch", "widget", "a", "--type=merge", "-p", '{"spec":{"size":5}}')
    assert run("get", "widgets", "a", "-o", "jsonpath={.spec.size}").stdout == "5"
    selected = run("get", "widgets", "-l", "app=beta", "-o", "name").stdout.split()
    assert selected == ["widget.example.com/b"]
    run("delete", "widget", "a", "--timeout=10s")
    missing = run("get", "widget", "a", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_kubectl_core_kinds_namespaces_and_secrets(kubectl: tuple[Target, Run]) -> None:
    """kubectl finds core kinds through discovery: apply a namespace and a secret, read them back."""
    _, run = kubectl
    manifest = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "team-a"},
         "stringData": {"clientId": "abc"}},
    ]  # fmt: skip
    run("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump_all(manifest))
    assert "team-a" in run("get", "namespaces", "-o", "name").stdout
    data = run("-n", "team-a", "get", "secret", "creds", "-o", "jsonpath={.data.clientId}").stdout
    assert data == "YWJj"


def test_kubectl_get_awsintegrations_prints_printer_columns(kubectl: tuple[Target, Run]) -> None:
    """`kubectl get awsintegrations` prints the project CRD's columns from the server's Table answer."""
    _, run = kubectl
    resource = {"apiVersion": "integrations.opsramp.com/v1alpha1", "kind": "AWSIntegration",
                "metadata": {"name": "demo"}, "spec": {"regions": ["us-east-1"], "opsramp": {
                    "endpoint": "https://x.example.com", "tenantId": "client_1",
                    "credentialsSecretRef": {"name": "creds"}}}}  # fmt: skip
    run("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(resource))
    result = run("get", "awsintegrations")
    header = result.stdout.splitlines()[0].split()
    assert header[:3] == ["NAME", "READY", "REASON"] and "AGE" in header
    assert result.stdout.splitlines()[1].startswith("demo")


def test_kubectl_create_subcommands_send_protobuf_bodies(kubectl: tuple[Target, Run]) -> None:
    """`kubectl create namespace|secret|configmap|serviceaccount|role|rolebinding` POST protobuf (client-go does not
    fall back to JSON on a 415): each object is stored with its data."""
    target, run = kubectl
    namespace = f"created-{uuid.uuid4().hex[:6]}"
    assert run("create", "namespace", namespace).stdout == f"namespace/{namespace} created\n"
    assert run("get", "namespace", namespace, "-o", "jsonpath={.status.phase}").stdout == "Active"
    run("create", "secret", "generic", "creds", "--from-literal=clientId=abc", "--from-literal=clientSecret=s3")
    secret = yaml.safe_load(run("get", "secret", "creds", "-o", "yaml").stdout)
    assert secret["type"] == "Opaque" and secret["data"] == {"clientId": "YWJj", "clientSecret": "czM="}
    run("create", "configmap", "settings", "--from-literal=a=1", "--from-literal=b=two")
    assert run("get", "configmap", "settings", "-o", "jsonpath={.data}").stdout == '{"a":"1","b":"two"}'
    assert run("create", "serviceaccount", "robot").stdout == "serviceaccount/robot created\n"
    run("create", "role", "reader", "--verb=get,list", "--resource=secrets,configmaps", "--resource-name=creds")
    rules = yaml.safe_load(run("get", "role", "reader", "-o", "yaml").stdout)["rules"]
    assert rules == [{"apiGroups": [""], "resources": ["secrets", "configmaps"], "resourceNames": ["creds"],
                      "verbs": ["get", "list"]}]  # fmt: skip
    run("create", "rolebinding", "reader", "--role=reader", f"--serviceaccount={target.namespace}:robot")
    binding = yaml.safe_load(run("get", "rolebinding", "reader", "-o", "yaml").stdout)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "robot", "namespace": target.namespace}]


def test_kubectl_explain_and_validation_read_the_servers_openapi(kubectl: tuple[Target, Run]) -> None:
    """`kubectl explain` (built-in kinds and the CRD) and apply's validation (server-side, Strict, because the
    server's /openapi/v3 says PATCH takes fieldValidation) work without --validate=false, for custom resources and
    built-in kinds: a misspelt field is refused, naming its path."""
    _, run = kubectl
    role = run("explain", "awsintegration.spec.role.maxSessionDuration").stdout
    assert "FIELD: maxSessionDuration <integer>" in role and "Maximum session duration" in role
    assert "FIELD: maxSurge <IntOrString>" in run("explain", "deployment.spec.strategy.rollingUpdate.maxSurge").stdout
    assert "programmatic handling of secret data" in run("explain", "secret.type").stdout
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 1, "sise": 2},
    }
    refused = run("apply", "-f", "-", stdin=yaml.safe_dump(widget), check=False)
    assert refused.returncode != 0 and 'unknown field "spec.sise"' in refused.stderr
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labelz": {}}, "data": {"a": "1"},
              "datta": {}}  # fmt: skip
    refused = run("apply", "-f", "-", stdin=yaml.safe_dump(config), check=False)
    assert refused.returncode != 0
    assert re.search(r'strict decoding error: unknown field "(datta|metadata.labelz)", unknown field "(datta|metadata.'
                     r'labelz)"', refused.stderr), refused.stderr  # fmt: skip
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                  "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                           "spec": {"containers": [{"name": "c", "image": "nginx", "imagee": "x"}]}}}}  # fmt: skip
    refused = run("apply", "-f", "-", stdin=yaml.safe_dump(deployment), check=False)
    assert 'unknown field "spec.template.spec.containers[0].imagee"' in refused.stderr, refused.stderr
    # Without validation the apiserver drops the field (with a warning) and keeps the rest.
    kept = run("apply", "--validate=warn", "-f", "-", stdin=yaml.safe_dump(config))
    assert 'unknown field "datta"' in kept.stderr
    stored = json.loads(run("get", "configmap", "c", "-o", "json").stdout)
    assert "datta" not in stored and "labelz" not in stored["metadata"] and stored["data"] == {"a": "1"}


def test_kubectl_server_side_apply_creates_then_updates(kubectl: tuple[Target, Run]) -> None:
    """`kubectl apply --server-side` creates an object, then changes it, for a built-in kind and a custom resource."""
    _, run = kubectl
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1"}}
    created = run("apply", "--server-side", "-v=6", "-f", "-", stdin=yaml.safe_dump(config))
    assert created.stdout == "configmap/ssa serverside-applied\n"
    assert re.search(r'verb="PATCH" url="[^"]*/configmaps/ssa\?[^"]*" status="201 Created"', created.stderr)
    config["data"] = {"a": "2", "b": "3"}
    run("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(config))
    assert run("get", "configmap", "ssa", "-o", "jsonpath={.data}").stdout == '{"a":"2","b":"3"}'
    run("apply", "--server-side", "-f", "-", stdin=widget_yaml("s", 1))
    run("apply", "--server-side", "-f", "-", stdin=widget_yaml("s", 4, {"tier": "gold"}))
    got = yaml.safe_load(run("get", "widget", "s", "-o", "yaml").stdout)
    assert got["spec"]["size"] == 4 and got["metadata"]["labels"] == {"tier": "gold"}


def test_kubectl_get_raw_openapi_v2_carries_the_crd_and_builtin_schemas(kubectl: tuple[Target, Run]) -> None:
    """`/openapi/v2` as JSON: the CRD's schema under kube-apiserver's name, with its kind, and the built-in kinds'."""
    _, run = kubectl
    definitions = json.loads(run("get", "--raw", "/openapi/v2").stdout)["definitions"]
    schema = definitions["com.opsramp.integrations.v1alpha1.AWSIntegration"]
    assert schema["x-kubernetes-group-version-kind"] == [
        {"group": "integrations.opsramp.com", "kind": "AWSIntegration", "version": "v1alpha1"}
    ]
    assert "maxSessionDuration" in schema["properties"]["spec"]["properties"]["role"]["properties"]
    assert "stringData" in definitions["io.k8s.api.core.v1.Secret"]["properties"]


def test_kubectl_get_builtin_kinds_prints_the_apiservers_columns(kubectl: tuple[Target, Run]) -> None:
    """`kubectl get` of built-in kinds prints kube-apiserver's columns (`-o wide` adds its priority-1 ones)."""
    _, run = kubectl
    labels = {"app": "web"}
    manifest = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"a": "b"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1", "b": "2"}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"selector": labels, "ports": [{"port": 80}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
         "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels},
                  "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}},
    ]  # fmt: skip
    run("apply", "-f", "-", stdin=yaml.safe_dump_all(manifest))

    def table(*args: str) -> list[list[str]]:
        return [re.split(r"\s{2,}", line.strip()) for line in run("get", *args).stdout.splitlines()]

    assert table("secret", "creds")[0] == ["NAME", "TYPE", "DATA", "AGE"]
    assert table("secret", "creds")[1][:3] == ["creds", "Opaque", "1"]
    assert [row[:2] for row in table("configmap", "settings")] == [["NAME", "DATA"], ["settings", "2"]]
    assert [row[:1] for row in table("serviceaccount", "robot")] == [["NAME"], ["robot"]]
    assert table("serviceaccount", "robot")[0] == ["NAME", "AGE"]  # 1.37 prints no SECRETS column
    service = table("service", "web", "-o", "wide")
    assert service[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    assert service[1][:2] == ["web", "ClusterIP"] and service[1][3:5] == ["<none>", "80/TCP"]
    assert service[1][6] == "app=web"
    deployment = table("deployment", "web", "-o", "wide")
    assert deployment[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert deployment[1][:4] == ["web", "0/1", "0", "0"] and deployment[1][5:] == ["web", "nginx:1.27", "app=web"]
    namespace = yaml.safe_load(run("config", "view", "--minify", "-o", "yaml").stdout)["contexts"][0]["context"]
    assert [row[:2] for row in table("namespace", namespace["namespace"])][1] == [namespace["namespace"], "Active"]
