"""Tests of the Helm chart: lint, valid manifests for Kubernetes 1.29 and 1.37, least-privilege RBAC, safe pods."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from ship_support import (
    CHART,
    CRD_FILE,
    DEPLOY,
    NAMESPACE,
    NAMESPACED_VALUES,
    RELEASE,
    ROOT,
    Manifest,
    Renderer,
    by_kind,
    load_docs,
    one,
)

from opsramp_aws_operator.errors import NeedsAttention
from opsramp_aws_operator.guardrails import Guardrails, endpoint_hostport
from opsramp_aws_operator.settings import Settings

# jsonschema ships no type stubs and is not in mypy's ignore list; a typed handle keeps mypy strict here.
jsonschema: Any = importlib.import_module("jsonschema")

K8S_VERSIONS = ("1.29.0", "1.37.0")
# Kinds kubernetes-validate has no schema for; each is checked by its own test below.
CUSTOM_KINDS = {"ServiceMonitor", "KopfPeering", "ClusterKopfPeering"}

Rule = tuple[str, str, str]  # (apiGroup, resource, verb)

OPERATOR_RULES: set[Rule] = {
    *{("integrations.opsramp.com", "awsintegrations", v) for v in ("get", "list", "watch", "patch")},
    *{("integrations.opsramp.com", "awsintegrations/status", v) for v in ("get", "patch")},
    # No delete: the generated External ID Secret goes with its AWSIntegration (garbage collection).
    *{("", "secrets", v) for v in ("get", "list", "watch", "create", "patch")},
    ("", "events", "create"),
}
# kopf reads CRDs always, namespaces only when it serves a list of them (tests/e2e/test_rbac.py proves each
# rule is used: without it the real apiserver's audit log shows the operator denied).
KOPF_CRD_READS: set[Rule] = {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("get", "list", "watch")}
KOPF_NAMESPACE_READS: set[Rule] = {("", "namespaces", v) for v in ("get", "list", "watch")}
KOPF_CLUSTER_READS: set[Rule] = KOPF_CRD_READS | KOPF_NAMESPACE_READS
PEERING_VERBS = ("get", "list", "watch", "patch")


def rule_set(role: Manifest) -> set[Rule]:
    """Flatten a Role/ClusterRole into (group, resource, verb) triples."""
    triples: set[Rule] = set()
    for rule in role["rules"]:
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    triples.add((group, resource, verb))
    return triples


# GA in Kubernetes 1.30: the chart renders them only there (semverCompare on the cluster's version).
ADMISSION_KINDS = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


def validate_builtin(docs: list[Manifest], version: str) -> list[str]:
    """Validate every built-in kind strictly; return the kinds skipped as custom resources."""
    skipped = []
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            skipped.append(doc["kind"])
            continue
        if doc["kind"] in ADMISSION_KINDS and version < "1.30":
            continue
        kubernetes_validate.validate(doc, version, strict=True)
    return skipped


def env_of(deployment: Manifest) -> dict[str, Any]:
    """The operator container's env as name -> value (or valueFrom)."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_helm_lint_strict(helm: Path) -> None:
    """`helm lint --strict` passes with default values and with the namespaced values file."""
    for extra in ([], ["--values", str(NAMESPACED_VALUES)]):
        result = subprocess.run(
            [str(helm), "lint", "--strict", str(CHART), *extra], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_default_render_validates(default_docs: list[Manifest], version: str) -> None:
    """Default values render only built-in kinds (and the CRD), all valid under --strict for this version."""
    assert validate_builtin(default_docs, version) == []
    kinds = sorted(doc["kind"] for doc in default_docs)
    assert kinds == sorted(
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Deployment",
            "Service",
            "ServiceAccount",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ]
    )


def test_no_admission_policy_before_kubernetes_1_30(helm: Path) -> None:
    """On a 1.29 cluster (no admissionregistration.k8s.io/v1 policies) the chart renders none; the operator's own
    checks hold alone there."""
    out = subprocess.run(
        [str(helm), "template", RELEASE, str(CHART), "--kube-version", "1.29.0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert not ADMISSION_KINDS & {doc["kind"] for doc in load_docs(out)}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_namespaced_render_validates(namespaced_docs: list[Manifest], version: str) -> None:
    """Namespaced-mode values render valid built-in objects under --strict; only known custom kinds are skipped."""
    skipped = validate_builtin(namespaced_docs, version)
    assert sorted(skipped) == ["KopfPeering", "KopfPeering", "ServiceMonitor"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kustomize_build_validates(kubectl: Path, version: str) -> None:
    """`kubectl kustomize deploy/` builds, puts everything namespaced into opsramp-system and validates."""
    out = subprocess.run([str(kubectl), "kustomize", str(DEPLOY)], capture_output=True, text=True, check=True)
    docs = load_docs(out.stdout)
    assert validate_builtin(docs, version) == []
    assert one(docs, "Namespace")["metadata"]["name"] == NAMESPACE
    for doc in docs:
        if doc["kind"] in ("Deployment", "ServiceAccount", "Service"):
            assert doc["metadata"]["namespace"] == NAMESPACE
    binding = one(docs, "ClusterRoleBinding")
    assert binding["subjects"][0]["namespace"] == NAMESPACE


def test_cluster_mode_rbac_is_exactly_what_the_operator_uses(default_docs: list[Manifest]) -> None:
    """Cluster mode: one ClusterRole with exactly the operator's and kopf's rules, bound to the ServiceAccount."""
    assert by_kind(default_docs, "Role") == []
    assert by_kind(default_docs, "RoleBinding") == []
    role = one(default_docs, "ClusterRole")
    assert rule_set(role) == OPERATOR_RULES | KOPF_CRD_READS
    binding = one(default_docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    sa = one(default_docs, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}]


def test_namespaced_mode_rbac_grants_only_inside_watched_namespaces(namespaced_docs: list[Manifest]) -> None:
    """Namespaced mode: a Role+RoleBinding per watched namespace; cluster-wide only kopf's CRD/namespace reads."""
    assert rule_set(one(namespaced_docs, "ClusterRole")) == KOPF_CLUSTER_READS
    roles = by_kind(namespaced_docs, "Role")
    bindings = by_kind(namespaced_docs, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    peering = {("kopf.dev", "kopfpeerings", v) for v in PEERING_VERBS}
    for role in roles:
        assert rule_set(role) == OPERATOR_RULES | peering
    sa = one(namespaced_docs, "ServiceAccount")
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}
        ]


@pytest.mark.parametrize(
    ("sets", "where", "expected"),
    [
        (("peering.enabled=true",), "ClusterRole", {("kopf.dev", "clusterkopfpeerings", v) for v in PEERING_VERBS}),
        (
            ("peering.enabled=true", "watchNamespaces={a,b}"),
            "ClusterRole",
            {("kopf.dev", "kopfpeerings", v) for v in PEERING_VERBS},
        ),
        (("peering.enabled=false", "watchNamespaces={a,b}"), "ClusterRole", set()),
    ],
)
def test_peering_rules_follow_kopf_peering_mode(
    render: Renderer, sets: tuple[str, ...], where: str, expected: set[Rule]
) -> None:
    """Peering rights appear only with peering.enabled, cluster-wide peering only when all namespaces are watched;
    namespaces are read only when a list of them is watched."""
    docs = render(sets=sets)
    reads = KOPF_CLUSTER_READS if any(s.startswith("watchNamespaces") for s in sets) else KOPF_CRD_READS
    assert rule_set(one(docs, where)) >= reads
    extra = rule_set(one(docs, where)) - OPERATOR_RULES - KOPF_CLUSTER_READS
    assert extra == expected


def test_peering_objects_match_kopf_mode(render: Renderer, namespaced_docs: list[Manifest]) -> None:
    """The chart creates the peering object kopf patches: one ClusterKopfPeering, or a KopfPeering per namespace."""
    cluster = render(sets=("peering.enabled=true",))
    peering = one(cluster, "ClusterKopfPeering")
    assert peering["apiVersion"] == "kopf.dev/v1"
    assert env_of(one(cluster, "Deployment"))["OPERATOR_PEERING_NAME"] == peering["metadata"]["name"]
    per_ns = by_kind(namespaced_docs, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in per_ns) == ["team-a", "team-b"]
    assert {p["metadata"]["name"] for p in per_ns} == {
        env_of(one(namespaced_docs, "Deployment"))["OPERATOR_PEERING_NAME"]
    }


@pytest.mark.parametrize("fixture", ["default_docs", "namespaced_docs"])
def test_no_wildcards_in_rbac(request: pytest.FixtureRequest, fixture: str) -> None:
    """No rendered ClusterRole/Role grants a wildcard verb, resource or API group."""
    docs: list[Manifest] = request.getfixturevalue(fixture)
    roles = by_kind(docs, "ClusterRole") + by_kind(docs, "Role")
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for key in ("verbs", "resources", "apiGroups"):
                assert all("*" not in item for item in rule[key]), (role["metadata"], rule)


def test_namespaced_mode_without_namespaces_is_refused(render: Renderer) -> None:
    """rbac.namespaced=true with no watchNamespaces fails the render with a message naming the fix."""
    with pytest.raises(subprocess.CalledProcessError) as caught:
        render(sets=("rbac.namespaced=true",))
    assert "set watchNamespaces" in caught.value.stderr


def test_deployment_is_single_recreate_and_locked_down(default_docs: list[Manifest]) -> None:
    """One replica, Recreate, kopf liveness probe, resources, non-root read-only pod with ALL caps dropped."""
    deployment = one(default_docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    assert ports[probe["port"]] == 8080
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert container["image"] == "ghcr.io/opsramp/opsramp-aws-operator:0.1.0"
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_scanner_skips_are_written_down(default_docs: list[Manifest]) -> None:
    """Every checkov skip on the Deployment names a check and a reason, and the chart README lists it."""
    annotations = one(default_docs, "Deployment")["metadata"]["annotations"]
    skips = {k: v for k, v in annotations.items() if k.startswith("checkov.io/skip")}
    assert skips
    readme = (CHART / "README.md").read_text()
    for value in skips.values():
        check, _, reason = value.partition("=")
        assert check.startswith("CKV") and len(reason) > 20, value
        assert f"| {check} " in readme, check


def test_default_env_reaches_the_operator(default_docs: list[Manifest]) -> None:
    """With default values the operator gets exactly the documented OPERATOR_* settings and their defaults."""
    env = env_of(one(default_docs, "Deployment"))
    assert env == {
        "OPERATOR_NAMESPACES": "",
        "OPERATOR_OPSRAMP_AWS_ACCOUNT_ID": "",
        "OPERATOR_RESYNC_INTERVAL_SECONDS": "600",
        "OPERATOR_LOG_LEVEL": "INFO",
        "OPERATOR_LOG_FORMAT": "json",
        "OPERATOR_HEALTH_PORT": "8080",
        "OPERATOR_METRICS_PORT": "9090",
        "OPERATOR_PEERING_NAME": "",
        "OPERATOR_MAX_SERVER_WAIT_SECONDS": "300",
        "OPERATOR_MAX_WAIT_IN_PASS_SECONDS": "10",
        "OPERATOR_AWS_SESSION_CACHE_SIZE": "16",
        "OPERATOR_MEMBER_ROLE_NAME": "OrganizationAccountAccessRole",
        "OPERATOR_ORGANIZATION_SCAN_SECONDS": "300",
        "OPERATOR_ACCOUNTS_STATUS_ROWS": "50",
        "OPERATOR_MONITORING_GRACE_SECONDS": "180",
        "OPERATOR_MONITORING_RECHECK_SECONDS": "3600",
        "OPERATOR_ALLOWED_OPSRAMP_AWS_ACCOUNT_IDS": "",
        "OPERATOR_ALLOWED_MANAGED_POLICY_ARNS": "",
        "OPERATOR_PERMISSIONS_BOUNDARY_ARN": "",
        "OPERATOR_NAMESPACE_TARGETS": '{"*":["default"]}',
        "OPERATOR_NAMESPACE_EXISTING_ROLES": '{"*":["*"]}',
        "OPERATOR_NAMESPACE_ORGANIZATIONS": "{}",
        "OPERATOR_ALLOWED_OPSRAMP_HOSTS": "*.opsramp.com",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    # The chart's defaults are the operator's own safe defaults, read the way the operator reads them.
    assert Settings.from_env(env).guardrails == Guardrails()


def test_guardrail_values_reach_the_operator(render: Renderer, tmp_path: Path) -> None:
    """Every guardrails value arrives in the environment the operator reads, as the rules the admin wrote."""
    values = {
        "operator": {"opsrampAwsAccountId": "999988887777"},
        "guardrails": {
            "allowedOpsRampAwsAccountIds": ["111122223333"],
            "allowedManagedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
            "permissionsBoundaryArn": "arn:aws:iam::123456789012:policy/b",
            "namespaceTargets": {"team-a": ["default", "222233334444"]},
            "namespaceExistingRoles": {"*": None, "team-a": ["arn:aws:iam::*:role/stackset/*"]},
            "allowedOpsRampHosts": ["acme.api.opsramp.com"],
        },
    }
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    docs = render(tmp_path / "values.yaml")
    rules = Settings.from_env(env_of(one(docs, "Deployment"))).guardrails
    assert rules.existing_roles_for("team-a") == ("arn:aws:iam::*:role/stackset/*",)
    assert rules.existing_roles_for("team-b") == ()
    assert rules.allowed_accounts == ("999988887777", "111122223333")
    assert rules.managed_policy_patterns == ("arn:aws:iam::aws:policy/ReadOnlyAccess",)
    assert rules.permissions_boundary_arn == "arn:aws:iam::123456789012:policy/b"
    assert rules.targets_for("team-a") == ("default", "222233334444")
    assert rules.targets_for("team-b") == ("default",)
    assert rules.opsramp_hosts == ("acme.api.opsramp.com",)


def test_values_reach_the_pod(namespaced_docs: list[Manifest]) -> None:
    """Namespaces, account id, region, log settings, extra env/volumes and scheduling values reach the pod."""
    deployment = one(namespaced_docs, "Deployment")
    env = env_of(deployment)
    assert env["OPERATOR_NAMESPACES"] == "team-a,team-b"
    assert env["OPERATOR_OPSRAMP_AWS_ACCOUNT_ID"] == "123456789012"
    assert env["OPERATOR_RESYNC_INTERVAL_SECONDS"] == "300"
    assert (env["OPERATOR_LOG_LEVEL"], env["OPERATOR_LOG_FORMAT"]) == ("DEBUG", "text")
    assert env["AWS_REGION"] == "eu-west-1"
    assert env["HTTPS_PROXY"] == "http://proxy.internal:3128"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].endswith(":0.1.0-rc.1")
    assert container["imagePullPolicy"] == "Always"
    assert {"name": "ca-bundle", "mountPath": "/etc/ssl/corporate", "readOnly": True} in container["volumeMounts"]
    assert {"name": "ca-bundle", "configMap": {"name": "corporate-ca"}} in pod["volumes"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in pod["affinity"]
    assert deployment["spec"]["template"]["metadata"]["annotations"]["example.com/team"] == "platform"
    sa = one(namespaced_docs, "ServiceAccount")
    assert sa["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/opsramp-aws-operator"
    }


def test_metrics_service_and_service_monitor(default_docs: list[Manifest], namespaced_docs: list[Manifest]) -> None:
    """The metrics Service exposes 9090 to the pod's metrics port; the ServiceMonitor scrapes /metrics through it."""
    service = one(default_docs, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    pod_labels = one(default_docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert by_kind(default_docs, "ServiceMonitor") == []
    monitor = one(namespaced_docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    ns_service = one(namespaced_docs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= ns_service["metadata"]["labels"].items()


def test_crd_is_kept_and_matches_crds_dir(default_docs: list[Manifest], render: Renderer) -> None:
    """The chart's CRD has helm.sh/resource-policy: keep and the content of crds/; crds.enabled=false drops it."""
    crd = one(default_docs, "CustomResourceDefinition")
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    source = yaml.safe_load(CRD_FILE.read_text())
    assert crd["spec"] == source["spec"]
    assert crd["metadata"]["name"] == source["metadata"]["name"]
    assert by_kind(render(sets=("crds.enabled=false",)), "CustomResourceDefinition") == []
    # Extra annotations never remove the keep policy.
    annotated = render(sets=("crds.annotations.helm\\.sh/resource-policy=delete",))
    assert one(annotated, "CustomResourceDefinition")["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


@pytest.mark.parametrize(
    "bad",
    [
        "unknownTopLevel=1",
        "image.registry=ghcr.io",
        "metrics.serviceMonitor.honorLabels=true",
        "operator.logFormat=xml",
        "operator.opsrampAwsAccountId=12345",
        "securityContext.capabilities.keep={ALL}",
    ],
)
def test_schema_rejects_unknown_or_bad_values(render: Renderer, bad: str) -> None:
    """values.schema.json makes helm refuse unknown keys at any level and out-of-range values."""
    with pytest.raises(subprocess.CalledProcessError) as caught:
        render(sets=(bad,))
    assert "schema" in caught.value.stderr


def test_schema_closes_every_object() -> None:
    """Every object in values.schema.json that lists properties sets additionalProperties: false."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    open_objects: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if "properties" in node and node.get("additionalProperties") is not False:
                open_objects.append(where or "/")
            for key, child in node.items():
                walk(child, f"{where}/{key}")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, f"{where}/{i}")

    walk(schema, "")
    assert open_objects == []
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(values)
    jsonschema.Draft7Validator(schema).validate(merged(values, yaml.safe_load(NAMESPACED_VALUES.read_text())))


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's values merge: maps merge key by key, everything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def test_release_name_and_namespace_flow_through(render: Renderer) -> None:
    """Another namespace puts every namespaced object there and binds the ServiceAccount in it."""
    docs = render(namespace="ops")
    for doc in docs:
        if doc["kind"] in ("Deployment", "Service", "ServiceAccount"):
            assert doc["metadata"]["namespace"] == "ops"
    assert one(docs, "ClusterRoleBinding")["subjects"][0]["namespace"] == "ops"
    assert one(docs, "Deployment")["metadata"]["name"] == RELEASE


def test_shared_cluster_example_values_render_the_rules_they_describe(render: Renderer) -> None:
    """examples/helm/shared-cluster-values.yaml: no namespace keeps the default target, each team its own account."""
    docs = render(ROOT / "examples" / "helm" / "shared-cluster-values.yaml")
    rules = Settings.from_env(env_of(one(docs, "Deployment"))).guardrails
    assert rules.targets_for("payments") == ("arn:aws:iam::210987654321:role/opsramp-operator",)
    assert rules.targets_for("data-lake") == ("333344445555",)
    assert rules.targets_for("other") == ()
    assert rules.existing_roles_for("payments") == ("arn:aws:iam::210987654321:role/stacksets/*",)
    assert rules.existing_roles_for("data-lake") == ()
    assert rules.permissions_boundary_arn is not None
    assert sorted(r["metadata"]["namespace"] for r in by_kind(docs, "Role")) == [
        "data-lake",
        "data-warehouse",
        "payments",
    ]


def test_admission_policy_literals_agree_with_the_operators_rules(render: Renderer, tmp_path: Path) -> None:
    """Offline render check: the patterns Helm turns into the policy's CEL literals allow exactly what the operator
    allows, for tricky inputs (dots, `?`, ports, account ids, partitions, namespace patterns)."""
    values = {
        "operator": {"opsrampAwsAccountId": "999988887777"},
        "guardrails": {
            "allowedOpsRampAwsAccountIds": ["111122223333"],
            "allowedManagedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnly*", "arn:aws:iam::1234567890?2:policy/a.b"],
            "namespaceTargets": {"*": ["default"], "team-?": ["222233334444"], "ops": ["arn:aws:iam::*:role/op-*"]},
            "namespaceExistingRoles": {"*": None, "team-?": ["222233334444"], "ops": ["arn:aws:iam::*:role/ss-*"]},
            "allowedOpsRampHosts": ["*.api.opsramp.com", "127.0.0.1:8443", "Mixed.Example.com"],
        },
    }
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    docs = render(tmp_path / "values.yaml")
    variables = {v["name"]: v["expression"] for v in one(docs, "ValidatingAdmissionPolicy")["spec"]["variables"]}
    # Every literal is JSON, which is also CEL: lists and maps of double-quoted strings.
    targets = json.loads(variables["targetRules"])
    hosts, policies = json.loads(variables["hostPatterns"]), json.loads(variables["policyPatterns"])
    assert json.loads(variables["accounts"]) == ["999988887777", "111122223333"]
    rules = Settings.from_env(env_of(one(docs, "Deployment"))).guardrails

    def operator_allows(check: Any, *args: Any) -> bool:
        try:
            check(*args)
        except NeedsAttention:
            return False
        return True

    for namespace in ("team-a", "team-ab", "ops", "opsx", "other"):
        for target in (
            None,
            "arn:aws:iam::222233334444:role/x",
            "arn:aws-cn:iam::222233334444:role/x",
            "arn:aws:iam::222233334444:user/x",
            "arn:aws:iam::555566667777:role/op-1",
            "arn:aws:iam::555566667777:role/x-op-1",
        ):
            wanted = target or "default"
            admitted = any(
                re.match(key, namespace) and any(re.match(t, wanted) for t in entries)
                for key, entries in targets.items()
            )
            assert admitted == operator_allows(rules.check_target, namespace, target), (namespace, target)
    existing = json.loads(variables["existingRoleRules"])
    for namespace in ("team-a", "team-ab", "ops", "other"):
        for role in (
            "arn:aws:iam::222233334444:role/x",
            "arn:aws:iam::222233334444:role/path/x",
            "arn:aws-cn:iam::222233334444:role/x",
            "arn:aws:iam::555566667777:role/ss-1",
            "arn:aws:iam::555566667777:role/x-ss-1",
        ):
            admitted = any(
                re.match(key, namespace) and any(re.match(r, role) for r in entries)
                for key, entries in existing.items()
            )
            assert admitted == operator_allows(rules.check_existing_role, namespace, role, "x"), (namespace, role)
    for endpoint in (
        "https://acme.api.opsramp.com",
        "https://acme.api.opsramp.com:443",
        "https://acme.api.opsramp.com:8443",
        "https://acmeXapi.opsramp.com",
        "https://mixed.example.com",
        "http://127.0.0.1:8443",
        "http://127.0.0.1:8444",
    ):
        admitted = any(re.match(p, endpoint_hostport(endpoint)) for p in hosts)
        assert admitted == operator_allows(rules.check_endpoint, endpoint), endpoint
    for arn in (
        "arn:aws:iam::aws:policy/ReadOnlyAccess",
        "arn:aws:iam::aws:policy/AdministratorAccess",
        "arn:aws:iam::123456789012:policy/a.b",
        "arn:aws:iam::123456789012:policy/aXb",
    ):
        admitted = any(re.match(p, arn) for p in policies)
        assert admitted == operator_allows(rules.check_managed_policies, [arn]), arn


SHARDS = [
    {"name": "a", "labelSelector": "integrations.opsramp.com/shard=a"},
    {"name": "rest", "labelSelector": "integrations.opsramp.com/shard notin (a)"},
]


def test_shards_render_one_deployment_each_with_its_slice_and_peering(render: Renderer, tmp_path: Path) -> None:
    """`shards`: a Deployment per entry, pods told apart by label, the selector reaching the operator as settings it
    accepts, and a peering object per shard (peering stays inside a shard)."""
    values = tmp_path / "shards.yaml"
    values.write_text(yaml.safe_dump({"shards": SHARDS, "peering": {"enabled": True}}))
    docs = render(values)
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert [d["metadata"]["name"] for d in deployments] == [f"{RELEASE}-a", f"{RELEASE}-rest"]
    selectors = [d["spec"]["selector"]["matchLabels"] for d in deployments]
    assert selectors[0] != selectors[1], "two Deployments selecting the same pods would fight over them"
    peering_names = set()
    for deployment, shard in zip(deployments, SHARDS, strict=True):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        env = env_of(deployment)
        settings = Settings.from_env(env)
        assert (settings.shard_name, settings.shard_selector) == (shard["name"], shard["labelSelector"])
        assert settings.peering_name and settings.peering_name.endswith(f"-{shard['name']}")
        peering_names.add(settings.peering_name)
    peerings = {d["metadata"]["name"] for d in docs if d["kind"] == "ClusterKopfPeering"}
    assert peerings == peering_names
    for deployment in deployments:
        kubernetes_validate.validate(deployment, "1.37", strict=True)


def test_shards_with_one_name_twice_are_refused(render: Renderer, tmp_path: Path) -> None:
    """Two shards of one name would be one Deployment rendered twice."""
    values = tmp_path / "shards.yaml"
    values.write_text(yaml.safe_dump({"shards": [SHARDS[0], {**SHARDS[1], "name": "a"}]}))
    with pytest.raises(subprocess.CalledProcessError) as failure:
        render(values)
    assert "used twice" in failure.value.stderr
