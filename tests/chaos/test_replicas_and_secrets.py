"""Chaos: two replicas with kopf peering (one acts, the other takes over), and credentials changes act at once.

Two replicas: kopf's peering CRDs are applied and a KopfPeering object made (what the chart's peering.enabled
installs); both processes run with OPERATOR_PEERING_NAME and their own priorities. Only the higher one may act;
killed, the other takes over one peering lifetime later; no resource is handled by both.

Credentials change: the Secret watch must re-reconcile the resources that use a Secret within seconds, long
before their needs-attention backoff or the drift timer would.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import kubernetes
import pytest
import yaml
from chaos_support import (
    SECRETS,
    SUMMARY,
    ChaosOperator,
    Figure,
    chaos_operator,
    check_world,
    credentials_secret,
    delete_all,
    nothing_left,
    remember_external_ids,
    wait_all_ready,
)
from e2e_harness import (
    CLIENT_ID,
    Kube,
    Sandbox,
    condition,
    integration_resource,
    operator_identity,
    wait_condition,
    wait_for,
)
from kubernetes.client.exceptions import ApiException

import opsramp_sandbox

pytestmark = pytest.mark.chaos

PEERING_CRDS = Path(opsramp_sandbox.__file__).parent / "data" / "kopf-peering-crds.yaml"
PEERING_NAME = "chaos-peering"
# Seconds a peer stays alive in the KopfPeering object after its last keepalive: a standby takes over this long
# after the active one dies. Not the operator's minimum (5): kopf judges a peer dead by its last keepalive when it
# handles the peering event, which a loaded 2-core machine can delay by seconds.
LIFETIME = 15
HANDLED = "Handler 'reconcile' succeeded."


def apply_peering(kube: Kube, namespace: str) -> None:
    """kopf's peering CRDs (if absent) and the namespace's KopfPeering object, as the chart would install them."""
    api = kubernetes_apiextensions(kube)
    for crd in yaml.safe_load_all(PEERING_CRDS.read_text()):
        if not crd:
            continue
        try:
            api.create_custom_resource_definition(crd)
        except ApiException as exc:
            if exc.status != 409:
                raise
    body = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": PEERING_NAME}}
    for _ in range(50):  # the CRD registers its resource asynchronously on a real cluster
        try:
            kube.custom.create_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings", body)
            return
        except ApiException as exc:
            if exc.status == 409:
                return
            if exc.status != 404:
                raise
            time.sleep(0.2)
    raise AssertionError("the KopfPeering resource never became available")


PAUSED = "Pausing operations in favour of"
RESUMED = "Resuming operations after the pause"


def paused(op: ChaosOperator) -> bool:
    """Whether kopf holds this replica paused. With a peering name set, peering is mandatory and kopf starts each
    replica paused until its first peering event shows no peer of higher priority: it logs "Resuming" then, and
    "Pausing" when such a peer appears later. A standby whose first event already shows the active replica stays
    paused without a word, so the last of the two messages (or none) is what tells."""
    messages = [r["message"] for r in op.log_records() if PAUSED in r["message"] or RESUMED in r["message"]]
    return not messages or PAUSED in messages[-1]


def peers(kube: Kube, namespace: str) -> dict[str, Any]:
    """The replicas registered in the KopfPeering object (kopf keeps one status entry per live peer)."""
    body = cast(
        dict[str, Any],
        kube.custom.get_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings", PEERING_NAME),
    )
    return dict(body.get("status") or {})


def kubernetes_apiextensions(kube: Kube) -> Any:
    return kubernetes.client.ApiextensionsV1Api(kube.api_client)


def handled_by(op: ChaosOperator, namespace: str) -> dict[str, float]:
    """Resource name → when this operator's change handler finished it."""
    done: dict[str, float] = {}
    for record in op.log_records():
        obj = record.get("object") or {}
        if obj.get("namespace") == namespace and record["message"] == HANDLED:
            done.setdefault(str(obj.get("name")), datetime.fromisoformat(record["time"]).timestamp())
    return done


@pytest.mark.timeout(480)
def test_two_replicas_one_acts_the_other_takes_over(sandbox: Sandbox, kube: Kube) -> None:
    """Peering: only the higher-priority replica handles resources; after its SIGKILL the other one does."""
    namespace = kube.namespace("chaos-peering")
    credentials_secret(kube, sandbox, namespace)
    apply_peering(kube, namespace)
    # Both replicas run as the ServiceAccount of a chart installed for this: the namespace, with peering.
    identity = operator_identity(
        sandbox, {"watchNamespaces": [namespace], "peering": {"enabled": True}}, release="opsramp-aws-operator-peering"
    )
    env = {
        "KUBECONFIG": str(identity),
        "OPERATOR_NAMESPACES": namespace,
        "OPERATOR_PEERING_NAME": PEERING_NAME,
        "OPERATOR_PEERING_LIFETIME_SECONDS": str(LIFETIME),
    }
    active = chaos_operator(sandbox, "replica-high", OPERATOR_PEERING_PRIORITY="200", **env)
    standby = chaos_operator(sandbox, "replica-low", OPERATOR_PEERING_PRIORITY="100", **env)
    standby.start()
    active.start()
    try:
        # Both are in the KopfPeering object before the first resource arrives, the active one running and the
        # standby paused in its favour (kopf's messages: see `paused`).
        wait_for("both replicas in the peering object", lambda: len(peers(kube, namespace)) == 2, 60)
        try:
            wait_for("the active replica running", lambda: not paused(active), 90)
            wait_for("the standby paused", lambda: paused(standby), 90)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\nstandby's log:\n{standby.output()[-4000:]}\nactive's log:\n{active.output()[-2000:]}"
            ) from None
        first = [f"a{i}" for i in range(4)]
        for name in first:
            kube.create(integration_resource(namespace, name, sandbox.opsramp.url))
        before = wait_all_ready(kube, namespace, first, timeout=90)
        assert set(handled_by(active, namespace)) == set(first)
        assert handled_by(standby, namespace) == {}, "the standby acted while the active replica was alive"

        active.kill()
        killed_at = time.time()
        second = [f"b{i}" for i in range(4)]
        for name in second:
            kube.create(integration_resource(namespace, name, sandbox.opsramp.url))
        takeover = wait_all_ready(kube, namespace, second, timeout=90 + 3 * LIFETIME)
        taken = handled_by(standby, namespace)
        assert set(second) <= set(taken), taken
        # Nothing the standby handled was handled before the active replica died (never both at once).
        assert all(at >= killed_at for at in taken.values()), taken
        problems = check_world(
            sandbox, kube, namespace, role_prefix=f"opsramp-{namespace}_", display_prefix=f"{namespace}/"
        )
        assert not problems, problems
        remember_external_ids(kube, namespace)
        deleted = delete_all(kube, namespace, timeout=60)
        left = nothing_left(sandbox, role_prefix=f"opsramp-{namespace}_", display_prefix=f"{namespace}/")
        assert not left, left
    finally:
        active.kill()
        standby.stop()
    SUMMARY.append(Figure("two replicas: active handles", len(first), before, "standby idle"))
    SUMMARY.append(Figure("two replicas: takeover after SIGKILL", len(second), takeover, f"lifetime {LIFETIME}s"))
    SUMMARY.append(Figure("two replicas: delete all", len(first) + len(second), deleted, "-"))


@pytest.mark.timeout(180)
def test_credentials_change_re_reconciles_within_seconds(sandbox: Sandbox, kube: Kube) -> None:
    """Fixing or breaking the credentials Secret acts at once, long before the backoff or the drift timer."""
    namespace = kube.namespace("chaos-creds")
    credentials_secret(kube, sandbox, namespace)
    wrong = "wrong-creds-" + namespace
    SECRETS.add(wrong)
    kube.apply_secret(namespace, "rotating", {"clientId": CLIENT_ID, "clientSecret": wrong})
    # Backoff and resync far beyond the waits below: only the Secret watch can explain a quick reaction.
    op = chaos_operator(
        sandbox,
        "credentials",
        OPERATOR_NAMESPACES=namespace,
        OPERATOR_ATTENTION_BACKOFF_SECONDS="300",
        OPERATOR_ATTENTION_BACKOFF_MAX_SECONDS="600",
        OPERATOR_RESYNC_INTERVAL_SECONDS="600",
    )
    op.start()
    try:
        names = ["user-1", "user-2"]
        for name in names:
            kube.create(integration_resource(namespace, name, sandbox.opsramp.url, secret="rotating"))
        kube.create(integration_resource(namespace, "bystander", sandbox.opsramp.url))
        for name in names:
            wait_condition(kube, namespace, name, "Stalled", "True", "OpsRampAuthFailed", timeout=60)
        wait_all_ready(kube, namespace, ["bystander"], timeout=60)

        kube.apply_secret(namespace, "rotating", {"clientId": CLIENT_ID, "clientSecret": sandbox.client_secret})
        healed = wait_all_ready(kube, namespace, names, timeout=30)

        revoked = "revoked-creds-" + namespace
        SECRETS.add(revoked)
        kube.apply_secret(namespace, "rotating", {"clientId": CLIENT_ID, "clientSecret": revoked})
        started = time.monotonic()
        for name in names:
            wait_condition(kube, namespace, name, "Ready", "False", "OpsRampAuthFailed", timeout=30)
        broken = time.monotonic() - started
        assert condition(kube.get(namespace, "bystander"), "Ready")["status"] == "True"

        kube.apply_secret(namespace, "rotating", {"clientId": CLIENT_ID, "clientSecret": sandbox.client_secret})
        wait_all_ready(kube, namespace, names, timeout=30)
        remember_external_ids(kube, namespace)
        delete_all(kube, namespace, timeout=60)
        left = nothing_left(sandbox, role_prefix=f"opsramp-{namespace}_", display_prefix=f"{namespace}/")
        assert not left, left
    finally:
        op.stop()
    SUMMARY.append(Figure("credentials fixed → Ready", len(names), healed, "backoff 300s, resync 600s"))
    SUMMARY.append(Figure("credentials revoked → not Ready", len(names), broken, "-"))
