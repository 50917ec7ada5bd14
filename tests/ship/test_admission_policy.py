"""The chart's ValidatingAdmissionPolicy, judged by a real kube-apiserver: `kubectl apply` of what the guardrails
refuse fails with a message naming the Helm value; what the admin allows is admitted; the operator's own writes
to a resource admitted earlier are never refused.

The policy is rendered from the same values as the operator's environment (templates/validatingadmissionpolicy.yaml
and deployment.yaml), and its CEL is compiled and run by the API server itself (etcd + kube-apiserver built from
source by opsramp_sandbox.controlplane, `make controlplane`).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ship_support import Manifest, Renderer, by_kind, one

realkube = pytest.importorskip("opsramp_sandbox.realkube", reason="needs the real control plane (issue 14)")

OPSRAMP = "999988887777"
ATTACKER = "444455556666"
ALLOWED_POLICY = "arn:aws:iam::123456789012:policy/team-extra"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
BOUNDARY = "arn:aws:iam::123456789012:policy/opsramp-boundary"
TARGET = "arn:aws:iam::111122223333:role/opsramp-operator"
OU = "ou-ab12-cdefgh12"
MEMBER = "210987654321"

STRICT = {
    "operator": {"opsrampAwsAccountId": OPSRAMP},
    "guardrails": {
        "allowedManagedPolicyArns": [ALLOWED_POLICY],
        "permissionsBoundaryArn": BOUNDARY,
        "namespaceTargets": {"*": ["default"], "team-b": [TARGET, "arn:aws:iam::*:role/opsramp-member"]},
        "namespaceExistingRoles": {"*": None, "team-b": ["123456789012"]},
        "namespaceOrganizations": {"team-b": [OU]},
    },
}
LENIENT = {
    "operator": {"opsrampAwsAccountId": OPSRAMP},
    "guardrails": {
        "allowedOpsRampAwsAccountIds": [ATTACKER],
        "allowedManagedPolicyArns": ["arn:aws:iam::*:policy/*", "arn:aws:iam::aws:policy/*"],
        "permissionsBoundaryArn": "",
        "namespaceTargets": {"*": ["default", "111122223333", MEMBER]},
        "allowedOpsRampHosts": ["*.opsramp.com", "evil.example.com", "10.0.0.7:8443"],
        "namespaceOrganizations": {"*": ["*"]},
    },
}

# (name, namespace, spec changes, reason and Helm value the refusal must name)
ATTACKS: list[tuple[str, str, dict[str, Any], tuple[str, str]]] = [
    ("own-account", "team-a", {"opsramp": {"awsAccountId": ATTACKER}},
     ("OpsRampAccountNotAllowed", "guardrails.allowedOpsRampAwsAccountIds")),
    ("admin-policy", "team-a", {"role": {"managedPolicyArns": [ADMIN]}},
     ("ManagedPolicyNotAllowed", "guardrails.allowedManagedPolicyArns")),
    ("own-boundary", "team-a", {"role": {"permissionsBoundaryArn": "arn:aws:iam::123456789012:policy/wide"}},
     ("PermissionsBoundaryNotAllowed", "guardrails.permissionsBoundaryArn")),
    ("hop-account", "team-a", {"aws": {"assumeRoleArn": TARGET}},
     ("TargetNotAllowed", "guardrails.namespaceTargets")),
    ("fake-endpoint", "team-a", {"opsramp": {"endpoint": "https://evil.example.com"}},
     ("EndpointNotAllowed", "guardrails.allowedOpsRampHosts")),
    ("ip-and-port", "team-a", {"opsramp": {"endpoint": "https://10.0.0.7:8443"}},
     ("EndpointNotAllowed", "guardrails.allowedOpsRampHosts")),
    ("bring-a-role", "team-a", {"role": {"arn": "arn:aws:iam::123456789012:role/team-b-opsramp"}},
     ("RoleNotAllowed", "guardrails.namespaceExistingRoles")),
    ("adopt-a-role", "team-a", {"adopt": {"role": True}},
     ("RoleNotAllowed", "guardrails.namespaceExistingRoles")),
    ("whole-org", "team-b", {"organization": {}},
     ("OrganizationNotAllowed", "guardrails.namespaceOrganizations")),
    ("other-ou", "team-b", {"organization": {"organizationalUnits": [OU, "ou-ab12-zzzzzzzz"]}},
     ("OrganizationNotAllowed", "guardrails.namespaceOrganizations")),
    ("any-ou", "team-a", {"organization": {"organizationalUnits": [OU]}},
     ("OrganizationNotAllowed", "guardrails.namespaceOrganizations")),
    ("other-member-role", "team-b", {"accounts": [MEMBER], "memberRoleName": "AdminEverywhere"},
     ("TargetNotAllowed", "guardrails.namespaceTargets")),
    ("default-member-role", "team-a", {"accounts": [MEMBER]},
     ("TargetNotAllowed", "guardrails.namespaceTargets")),
]  # fmt: skip
ALLOWED: list[tuple[str, str, dict[str, Any]]] = [
    ("plain", "team-a", {}),
    ("default-account-named", "team-a", {"opsramp": {"awsAccountId": OPSRAMP}}),
    ("allowed-policy", "team-a", {"role": {"managedPolicyArns": [ALLOWED_POLICY]}}),
    ("required-boundary", "team-a", {"role": {"permissionsBoundaryArn": BOUNDARY}}),
    ("own-target", "team-b", {"aws": {"assumeRoleArn": TARGET}}),
    ("own-brought-role", "team-b", {"role": {"arn": "arn:aws:iam::123456789012:role/team-b-opsramp"}}),
    ("own-adoption", "team-b", {"adopt": {"role": True}}),
    ("own-ou", "team-b", {"organization": {"organizationalUnits": [OU]}}),
    ("own-member-role", "team-b", {"accounts": [MEMBER], "memberRoleName": "opsramp-member"}),
    ("own-account-listed", "team-a", {"accounts": [MEMBER], "aws": {"accountId": MEMBER}}),
    ("upper-case-host-default-port", "team-a", {"opsramp": {"endpoint": "https://ACME.api.opsramp.com:443"}}),
]


def resource(name: str, namespace: str, changes: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "regions": ["us-east-1"],
        "opsramp": {
            "endpoint": "https://acme.api.opsramp.com",
            "tenantId": "client_1",
            "credentialsSecretRef": {"name": "opsramp-api-client"},
        },
    }
    for key, value in changes.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    return {
        "apiVersion": "integrations.opsramp.com/v1alpha1",
        "kind": "AWSIntegration",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def policy_docs(render: Renderer, values: dict[str, Any], tmp_path: Path) -> list[Manifest]:
    path = tmp_path / f"values-{abs(hash(json.dumps(values, sort_keys=True)))}.yaml"
    path.write_text(yaml.safe_dump(values))
    docs = render(path)
    return [one(docs, "ValidatingAdmissionPolicy"), one(docs, "ValidatingAdmissionPolicyBinding")]


def apply(plane: Any, *docs: Manifest) -> subprocess.CompletedProcess[str]:
    text = yaml.safe_dump_all(list(docs))
    result: subprocess.CompletedProcess[str] = plane.kubectl("apply", "-f", "-", stdin=text, check=False)
    return result


def refused(plane: Any, name: str, namespace: str, changes: dict[str, Any]) -> bool:
    """Whether a server-side dry-run create (admission runs, nothing is stored) of this spec is refused."""
    text = yaml.safe_dump(resource(f"{name}-{time.monotonic_ns()}", namespace, changes))
    return bool(plane.kubectl("create", "--dry-run=server", "-f", "-", stdin=text, check=False).returncode != 0)


def eventually(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def plane(render: Renderer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real control plane with the chart's CRD and the strict policy in force."""
    directory = tmp_path_factory.mktemp("admission")
    crd = one(render(), "CustomResourceDefinition")
    with realkube.running_control_plane(directory / "plane", crds=[crd]) as running:
        for namespace in ("team-a", "team-b"):
            running.ensure_namespace(namespace)
        result = apply(running, *policy_docs(render, STRICT, directory))
        assert result.returncode == 0, result.stderr
        # A new policy takes effect once the API server has compiled it: wait for its first refusal.
        attacker = {"opsramp": {"awsAccountId": ATTACKER}}
        eventually("the policy in force", lambda: refused(running, "probe", "team-a", attacker))
        yield running


def test_each_attack_fails_kubectl_apply_naming_the_value(plane: Any) -> None:
    """Every attack is refused at admission; the message has the operator's reason and the Helm value."""
    for name, namespace, changes, (reason, value) in ATTACKS:
        result = apply(plane, resource(name, namespace, changes))
        assert result.returncode != 0, f"{name} was admitted"
        assert reason in result.stderr and value in result.stderr, (name, result.stderr)
        assert "ValidatingAdmissionPolicy" in result.stderr or "denied" in result.stderr, result.stderr


def test_what_the_admin_allows_is_admitted(plane: Any) -> None:
    """Specs inside the rules are admitted (defaults, the named default account, the required boundary...)."""
    for name, namespace, changes in ALLOWED:
        result = apply(plane, resource(name, namespace, changes))
        assert result.returncode == 0, (name, result.stderr)


def test_same_specs_admitted_once_allowed_and_operator_writes_never_refused(
    plane: Any, render: Renderer, tmp_path: Path
) -> None:
    """Lenient values admit every attack; tightened again, metadata and status writes of those objects still go
    through (the operator's finalizers), while a spec change is judged and refused."""
    assert apply(plane, *policy_docs(render, LENIENT, tmp_path)).returncode == 0
    first = ATTACKS[0]
    eventually("the lenient policy", lambda: not refused(plane, first[0], first[1], first[2]))
    for name, namespace, changes, _ in ATTACKS:
        result = apply(plane, resource(name, namespace, changes))
        assert result.returncode == 0, (name, result.stderr)

    assert apply(plane, *policy_docs(render, STRICT, tmp_path)).returncode == 0
    eventually("the strict policy again", lambda: refused(plane, first[0], first[1], first[2]))
    for name, namespace, _, _ in ATTACKS:
        patch = json.dumps({"metadata": {"finalizers": ["integrations.opsramp.com/cleanup"]}})
        meta = plane.kubectl("-n", namespace, "patch", "awsint", name, "--type=merge", "-p", patch, check=False)
        assert meta.returncode == 0, (name, meta.stderr)
        status = plane.kubectl(
            "-n", namespace, "patch", "awsint", name, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"observedGeneration": 1}}), check=False,
        )  # fmt: skip
        assert status.returncode == 0, (name, status.stderr)
        spec = plane.kubectl(
            "-n", namespace, "patch", "awsint", name, "--type=merge", "-p", '{"spec":{"regions":["eu-west-1"]}}',
            check=False,
        )  # fmt: skip
        assert spec.returncode != 0, f"a spec change of {name} was admitted under the strict policy"
        plane.kubectl("-n", namespace, "patch", "awsint", name, "--type=merge", "-p", '{"metadata":{"finalizers":[]}}')


def test_the_policy_is_in_both_renders(default_docs: list[Manifest]) -> None:
    """Default values render the policy and its binding (deploy/ carries them too)."""
    assert len(by_kind(default_docs, "ValidatingAdmissionPolicy")) == 1
    assert one(default_docs, "ValidatingAdmissionPolicyBinding")["spec"]["validationActions"] == ["Deny"]
