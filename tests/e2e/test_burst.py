"""A burst of new AWSIntegrations end to end: each one's creation is handled once, and repeated passes never list.

Issue 18: 60 resources applied at once ran kopf's creation handler twice for most of them, the second time on
a body older than the operator's own status patch, so that pass searched OpsRamp for an integration whose id
was already recorded. This module runs its own sandbox and an operator that watches only its namespace.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_harness import (
    ALL_OPERATORS,
    CLIENT_ID,
    GROUP,
    SECRETS_SEEN,
    TENANT,
    Kube,
    Operator,
    Sandbox,
    condition,
    integration_resource,
    start_sandbox,
    stop_sandbox,
    wait_for,
)

pytestmark = pytest.mark.e2e

# Big enough that the operator's 16 workers stay saturated for a while (with the IAM budget halved, below).
BURST = 40
SECRET = "opsramp-api-client"
SEARCH_ROUTE = ("GET", "/api/v2/tenants/{tenantId}/integrations/installed/search")
GET_ROUTE = ("GET", "/api/v2/tenants/{tenantId}/integrations/installed/{installedIntgId}")


@dataclass
class BurstWorld:
    sandbox: Sandbox
    operator: Operator
    kube: Kube
    namespace: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurstWorld]:
    """A sandbox of this module's own, a namespace with the credentials Secret, and an operator watching only it,
    configured like `opsramp-sandbox up` in what matters here."""
    sandbox = start_sandbox(Path(tmp_path_factory.mktemp("burst-sandbox")))
    SECRETS_SEEN.add(sandbox.client_secret)
    kube = Kube(sandbox.kubeconfig)
    namespace = kube.namespace("burst")
    kube.apply_secret(namespace, SECRET, {"clientId": CLIENT_ID, "clientSecret": sandbox.client_secret})
    operator = Operator(
        sandbox,
        extra_env={
            "OPERATOR_NAMESPACES": namespace,
            # A role younger than this is not handed to OpsRamp: most first passes end RolePropagating and are
            # retried, so each resource gets several operator patches in a row (the sandbox's default too).
            "OPERATOR_ROLE_SETTLE_SECONDS": "2",
            # Half the default IAM budget: the burst's passes queue for the 16 workers for a minute or so, which is
            # what made kopf handle stale bodies (before the fix most resources of such a burst ran twice).
            "OPERATOR_IAM_CALLS_PER_SECOND": "5",
            # No resync during the test: every pass after creation is one the test asks for.
            "OPERATOR_RESYNC_INTERVAL_SECONDS": "3600",
        },
    )
    ALL_OPERATORS.append(operator)
    operator.start()
    try:
        yield BurstWorld(sandbox, operator, kube, namespace)
        # Leave a real cluster clean (AWS and OpsRamp are emulated and go with the sandbox).
        for obj in kube.objects(namespace):
            name = obj["metadata"]["name"]
            kube.patch_meta(namespace, name, {"annotations": {f"{GROUP}/skip-cleanup": "true"}})
            kube.delete(namespace, name)
        wait_for(
            "the burst deleted",
            lambda: not kube.objects(namespace),
            timeout=120,
        )
        kube.core.delete_namespace(namespace)
    finally:
        operator.stop()
        stop_sandbox(sandbox)


def processed(operator: Operator, namespace: str, what: str, since_line: int = 0) -> Counter[str]:
    """How many times kopf finished handling `what` ("Creation", "Updating") per object, from its JSON log (from
    line `since_line` on)."""
    seen: Counter[str] = Counter()
    for line in operator.output().splitlines()[since_line:]:
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        obj = entry.get("object") or {}
        if obj.get("namespace") == namespace and str(entry.get("message", "")).startswith(f"{what} is processed"):
            seen[obj["name"]] += 1
    return seen


def not_ready(kube: Kube, namespace: str, names: list[str]) -> list[str]:
    """The names not Ready=True at their current generation yet (empty when all are)."""
    ready = set()
    for obj in kube.objects(namespace):
        cond = condition(obj, "Ready")
        if cond.get("status") == "True" and cond.get("observedGeneration") == obj["metadata"].get("generation"):
            ready.add(obj["metadata"]["name"])
    return [n for n in names if n not in ready]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_burst_is_created_once_each_and_repeated_passes_never_list(world: BurstWorld) -> None:
    """BURST resources at once: one creation pass each; then a pass of each with its id recorded: GETs, no listing."""
    kube, sandbox, namespace = world.kube, world.sandbox, world.namespace
    names = [f"b{i:03d}" for i in range(BURST)]
    for name in names:
        kube.create(integration_resource(namespace, name, sandbox.opsramp.url, secret=SECRET))

    wait_for(f"all {BURST} Ready", lambda: not not_ready(kube, namespace, names), timeout=600, interval=1.0)
    integrations = {i["displayName"]: i["id"] for i in sandbox.opsramp.integrations(TENANT)}
    for name in names:
        obj = kube.get(namespace, name)
        assert obj is not None
        assert obj["status"]["integrationId"] == integrations[f"{namespace}/{name}"], name

    # One more pass of each through kopf's change handler: spec.displayName set to the value it defaults to,
    # so nothing external changes. Its status has integrationId, so the pass must cost a GET of that
    # integration and never a listing. kopf handles an object's events in order, so once the update of an
    # object is processed, every earlier event of it has been too (a stale second creation pass included).
    # (Before the fix, kopf also handled some of these updates as one more creation: either line counts.)
    searches_before = sandbox.opsramp.request_count(*SEARCH_ROUTE)
    gets_before = sandbox.opsramp.request_count(*GET_ROUTE)
    log_mark = len(world.operator.output().splitlines())
    for name in names:
        kube.patch_spec(namespace, name, {"displayName": f"{namespace}/{name}"})

    def handled() -> bool:
        after = processed(world.operator, namespace, "Updating", log_mark)
        after.update(processed(world.operator, namespace, "Creation", log_mark))
        return set(after) >= set(names)

    wait_for(f"{BURST} updates processed", handled, timeout=300, interval=1.0)

    updates = processed(world.operator, namespace, "Updating", log_mark)
    counts = processed(world.operator, namespace, "Creation")
    wrong = {name: counts[name] for name in names if counts[name] != 1}
    adopted = [line for line in world.operator.output().splitlines() if "adopted existing integration" in line]
    searches = sandbox.opsramp.request_count(*SEARCH_ROUTE) - searches_before
    gets = sandbox.opsramp.request_count(*GET_ROUTE) - gets_before
    by_count = dict(Counter(counts[n] for n in names))
    print(f"objects by creation passes: {by_count}; the updates: {searches} listings, {gets} GETs")
    assert not wrong, f"{len(wrong)} of {BURST} objects had their creation handled other than once: {wrong}"
    assert all(updates[name] == 1 for name in names), f"updates handled per object: {updates}"
    assert not adopted, f"a pass found its own integration by listing OpsRamp: {adopted[:3]}"
    assert searches == 0, "a pass of a resource with status.integrationId listed OpsRamp"
    assert gets >= BURST
    assert len(sandbox.opsramp.integrations(TENANT)) == len(integrations)
