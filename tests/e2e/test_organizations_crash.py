"""Many accounts, crash safety end to end: the operator SIGKILLed right after an external write in the middle of a
fan-out (the second account's, so one account is done and others are not) converges after a restart with exactly
one role, one policy and one integration per selected account, and a delete killed the same way leaves nothing.

Each case runs its own operator process with a failpoint armed (operator/opsramp_aws_operator/failpoints.py); the
test first proves the process really died there, so a failpoint the fan-out never reaches fails the test.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import pytest
from e2e_harness import ALL_OPERATORS, Kube, Operator, Sandbox, wait_condition, wait_for
from test_organizations import ORG_ENV, _assert_exactly, _resource

from opsramp_sandbox.aws import SandboxOrganization, create_organization

pytestmark = pytest.mark.e2e

# Every kind of external write a fan-out makes, in a create (role, policy, attachment, status record, install, the
# discovery profile) and in a delete (profile, uninstall, detach, policy and role deletion).
CREATE_POINTS = (
    "kube:record_accounts",
    "iam:CreateRole@2",
    "iam:CreatePolicy@2",
    "iam:AttachRolePolicy@2",
    "opsramp:install@2",
    "opsramp:create_profile@2",
)
DELETE_POINTS = (
    "opsramp:delete_profile@2",
    "opsramp:uninstall@2",
    "iam:DetachRolePolicy@2",
    "iam:DeletePolicy@2",
    "iam:DeleteRole@2",
)


@pytest.fixture(scope="module")
def quiet(sandbox: Sandbox, operator_process: Operator) -> Iterator[None]:
    """The session operator stays stopped while these cases run their own."""
    operator_process.stop()
    try:
        yield
    finally:
        operator_process.start()


def _died(op: Operator) -> bool:
    return op.process is not None and op.process.poll() is not None


@pytest.mark.parametrize("point", CREATE_POINTS + DELETE_POINTS)
def test_killed_mid_fan_out_converges_without_duplicates_or_orphans(
    sandbox: Sandbox, kube: Kube, quiet: None, namespace: str, point: str
) -> None:
    """SIGKILL after `point` in a 3-account fan-out; restart: one of everything per account, then nothing at all."""
    unit = f"crash{zlib.crc32(point.encode()) % 10_000}"
    org: SandboxOrganization = create_organization(sandbox.moto.url, {unit: 3}, prefix="crash")
    accounts = set(org.accounts[unit])
    name, role_name = "crash", f"e2e-crash-{namespace}"[:64]
    prefix = f"{namespace}/{name}"
    op = Operator(sandbox, extra_env={**ORG_ENV, "OPERATOR_FAILPOINTS": point})
    ALL_OPERATORS.append(op)
    op.start()
    try:
        kube.create(
            _resource(sandbox, namespace, name, role_name, organization={"organizationalUnits": [org.units[unit]]})
        )
        if point in DELETE_POINTS:
            wait_condition(kube, namespace, name, "Ready", "True", timeout=180)
            _assert_exactly(sandbox, accounts, list(accounts), role_name, prefix)
            kube.delete(namespace, name)
        wait_for(f"operator killed at {point}", lambda: _died(op), timeout=180)
        op.extra_env = dict(ORG_ENV)
        op.start()
        if point in CREATE_POINTS:
            wait_condition(kube, namespace, name, "Ready", "True", timeout=180)
            _assert_exactly(sandbox, accounts, list(accounts), role_name, prefix)
            kube.delete(namespace, name)
        wait_for(f"{namespace}/{name} gone", lambda: kube.get(namespace, name) is None, timeout=180)
        _assert_exactly(sandbox, set(), list(accounts), role_name, prefix)
    finally:
        op.stop()


def test_killed_mid_fan_out_then_excluded_leaves_no_orphan(
    sandbox: Sandbox, kube: Kube, quiet: None, namespace: str
) -> None:
    """SIGKILL after the second account's role exists (no status written yet), then every account is excluded before
    the restart: the roles made before the crash are found through status.accountIds and removed."""
    org = create_organization(sandbox.moto.url, {"orphans": 3}, prefix="orphan")
    accounts = org.accounts["orphans"]
    name, role_name = "orphan", f"e2e-orphan-{namespace}"[:64]
    selector = {"organizationalUnits": [org.units["orphans"]]}
    op = Operator(sandbox, extra_env={**ORG_ENV, "OPERATOR_FAILPOINTS": "iam:CreateRole@2"})
    ALL_OPERATORS.append(op)
    op.start()
    try:
        kube.create(_resource(sandbox, namespace, name, role_name, organization=selector))
        wait_for("operator killed", lambda: _died(op), timeout=180)
        made = [a for a in accounts if _role_exists(sandbox, a, role_name)]
        assert made, "the crash came before any role was made"
        kube.patch_spec(namespace, name, {"organization": {**selector, "excludeAccounts": accounts}})
        op.extra_env = dict(ORG_ENV)
        op.start()
        wait_for(
            "excluded accounts cleaned",
            lambda: (o := kube.get(namespace, name)) and not (o.get("status") or {}).get("accountIds") and o,
            timeout=180,
        )
        _assert_exactly(sandbox, set(), list(accounts), role_name, f"{namespace}/{name}")
        kube.delete(namespace, name)
        wait_for(f"{namespace}/{name} gone", lambda: kube.get(namespace, name) is None, timeout=180)
    finally:
        op.stop()


def _role_exists(sandbox: Sandbox, account_id: str, role_name: str) -> bool:
    from test_organizations import _role

    return _role(sandbox, account_id, role_name) is not None
