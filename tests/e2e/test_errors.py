"""Needs-a-human errors end to end: bad credentials, a wrong AWS account, a taken role name or display name.

Each one must stall with a reason, post one Warning Event, retry slowly, create nothing, and leave other
resources alone; fixing the cause must bring the resource to Ready without a restart.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from e2e_harness import (
    CLIENT_ID,
    SECRETS_SEEN,
    Kube,
    Operator,
    Sandbox,
    condition,
    delete_and_wait,
    get_role,
    handler_failures,
    integration_by_id,
    integration_resource,
    integrations_named,
    opsramp_writes,
    role_name_of,
    role_state,
    token_requests,
    wait_condition,
    wait_for,
    wait_passes,
    wait_ready,
    warning_events,
)

pytestmark = pytest.mark.e2e


def test_bad_credentials_stall_with_slowing_retries_and_recover_when_fixed(
    sandbox: Sandbox, kube: Kube, operator_process: Operator, namespace: str
) -> None:
    """Wrong clientSecret: not ready, Stalled, one Warning, slowing retries, no role; fixing the Secret → Ready."""
    wrong = "wrong-secret-" + namespace
    SECRETS_SEEN.add(wrong)
    kube.apply_secret(namespace, "bad-client", {"clientId": CLIENT_ID, "clientSecret": wrong})
    role_name = f"e2e-badcreds-{namespace}"[:64]
    started = time.time()
    kube.create(
        integration_resource(namespace, "badcreds", sandbox.opsramp.url, secret="bad-client", role={"name": role_name})
    )

    obj = wait_condition(kube, namespace, "badcreds", "Stalled", "True")
    integration_ready = condition(obj, "IntegrationReady")
    assert integration_ready["status"] == "False"
    assert integration_ready["reason"] == "OpsRampAuthFailed"
    assert "clientSecret" in integration_ready["message"]
    assert condition(obj, "Ready")["status"] == "False"
    assert condition(obj, "Ready")["reason"] == "OpsRampAuthFailed"

    # The change handler's retries come further and further apart: backoff 1 → 2 → 4 s (cap). A busy machine only
    # ever lengthens a gap, so each gap is at least the delay the operator promised; a backoff that does not grow
    # leaves the later gaps near 1 s. (Resync passes run on their own 4 s schedule and are not counted.)
    def failures() -> list[float]:
        return handler_failures(operator_process.output(), namespace, "badcreds")

    wait_for("four failed attempts of the change handler", lambda: len(failures()) >= 4, 60)
    attempts = failures()
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    print(f"failed attempts {len(attempts)}, gaps between them: {[round(g, 2) for g in gaps]}")
    promised = [1.0, 2.0, 4.0]
    assert all(gap >= least - 0.05 for gap, least in zip(gaps, promised, strict=False)), gaps
    # Each attempt asked OpsRamp for a token and was refused.
    assert len(token_requests(sandbox, 401, since=started)) >= len(attempts)
    assert operator_process.process is not None and operator_process.process.poll() is None

    # Nothing was created: no role, no External ID Secret, no integration, and one Warning for the one transition.
    assert get_role(sandbox, role_name) is None
    assert integrations_named(sandbox, f"{namespace}/badcreds") == []
    stalled = kube.get(namespace, "badcreds")
    assert stalled is not None and not (stalled.get("status") or {}).get("externalIdSecretName")
    warnings = warning_events(kube, namespace, "badcreds")
    assert [(e.reason, e.count or 1) for e in warnings] == [("OpsRampAuthFailed", 1)]

    # Fixing the Secret is enough: the next retry (backoff cap 4 s) or resync picks it up.
    kube.apply_secret(namespace, "bad-client", {"clientId": CLIENT_ID, "clientSecret": sandbox.client_secret})
    obj = wait_ready(kube, namespace, "badcreds", timeout=30)
    assert role_name_of(obj) == role_name
    assert integration_by_id(sandbox, obj["status"]["integrationId"]) is not None
    assert condition(obj, "Stalled")["status"] == "False"


def test_account_mismatch_stalls_and_creates_no_role(
    sandbox: Sandbox, kube: Kube, operator_process: Operator, namespace: str
) -> None:
    """spec.aws.accountId other than the credentials' account: Stalled AccountMismatch, no role, no integration."""
    role_name = f"e2e-mismatch-{namespace}"[:64]
    kube.create(
        integration_resource(
            namespace, "mismatch", sandbox.opsramp.url, role={"name": role_name}, aws={"accountId": "111122223333"}
        )
    )
    obj = wait_condition(kube, namespace, "mismatch", "Stalled", "True", "AccountMismatch")
    assert condition(obj, "Ready")["status"] == "False"
    assert condition(obj, "RoleReady")["reason"] == "AccountMismatch"
    assert "123456789012" in condition(obj, "Stalled")["message"]
    assert get_role(sandbox, role_name) is None
    assert integrations_named(sandbox, f"{namespace}/mismatch") == []
    assert [e.reason for e in warning_events(kube, namespace, "mismatch")] == ["AccountMismatch"]

    # Deleting it must not wedge: nothing was ever written, so there is nothing to wait for.
    delete_and_wait(kube, namespace, "mismatch", timeout=20)


def test_second_resource_claiming_a_role_name_is_refused_and_the_first_untouched(
    sandbox: Sandbox, kube: Kube, operator_process: Operator, namespace: str
) -> None:
    """Two resources with one spec.role.name: the second stalls NotOwned; the first's role and integration stay."""
    role_name = f"e2e-shared-{namespace}"[:64]
    kube.create(integration_resource(namespace, "first", sandbox.opsramp.url, role={"name": role_name}))
    first = wait_ready(kube, namespace, "first")
    before_role = role_state(sandbox, role_name)
    before_integration = integration_by_id(sandbox, first["status"]["integrationId"])
    before_writes = opsramp_writes(sandbox)

    kube.create(integration_resource(namespace, "second", sandbox.opsramp.url, role={"name": role_name}))
    second = wait_condition(kube, namespace, "second", "Stalled", "True", "NotOwned")
    assert condition(second, "RoleReady")["reason"] == "NotOwned"
    # Whose it is stays the other resource's business: neither its name nor its UID is in the message.
    message = condition(second, "RoleReady")["message"]
    assert f"{namespace}/first" not in message and first["metadata"]["uid"] not in message
    # A resync over the first one, start to end, while the second keeps retrying.
    wait_passes(sandbox, first["status"]["integrationId"])

    assert role_state(sandbox, role_name) == before_role
    assert integration_by_id(sandbox, first["status"]["integrationId"]) == before_integration
    assert integrations_named(sandbox, f"{namespace}/second") == []
    assert opsramp_writes(sandbox) == before_writes
    assert condition(kube.get(namespace, "first"), "Ready")["status"] == "True"


def test_display_name_in_use_stalls_before_creating_anything(
    sandbox: Sandbox, kube: Kube, operator_process: Operator, namespace: str
) -> None:
    """A display name another resource's integration has: DisplayNameInUse, no role in IAM, the first untouched."""
    shared = f"shared {namespace}"
    kube.create(integration_resource(namespace, "owner", sandbox.opsramp.url, displayName=shared))
    first = wait_ready(kube, namespace, "owner")
    before_integration = integration_by_id(sandbox, first["status"]["integrationId"])
    role_name = f"e2e-dupname-{namespace}"[:64]

    kube.create(
        integration_resource(namespace, "copycat", sandbox.opsramp.url, displayName=shared, role={"name": role_name})
    )
    second = wait_condition(kube, namespace, "copycat", "Stalled", "True", "DisplayNameInUse")
    assert condition(second, "IntegrationReady")["reason"] == "DisplayNameInUse"
    assert get_role(sandbox, role_name) is None
    assert len(integrations_named(sandbox, shared)) == 1
    assert integration_by_id(sandbox, first["status"]["integrationId"]) == before_integration
    assert condition(kube.get(namespace, "owner"), "Ready")["status"] == "True"


def test_deleting_a_refused_claimant_of_the_same_role_and_name_leaves_the_first_alone(
    sandbox: Sandbox, kube: Kube, operator_process: Operator, namespace: str
) -> None:
    """A copy with the same role name and display name is refused, and deleting it removes nothing of the first."""
    role_name, shared = f"e2e-copy-{namespace}"[:64], f"copied {namespace}"
    spec: dict[str, Any] = {"role": {"name": role_name}, "displayName": shared}
    kube.create(integration_resource(namespace, "original", sandbox.opsramp.url, **spec))
    first = wait_ready(kube, namespace, "original")
    before_role = role_state(sandbox, role_name)
    before_integration = integration_by_id(sandbox, first["status"]["integrationId"])

    kube.create(integration_resource(namespace, "copy", sandbox.opsramp.url, **spec))
    wait_condition(kube, namespace, "copy", "Stalled", "True", "NotOwned")
    delete_and_wait(kube, namespace, "copy")

    assert role_state(sandbox, role_name) == before_role
    assert integration_by_id(sandbox, first["status"]["integrationId"]) == before_integration
    wait_ready(kube, namespace, "original")
