"""A hostile tenant against the real operator process: each attack as a tenant writes it is refused, IAM holds
nothing built from it, the condition names the setting that would allow it, and once the admin allows it the very
same resource reaches Ready.

The operator checks this itself (no admission policy in the sandbox's Kubernetes emulator); tests/ship proves the
same specs are refused at `kubectl apply` by the chart's ValidatingAdmissionPolicy on a real API server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from e2e_harness import (
    ALL_OPERATORS,
    AWS_ACCOUNT,
    CLIENT_ID,
    OPSRAMP_ACCOUNT,
    SECRETS_SEEN,
    TENANT,
    Kube,
    Operator,
    Sandbox,
    condition,
    delete_and_wait,
    get_role,
    integration_resource,
    policies_owned_by,
    roles_owned_by,
    trust_document,
    wait_condition,
    wait_for,
    wait_ready,
    warning_events,
)

from opsramp_aws_operator.guardrails import endpoint_hostport
from opsramp_sandbox.opsramp import ApiClient, OpsRampEmulator

pytestmark = pytest.mark.e2e

ATTACKER_ACCOUNT = "444455556666"
SKIP_CLEANUP = "integrations.opsramp.com/skip-cleanup"
TENANT_POLICY = f"arn:aws:iam::{AWS_ACCOUNT}:policy/tenant-wide-open"
TARGET_ROLE = f"arn:aws:iam::{AWS_ACCOUNT}:role/tenant-chosen-operator-role"


@dataclass(frozen=True)
class Attack:
    name: str
    reason: str
    setting: str
    spec: dict[str, Any]
    # Whether the same resource reaches Ready once the admin allows it. A role trusting the attacker's account
    # never does (OpsRamp cannot assume it), but once allowed the operator does create it.
    allowed_later: bool = True


def attacks(fake_endpoint: str) -> list[Attack]:
    opsramp = {"tenantId": TENANT, "credentialsSecretRef": {"name": "opsramp-api-client"}}
    return [
        Attack(
            "own-account",
            "OpsRampAccountNotAllowed",
            "OPERATOR_ALLOWED_OPSRAMP_AWS_ACCOUNT_IDS",
            {"opsramp": {**opsramp, "awsAccountId": ATTACKER_ACCOUNT}},
            allowed_later=False,
        ),
        Attack(
            "wide-policy",
            "ManagedPolicyNotAllowed",
            "OPERATOR_ALLOWED_MANAGED_POLICY_ARNS",
            {"role": {"managedPolicyArns": [TENANT_POLICY]}},
        ),
        Attack(
            "other-target",
            "TargetNotAllowed",
            "OPERATOR_NAMESPACE_TARGETS",
            {"aws": {"assumeRoleArn": TARGET_ROLE}},
        ),
        Attack(
            "fake-endpoint",
            "EndpointNotAllowed",
            "OPERATOR_ALLOWED_OPSRAMP_HOSTS",
            {"opsramp": {**opsramp, "endpoint": fake_endpoint}},
        ),
    ]


@dataclass
class World:
    sandbox: Sandbox
    kube: Kube
    namespace: str
    fake: OpsRampEmulator
    attacks: list[Attack]


@pytest.fixture(scope="module")
def world(sandbox: Sandbox, kube: Kube, operator_process: Operator) -> Iterator[World]:
    """A namespace with every attack in it, under the default guardrails (the session operator), and a second
    OpsRamp emulator playing the tenant's fake endpoint, which would collect the client secret."""
    fake = OpsRampEmulator(
        clients=[ApiClient(TENANT, CLIENT_ID, sandbox.client_secret)],
        opsramp_aws_account_id=OPSRAMP_ACCOUNT,
        iam_endpoint_url=sandbox.moto.url,
    )
    fake.start()
    namespace = kube.namespace("guardrails")
    kube.apply_secret(namespace, "opsramp-api-client", {"clientId": CLIENT_ID, "clientSecret": sandbox.client_secret})
    iam = sandbox.iam()
    iam.create_policy(
        PolicyName="tenant-wide-open",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    iam.create_role(RoleName="tenant-chosen-operator-role", AssumeRolePolicyDocument=json.dumps({"Statement": []}))
    found = attacks(fake.url)
    for attack in found:
        body = integration_resource(namespace, attack.name, sandbox.opsramp.url)
        for key, value in attack.spec.items():
            body["spec"][key] = {**body["spec"].get(key, {}), **value}
        kube.create(body)
    try:
        yield World(sandbox, kube, namespace, fake, found)
    finally:
        for attack in found:  # whatever a failed test left: released without cleanup
            if kube.get(namespace, attack.name) is not None:
                kube.patch_meta(namespace, attack.name, {"annotations": {SKIP_CLEANUP: "true"}})
                kube.delete(namespace, attack.name)
        fake.stop()
        iam.delete_role(RoleName="tenant-chosen-operator-role")


def test_each_attack_is_refused_naming_the_setting_and_iam_holds_nothing(world: World) -> None:
    """Stalled with the attack's reason and the setting's name, one Warning, nothing in IAM, nothing sent."""
    for attack in world.attacks:
        obj = wait_condition(world.kube, world.namespace, attack.name, "Stalled", "True", attack.reason, timeout=60)
        message = condition(obj, "Ready")["message"]
        assert attack.setting in message, (attack.name, message)
        assert condition(obj, "Ready")["reason"] == attack.reason
        uid = obj["metadata"]["uid"]
        assert roles_owned_by(world.sandbox, uid) == [], attack.name
        assert policies_owned_by(world.sandbox, uid) == [], attack.name
        assert not (obj.get("status") or {}).get("externalIdSecretName"), "nothing is generated for a refused spec"
        reasons = [e.reason for e in warning_events(world.kube, world.namespace, attack.name)]
        assert reasons == [attack.reason], reasons
    # The fake endpoint never heard from the operator: no token call, so no client secret.
    assert world.fake.state()["request_log"] == []


@pytest.fixture(scope="module")
def allowing_operator(world: World, operator_process: Operator) -> Iterator[Operator]:
    """The admin allows what the tenants asked for (but the attacker's own account): the session operator is
    stopped and one with these settings runs the module's remaining tests."""
    operator_process.stop()
    allow = {
        "OPERATOR_ALLOWED_OPSRAMP_AWS_ACCOUNT_IDS": ATTACKER_ACCOUNT,
        "OPERATOR_ALLOWED_MANAGED_POLICY_ARNS": f"arn:aws:iam::{AWS_ACCOUNT}:policy/tenant-*",
        "OPERATOR_NAMESPACE_TARGETS": json.dumps({"*": ["default"], "guardrails-*": [TARGET_ROLE]}),
        "OPERATOR_ALLOWED_OPSRAMP_HOSTS": ",".join(
            ["*.opsramp.com", endpoint_hostport(world.sandbox.opsramp.url), endpoint_hostport(world.fake.url)]
        ),
    }
    op = Operator(world.sandbox, extra_env=allow)
    ALL_OPERATORS.append(op)
    op.start()
    try:
        yield op
        # Cleanup while the endpoint and target are still allowed: everything they made goes.
        for attack in world.attacks:
            delete_and_wait(world.kube, world.namespace, attack.name, timeout=60)
    finally:
        op.stop()
        operator_process.start()


def test_the_same_resources_reach_ready_once_the_admin_allows_them(world: World, allowing_operator: Operator) -> None:
    """Allowed by the admin's settings, each resource (unchanged) reaches Ready; the attacker's account still not."""
    for attack in world.attacks:
        if not attack.allowed_later:
            uid = world.kube.get(world.namespace, attack.name)["metadata"]["uid"]  # type: ignore[index]
            (role,) = wait_for("the allowed role", lambda: roles_owned_by(world.sandbox, uid), timeout=60)  # noqa: B023
            trust = trust_document(get_role(world.sandbox, role) or {})
            assert trust["Statement"][0]["Principal"]["AWS"] == f"arn:aws:iam::{ATTACKER_ACCOUNT}:root"
            continue
        obj = wait_ready(world.kube, world.namespace, attack.name, timeout=90)
        SECRETS_SEEN.add(world.sandbox.client_secret)
        if attack.name == "wide-policy":
            attached = world.sandbox.iam().list_attached_role_policies(
                RoleName=obj["status"]["roleArn"].rsplit("/")[-1]
            )
            assert TENANT_POLICY in [p["PolicyArn"] for p in attached["AttachedPolicies"]]
        if attack.name == "fake-endpoint":
            assert [i["id"] for i in world.fake.integrations(TENANT)] == [obj["status"]["integrationId"]]
