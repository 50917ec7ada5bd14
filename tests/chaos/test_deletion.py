"""Chaos: deletion never wedges — external objects gone, credentials revoked, namespace deleted, operator down.

Each case ends with the AWSIntegration gone and, unless the documented escape was used on purpose, nothing of
it left in IAM or OpsRamp.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from chaos_support import (
    SECRETS,
    SUMMARY,
    ChaosOperator,
    Figure,
    chaos_operator,
    credentials_secret,
    list_resources,
    nothing_left,
    remember_external_ids,
    wait_all_ready,
)
from e2e_harness import (
    CLIENT_ID,
    GROUP,
    Kube,
    Sandbox,
    condition,
    delete_and_wait,
    get_role,
    integration_by_id,
    integration_resource,
    token_requests,
    uninstall_behind_back,
    wait_condition,
    wait_for,
    warning_events,
)
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.chaos

SKIP_CLEANUP = f"{GROUP}/skip-cleanup"
CREDENTIALS_FINALIZER = f"{GROUP}/credentials-in-use"


@dataclass
class Setup:
    sandbox: Sandbox
    kube: Kube
    namespaces: dict[str, str]
    operator: ChaosOperator

    def restart(self) -> None:
        self.operator.stop()
        self.operator = chaos_operator(self.sandbox, "deletion", OPERATOR_NAMESPACES=",".join(self.namespaces.values()))
        self.operator.start()


@pytest.fixture(scope="module")
def setup(sandbox: Sandbox, kube: Kube) -> Iterator[Setup]:
    """One namespace per case (made up front so one scoped operator watches them all), each with credentials."""
    namespaces = {case: kube.namespace(f"chaos-del-{case}") for case in ("gone", "revoked", "nsdel", "down")}
    for namespace in namespaces.values():
        credentials_secret(kube, sandbox, namespace)
    op = chaos_operator(sandbox, "deletion", OPERATOR_NAMESPACES=",".join(namespaces.values()))
    op.start()
    state = Setup(sandbox, kube, namespaces, op)
    try:
        yield state
    finally:
        state.operator.stop()


def _ready_one(setup: Setup, case: str, name: str) -> dict[str, object]:
    namespace = setup.namespaces[case]
    setup.kube.create(integration_resource(namespace, name, setup.sandbox.opsramp.url))
    wait_all_ready(setup.kube, namespace, [name], timeout=60)
    remember_external_ids(setup.kube, namespace)
    obj = setup.kube.get(namespace, name)
    assert obj is not None
    return obj


def _left(sandbox: Sandbox, namespace: str) -> list[str]:
    """What IAM and OpsRamp still hold of the namespace's resources."""
    return nothing_left(sandbox, role_prefix=f"opsramp-{namespace}_", display_prefix=f"{namespace}/")


def _finalizers(kube: Kube, namespace: str, name: str) -> list[str]:
    meta = kube.core.read_namespaced_secret(name, namespace).metadata
    return list((meta.finalizers if meta is not None else None) or [])


def test_delete_when_role_and_integration_are_already_gone(setup: Setup) -> None:
    """Role, policies and integration removed behind the operator's back: the delete still completes at once."""
    namespace = setup.namespaces["gone"]
    obj = _ready_one(setup, "gone", "vanished")
    role_name = str(obj["status"]["roleArn"]).rsplit("/", 1)[-1]  # type: ignore[index]
    iam = setup.sandbox.iam()
    for policy in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]:
        iam.detach_role_policy(RoleName=role_name, PolicyArn=policy["PolicyArn"])
        iam.delete_policy(PolicyArn=policy["PolicyArn"])
    iam.delete_role(RoleName=role_name)
    uninstall_behind_back(setup.sandbox, str(obj["status"]["integrationId"]))  # type: ignore[index]

    started = time.monotonic()
    delete_and_wait(setup.kube, namespace, "vanished", timeout=30)
    SUMMARY.append(Figure("delete: externals already gone", 1, time.monotonic() - started, "-"))
    assert _left(setup.sandbox, namespace) == []


def test_delete_with_revoked_credentials_says_so_and_the_escape_releases_it(setup: Setup) -> None:
    """Credentials revoked: the delete waits with a condition naming the escape; the annotation releases it."""
    namespace = setup.namespaces["revoked"]
    obj = _ready_one(setup, "revoked", "revoked")
    integration_id = str(obj["status"]["integrationId"])  # type: ignore[index]
    role_name = str(obj["status"]["roleArn"]).rsplit("/", 1)[-1]  # type: ignore[index]
    revoked = "revoked-" + namespace
    SECRETS.add(revoked)
    setup.kube.apply_secret(namespace, "opsramp-api-client", {"clientId": CLIENT_ID, "clientSecret": revoked})

    refused_before = len(token_requests(setup.sandbox, 401))
    setup.kube.delete(namespace, "revoked")
    stuck = wait_condition(setup.kube, namespace, "revoked", "Ready", "False", "OpsRampAuthFailed", timeout=30)
    message = condition(stuck, "Ready")["message"]
    assert SKIP_CLEANUP in message, message
    assert "Cleanup failed" in message, message
    # It retries (slowly) rather than dropping the integration on the floor: two more cleanup attempts, each
    # refused at OpsRamp's token endpoint, and the object is still there, with one Warning for the lot.
    attempts = len(token_requests(setup.sandbox, 401))
    assert attempts > refused_before
    wait_for("two more refused cleanup attempts", lambda: len(token_requests(setup.sandbox, 401)) >= attempts + 2, 60)
    held = setup.kube.get(namespace, "revoked")
    assert held is not None and held["metadata"].get("deletionTimestamp")
    assert integration_by_id(setup.sandbox, integration_id) is not None
    assert [e.reason for e in warning_events(setup.kube, namespace, "revoked")] == ["OpsRampAuthFailed"]

    started = time.monotonic()
    setup.kube.patch_meta(namespace, "revoked", {"annotations": {SKIP_CLEANUP: "true"}})
    wait_for("released by the escape", lambda: setup.kube.get(namespace, "revoked") is None, 30)
    SUMMARY.append(Figure("delete: credentials revoked + escape", 1, time.monotonic() - started, "-"))
    reasons = [e.reason for e in warning_events(setup.kube, namespace, "revoked")]
    assert "CleanupSkipped" in reasons, reasons
    # The escape leaves the external objects in place, as documented; this test removes them itself.
    assert integration_by_id(setup.sandbox, integration_id) is not None
    assert get_role(setup.sandbox, role_name) is not None
    # The credentials Secret is released too (nothing uses it any more).
    wait_for(
        "credentials finalizer removed",
        lambda: CREDENTIALS_FINALIZER not in _finalizers(setup.kube, namespace, "opsramp-api-client"),
        20,
    )
    uninstall_behind_back(setup.sandbox, integration_id)
    iam = setup.sandbox.iam()
    for policy in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]:
        iam.detach_role_policy(RoleName=role_name, PolicyArn=policy["PolicyArn"])
        iam.delete_policy(PolicyArn=policy["PolicyArn"])
    iam.delete_role(RoleName=role_name)


def test_namespace_deleted_with_resource_and_secrets_cleans_up(setup: Setup) -> None:
    """Deleting the whole namespace: the credentials Secret outlives the cleanup, then the namespace goes."""
    namespace = setup.namespaces["nsdel"]
    _ready_one(setup, "nsdel", "first")
    _ready_one(setup, "nsdel", "second")
    assert CREDENTIALS_FINALIZER in _finalizers(setup.kube, namespace, "opsramp-api-client")

    started = time.monotonic()
    setup.kube.core.delete_namespace(namespace)

    def namespace_gone() -> bool:
        try:
            setup.kube.core.read_namespace(namespace)
        except ApiException as exc:
            return bool(exc.status == 404)
        return False

    try:
        wait_for("namespace gone", namespace_gone, 60, interval=0.5)
    except AssertionError:
        left = [(o["metadata"]["name"], o["metadata"].get("finalizers")) for o in list_resources(setup.kube, namespace)]
        secrets = [
            (s.metadata.name, s.metadata.finalizers)
            for s in setup.kube.core.list_namespaced_secret(namespace).items
            if s.metadata is not None
        ]
        raise AssertionError(f"namespace {namespace} wedged: resources {left}, secrets {secrets}") from None
    SUMMARY.append(Figure("delete: whole namespace", 2, time.monotonic() - started, "-"))
    assert _left(setup.sandbox, namespace) == []


def test_delete_requested_while_operator_down_completes_when_it_starts(setup: Setup) -> None:
    """Delete while no operator runs: the finalizer holds the resource; the started operator cleans up."""
    namespace = setup.namespaces["down"]
    _ready_one(setup, "down", "later")
    setup.operator.stop()  # returns once the process has exited: nothing can act on the delete below
    setup.kube.delete(namespace, "later")
    held = setup.kube.get(namespace, "later")
    assert held is not None and held["metadata"].get("deletionTimestamp")
    assert _left(setup.sandbox, namespace) != []  # not cleaned without an operator

    started = time.monotonic()
    setup.restart()
    wait_for("deleted once the operator is back", lambda: setup.kube.get(namespace, "later") is None, 60)
    SUMMARY.append(Figure("delete: operator down, started later", 1, time.monotonic() - started, "-"))
    assert _left(setup.sandbox, namespace) == []
