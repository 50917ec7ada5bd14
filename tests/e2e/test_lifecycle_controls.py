"""Lifecycle controls end to end: Observe, adoption, a restore's new UID, a brought role, External ID rotation, plan.

The module's operator reaches moto through the fault proxy, whose counters are the IAM side of "zero writes" and of
"the plan matches what the operator then does"; the OpsRamp emulator's request log and Kubernetes' own count of the
requests it served (the real control plane's audit log of the operator's ServiceAccount, or the emulator's
`/_emulator/requests`) are the other two sides.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from e2e_harness import (
    AWS_ACCOUNT,
    OPSRAMP_ACCOUNT,
    SECRETS_SEEN,
    TENANT,
    Kube,
    Operator,
    Sandbox,
    condition,
    fast_settings,
    get_role,
    integration_by_id,
    integration_resource,
    integrations_named,
    role_state,
    roles_owned_by,
    sandbox_guardrails,
    trust_document,
    wait_condition,
    wait_for,
    wait_ready,
)

from opsramp_aws_operator.policies import load_opsramp_policy, trust_policy
from opsramp_sandbox.faultproxy import FaultProxy

pytestmark = pytest.mark.e2e

READS = ("Get", "List", "Simulate")


@dataclass
class World:
    sandbox: Sandbox
    kube: Kube
    proxy: FaultProxy
    operator: Operator


@pytest.fixture(scope="module")
def world(sandbox: Sandbox, kube: Kube, operator_process: Operator) -> Iterator[World]:
    """An operator of this module's own whose AWS calls go through the fault proxy (counting them by action)."""
    operator_process.stop()
    with FaultProxy(sandbox.moto.url, seed=16) as proxy:
        op = Operator(sandbox, extra_env={"AWS_ENDPOINT_URL": proxy.url})
        op.start()
        try:
            yield World(sandbox, kube, proxy, op)
        finally:
            op.stop()
            operator_process.start()


def iam_writes(proxy: FaultProxy) -> dict[str, int]:
    return {a: n for a, n in proxy.counters.by_action.items() if not a.startswith(READS)}


def kube_counts(sandbox: Sandbox, client: str = "") -> dict[tuple[str, str], int]:
    """(verb, resource[/subresource]) -> requests Kubernetes has served, from clients whose User-Agent starts with
    `client`: on the emulator every client's (`/_emulator/requests`), on the real control plane the operator's
    ServiceAccount's (its audit log; the tests act as the admin, whom it does not log); {} on a cluster of your own."""
    counts: dict[tuple[str, str], int] = {}
    if sandbox.kube is not None:
        rows = requests.get(f"{sandbox.kube.url}/_emulator/requests", timeout=10).json()["requests"]
        for row in rows:
            if str(row["client"]).startswith(client):
                key = (row["verb"], row["resource"])
                counts[key] = counts.get(key, 0) + int(row["count"])
    elif sandbox.plane is not None:
        for event in sandbox.plane.audit_events():
            if str(event.get("userAgent") or "").startswith(client):
                ref = event.get("objectRef") or {}
                resource = "/".join(p for p in (ref.get("resource"), ref.get("subresource")) if p)
                key = (str(event.get("verb")), resource)
                counts[key] = counts.get(key, 0) + 1
    return counts


def delta(after: dict[Any, int], before: dict[Any, int]) -> dict[Any, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def opsramp_api_writes(sandbox: Sandbox, since: int) -> list[str]:
    """Non-GET OpsRamp API requests after log entry `since` (token requests are not writes)."""
    log = sandbox.opsramp.state()["request_log"][since:]
    return [f"{r['method']} {r['route']}" for r in log if r["method"] != "GET" and "/oauth/" not in r["route"]]


def external_id_secret(kube: Kube, namespace: str, name: str) -> str:
    value = "ext" + secrets.token_hex(16)
    SECRETS_SEEN.add(value)
    kube.apply_secret(namespace, name, {"externalId": value})
    return value


def make_role(sandbox: Sandbox, name: str, trust: dict[str, Any], path: str = "/opsramp/", **extra: Any) -> str:
    """A role made by hand (a StackSet, AFT, a person): no ownership tags."""
    arn: str = sandbox.iam().create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=json.dumps(trust), **extra)[
        "Role"
    ]["Arn"]
    return arn


def gets_of_role(world: World) -> int:
    return world.proxy.counters.by_action.get("GetRole", 0)


def test_observe_reports_every_difference_writes_nothing_then_adoption_takes_over(world: World, namespace: str) -> None:
    """Observe on a hand-made role and integration lists each difference in conditions, status and an Event with zero
    writes to IAM, OpsRamp and Kubernetes (status and Events aside) and no finalizer; deleting it touches nothing.
    The same spec in Manage with spec.adopt takes both over: Ready, tagged, no second integration, drift corrected."""
    sandbox, kube = world.sandbox, world.kube
    external_id = external_id_secret(kube, namespace, "opsramp-external-id")
    role_name = f"stackset-{namespace}"[:64]
    role_arn = make_role(sandbox, role_name, trust_policy(OPSRAMP_ACCOUNT, external_id), MaxSessionDuration=7200)
    display = f"{namespace}/observed"
    seeded = sandbox.opsramp.seed_integration(
        TENANT,
        {
            "displayName": display,
            "integration": {"id": "AWS", "name": "AWS"},
            "credential": {
                "AccountNumber": AWS_ACCOUNT,
                "AWSType": "External ID",
                "AssumeRoleARN": f"arn:aws:iam::{AWS_ACCOUNT}:role/legacy-opsramp",
                "ExternalId": external_id,
                "Regions": "us-west-2",
            },
        },
    )
    spec: dict[str, Any] = {
        "externalIdSecretRef": {"name": "opsramp-external-id"},
        "role": {"name": role_name},
        "managementPolicy": "Observe",
    }
    role_before = role_state(sandbox, role_name)
    iam_before, kube_before = iam_writes(world.proxy), kube_counts(sandbox)
    log_before = len(sandbox.opsramp.state()["request_log"])
    kube.create(integration_resource(namespace, "observed", sandbox.opsramp.url, **spec))

    obj = wait_condition(kube, namespace, "observed", "Ready", "False", "DriftDetected", timeout=60)
    differences = "\n".join(obj["status"]["differences"])
    assert "maxSessionDuration is 7200, the spec wants 3600" in differences
    assert f"policy {role_name}-opsramp-1: does not exist (would create)" in differences
    assert "NotOwned" in differences and "spec.adopt.role" in differences  # Manage would refuse the role...
    assert "DisplayNameInUse" in differences  # ...and the integration, which uses another role
    assert condition(obj, "RoleReady")["reason"] == "RoleDiffers"
    assert "maxSessionDuration is 7200" in condition(obj, "RoleReady")["message"]
    assert condition(obj, "IntegrationReady")["reason"] == "IntegrationDiffers"
    assert condition(obj, "Stalled")["status"] == "False"
    assert external_id not in json.dumps(obj)
    wait_for(
        "a DriftDetected Event",
        lambda: any(e.reason == "DriftDetected" and e.type == "Warning" for e in kube.events(namespace, "observed")),
        30,
    )
    # Two more passes (each reads the role), then count: nothing written anywhere but status and Events.
    start = gets_of_role(world)
    wait_for("two more Observe passes", lambda: gets_of_role(world) >= start + 2, 30)
    meta = (kube.get(namespace, "observed") or {})["metadata"]
    assert not meta.get("finalizers")
    assert not [a for a in meta.get("annotations") or {} if a.startswith("integrations.opsramp.com/")]
    assert delta(iam_writes(world.proxy), iam_before) == {}
    assert opsramp_api_writes(sandbox, log_before) == []
    kube_served = delta(kube_counts(sandbox), kube_before)
    kube_writes = {
        key: n
        for key, n in kube_served.items()
        if key[0] in ("create", "update", "patch", "delete") and key[1] not in ("awsintegrations/status", "events")
    }
    if sandbox.kube is not None or sandbox.plane is not None:
        # The count sees the operator's writes at all: its status patches are there.
        assert kube_served.get(("patch", "awsintegrations/status")), kube_served
    if sandbox.kube is not None:
        assert kube_writes == {("create", "awsintegrations"): 1}  # the test's own create, nothing else
    elif sandbox.plane is not None:
        assert kube_writes == {}  # the operator's own requests only (the test's create is the admin's)

    # Deleting an Observe resource: gone at once, nothing touched.
    kube.delete(namespace, "observed")
    wait_for("observed gone", lambda: kube.get(namespace, "observed") is None, 15)
    assert role_state(sandbox, role_name) == role_before
    assert integration_by_id(sandbox, seeded["id"]) is not None
    assert delta(iam_writes(world.proxy), iam_before) == {}

    # The same spec, managed, with both taken over.
    spec = {**spec, "managementPolicy": "Manage", "adopt": {"role": True, "integration": True}}
    kube.create(integration_resource(namespace, "observed", sandbox.opsramp.url, **spec))
    obj = wait_ready(kube, namespace, "observed", timeout=90)
    assert obj["status"]["roleArn"] == role_arn
    assert obj["status"]["integrationId"] == seeded["id"]
    assert obj["status"]["adopted"]["role"]["previousOwner"] == "none"
    assert obj["status"]["adopted"]["integration"]["name"] == seeded["id"]
    assert roles_owned_by(sandbox, obj["metadata"]["uid"]) == [role_name]
    (integration,) = integrations_named(sandbox, display)
    assert integration["credential"]["AssumeRoleARN"] == role_arn
    assert integration["credential"]["Regions"] == "us-east-1"
    assert (get_role(sandbox, role_name) or {})["MaxSessionDuration"] == 3600
    assert any(e.reason == "Adopted" for e in kube.events(namespace, "observed"))

    # Later drift is corrected like on any role of the operator's.
    open_trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "sts:AssumeRole"}
        ],
    }
    sandbox.iam().update_assume_role_policy(RoleName=role_name, PolicyDocument=json.dumps(open_trust))
    wait_for(
        "trust restored",
        lambda: (
            (role := get_role(sandbox, role_name)) is not None
            and trust_document(role)["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{OPSRAMP_ACCOUNT}:root"}
        ),
        30,
    )


def test_adopting_a_role_that_trusts_another_account_is_refused_and_leaves_it_untouched(
    world: World, namespace: str
) -> None:
    """A role whose trust admits an account besides OpsRamp's: AdoptionRefused naming it; nothing written."""
    sandbox, kube = world.sandbox, world.kube
    external_id = external_id_secret(kube, namespace, "opsramp-external-id")
    trust = trust_policy(OPSRAMP_ACCOUNT, external_id)
    trust["Statement"].append(
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "sts:AssumeRole"}
    )
    role_name = f"shared-{namespace}"[:64]
    make_role(sandbox, role_name, trust)
    before = role_state(sandbox, role_name)
    iam_before = iam_writes(world.proxy)
    kube.create(
        integration_resource(
            namespace,
            "refused",
            sandbox.opsramp.url,
            externalIdSecretRef={"name": "opsramp-external-id"},
            role={"name": role_name},
            adopt={"role": True},
        )
    )
    obj = wait_condition(kube, namespace, "refused", "Stalled", "True", "AdoptionRefused")
    assert "also admits arn:aws:iam::111122223333:root" in condition(obj, "Stalled")["message"]
    assert role_state(sandbox, role_name) == before
    assert delta(iam_writes(world.proxy), iam_before) == {}
    assert integrations_named(sandbox, f"{namespace}/refused") == []


def test_a_restored_resource_is_not_owned_until_adopted_then_ready_without_a_duplicate(
    world: World, namespace: str
) -> None:
    """Finalizer removed by hand, deleted, re-created with the same spec (a new UID): NotOwned; adopted: Ready, with
    the same role and the same integration."""
    sandbox, kube = world.sandbox, world.kube
    external_id_secret(kube, namespace, "opsramp-external-id")
    body = integration_resource(
        namespace, "restored", sandbox.opsramp.url, externalIdSecretRef={"name": "opsramp-external-id"}
    )
    kube.create(body)
    first = wait_ready(kube, namespace, "restored")
    role_arn, integration_id = first["status"]["roleArn"], first["status"]["integrationId"]
    role_name = role_arn.rsplit("/", 1)[-1]
    kube.patch_meta(namespace, "restored", {"finalizers": None})
    kube.delete(namespace, "restored")
    wait_for("deleted without cleanup", lambda: kube.get(namespace, "restored") is None, 15)

    kube.create(body)
    obj = wait_condition(kube, namespace, "restored", "Stalled", "True", "NotOwned")
    assert "another UID" in condition(obj, "Stalled")["message"]
    assert "spec.adopt.role" in condition(obj, "Stalled")["message"]
    kube.patch_spec(namespace, "restored", {"adopt": {"role": True}})
    obj = wait_ready(kube, namespace, "restored")
    assert obj["status"]["roleArn"] == role_arn
    assert obj["status"]["integrationId"] == integration_id
    assert obj["status"]["adopted"]["role"]["previousOwner"] == "restore"
    assert roles_owned_by(sandbox, obj["metadata"]["uid"]) == [role_name]
    assert [i["id"] for i in integrations_named(sandbox, f"{namespace}/restored")] == [integration_id]


def test_a_brought_role_missing_one_permission_names_it_then_becomes_ready(world: World, namespace: str) -> None:
    """spec.role.arn on a role granting all of OpsRamp's policy but one action: RolePermissionsMissing names that
    action only; once granted, Ready. The operator writes nothing in IAM."""
    sandbox, kube = world.sandbox, world.kube
    external_id = external_id_secret(kube, namespace, "opsramp-external-id")
    role_name = f"brought-{namespace}"[:64]
    arn = make_role(sandbox, role_name, trust_policy(OPSRAMP_ACCOUNT, external_id), path="/")
    policy = load_opsramp_policy()
    actions = policy["Statement"][0]["Action"]
    partial = {
        **policy,
        "Statement": [{**policy["Statement"][0], "Action": [a for a in actions if a != "ec2:DescribeInstances"]}],
    }
    sandbox.iam().put_role_policy(RoleName=role_name, PolicyName="opsramp", PolicyDocument=json.dumps(partial))
    iam_before = iam_writes(world.proxy)
    kube.create(
        integration_resource(
            namespace,
            "brought",
            sandbox.opsramp.url,
            externalIdSecretRef={"name": "opsramp-external-id"},
            role={"arn": arn},
        )
    )
    obj = wait_condition(kube, namespace, "brought", "Stalled", "True", "RolePermissionsMissing")
    message = condition(obj, "Stalled")["message"]
    assert "does not grant 1 of the" in message and "ec2:DescribeInstances" in message
    sandbox.iam().put_role_policy(RoleName=role_name, PolicyName="opsramp", PolicyDocument=json.dumps(policy))
    obj = wait_ready(kube, namespace, "brought", timeout=90)
    assert obj["status"]["roleArn"] == arn
    (integration,) = integrations_named(sandbox, f"{namespace}/brought")
    assert integration["credential"]["AssumeRoleARN"] == arn
    assert delta(iam_writes(world.proxy), iam_before) == {}


@dataclass
class Sample:
    old: bool
    new: bool
    integration_ok: bool | None
    integration_uses: str | None


def test_external_id_rotation_never_leaves_opsramp_without_a_working_id_and_a_failed_one_rolls_back(
    world: World, namespace: str
) -> None:
    """The Secret's External ID changes: sampled throughout, OpsRamp's assume check passes with the old ID until the
    switch and with the new one after, never with neither; the trust ends accepting only the new one. A second
    rotation that OpsRamp refuses rolls back to the ID before it, and says why."""
    sandbox, kube = world.sandbox, world.kube
    old = external_id_secret(kube, namespace, "rotated-id")
    kube.create(
        integration_resource(namespace, "rotated", sandbox.opsramp.url, externalIdSecretRef={"name": "rotated-id"})
    )
    obj = wait_ready(kube, namespace, "rotated")
    arn, display = obj["status"]["roleArn"], f"{namespace}/rotated"
    new = "new" + secrets.token_hex(16)
    SECRETS_SEEN.add(new)
    sha = {hashlib.sha256(v.encode()).hexdigest(): k for k, v in (("old", old), ("new", new))}
    samples: list[Sample] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            held = requests.post(
                f"{sandbox.opsramp.url}/_emulator/assume", json={"tenant": TENANT, "displayName": display}, timeout=10
            ).json()
            samples.append(
                Sample(
                    sandbox.opsramp.assume(arn, old),
                    sandbox.opsramp.assume(arn, new),
                    held["ok"] if held.get("integrationId") else None,
                    sha.get(str(held.get("externalIdSha256"))),
                )
            )

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        kube.apply_secret(namespace, "rotated-id", {"externalId": new})
        obj = wait_for(
            "the rotation completed",
            lambda: (
                (o := kube.get(namespace, "rotated"))
                and (o["status"].get("externalIdRotation") or {}).get("phase") == "Completed"
                and condition(o, "Ready").get("status") == "True"
                and o
            ),
            90,
        )
        wait_for("samples after completion", lambda: len(samples) > 5 and not samples[-1].old, 30)
    finally:
        stop.set()
        sampler.join(10)
    assert obj["status"]["externalIdRotation"]["count"] == 1
    assert all(s.old or s.new for s in samples), "a moment where neither External ID worked"
    held = [s for s in samples if s.integration_ok is not None]
    assert all(s.integration_ok for s in held), "OpsRamp's integration could not assume the role at some moment"
    uses = [s.integration_uses for s in held]
    assert uses[0] == "old" and uses[-1] == "new"
    assert "new" not in uses[: uses.index("new")] and "old" not in uses[uses.index("new") :]  # one switch
    assert any(s.old and s.new for s in samples)  # the overlap
    assert samples[-1].new and not samples[-1].old
    assert old not in json.dumps(obj) and new not in json.dumps(obj)

    # A second rotation OpsRamp refuses (its update answers 400): rolled back to `new`, with the reason.
    newer = "newer" + secrets.token_hex(16)
    SECRETS_SEEN.add(newer)
    sandbox.opsramp.set_faults(error_next=1, error_status=400, error_method="POST", error_route="/installed/")
    try:
        kube.apply_secret(namespace, "rotated-id", {"externalId": newer})
        obj = wait_condition(kube, namespace, "rotated", "Stalled", "True", "ExternalIdRotationFailed", timeout=60)
    finally:
        sandbox.opsramp.clear_faults()
    assert obj["status"]["externalIdRotation"]["phase"] == "RolledBack"
    assert "OpsRampRejected" in condition(obj, "Stalled")["message"]
    wait_for(
        "the trust accepts only the ID before",
        lambda: sandbox.opsramp.assume(arn, new) and not sandbox.opsramp.assume(arn, newer),
        30,
    )
    held_now = requests.post(
        f"{sandbox.opsramp.url}/_emulator/assume", json={"tenant": TENANT, "displayName": display}, timeout=10
    ).json()
    assert held_now["ok"] and sha.get(held_now["externalIdSha256"]) == "new"


def run_plan(world: World, files: list[Path]) -> tuple[int, str, dict[str, Any]]:
    """`opsramp-aws-operator plan` as a CI job would run it (text), then the kubectl plugin as kubectl runs it
    (`kubectl opsramp plan ...` execs `kubectl-opsramp plan ...`), in JSON."""
    env = {
        **os.environ,
        **world.sandbox.env,
        **fast_settings(),
        **sandbox_guardrails(world.sandbox),
        "AWS_ENDPOINT_URL": world.proxy.url,
    }
    exe, plugin = (str(Path(sys.executable).parent / name) for name in ("opsramp-aws-operator", "kubectl-opsramp"))
    args = [a for f in files for a in ("-f", str(f))]
    text = subprocess.run([exe, "plan", *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    as_json = subprocess.run(
        [plugin, "plan", *args, "-o", "json"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert text.returncode == as_json.returncode, (text.stderr, as_json.stderr)
    return text.returncode, text.stdout, json.loads(as_json.stdout)


def test_plan_prints_what_the_operator_then_does(world: World, namespace: str, tmp_path: Path) -> None:
    """For a new, a changed and an unchanged resource, `plan` (exit 2) names the writes the operator then makes:
    the same IAM, OpsRamp and Kubernetes operations, counted by the sandbox; and it writes nothing itself."""
    sandbox, kube = world.sandbox, world.kube
    changed = integration_resource(namespace, "changed", sandbox.opsramp.url)
    unchanged = integration_resource(namespace, "unchanged", sandbox.opsramp.url)
    for body in (changed, unchanged):
        kube.create(body)
    for name in ("changed", "unchanged"):
        wait_ready(kube, namespace, name)
    new = integration_resource(namespace, "new", sandbox.opsramp.url)
    changed["spec"]["regions"] = ["us-east-1", "eu-west-1"]
    manifest = tmp_path / "resources.yaml"
    manifest.write_text(yaml.safe_dump_all([new, changed, unchanged]))

    iam_before, kube_before = iam_writes(world.proxy), kube_counts(sandbox)
    plan_kube_before = kube_counts(sandbox, "OpenAPI-Generator")  # the plan's client (kopf's is "kopf/...")
    log_before = len(sandbox.opsramp.state()["request_log"])
    code, text, planned = run_plan(world, [manifest])
    assert code == 2, text
    assert "Plan: 1 to create, 1 to update, 0 to replace, 1 unchanged, 0 with errors." in text
    assert '~ regions: ["us-east-1"] -> ["eu-west-1", "us-east-1"]' in text
    assert "+ trust policy:" in text and "<the External ID to be generated>" in text
    by_name = {r["name"]: r for r in planned["resources"]}
    assert {n: r["action"] for n, r in by_name.items()} == {"new": "create", "changed": "update", "unchanged": "none"}
    # Planning wrote nothing.
    assert delta(iam_writes(world.proxy), iam_before) == {}
    assert opsramp_api_writes(sandbox, log_before) == []
    plan_kube = delta(kube_counts(sandbox, "OpenAPI-Generator"), plan_kube_before)
    assert not [k for k in plan_kube if k[0] in ("create", "patch", "update", "delete")], plan_kube

    # Apply, and count what the operator does.
    log_before = len(sandbox.opsramp.state()["request_log"])
    kube.create(new)
    kube.patch_spec(namespace, "changed", {"regions": changed["spec"]["regions"]})
    wait_ready(kube, namespace, "new")
    wait_for(
        "changed regions applied",
        lambda: (
            (o := kube.get(namespace, "changed")) is not None
            and (o["status"].get("appliedIntegration") or {}).get("regions") == ["eu-west-1", "us-east-1"]
            and condition(o, "Ready").get("status") == "True"
        ),
        60,
    )
    planned_ops: dict[str, int] = {}
    for resource in planned["resources"]:
        for op, n in resource["operations"].items():
            planned_ops[op] = planned_ops.get(op, 0) + n
    done_iam = {f"iam:{a}": n for a, n in delta(iam_writes(world.proxy), iam_before).items()}
    assert done_iam == {k: v for k, v in planned_ops.items() if k.startswith("iam:")}
    route = {
        "POST /api/v2/tenants/{tenantId}/integrations/install/AWS": "opsramp:install",
        "POST /api/v2/tenants/{tenantId}/integrations/installed/{installedIntgId}": "opsramp:update",
        "POST /api/v2/tenants/{tenantId}/policies/discovery": "opsramp:create-profile",
    }
    done_opsramp: dict[str, int] = {}
    for line in opsramp_api_writes(sandbox, log_before):
        done_opsramp[route.get(line, line)] = done_opsramp.get(route.get(line, line), 0) + 1
    assert done_opsramp == {k: v for k, v in planned_ops.items() if k.startswith("opsramp:")}
    assert planned_ops.get("kubernetes:create-secret") == 1
    if sandbox.kube is not None or sandbox.plane is not None:
        assert delta(kube_counts(sandbox), kube_before).get(("create", "secrets"), 0) == 1
