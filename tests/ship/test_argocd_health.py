"""Tests of the Argo CD integration: the Lua health check under real Lua 5.1, its upstream-format cases, the example."""

from __future__ import annotations

import importlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51
from ship_support import ARGOCD, CHART, CRD_FILE, CUSTOMIZATION

# jsonschema ships no type stubs and is not in mypy's ignore list; a typed handle keeps mypy strict here.
jsonschema: Any = importlib.import_module("jsonschema")

HEALTH_LUA = ARGOCD / "health.lua"
CASES = yaml.safe_load((CUSTOMIZATION / "health_test.yaml").read_text())["tests"]


def run_health(obj: dict[str, Any], script: str | None = None) -> dict[str, Any]:
    """Run the health script the way Argo CD does: `obj` global in, `{status, message}` table out."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script if script is not None else HEALTH_LUA.read_text())
    return {key: result[key] for key in ("status", "message") if result[key] is not None}


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_health_case(case: dict[str, Any]) -> None:
    """Each health_test.yaml case (upstream resource_customizations format) gets its status and message."""
    obj = yaml.safe_load((CUSTOMIZATION / case["inputPath"]).read_text())
    assert run_health(obj) == case["healthStatus"]


def test_cases_cover_every_status() -> None:
    """The upstream-format cases exercise Healthy, Progressing, Degraded and Suspended."""
    assert {c["healthStatus"]["status"] for c in CASES} == {"Healthy", "Progressing", "Degraded", "Suspended"}
    listed = {(CUSTOMIZATION / c["inputPath"]).resolve() for c in CASES}
    assert listed == {p.resolve() for p in (CUSTOMIZATION / "testdata").glob("*.yaml")}


def test_testdata_are_valid_awsintegrations() -> None:
    """Every testdata object validates against the CRD's openAPIV3Schema, so the cases look like real resources."""
    crd = yaml.safe_load(CRD_FILE.read_text())
    (version,) = crd["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
    for path in sorted((CUSTOMIZATION / "testdata").glob("*.yaml")):
        obj = yaml.safe_load(path.read_text())
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
        assert errors == [], path.name


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        ("InvalidSpec", "Degraded"),
        ("NotOwned", "Degraded"),
        ("AccountMismatch", "Degraded"),
        ("OpsRampAuthFailed", "Degraded"),
        ("OpsRampRejected", "Degraded"),
        ("AwsAccessDenied", "Degraded"),
        ("Conflict", "Degraded"),
        ("SecretNotFound", "Degraded"),
        ("AwsLimitExceeded", "Degraded"),
        ("CredentialsSecretNotFound", "Degraded"),
        ("DisplayNameInUse", "Degraded"),
        ("AdoptionRefused", "Degraded"),
        ("RolePermissionsMissing", "Degraded"),
        ("ExternalIdRotationFailed", "Degraded"),
        ("DriftDetected", "Degraded"),
        ("AwsThrottling", "Progressing"),
        ("AwsServiceUnavailable", "Progressing"),
        ("AwsConnectionError", "Progressing"),
        ("OpsRampCannotAssumeRole", "Progressing"),
        ("OpsRampRateLimited", "Progressing"),
        ("OpsRampUnavailable", "Progressing"),
        ("Reconciling", "Progressing"),
    ],
)
def test_ready_false_reason_table(reason: str, status: str) -> None:
    """Ready=False is Degraded only for reasons a person must fix; transient ones stay Progressing."""
    obj = {
        "metadata": {"name": "x", "generation": 2},
        "spec": {},
        "status": {
            "observedGeneration": 2,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": reason,
                    "message": f"because {reason}",
                    "observedGeneration": 2,
                }
            ],
        },
    }
    assert run_health(obj) == {"status": status, "message": f"because {reason}"}


AWS_CODES = (
    "AccessDenied",
    "NoSuchEntity",
    "MalformedPolicyDocument",
    "LimitExceeded",
    "InvalidInput",
    "UnmodifiableEntity",
    "EntityAlreadyExists",
    "Throttling",
    "ServiceUnavailable",
    "ConcurrentModification",
)


@pytest.mark.parametrize("code", AWS_CODES)
@pytest.mark.parametrize("with_stalled", [True, False], ids=["full-status", "ready-only"])
def test_agrees_with_the_operator_on_aws_errors(code: str, with_stalled: bool) -> None:
    """For an AWS error code, Degraded iff the operator classifies it as needing a person, with or without Stalled."""
    from botocore.exceptions import ClientError

    from opsramp_aws_operator.aws import classify_error
    from opsramp_aws_operator.conditions import PassResult, build_status
    from opsramp_aws_operator.errors import NeedsAttention

    response: Any = {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": 400}}
    error = classify_error(ClientError(response, "GetRole"), "GetRole", "role r")
    result = PassResult(role="failed", failed_step="role", error=error)
    status, _ = build_status(result, None, 4, datetime(2026, 11, 20, tzinfo=UTC))
    if not with_stalled:
        status["conditions"] = [c for c in status["conditions"] if c["type"] == "Ready"]
    obj = {"metadata": {"name": "x", "generation": 4}, "spec": {}, "status": status}
    expected = "Degraded" if isinstance(error, NeedsAttention) else "Progressing"
    assert run_health(obj) == {"status": expected, "message": error.message}


def test_healthy_on_the_operators_own_ready_status() -> None:
    """The status the operator writes after a clean pass is Healthy."""
    from opsramp_aws_operator.conditions import PassResult, build_status

    result = PassResult(
        role="done", integration="done", monitoring="done", role_arn="arn:aws:iam::1:role/r", integration_id="7"
    )
    status, _ = build_status(result, None, 9, datetime(2026, 11, 20, tzinfo=UTC))
    obj = {"metadata": {"name": "x", "generation": 9}, "spec": {}, "status": status}
    assert run_health(obj)["status"] == "Healthy"
    # Everything in place but OpsRamp's verdict on the role still awaited: not Healthy yet.
    waiting = PassResult(role="done", integration="done", role_arn="arn:aws:iam::1:role/r", integration_id="7")
    status, _ = build_status(waiting, None, 9, datetime(2026, 11, 20, tzinfo=UTC))
    assert run_health({"metadata": {"generation": 9}, "spec": {}, "status": status})["status"] == "Progressing"


def test_monitoring_disabled_by_spec_is_suspended() -> None:
    """spec.monitoring.enabled false: the integration is deliberately off, which Argo CD shows as Suspended."""
    from opsramp_aws_operator.conditions import PassResult, build_status

    result = PassResult(role="done", integration="done", monitoring="disabled", monitoring_message="off")
    status, _ = build_status(result, None, 3, datetime(2026, 11, 20, tzinfo=UTC))
    obj = {"metadata": {"generation": 3}, "spec": {"monitoring": {"enabled": False}}, "status": status}
    assert run_health(obj) == {
        "status": "Suspended",
        "message": "Monitoring is disabled (spec.monitoring.enabled is false)",
    }


def test_ready_true_without_generation_proof_is_progressing() -> None:
    """Ready=True with no observedGeneration anywhere is not Healthy: nothing proves it covers the current spec."""
    obj = {
        "metadata": {"name": "x", "generation": 2},
        "spec": {},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "ok"}]},
    }
    assert run_health(obj) == {"status": "Progressing", "message": "ok"}


def test_condition_falls_back_to_status_observed_generation() -> None:
    """A Ready condition without its own observedGeneration is judged by status.observedGeneration."""
    obj = {
        "metadata": {"name": "x", "generation": 7},
        "spec": {"suspend": False},
        "status": {
            "observedGeneration": 7,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "all good"}],
        },
    }
    assert run_health(obj) == {"status": "Healthy", "message": "all good"}


def test_copies_of_the_health_check_are_current() -> None:
    """The resource_customizations copy and the argocd-cm snippet hold exactly deploy/argocd/health.lua."""
    lua = HEALTH_LUA.read_text()
    assert (CUSTOMIZATION / "health.lua").read_text() == lua
    cm = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())
    assert cm["metadata"]["name"] == "argocd-cm"
    assert cm["data"]["resource.customizations.health.integrations.opsramp.com_AWSIntegration"] == lua


def test_example_applications_order_crd_before_resources() -> None:
    """The example syncs the operator (CRD at a negative wave) before integrations that skip the dry run."""
    apps = {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all((ARGOCD / "application.yaml").read_text())}
    operator, integrations = apps["opsramp-aws-operator"], apps["aws-integrations"]
    for app in (operator, integrations):
        assert app["apiVersion"] == "argoproj.io/v1alpha1"
        assert app["kind"] == "Application"

    def wave(meta: dict[str, Any]) -> int:
        return int(meta.get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))

    assert wave(operator["metadata"]) < wave(integrations["metadata"])
    helm_values = operator["spec"]["source"]["helm"]["valuesObject"]
    assert wave({"annotations": helm_values["crds"]["annotations"]}) < 0
    assert "SkipDryRunOnMissingResource=true" in integrations["spec"]["syncPolicy"]["syncOptions"]
    # The Application points at this chart, with values the chart's schema accepts.
    assert operator["spec"]["source"]["path"] == "charts/opsramp-aws-operator"
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    for key, value in helm_values.items():
        defaults[key] = {**defaults[key], **value}
    jsonschema.Draft7Validator(schema).validate(defaults)
