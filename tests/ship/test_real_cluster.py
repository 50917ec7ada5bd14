"""The chart and deploy/ on a real kube-apiserver: helm install/upgrade/rollback/uninstall, kubectl apply -k
(client- and server-side), and the CRD's schema and CEL rules judged by the apiserver itself."""

from __future__ import annotations

import copy
import importlib
import json
import sys
from typing import Any

import pytest
import requests
import yaml
from real_cluster import CRD_NAME, RealCluster
from ship_support import CRD_FILE, DEPLOY, NAMESPACE, RELEASE, ROOT, load_docs

# The good and bad resources of tests/unit/test_crd.py, sent to kube-apiserver here (imported by name: pytest
# and mypy see each test directory as its own root).
sys.path.insert(0, str(ROOT / "tests" / "unit"))
unit_cases: Any = importlib.import_module("test_crd")
_DELETE, BAD_RESOURCES, CEL_ONLY = unit_cases._DELETE, unit_cases.BAD_RESOURCES, unit_cases.CEL_ONLY

DEPLOYMENT = "deployments.apps"


def deployment(cluster: RealCluster) -> dict[str, Any]:
    """The operator's Deployment in NAMESPACE."""
    (found,) = cluster.get(DEPLOYMENT, namespace=NAMESPACE)["items"]
    return dict(found)


def container_env(obj: dict[str, Any]) -> dict[str, str]:
    """The operator container's environment as name → value."""
    (container,) = obj["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container.get("env") or []}


def test_helm_install_upgrade_rollback_uninstall_keeps_the_crd(real_cluster: RealCluster) -> None:
    """helm install serves the CRD and creates the operator's objects; upgrade changes the Deployment in place;
    rollback restores it; uninstall removes the operator but keeps the CRD and the resources users made."""
    cluster = real_cluster
    # The admin names OpsRamp's AWS account, as every install must, and allows the managed policy the user's
    # resource below (the full example) attaches: the guardrails' admission policy refuses anything else.
    user: dict[str, Any] = unit_cases.good()
    account = user["spec"]["opsramp"]["awsAccountId"]
    policies = json.dumps(user["spec"]["role"]["managedPolicyArns"])
    cluster.install_chart("--set-string", f"operator.opsrampAwsAccountId={account}",
                          "--set-json", f"guardrails.allowedManagedPolicyArns={policies}")  # fmt: skip
    installed = deployment(cluster)
    for kind, name in (("serviceaccount", RELEASE), ("clusterrole", RELEASE), ("clusterrolebinding", RELEASE),
                       ("service", f"{RELEASE}-metrics")):  # fmt: skip
        assert cluster.get(kind, name, NAMESPACE if kind in ("serviceaccount", "service") else None), (kind, name)
    assert container_env(installed)["OPERATOR_LOG_LEVEL"] == "INFO"

    # A user's resource, valid for the real CRD (the operator does not run: nothing acts on it).
    user["metadata"] = {"name": "kept", "namespace": "default"}
    cluster.apply([user])

    cluster.helm("upgrade", RELEASE, str(ROOT / "charts" / "opsramp-aws-operator"), "--namespace", NAMESPACE,
                 "--reuse-values", "--set", "operator.logLevel=DEBUG")  # fmt: skip
    upgraded = deployment(cluster)
    assert container_env(upgraded)["OPERATOR_LOG_LEVEL"] == "DEBUG"
    assert upgraded["metadata"]["uid"] == installed["metadata"]["uid"], "upgrade replaced the Deployment"
    assert upgraded["metadata"]["generation"] == installed["metadata"]["generation"] + 1

    cluster.helm("rollback", RELEASE, "1", "--namespace", NAMESPACE)
    rolled_back = deployment(cluster)
    assert container_env(rolled_back)["OPERATOR_LOG_LEVEL"] == "INFO"
    history = json.loads(cluster.helm("history", RELEASE, "--namespace", NAMESPACE, "-o", "json").stdout)
    assert [h["revision"] for h in history] == [1, 2, 3]

    cluster.helm("uninstall", RELEASE, "--namespace", NAMESPACE)
    assert cluster.get(DEPLOYMENT, namespace=NAMESPACE)["items"] == []
    assert cluster.get("clusterrole", RELEASE) is None
    crd = cluster.get("crd", CRD_NAME)
    assert crd is not None, "helm uninstall deleted the CRD (and with it every AWSIntegration)"
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert cluster.get("awsintegrations", "kept", "default") is not None


def test_kustomize_deploy_applies_client_side_then_server_side(real_cluster: RealCluster) -> None:
    """`kubectl apply -k deploy/` installs everything; `kubectl apply --server-side -k deploy/` then takes the
    fields over and a second server-side apply changes nothing (no resourceVersion moves)."""
    cluster = real_cluster
    cluster.kubectl("apply", "-k", str(DEPLOY))
    cluster.plane.wait_established(CRD_NAME)
    built = load_docs(cluster.kubectl("kustomize", str(DEPLOY)).stdout)

    def versions() -> dict[str, str]:
        found = {}
        for doc in built:
            meta = doc["metadata"]
            kind = f"{doc['kind']}.{doc['apiVersion'].split('/')[0]}" if "/" in doc["apiVersion"] else doc["kind"]
            obj = cluster.get(kind, meta["name"], meta.get("namespace"))
            assert obj is not None, f"{kind}/{meta['name']} not created"
            found[f"{kind}/{meta['name']}"] = obj["metadata"]["resourceVersion"]
        return found

    versions()
    cluster.kubectl("apply", "--server-side", "-k", str(DEPLOY))
    taken_over = versions()
    cluster.kubectl("apply", "--server-side", "-k", str(DEPLOY))
    assert versions() == taken_over
    shown = cluster.kubectl("get", DEPLOYMENT, "-n", NAMESPACE, "-o", "json", "--show-managed-fields").stdout
    (obj,) = json.loads(shown)["items"]
    # Server-side apply's field manager owns the fields now (kubectl migrated them from client-side apply).
    managers = {(m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in managers, managers


def test_server_side_apply_of_the_examples(real_cluster: RealCluster) -> None:
    """Every example applies server-side against the real CRD (its list and map types decide how SSA merges), and
    re-applying it is a no-op."""
    cluster = real_cluster
    cluster.plane.apply_crd(yaml.safe_load(CRD_FILE.read_text()))
    examples = sorted((ROOT / "examples").glob("*.yaml"))
    for namespace in {d["metadata"].get("namespace") for p in examples for d in load_docs(p.read_text())} - {None}:
        cluster.plane.ensure_namespace(namespace)
    for path in examples:
        cluster.kubectl("apply", "--server-side", "-f", str(path))
        before = cluster.kubectl("get", "-f", str(path), "-o", "jsonpath={..resourceVersion}").stdout
        cluster.kubectl("apply", "--server-side", "-f", str(path))
        after = cluster.kubectl("get", "-f", str(path), "-o", "jsonpath={..resourceVersion}").stdout
        # The same resourceVersions; kubectl does not always list a file's objects in the same order.
        assert sorted(before.split()) == sorted(after.split()), path.name


# ---- the CRD's schema and CEL rules, judged by kube-apiserver -------------------------------------------------


@pytest.fixture(scope="module")
def crd_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A control plane serving the project's CRD; yields a function creating an object with server-side dry run."""
    cluster = RealCluster(tmp_path_factory.mktemp("crd"), crds=[yaml.safe_load(CRD_FILE.read_text())])
    session = cluster.plane.session()
    url = f"{cluster.plane.url}/apis/integrations.opsramp.com/v1alpha1/namespaces/default/awsintegrations"

    def create(obj: dict[str, Any]) -> requests.Response:
        # kubectl's own choice: unknown fields are errors.
        params = {"dryRun": "All", "fieldValidation": "Strict"}
        return session.post(url, json=obj, params=params, timeout=30)

    try:
        yield create
    finally:
        cluster.stop()


def real_path(dotted: str) -> str:
    """The tests/unit field path (`spec.regions.0`) as the apiserver spells it (`spec.regions[0]`)."""
    parts = dotted.split(".")
    out = parts[0]
    for part in parts[1:]:
        out += f"[{part}]" if part.isdigit() else f".{part}"
    return out


def resource(field: str | None = None, value: Any = None) -> dict[str, Any]:
    """tests/unit's good resource, optionally with one field changed."""
    obj: dict[str, Any] = unit_cases.good()
    obj["metadata"] = {"name": "case", "namespace": "default"}
    if field is not None:
        # Not a deep copy of the deletion marker: a copy of it would be set as a value instead of deleting.
        unit_cases._set(obj, field, value if value is _DELETE else copy.deepcopy(value))
    return obj


def test_good_resource_and_examples_are_accepted(crd_server: Any) -> None:
    """tests/unit's good resource and every example AWSIntegration pass the real apiserver's validation."""
    assert crd_server(resource()).status_code == 201, crd_server(resource()).text
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "AWSIntegration":
                doc["metadata"]["namespace"] = "default"
                answer = crd_server(doc)
                assert answer.status_code == 201, (path.name, answer.text)


@pytest.mark.parametrize(("case", "field", "value", "named"), BAD_RESOURCES, ids=[c[0] for c in BAD_RESOURCES])
def test_bad_resource_is_refused_by_the_apiserver_for_its_field(
    crd_server: Any, case: str, field: str, value: Any, named: str
) -> None:
    """Each of tests/unit's bad resources is refused by kube-apiserver, naming the field it breaks."""
    answer = crd_server(resource(field, value))
    body = answer.json()
    if case.startswith("unknown-"):
        # Strict field validation: 400 naming the undeclared field.
        assert answer.status_code == 400 and f'unknown field "{field}"' in body["message"], body
        return
    assert answer.status_code == 422, body
    fields = [cause.get("field") for cause in body["details"]["causes"]]
    assert real_path(named) in fields, (fields, body["message"])


@pytest.mark.parametrize(("case", "field", "value"), CEL_ONLY, ids=[c[0] for c in CEL_ONLY])
def test_cel_rule_is_enforced_by_the_apiserver(crd_server: Any, case: str, field: str, value: Any) -> None:
    """The cross-field rules the OpenAPI schema cannot hold are CEL rules kube-apiserver evaluates: 422."""
    answer = crd_server(resource(field, value))
    body = answer.json()
    assert answer.status_code == 422, body
    fields = [cause.get("field") for cause in body["details"]["causes"]]
    assert any(f and f.startswith(field) for f in fields), (fields, body["message"])
