"""Many accounts are Ready only once OpsRamp monitors them (issue 15), under every answer of the open questions
that decide OpsRamp's verdict on a role (docs/opsramp-api-assumptions.md; the one-account contract matrix has the
same switches): when OpsRamp checks the role (Q8: at install, later in integrations/activity, never), whose External
ID it uses (Q15), and how it shows an integration (the OpenAPI-examples shape without status, upper-case status
values, updates that never apply credentials).

Each variant gets its own OpsRamp tenant and namespace and one resource over three member accounts (spec.accounts),
one of which OpsRamp cannot assume the role in (the emulator's `refuse_assume_accounts`, as a service control policy
there would): that account is named with OpsRamp's reason while the other two become Ready; where the tenant never
reports a verdict, all three settle on "no failure reported" after the grace, having waited as Installed first.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
from e2e_harness import (
    ALL_OPERATORS,
    SECRETS_SEEN,
    Kube,
    ObjectRecorder,
    Operator,
    Sandbox,
    condition,
    delete_and_wait,
    integration_resource,
)
from test_contract_matrix import wait_all

from opsramp_aws_operator.opsramp.variants import CHOICES, Contract
from opsramp_sandbox.aws import MEMBER_ROLE, create_organization
from opsramp_sandbox.opsramp import ApiClient

pytestmark = pytest.mark.e2e

# Ready accounts carry OpsRamp's verdict as their reason; a refused one its reason as Failed.
ASSUMED, NO_FAILURE, REFUSED = "RoleAssumed", "NoFailureReported", "OpsRampCannotAssumeRole"


@dataclass(frozen=True)
class Variant:
    key: str
    switches: dict[str, Any]
    # What each account ends as: the healthy ones, and the one OpsRamp cannot assume the role in.
    healthy: tuple[str, str]  # (state, reason)
    refused: tuple[str, str]
    waits_installed: bool = False  # the verdict comes after the install answered: rows say Installed first
    enabled: bool = True
    refuse: bool = True  # OpsRamp cannot assume the role in the lane's first account


VARIANTS: list[Variant] = [
    Variant("sync", {}, ("Ready", ASSUMED), ("Failed", REFUSED)),
    Variant(
        "async", {"role_check": "async", "role_check_delay_seconds": 0.5}, ("Ready", ASSUMED), ("Failed", REFUSED), True
    ),
    # No verdict ever: nothing tells the refused account apart, so every account rests on "no failure reported".
    Variant("never", {"role_check": "never"}, ("Ready", NO_FAILURE), ("Ready", NO_FAILURE), True),
    # OpsRamp uses its own External ID: no account's role admits it.
    Variant("generated", {"external_id": "generated"}, ("Failed", REFUSED), ("Failed", REFUSED)),
    Variant(
        "genasync",
        {"external_id": "generated", "role_check": "async", "role_check_delay_seconds": 0.5},
        ("Failed", REFUSED),
        ("Failed", REFUSED),
    ),
    Variant("openapi", {"profile": "openapi-examples"}, ("Ready", ASSUMED), ("Failed", REFUSED)),
    Variant(
        "asyncimm",
        {"profile": "async-immutable", "role_check_delay_seconds": 0.5},
        ("Ready", ASSUMED),
        ("Failed", REFUSED),
        True,
    ),
    Variant("upper", {"status_values": "ENABLED/DISABLED"}, ("Ready", ASSUMED), ("Failed", REFUSED)),
    # spec.monitoring.enabled false: every integration disabled, no verdict asked for.
    Variant(
        "disabled",
        {},
        ("Disabled", "MonitoringDisabled"),
        ("Disabled", "MonitoringDisabled"),
        enabled=False,
        refuse=False,
    ),
]
# The switches whose answers decide the verdict; each of their values has a variant above.
VERDICT_SWITCHES = ("role_check", "external_id", "status_values")


@dataclass
class Lane:
    variant: Variant
    tenant: str
    namespace: str
    accounts: list[str]
    refused: str
    uid: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def lanes(sandbox: Sandbox, kube: Kube, operator_process: Operator, recorder: ObjectRecorder) -> Iterator[list[Lane]]:
    """A tenant, namespace and three member accounts per variant, and an operator of this module's own."""
    emulator = sandbox.opsramp
    org = create_organization(sandbox.moto.url, {f"mon-{v.key}": 3 for v in VARIANTS}, prefix="mon")
    made: list[Lane] = []
    for index, variant in enumerate(VARIANTS):
        tenant, client_id, secret = f"client_{700 + index}", f"fleetmon-{variant.key}", "fm-" + secrets.token_hex(16)
        SECRETS_SEEN.add(secret)
        emulator.add_client(ApiClient(tenant, client_id, secret))
        emulator.set_contract(tenant=tenant, **variant.switches)
        namespace = kube.namespace(f"fm-{variant.key}")
        kube.apply_secret(namespace, "opsramp-api-client", {"clientId": client_id, "clientSecret": secret})
        accounts = sorted(org.accounts[f"mon-{variant.key}"])
        made.append(Lane(variant, tenant, namespace, accounts, refused=accounts[0]))
    emulator.set_faults(refuse_assume_accounts=[lane.refused for lane in made if lane.variant.refuse])
    operator_process.stop()
    op = Operator(
        sandbox,
        extra_env={
            "OPERATOR_NAMESPACE_TARGETS": json.dumps({"*": ["default", f"arn:aws:iam::*:role/{MEMBER_ROLE}"]}),
            "OPERATOR_ASSUME_GRACE_SECONDS": "8",
            "OPERATOR_IAM_CALLS_PER_SECOND": "100",
            # Room for a loaded machine's asynchronous checks (an STS AssumeRole against moto), as in the matrix.
            "OPERATOR_MONITORING_GRACE_SECONDS": "20",
        },
    )
    ALL_OPERATORS.append(op)
    op.start()
    try:
        yield made
    finally:
        emulator.clear_faults()
        # Deleted by this operator (the session one may not act in member accounts): every account cleaned up.
        for lane in made:
            for obj in kube.objects(lane.namespace):
                delete_and_wait(kube, lane.namespace, obj["metadata"]["name"], timeout=120)
        op.stop()
        operator_process.start()


def _rows(obj: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {r["accountId"]: r for r in ((obj or {}).get("status") or {}).get("accounts") or []}


def _expected(lane: Lane, account: str) -> tuple[str, str]:
    return lane.variant.refused if account == lane.refused else lane.variant.healthy


def settled_problem(kube: Kube, lane: Lane) -> str:
    """ "" once every account is in the state (and reason) its variant expects and the conditions agree."""
    obj = kube.get(lane.namespace, "fleet")
    rows = _rows(obj)
    for account in lane.accounts:
        want = _expected(lane, account)
        row = rows.get(account, {})
        if (row.get("state"), row.get("reason")) != want:
            return f"{account}: {row.get('state')} {row.get('reason')} ({row.get('message')}), expected {want}"
    ready = condition(obj, "Ready")
    expected_ready = sum(1 for a in lane.accounts if _expected(lane, a)[0] == "Ready")
    if obj is None or obj["status"].get("accountsReady") != f"{expected_ready}/3":
        return f"accountsReady {(obj or {}).get('status', {}).get('accountsReady')}"
    if expected_ready == 3:
        return "" if ready.get("status") == "True" else f"Ready={ready.get('status')} {ready.get('reason')}"
    if ready.get("status") != "False":
        return f"Ready={ready.get('status')} with {expected_ready}/3 accounts Ready"
    if lane.variant.enabled and condition(obj, "Stalled").get("status") != "True":
        return f"not Stalled: {ready.get('reason')} {ready.get('message')}"
    return ""


def test_each_account_is_ready_only_on_opsramps_verdict(
    sandbox: Sandbox, kube: Kube, recorder: ObjectRecorder, lanes: list[Lane]
) -> None:
    """Per variant: the refused account is named with OpsRamp's reason, the others are Ready on its verdict (or no
    failure reported where it gives none), each with its own discovery profile; where the verdict comes after the
    install answered, the rows said Installed (awaiting the verdict) before; a disabled fleet is Disabled."""
    checks: dict[str, Callable[[], str]] = {}
    for lane in lanes:
        role_name = f"fm-{lane.variant.key}-{secrets.token_hex(3)}"
        body = integration_resource(
            lane.namespace, "fleet", sandbox.opsramp.url, role={"name": role_name}, accounts=lane.accounts
        )
        body["spec"]["opsramp"]["tenantId"] = lane.tenant
        if not lane.variant.enabled:
            body["spec"]["monitoring"] = {"enabled": False}
        lane.uid = kube.create(body)["metadata"]["uid"]
        checks[lane.variant.key] = partial(settled_problem, kube, lane)
    wait_all("every account settled on OpsRamp's verdict", checks, timeout=240)

    emulator = sandbox.opsramp
    for lane in lanes:
        obj = kube.get(lane.namespace, "fleet")
        assert obj is not None
        rows = _rows(obj)
        ready = condition(obj, "Ready")
        if lane.variant.refused[0] == "Failed":
            # The refused account by name, with OpsRamp's reason, in Ready's message and in its Warning Event.
            assert lane.refused in ready["message"] and REFUSED in ready["message"], (lane.variant.key, ready)
            assert "sts:AssumeRole" in rows[lane.refused]["message"] or "assume" in rows[lane.refused]["message"]
        if lane.variant.switches.get("external_id") == "generated":
            assert "externalIdSecretRef" in rows[lane.refused]["message"], rows[lane.refused]
        integrations = {
            str(i["credential"].get("AccountNumber")): i
            for i in emulator.integrations(lane.tenant)
            if str(i.get("displayName", "")).startswith(f"{lane.namespace}/fleet/")
        }
        profiles = {p["id"] for p in emulator.discovery_profiles(lane.tenant)}
        for account in lane.accounts:
            row = rows[account]
            if row["state"] in ("Ready", "Disabled"):
                assert row.get("integrationId") == integrations[account]["id"], (lane.variant.key, account)
                if row["state"] == "Ready":
                    assert row.get("discoveryProfileId") in profiles, (lane.variant.key, account, row)
                    assert row.get("credentialsAppliedTime"), (lane.variant.key, account, row)
        if not lane.variant.enabled:
            words = {str(i.get("status", "")).lower() for i in integrations.values()}
            assert words == {"disabled"}, (lane.variant.key, words)
            assert condition(obj, "Ready")["reason"] == "MonitoringDisabled"
        if lane.variant.waits_installed:
            seen = _states_seen(recorder, lane.uid)
            healthy = [a for a in lane.accounts if a != lane.refused]
            assert any(("Installed", "AwaitingOpsRampVerdict") in seen.get(a, set()) for a in healthy), (
                lane.variant.key,
                seen,
            )
        # Never Ready for the resource while an account was not.
        for text in list(recorder.texts):
            version = json.loads(text)
            if version["metadata"].get("uid") != lane.uid:
                continue
            if condition(version, "Ready").get("status") == "True":
                assert all(r["state"] == "Ready" for r in _rows(version).values()), (lane.variant.key, version)


def _states_seen(recorder: ObjectRecorder, uid: str) -> dict[str, set[tuple[str, str]]]:
    seen: dict[str, set[tuple[str, str]]] = {}
    for text in list(recorder.texts):
        version = json.loads(text)
        if version["metadata"].get("uid") != uid:
            continue
        for account, row in _rows(version).items():
            seen.setdefault(account, set()).add((row["state"], str(row.get("reason"))))
    return seen


def test_every_verdict_switch_value_has_a_fleet_variant() -> None:
    """Each answer of the questions that decide the verdict (and the profiles that change how OpsRamp shows an
    integration) is played against a fleet above."""
    played = [Contract().with_changes(v.switches) for v in VARIANTS]
    for switch in VERDICT_SWITCHES:
        missing = set(CHOICES[switch]) - {getattr(c, switch) for c in played}
        assert not missing, f"{switch}: no fleet variant for {sorted(missing)}"
    profiles = {v.switches.get("profile") for v in VARIANTS} - {None}
    assert {"openapi-examples", "async-immutable"} <= profiles
