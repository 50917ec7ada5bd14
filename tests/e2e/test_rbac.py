"""RBAC both ways, judged by a real kube-apiserver: with exactly the chart's rules the operator is never denied
anything, and without any one of them it is denied requests on that rule's resources.

The operator runs as the chart's ServiceAccount (a TokenRequest token); the apiserver's audit log records every
request of that ServiceAccount with its response code, so a denial is seen, not guessed from a timeout.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_harness import (
    ALL_OPERATORS,
    CLIENT_ID,
    Kube,
    Operator,
    Sandbox,
    delete_and_wait,
    integration_resource,
    kube_kind,
    wait_for,
    wait_ready,
)
from kubernetes.client.exceptions import ApiException

import opsramp_sandbox
from opsramp_sandbox.realkube import (
    CHART_RELEASE,
    OPERATOR_NAMESPACE,
    RBAC_KINDS,
    ControlPlane,
    chart_rbac,
    install_operator_identity,
    render_chart,
    service_account_of,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(kube_kind() != "real", reason="only the real control plane enforces RBAC (E2E_KUBE=real)"),
]

ROLE_KINDS = ("ClusterRole", "Role")
PEERING_KINDS = ("KopfPeering", "ClusterKopfPeering")
PEERING_CRDS = Path(opsramp_sandbox.__file__).parent / "data" / "kopf-peering-crds.yaml"
PLACEHOLDER = "watched"

# The chart's install modes, as values; `watched` stands for the test's own namespace.
MODES: dict[str, dict[str, Any]] = {
    # The default install (all namespaces, no peering): what the rest of the e2e suite's operator runs with.
    "default": {},
    # One watched namespace, Roles there instead of a ClusterRole, kopf peering through a KopfPeering.
    "namespaced": {"watchNamespaces": [PLACEHOLDER], "rbac": {"namespaced": True}, "peering": {"enabled": True}},
    # All namespaces with peering through a ClusterKopfPeering.
    "peering": {"peering": {"enabled": True}},
}


def values(mode: str, namespace: str) -> dict[str, Any]:
    """The mode's values with the placeholder namespace replaced."""
    result: dict[str, Any] = json.loads(json.dumps(MODES[mode]).replace(f'"{PLACEHOLDER}"', f'"{namespace}"'))
    return result


def rule_id(rule: dict[str, Any]) -> str:
    """`group/resource,resource` (core for the empty group), e.g. `core/secrets`."""
    return f"{rule['apiGroups'][0] or 'core'}/{','.join(rule['resources'])}"


def chart_rules(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every rule of the rendered (Cluster)Roles by its id (a Role per watched namespace holds the same rules)."""
    return {rule_id(rule): rule for obj in objects if obj["kind"] in ROLE_KINDS for rule in obj.get("rules") or []}


def rules_of(mode: str) -> list[str]:
    return sorted(chart_rules(chart_rbac(values(mode, PLACEHOLDER))))


# Every rule of the default and the namespaced install, and what peering adds to the default one.
CASES = [
    *(("default", rule) for rule in rules_of("default")),
    *(("namespaced", rule) for rule in rules_of("namespaced")),
    *(("peering", rule) for rule in sorted(set(rules_of("peering")) - set(rules_of("default")))),
]


def without(objects: list[dict[str, Any]], dropped: str) -> list[dict[str, Any]]:
    """The objects with rule `dropped` removed from whichever roles hold it (fails when none does)."""
    result = copy.deepcopy(objects)
    removed = 0
    for obj in result:
        if obj["kind"] in ROLE_KINDS:
            kept = [rule for rule in obj.get("rules") or [] if rule_id(rule) != dropped]
            removed += len(obj.get("rules") or []) - len(kept)
            obj["rules"] = kept
    assert removed >= 1, f"the chart has no rule {dropped} any more: update this test and docs/security.md"
    return result


def covers(rule: dict[str, Any], event: dict[str, Any]) -> bool:
    """Whether the audited request falls under the rule's API group and resources."""
    ref = event.get("objectRef") or {}
    resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    return ref.get("apiGroup", "") in rule["apiGroups"] and resource in rule["resources"]


def denied(plane: ControlPlane, user: str) -> list[dict[str, Any]]:
    """Every request of `user` the apiserver refused with 403."""
    return [e for e in plane.audit_events(user) if (e.get("responseStatus") or {}).get("code") == 403]


def describe(events: list[dict[str, Any]]) -> list[str]:
    """`verb group/resource[/subresource]` of each audited request."""
    out = []
    for event in events:
        ref = event.get("objectRef") or {}
        sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
        out.append(f"{event['verb']} {ref.get('apiGroup') or 'core'}/{ref.get('resource')}{sub}")
    return out


@dataclass
class Install:
    """One mode's chart install for one test: its ServiceAccount's kubeconfig, user name and operator env."""

    kubeconfig: Path
    user: str
    env: dict[str, str]


def install(sandbox: Sandbox, mode: str, namespace: str, release: str, dropped: str | None = None) -> Install:
    """Render the chart in `mode` for `namespace` as `release`, apply its RBAC (minus `dropped`) and peering
    objects, and take the operator's settings from the rendered Deployment, as the pod would get them."""
    assert sandbox.plane is not None
    rendered = render_chart(values(mode, namespace), release=release)
    objects = [o for o in rendered if o["kind"] in RBAC_KINDS]
    if dropped is not None:
        objects = without(objects, dropped)
    kubeconfig = install_operator_identity(sandbox.plane, sandbox.workdir / f"{release}.kubeconfig", objects)
    peerings = [o for o in rendered if o["kind"] in PEERING_KINDS]
    if peerings:
        for crd in yaml.safe_load_all(PEERING_CRDS.read_text()):
            if crd:
                sandbox.plane.apply_crd(crd)
        sandbox.plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(peerings))
    (deployment,) = [o for o in rendered if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    chart_env = {e["name"]: e.get("value", "") for e in container["env"]}
    env = {"KUBECONFIG": str(kubeconfig)}
    env.update({k: chart_env[k] for k in ("OPERATOR_NAMESPACES", "OPERATOR_PEERING_NAME") if chart_env.get(k)})
    user = "system:serviceaccount:{}:{}".format(*service_account_of(objects))
    return Install(kubeconfig, user, env)


@pytest.fixture(scope="module")
def no_session_operator(operator_process: Operator) -> Iterator[None]:
    """The session's operator is stopped while this module's operators run (two would act on one resource)."""
    operator_process.stop()
    try:
        yield
    finally:
        operator_process.start()


def subject_namespace(kube: Kube, sandbox: Sandbox, prefix: str) -> str:
    namespace = kube.namespace(prefix)
    kube.apply_secret(namespace, "opsramp-api-client", {"clientId": CLIENT_ID, "clientSecret": sandbox.client_secret})
    return namespace


@pytest.mark.parametrize(("mode", "dropped"), CASES, ids=[f"{m}:{r}" for m, r in CASES])
def test_without_any_one_chart_rule_the_operator_is_denied(
    sandbox: Sandbox, kube: Kube, no_session_operator: None, mode: str, dropped: str
) -> None:
    """The chart's RBAC in `mode` minus one rule: the operator, reconciling one resource, is refused requests
    under that rule (and under no other)."""
    plane = sandbox.plane
    assert plane is not None
    release = f"rbac-{mode}-{CASES.index((mode, dropped))}"
    namespace = subject_namespace(kube, sandbox, release)
    setup = install(sandbox, mode, namespace, release, dropped)
    rule = chart_rules(chart_rbac(values(mode, namespace)))[dropped]
    kube.create(integration_resource(namespace, "subject", sandbox.opsramp.url))
    operator = Operator(sandbox, extra_env=setup.env)
    ALL_OPERATORS.append(operator)
    operator.start()
    try:
        refused = wait_for(
            f"a 403 for {setup.user} under {dropped}",
            lambda: [e for e in denied(plane, setup.user) if covers(rule, e)],
            timeout=60,
        )
    finally:
        operator.stop()
        # The session's operator (started again after this module) finishes the deletion behind the finalizer.
        try:
            kube.delete(namespace, "subject")
        except ApiException as exc:
            if exc.status != 404:
                raise
    assert refused
    others = [e for e in denied(plane, setup.user) if not covers(rule, e)]
    assert not others, f"denied outside {dropped}: {describe(others)}"


@pytest.mark.parametrize("mode", ["namespaced", "peering"])
def test_with_exactly_the_chart_rules_a_resource_lives_and_nothing_is_denied(
    sandbox: Sandbox, kube: Kube, no_session_operator: None, mode: str
) -> None:
    """The chart's RBAC in `mode`, as is: a resource reaches Ready and is deleted, and the operator got no 403.

    (The default mode is the rest of the e2e suite; test_the_suites_operator_was_never_denied checks it.)
    """
    plane = sandbox.plane
    assert plane is not None
    release = f"rbac-{mode}-exact"
    namespace = subject_namespace(kube, sandbox, release)
    setup = install(sandbox, mode, namespace, release)
    operator = Operator(sandbox, extra_env=setup.env)
    ALL_OPERATORS.append(operator)
    operator.start()
    try:
        kube.create(integration_resource(namespace, "subject", sandbox.opsramp.url))
        wait_ready(kube, namespace, "subject")
        delete_and_wait(kube, namespace, "subject")
    finally:
        operator.stop()
    assert plane.audit_events(setup.user), "the audit log holds no request of the operator"
    assert describe(denied(plane, setup.user)) == []


@pytest.mark.after_all
def test_the_suites_operator_was_never_denied(sandbox: Sandbox, e2e_shard: str) -> None:
    """Across the whole e2e suite the operator, running with exactly the chart's default rules, got no 403 at all
    (and made requests: the audit log is not empty). Runs at the end of each e2e shard (tests/conftest.py)."""
    del e2e_shard
    assert sandbox.plane is not None
    user = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{CHART_RELEASE}"
    assert sandbox.plane.audit_events(user), "the audit log holds no request of the operator"
    assert describe(denied(sandbox.plane, user)) == []
