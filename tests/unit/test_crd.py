"""The CRD: generated from the models, structural, documented, and refusing bad resources field by field."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from pydantic import ValidationError

from opsramp_aws_operator.models import AWSIntegrationSpec, default_role_name
from opsramp_codegen import crdgen

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / crdgen.CRD_FILENAME


def load_crd() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    return crd


def cr_schema() -> dict[str, Any]:
    schema: dict[str, Any] = load_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def validator() -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(
        crdgen.strict_schema(cr_schema()), format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    )


def schema_errors(obj: dict[str, Any]) -> list[str]:
    """Paths of the fields the CRD schema refuses, as dotted strings (a missing field names itself)."""
    paths: set[str] = set()
    for err in validator().iter_errors(obj):
        parts = [str(p) for p in err.absolute_path]
        if err.validator == "required":
            parts += [name for name in err.validator_value if name not in err.instance]
        paths.add(".".join(parts))
    return sorted(paths)


def good() -> dict[str, Any]:
    example: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "awsintegration-full.yaml").read_text())
    return example


def test_committed_crd_matches_models() -> None:
    """`make crds` would leave no diff: the committed CRD is exactly what the models generate."""
    assert CRD_FILE.read_text() == crdgen.render_crd(), "crds/ is stale: run `make crds`"


def test_crdgen_check_mode_detects_staleness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`crdgen --check` fails on a stale file, so CI cannot miss a forgotten `make crds`."""
    stale = tmp_path / "crds" / crdgen.CRD_FILENAME
    stale.parent.mkdir()
    stale.write_text(crdgen.render_crd().replace("awsint", "awsintx"))
    monkeypatch.setattr(crdgen, "repo_root", lambda: tmp_path)
    assert crdgen.main(["--check"]) == 1
    stale.write_text(crdgen.render_crd())
    assert crdgen.main(["--check"]) == 0


@pytest.mark.parametrize("k8s_version", ["1.29.0", "1.37.0"])
def test_crd_passes_kubernetes_validate_strict(k8s_version: str) -> None:
    """The CRD object itself is valid for Kubernetes 1.29 and 1.37 with unknown fields refused."""
    exe = Path(sys.executable).parent / "kubernetes-validate"
    result = subprocess.run(
        [str(exe), "--strict", "-k", k8s_version, str(CRD_FILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _walk(node: dict[str, Any], path: str, visit: Any) -> None:
    visit(node, path)
    for name, prop in node.get("properties", {}).items():
        _walk(prop, f"{path}.{name}", visit)
    if isinstance(node.get("items"), dict):
        _walk(node["items"], f"{path}[]", visit)
    if isinstance(node.get("additionalProperties"), dict):
        _walk(node["additionalProperties"], f"{path}{{}}", visit)


def test_schema_is_structural() -> None:
    """Every node has a type, no $ref/anyOf/nullable unions, no additionalProperties beside properties."""
    problems: list[str] = []

    def visit(node: dict[str, Any], path: str) -> None:
        if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            problems.append(f"{path}: no type")
        for banned in ("$ref", "anyOf", "oneOf", "allOf", "$defs", "title"):
            if banned in node:
                problems.append(f"{path}: has {banned}")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties together")

    _walk(cr_schema(), "", visit)
    assert problems == []


def test_every_field_is_documented() -> None:
    """Every spec and status field has a description, so `kubectl explain` documents the resource."""
    missing: list[str] = []

    def visit(node: dict[str, Any], path: str) -> None:
        if path.startswith((".spec", ".status")) and not path.endswith(("[]", "{}")) and not node.get("description"):
            missing.append(path)

    _walk(cr_schema(), "", visit)
    assert missing == []


def test_crd_names_columns_and_subresource() -> None:
    """Short name, category, status subresource and the printer columns users see in `kubectl get`."""
    crd = load_crd()
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["awsint"]
    assert names["categories"] == ["opsramp"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Ready",
        "Reason",
        "Role ARN",
        "Integration",
        "Accounts",
        "Age",
    ]


def test_schema_defaults_live_in_the_crd() -> None:
    """Defaults come from the schema (API server), never from code writing into spec."""
    spec = cr_schema()["properties"]["spec"]["properties"]
    assert spec["deletionPolicy"]["default"] == "Delete"
    assert spec["installAllLinkedAccounts"]["default"] is False
    assert spec["role"]["default"] == {}
    assert spec["role"]["properties"]["path"]["default"] == "/opsramp/"
    assert spec["role"]["properties"]["maxSessionDuration"]["default"] == 3600
    assert spec["role"]["properties"]["attachOpsRampPolicy"]["default"] is True


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_validate(path: Path) -> None:
    """Every example AWSIntegration validates against the CRD schema and parses into the model."""
    for doc in yaml.safe_load_all(path.read_text()):
        if doc["kind"] != "AWSIntegration":
            assert doc["kind"] == "Secret"
            continue
        assert schema_errors(doc) == []
        AWSIntegrationSpec.model_validate(doc["spec"])


def _set(obj: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        obj = obj.setdefault(key, {})
    if value is _DELETE:
        del obj[keys[-1]]
    else:
        obj[keys[-1]] = value


_DELETE = object()

# (case id, field to change, bad value, field path the schema must name)
BAD_RESOURCES: list[tuple[str, str, Any, str]] = [
    ("opsramp-account-11-digits", "spec.opsramp.awsAccountId", "12345678901", "spec.opsramp.awsAccountId"),
    ("opsramp-account-letters", "spec.opsramp.awsAccountId", "12345678901a", "spec.opsramp.awsAccountId"),
    ("aws-account-13-digits", "spec.aws.accountId", "1234567890123", "spec.aws.accountId"),
    ("region-typo-no-dash", "spec.regions", ["us-east1"], "spec.regions.0"),
    ("region-uppercase", "spec.regions", ["US-EAST-1"], "spec.regions.0"),
    ("regions-empty", "spec.regions", [], "spec.regions"),
    ("regions-missing", "spec.regions", _DELETE, "spec.regions"),
    ("role-name-65-chars", "spec.role.name", "r" * 65, "spec.role.name"),
    ("role-name-bad-char", "spec.role.name", "opsramp role", "spec.role.name"),
    ("role-path-no-trailing-slash", "spec.role.path", "/opsramp", "spec.role.path"),
    ("role-path-relative", "spec.role.path", "opsramp/", "spec.role.path"),
    ("max-session-too-short", "spec.role.maxSessionDuration", 900, "spec.role.maxSessionDuration"),
    ("max-session-too-long", "spec.role.maxSessionDuration", 43201, "spec.role.maxSessionDuration"),
    ("max-session-string", "spec.role.maxSessionDuration", "3600", "spec.role.maxSessionDuration"),
    (
        "boundary-not-an-arn",
        "spec.role.permissionsBoundaryArn",
        "ReadOnlyBoundary",
        "spec.role.permissionsBoundaryArn",
    ),
    (
        "boundary-role-arn",
        "spec.role.permissionsBoundaryArn",
        "arn:aws:iam::123456789012:role/x",
        "spec.role.permissionsBoundaryArn",
    ),
    (
        "managed-policy-bad-arn",
        "spec.role.managedPolicyArns",
        ["arn:aws:s3:::bucket"],
        "spec.role.managedPolicyArns.0",
    ),
    (
        "too-many-managed-policies",
        "spec.role.managedPolicyArns",
        [f"arn:aws:iam::aws:policy/P{i}" for i in range(10)],
        "spec.role.managedPolicyArns",
    ),
    ("deletion-policy-enum", "spec.deletionPolicy", "Orphan", "spec.deletionPolicy"),
    ("suspend-not-bool", "spec.suspend", "yes", "spec.suspend"),
    ("linked-accounts-not-bool", "spec.installAllLinkedAccounts", "true", "spec.installAllLinkedAccounts"),
    ("unknown-top-field", "spec.region", ["us-east-1"], "spec"),
    ("unknown-nested-field", "spec.role.color", "blue", "spec.role"),
    ("endpoint-http-public", "spec.opsramp.endpoint", "http://acme.api.opsramp.com", "spec.opsramp.endpoint"),
    ("endpoint-not-url", "spec.opsramp.endpoint", "acme.api.opsramp.com", "spec.opsramp.endpoint"),
    (
        "endpoint-with-path",
        "spec.opsramp.endpoint",
        "https://acme.api.opsramp.com/api/v2",
        "spec.opsramp.endpoint",
    ),
    ("tenant-id-bad", "spec.opsramp.tenantId", "tenant-12", "spec.opsramp.tenantId"),
    (
        "credentials-ref-missing",
        "spec.opsramp.credentialsSecretRef",
        _DELETE,
        "spec.opsramp.credentialsSecretRef",
    ),
    (
        "secret-name-uppercase",
        "spec.opsramp.credentialsSecretRef.name",
        "OpsRamp",
        "spec.opsramp.credentialsSecretRef.name",
    ),
    (
        "assume-role-arn-is-policy",
        "spec.aws.assumeRoleArn",
        "arn:aws:iam::123456789012:policy/x",
        "spec.aws.assumeRoleArn",
    ),
    ("aws-external-id-too-short", "spec.aws.externalId", "x", "spec.aws.externalId"),
    ("aws-external-id-bad-chars", "spec.aws.externalId", "has space!", "spec.aws.externalId"),
    ("display-name-too-long", "spec.displayName", "d" * 129, "spec.displayName"),
    ("tag-value-too-long", "spec.role.tags", {"team": "v" * 257}, "spec.role.tags.team"),
]


@pytest.mark.parametrize(("case", "field", "value", "named"), BAD_RESOURCES, ids=[c[0] for c in BAD_RESOURCES])
def test_bad_resource_is_refused_for_its_field(case: str, field: str, value: Any, named: str) -> None:
    """The CRD schema refuses the bad resource and names the field it breaks; the model refuses it too."""
    obj = good()
    _set(obj, field, copy.deepcopy(value))
    assert schema_errors(obj) == [named]
    with pytest.raises(ValidationError):
        AWSIntegrationSpec.model_validate(obj["spec"])


# Rules a structural schema cannot hold: CEL in the CRD (real API servers) and pydantic in the operator.
CEL_ONLY: list[tuple[str, str, Any]] = [
    ("all-with-regions", "spec.regions", ["All", "us-east-1"]),
    ("tag-key-reserved-aws", "spec.role.tags", {"aws:team": "x"}),
    ("tag-key-reserved-ours", "spec.role.tags", {"opsramp.com/owner-uid": "x"}),
    ("external-id-without-role", "spec.aws", {"externalId": "central-1"}),
]


@pytest.mark.parametrize(("case", "field", "value"), CEL_ONLY, ids=[c[0] for c in CEL_ONLY])
def test_rules_beyond_the_schema_are_refused_by_the_model(case: str, field: str, value: Any) -> None:
    """Cross-field rules the OpenAPI schema cannot express are refused by the model (and CEL where present)."""
    obj = good()
    _set(obj, field, copy.deepcopy(value))
    with pytest.raises(ValidationError):
        AWSIntegrationSpec.model_validate(obj["spec"])


def test_cel_rules_are_in_the_crd() -> None:
    """The cross-field rules are also CEL rules, so a real API server refuses them at admission."""
    spec = cr_schema()["properties"]["spec"]["properties"]
    assert "'All' in self" in spec["regions"]["x-kubernetes-validations"][0]["rule"]
    assert "aws:" in spec["role"]["properties"]["tags"]["x-kubernetes-validations"][0]["rule"]


@pytest.mark.parametrize(
    ("namespace", "name"),
    [("default", "production"), ("a" * 63, "b" * 200), ("team.x", "name_with.dots")],
)
def test_default_role_name_is_valid_and_stable(namespace: str, name: str) -> None:
    """Derived role names are valid IAM names of at most 64 characters and the same on every call."""
    role = default_role_name(namespace, name)
    assert len(role) <= 64
    assert AWSIntegrationSpec.model_validate({**good()["spec"], "role": {"name": role}}).role.name == role
    assert role == default_role_name(namespace, name)


def test_long_names_do_not_collide() -> None:
    """Two long resources that share a 55-character prefix still get different role names."""
    assert default_role_name("ns", "x" * 80 + "a") != default_role_name("ns", "x" * 80 + "b")
