"""Shards end to end: two operators, each given a label selector (as the chart renders them from `shards`), share one
namespace's resources; each resource is handled by exactly one, and a relabelled resource moves to the other shard
without a single write to AWS or OpsRamp."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from e2e_harness import (
    CLIENT_ID,
    GROUP,
    Kube,
    Operator,
    Sandbox,
    integration_resource,
    opsramp_writes,
    role_name_of,
    role_state,
    wait_for,
    wait_passes,
    wait_ready,
)

pytestmark = pytest.mark.e2e

SHARD_LABEL = f"{GROUP}/shard"
# The shards watch every namespace, as the chart's default install does (a namespaced operator lists namespaces, which
# the chart's cluster-wide rules do not grant: test_rbac's check of the suite's operator would see the 403s); this
# label keeps shard b, "everything not labelled a", to this test's resources.
MEMBER_LABEL = f"{GROUP}/e2e-shards"
SELECTORS = {"a": f"{SHARD_LABEL}=a", "b": f"{SHARD_LABEL} notin (a),{MEMBER_LABEL}"}
CREDENTIALS = "opsramp-api-client"


@pytest.fixture
def shards(sandbox: Sandbox, kube: Kube, operator_process: Operator) -> Iterator[tuple[str, dict[str, Operator]]]:
    """A namespace and two shard operators for it (the session operator stopped meanwhile: it would act on all)."""
    namespace = kube.namespace("shards")
    kube.apply_secret(namespace, CREDENTIALS, {"clientId": CLIENT_ID, "clientSecret": sandbox.client_secret})
    operator_process.stop()
    operators = {
        name: Operator(
            sandbox,
            extra_env={
                "OPERATOR_SHARD_NAME": name,
                "OPERATOR_SHARD_SELECTOR": selector,
            },
        )
        for name, selector in SELECTORS.items()
    }
    for op in operators.values():
        op.start()
    try:
        yield namespace, operators
        for obj in kube.objects(namespace):
            kube.delete(namespace, obj["metadata"]["name"])
        wait_for("the shard namespace emptied", lambda: not kube.objects(namespace), 60)
    finally:
        for op in operators.values():
            op.stop()
        operator_process.start()


def handled(op: Operator, namespace: str) -> dict[str, list[float]]:
    """Resource name -> times of this operator's log lines about it (kopf's handler lines, our passes' lines)."""
    seen: dict[str, list[float]] = {}
    for line in op.output().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        obj = record.get("object") if isinstance(record, dict) else None
        if isinstance(obj, dict) and obj.get("namespace") == namespace:
            stamp = time.mktime(time.strptime(record["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
            seen.setdefault(str(obj.get("name")), []).append(stamp)
    return seen


def test_each_resource_is_handled_by_one_shard_and_moves_without_a_write(
    shards: tuple[str, dict[str, Operator]], sandbox: Sandbox, kube: Kube
) -> None:
    """Labelled a -> shard a, the rest -> shard b, never both; relabelling moves one over with no IAM or OpsRamp write,
    the new shard handles its next change (one update), and the old shard lets go of the shared Secret."""
    namespace, operators = shards
    labels = {"a1": "a", "a2": "a", "b1": None, "b2": None}
    for name, shard in labels.items():
        body = integration_resource(namespace, name, sandbox.opsramp.url)
        body["metadata"]["labels"] = {MEMBER_LABEL: "true", **({SHARD_LABEL: shard} if shard else {})}
        kube.create(body)
    ready = {name: wait_ready(kube, namespace, name, timeout=90) for name in labels}

    by_a, by_b = handled(operators["a"], namespace), handled(operators["b"], namespace)
    assert set(by_a) == {"a1", "a2"}, by_a.keys()
    assert set(by_b) == {"b1", "b2"}, by_b.keys()
    finalizers = set(kube.secret_finalizers(namespace, CREDENTIALS))
    assert {f"{GROUP}/credentials-in-use-a", f"{GROUP}/credentials-in-use-b"} <= finalizers, finalizers

    # b1 and b2 move to shard a: b is left with no resource using the Secret.
    moved = ready["b1"]
    role_before = role_state(sandbox, role_name_of(moved))
    writes_before = opsramp_writes(sandbox)
    moved_at = time.time()
    for name in ("b1", "b2"):
        kube.patch_meta(namespace, name, {"labels": {SHARD_LABEL: "a"}})
    integration_id = moved["status"]["integrationId"]
    # Two passes of shard a over b1 (its resync scheduler takes it up), each reading its integration.
    wait_passes(sandbox, integration_id, passes=2, timeout=60)
    assert opsramp_writes(sandbox) == writes_before, "the hand-over wrote to OpsRamp"
    assert role_state(sandbox, role_name_of(moved)) == role_before, "the hand-over changed the IAM role"
    # Shard b lets go of the credentials Secret it no longer needs; shard a keeps its own mark.
    wait_for(
        "shard b's finalizer released",
        lambda: f"{GROUP}/credentials-in-use-b" not in kube.secret_finalizers(namespace, CREDENTIALS),
        30,
    )
    assert f"{GROUP}/credentials-in-use-a" in kube.secret_finalizers(namespace, CREDENTIALS)

    # The next change is handled by shard a alone: one update of the integration, nothing from b.
    kube.patch_spec(namespace, "b1", {"regions": ["us-east-1", "eu-west-1"]})
    wait_for(
        "the regions change applied",
        lambda: (
            (kube.get(namespace, "b1") or {}).get("status", {}).get("observedGeneration")
            == (kube.get(namespace, "b1") or {}).get("metadata", {}).get("generation")
        ),
        60,
    )
    assert opsramp_writes(sandbox)["update"] == writes_before["update"] + 1
    assert opsramp_writes(sandbox)["install"] == writes_before["install"]
    after_b = [t for t in handled(operators["b"], namespace).get("b1", []) if t > moved_at + 1]
    assert not after_b, "shard b still acted on b1 after it moved"
    assert [t for t in handled(operators["a"], namespace).get("b1", []) if t > moved_at]
