"""The operator end to end against every variant of OpsRamp's API (issue 13): one tenant per variant, all at once.

Each variant (a named profile, or one or two contract switches) gets its own OpsRamp tenant in the sandbox's
emulator, its own API client and namespace, and the lifecycle scenarios it can break: create, drift (uninstalled or
disabled in OpsRamp), role rename, region change, a lost install answer followed by a crash, delete. Where no
correct action exists, the resource must end in the documented, specific condition instead (`SPECIALS`).

The variants run side by side through one operator process, so the whole matrix costs about as much as its slowest
variant. VARIANTS below is the matrix: switch → values → scenarios (docs/opsramp-api-assumptions.md has it too).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
from e2e_harness import (
    GROUP,
    SECRETS_SEEN,
    Kube,
    ObjectRecorder,
    Operator,
    Sandbox,
    condition,
    get_role,
    integration_resource,
    role_name_of,
)
from kubernetes.client.exceptions import ApiException

from opsramp_aws_operator.opsramp.variants import FULL_ECHO, OPENAPI_ECHO, Contract
from opsramp_sandbox.opsramp import ApiClient

pytestmark = pytest.mark.e2e

WRONG_OPSRAMP_ACCOUNT = "111111111111"
NO_ROLE_ECHO = sorted(FULL_ECHO - {"credential.AssumeRoleARN"})
NO_NAME_ECHO = sorted(FULL_ECHO - {"displayName", "credential.Name"})
NOTHING_ECHO = ["credential.AccountNumber", "credential.AWSType", "credential.Regions"]


@dataclass(frozen=True)
class Variant:
    key: str  # short, for namespaces
    switches: dict[str, Any]
    scenarios: tuple[str, ...]
    specials: tuple[str, ...] = ()  # resources that must end in a specific condition
    console_id: bool = False  # the main resource uses the console's External ID (externalIdSecretRef)
    monitoring_reason: str = "RoleAssumed"
    seed_others: int = 0  # AWS integrations of someone else in the tenant (paging)


VARIANTS: list[Variant] = [
    Variant("default", {}, ("create", "drift-uninstall", "drift-disable", "rename", "regions", "crash", "delete")),
    Variant(
        "openapi",
        {"profile": "openapi-examples"},
        ("create", "zero-writes", "drift-uninstall", "rename", "regions", "crash", "delete"),
    ),
    # The same shape, on a tenant of its own, so its Stalled resource cannot blur the zero-writes count above.
    Variant("openapilinked", {"profile": "openapi-examples"}, ("create",), ("linked-unconfirmed",)),
    Variant("strict", {"profile": "strict"}, ("create", "drift-uninstall", "crash", "delete"), ("linked-unsupported",)),
    Variant(
        "asyncimm",
        {"profile": "async-immutable", "role_check_delay_seconds": 0.5},
        ("create", "rename", "regions", "crash", "delete"),
        ("async-fails",),
    ),
    Variant("norole", {"echo": NO_ROLE_ECHO}, ("create", "rename", "crash")),
    Variant("noname", {"echo": NOTHING_ECHO}, ("create", "delete"), ("second-unidentifiable",)),
    Variant("searchnoname", {"search_echo": NO_NAME_ECHO}, ("create", "crash")),
    Variant("awstype", {"aws_type": "ExternalId"}, ("create", "rename")),
    Variant("assumerole", {"aws_type": "IAM with AssumeRole", "access_keys": "empty"}, ("create", "regions")),
    Variant("linkedignored", {"linked_accounts": "ignored"}, ("create",), ("linked-unconfirmed",)),
    Variant("async", {"role_check": "async", "role_check_delay_seconds": 0.5}, ("create",), ("async-fails",)),
    Variant("never", {"role_check": "never"}, ("create",), monitoring_reason="NoFailureReported"),
    Variant("ignored", {"credential_updates": "ignored"}, ("create", "rename", "regions")),
    Variant("rejected", {"credential_updates": "rejected"}, ("create", "rename", "regions")),
    Variant("generated", {"external_id": "generated"}, ("create",), ("generated-refused",), console_id=True),
    Variant("unknown500", {"unknown_id": 500}, ("create", "drift-uninstall", "delete")),
    Variant(
        "tokens407",
        {"token_rejected": 407, "token_path": "legacy", "expires_in": "integer"},
        ("create", "regions"),
    ),
    Variant("tokens400", {"token_rejected": 400, "token_reuse": True}, ("create", "regions")),
    Variant(
        "paging",
        {"search_query": "ignored", "oversized_page": "refuse", "max_page_size": 10},
        ("create", "crash"),
        seed_others=25,
    ),
    Variant("dupes", {"duplicate_names": "refused"}, ("create", "crash")),
    Variant("upper", {"status_values": "ENABLED/DISABLED"}, ("create", "drift-disable")),
    Variant("listregions", {"regions_echo": "list"}, ("create", "regions")),
]

SPECIALS: dict[str, tuple[str, str]] = {
    # special -> (condition type that says so, its reason)
    "linked-unsupported": ("Ready", "LinkedAccountsUnsupported"),
    "linked-unconfirmed": ("Ready", "LinkedAccountsUnconfirmed"),
    "async-fails": ("Monitoring", "OpsRampCannotAssumeRole"),
    "generated-refused": ("Ready", "OpsRampCannotAssumeRole"),
    "second-unidentifiable": ("Ready", "OpsRampCannotIdentify"),
}


@dataclass
class Lane:
    """One variant's tenant, API client and namespace."""

    variant: Variant
    tenant: str
    client_id: str
    namespace: str
    before: dict[str, Any] = field(default_factory=dict)  # what a scenario saw before it acted

    def display(self, name: str) -> str:
        return f"{self.namespace}/{name}"


@dataclass
class Matrix:
    sandbox: Sandbox
    kube: Kube
    operator: Operator
    recorder: ObjectRecorder
    lanes: list[Lane]

    def with_scenario(self, scenario: str) -> list[Lane]:
        return [lane for lane in self.lanes if scenario in lane.variant.scenarios]

    def with_special(self, special: str) -> list[Lane]:
        return [lane for lane in self.lanes if special in lane.variant.specials]


# -- checks --------------------------------------------------------------------------------------------------


def wait_all(what: str, checks: Mapping[str, Callable[[], str]], timeout: float = 150.0) -> None:
    """Poll every check until each returns "" (done); fail naming each one still not done, with what it saw."""
    pending = dict(checks)
    last: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for key, check in list(pending.items()):
            try:
                last[key] = check()
            except ApiException as exc:
                last[key] = f"Kubernetes API: HTTP {exc.status}"
            if not last[key]:
                pending.pop(key)
        if pending:
            time.sleep(0.5)
    assert not pending, f"{what}: not done after {timeout}s:\n" + "\n".join(f"  {k}: {last[k]}" for k in pending)


def ours_in_opsramp(matrix: Matrix, lane: Lane, name: str) -> list[dict[str, Any]]:
    return [i for i in matrix.sandbox.opsramp.integrations(lane.tenant) if i.get("displayName") == lane.display(name)]


def ready_problem(matrix: Matrix, lane: Lane, name: str, reason: str | None = None) -> str:
    """ "" when the resource is Ready (Monitoring with `reason`) for its generation and OpsRamp holds exactly one
    integration for it, the one status names, using status.roleArn; else what is wrong."""
    obj = matrix.kube.get(lane.namespace, name)
    ready, monitoring = condition(obj, "Ready"), condition(obj, "Monitoring")
    if obj is None or ready.get("status") != "True":
        return f"Ready={ready.get('status')} {ready.get('reason')}: {ready.get('message', '')[:200]}"
    if ready.get("observedGeneration") != obj["metadata"]["generation"]:
        return "Ready for an older generation"
    if reason is not None and monitoring.get("reason") != reason:
        return f"Monitoring reason {monitoring.get('reason')}, expected {reason}"
    found = ours_in_opsramp(matrix, lane, name)
    if len(found) != 1:
        return f"{len(found)} integrations named {lane.display(name)} in OpsRamp"
    status = obj["status"]
    if found[0]["id"] != status.get("integrationId"):
        return f"status.integrationId {status.get('integrationId')} is not {found[0]['id']}"
    if found[0]["credential"].get("AssumeRoleARN") != status.get("roleArn"):
        return f"OpsRamp uses {found[0]['credential'].get('AssumeRoleARN')}, status says {status.get('roleArn')}"
    return ""


def writes_of(matrix: Matrix, lane: Lane) -> int:
    log = matrix.sandbox.opsramp.state()["request_log"]
    return sum(1 for r in log if r["tenant_id"] == lane.tenant and r["category"] == "writes")


def was_ever_ready(matrix: Matrix, uid: str) -> bool:
    for text in list(matrix.recorder.texts):
        obj = json.loads(text)
        if obj["metadata"].get("uid") == uid and condition(obj, "Ready").get("status") == "True":
            return True
    return False


def resource(matrix: Matrix, lane: Lane, name: str, *, console: bool = False, **spec: Any) -> dict[str, Any]:
    body = integration_resource(lane.namespace, name, matrix.sandbox.opsramp.url, **spec)
    body["spec"]["opsramp"]["tenantId"] = lane.tenant
    if console:
        secret = "console-external-id"
        value = matrix.sandbox.opsramp.console_external_id(lane.tenant)
        SECRETS_SEEN.add(value)
        matrix.kube.apply_secret(lane.namespace, secret, {"externalId": value})
        body["spec"].pop("generateExternalId", None)
        body["spec"]["externalIdSecretRef"] = {"name": secret}
    return body


# -- the fixture: one operator for the module, with short graces ----------------------------------------------


@pytest.fixture(scope="module")
def matrix(sandbox: Sandbox, kube: Kube, operator_process: Operator, recorder: ObjectRecorder) -> Iterator[Matrix]:
    """Every variant's tenant, client and namespace, and an operator of this module's own (it is killed once)."""
    lanes: list[Lane] = []
    emulator = sandbox.opsramp
    for index, variant in enumerate(VARIANTS):
        tenant, client_id, secret = f"client_{500 + index}", f"matrix-{variant.key}", "mx-" + secrets.token_hex(16)
        SECRETS_SEEN.add(secret)
        emulator.add_client(ApiClient(tenant, client_id, secret))
        emulator.set_contract(tenant=tenant, **variant.switches)
        namespace = kube.namespace(f"mx-{variant.key}")
        kube.apply_secret(namespace, "opsramp-api-client", {"clientId": client_id, "clientSecret": secret})
        for n in range(variant.seed_others):
            emulator.seed_integration(
                tenant,
                {
                    "displayName": f"someone-else-{n:02d}",
                    "integration": {"id": "AWS", "name": "AWS"},
                    "credential": {"AccountNumber": "210987654321", "Regions": "All", "AWSType": "External ID"},
                },
            )
        lanes.append(Lane(variant, tenant, client_id, namespace))
    operator_process.stop()
    op = Operator(
        sandbox,
        extra_env={
            "OPERATOR_ASSUME_GRACE_SECONDS": "8",
            "OPERATOR_IAM_CALLS_PER_SECOND": "100",
            # The asynchronous variants report within a second on an idle machine; the grace leaves room for a
            # loaded one (their check is an STS AssumeRole against moto), where 6 s was once not enough.
            "OPERATOR_MONITORING_GRACE_SECONDS": "20",
            # The async-fails lanes trust a wrong OpsRamp account on purpose: past the guardrails, OpsRamp refuses.
            "OPERATOR_ALLOWED_OPSRAMP_AWS_ACCOUNT_IDS": WRONG_OPSRAMP_ACCOUNT,
        },
    )
    from e2e_harness import ALL_OPERATORS

    ALL_OPERATORS.append(op)
    op.start()
    try:
        yield Matrix(sandbox, kube, op, recorder, lanes)
    finally:
        sandbox.opsramp.clear_faults()
        _delete_everything(kube, lanes)
        op.stop()
        operator_process.start()


def _delete_everything(kube: Kube, lanes: list[Lane]) -> None:
    names: list[tuple[str, str]] = []
    for lane in lanes:
        for obj in kube.objects(lane.namespace):
            names.append((lane.namespace, obj["metadata"]["name"]))
            with contextlib.suppress(ApiException):
                kube.delete(lane.namespace, obj["metadata"]["name"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(kube.get(ns, n) is not None for ns, n in names):
        time.sleep(0.5)
    for ns, n in names:
        if kube.get(ns, n) is not None:
            kube.patch_meta(ns, n, {"annotations": {f"{GROUP}/skip-cleanup": "true"}})


# -- the phases, in order ------------------------------------------------------------------------------------

SPECIAL_NAMES = {
    "linked-unsupported": "linked",
    "linked-unconfirmed": "linked",
    "async-fails": "wrongacct",
    "generated-refused": "generated",
    "second-unidentifiable": "second",
}


def live(matrix: Matrix, lane: Lane, name: str) -> dict[str, Any]:
    obj = matrix.kube.get(lane.namespace, name)
    assert obj is not None, f"{lane.namespace}/{name} is gone"
    return obj


def special_problem(matrix: Matrix, lane: Lane, name: str, ctype: str, reason: str) -> str:
    obj = matrix.kube.get(lane.namespace, name)
    got = condition(obj, ctype)
    stalled = condition(obj, "Stalled").get("status")
    if (got.get("status"), got.get("reason"), stalled) != ("False", reason, "True"):
        return f"{ctype}={got.get('status')} {got.get('reason')} Stalled={stalled}: {got.get('message')}"
    return ""


def test_create_reaches_ready_or_the_documented_condition(matrix: Matrix) -> None:
    """Every variant: the main resource becomes Ready with OpsRamp's own verdict (or "no failure reported" where the
    tenant gives none); a resource no correct action exists for ends in its specific condition and is never Ready."""
    kube = matrix.kube
    checks: dict[str, Callable[[], str]] = {}
    for lane in matrix.lanes:
        kube.create(resource(matrix, lane, "main", console=lane.variant.console_id))
        checks[f"{lane.variant.key}/main"] = partial(
            ready_problem, matrix, lane, "main", lane.variant.monitoring_reason
        )
    for lane in matrix.with_scenario("drift-disable"):
        # A resource of its own: "main" may be uninstalled behind the operator's back in the same phase.
        kube.create(resource(matrix, lane, "drifter"))
        checks[f"{lane.variant.key}/drifter"] = partial(ready_problem, matrix, lane, "drifter")
    for lane in matrix.with_special("linked-unsupported") + matrix.with_special("linked-unconfirmed"):
        kube.create(resource(matrix, lane, "linked", installAllLinkedAccounts=True))
    for lane in matrix.with_special("async-fails"):
        body = resource(matrix, lane, "wrongacct")
        body["spec"]["opsramp"]["awsAccountId"] = WRONG_OPSRAMP_ACCOUNT
        kube.create(body)
    for lane in matrix.with_special("generated-refused"):
        kube.create(resource(matrix, lane, "generated"))
    wait_all("main resources Ready", checks)

    for lane in matrix.with_special("second-unidentifiable"):
        kube.create(resource(matrix, lane, "second"))
    checks = {}
    for special, (ctype, reason) in SPECIALS.items():
        for lane in matrix.with_special(special):
            check = partial(special_problem, matrix, lane, SPECIAL_NAMES[special], ctype, reason)
            checks[f"{lane.variant.key}/{special}"] = check
    wait_all("resources no correct action exists for", checks)
    for lane in matrix.lanes:
        for special in lane.variant.specials:
            uid = live(matrix, lane, SPECIAL_NAMES[special])["metadata"]["uid"]
            assert not was_ever_ready(matrix, uid), f"{lane.variant.key}/{special} was Ready"
    # No duplicate: the unidentifiable second resource installed nothing.
    for lane in matrix.with_special("second-unidentifiable"):
        assert len(matrix.sandbox.opsramp.integrations(lane.tenant)) == 1
    for lane in matrix.with_special("generated-refused"):
        assert "externalIdSecretRef" in condition(live(matrix, lane, "generated"), "Ready")["message"]


def gets_of_integration(matrix: Matrix, lane: Lane, integration_id: str) -> int:
    log = matrix.sandbox.opsramp.state()["request_log"]
    path = f"/api/v2/tenants/{lane.tenant}/integrations/installed/{integration_id}"
    return sum(1 for r in log if r["path"] == path and r["method"] == "GET")


def resynced(matrix: Matrix, lane: Lane, integration_id: str, before: int) -> str:
    return "" if gets_of_integration(matrix, lane, integration_id) >= before + 2 else "waiting for two resyncs"


def test_unchanged_resources_resync_without_writes(matrix: Matrix) -> None:
    """OpenAPI-examples shape (no displayName, status or role ARN in answers): two resyncs of an unchanged Ready
    resource read OpsRamp and send no write at all."""
    for lane in matrix.with_scenario("zero-writes"):
        integration_id = live(matrix, lane, "main")["status"]["integrationId"]
        writes, gets = writes_of(matrix, lane), gets_of_integration(matrix, lane, integration_id)
        wait_all(f"{lane.variant.key}: two resyncs", {"main": partial(resynced, matrix, lane, integration_id, gets)})
        assert writes_of(matrix, lane) == writes, f"{lane.variant.key}: a resync wrote to OpsRamp"
        assert ready_problem(matrix, lane, "main") == ""


def reinstalled(matrix: Matrix, lane: Lane, old: str) -> str:
    if live(matrix, lane, "main")["status"]["integrationId"] == old:
        return "still the uninstalled integration"
    return ready_problem(matrix, lane, "main")


def enabled_again(matrix: Matrix, lane: Lane, integration_id: str) -> str:
    record = next(i for i in matrix.sandbox.opsramp.integrations(lane.tenant) if i["id"] == integration_id)
    if record["status"] != "enabled":
        return "still disabled"
    events = [e.reason for e in matrix.kube.events(lane.namespace, "drifter") if e.type == "Warning"]
    if "IntegrationDisabledInOpsRamp" not in events:
        return f"no IntegrationDisabledInOpsRamp Event (Warnings: {events})"
    return ready_problem(matrix, lane, "drifter")


def renamed(matrix: Matrix, lane: Lane, new: str) -> str:
    obj = live(matrix, lane, "main")
    if role_name_of(obj) != new:
        return f"status.roleArn is {obj['status'].get('roleArn')}"
    if get_role(matrix.sandbox, lane.before["role"]) is not None:
        return "old role still there"
    return ready_problem(matrix, lane, "main")


def regions_moved(matrix: Matrix, lane: Lane) -> str:
    found = ours_in_opsramp(matrix, lane, "main")
    have = found[0]["credential"].get("Regions", "") if len(found) == 1 else f"{len(found)} integrations"
    if set(str(have).split(",")) != {"us-east-1", "eu-central-1"}:
        return f"OpsRamp holds regions {have}"
    return ready_problem(matrix, lane, "main")


def test_drift_rename_and_region_changes(matrix: Matrix) -> None:
    """With every token revoked first: an integration uninstalled in OpsRamp comes back; one disabled by hand is
    enabled again and reported; a role rename moves the integration (update or reinstall, as the tenant allows)
    before the old role goes; a region change reaches OpsRamp. Each ends Ready with exactly one integration."""
    kube, emulator = matrix.kube, matrix.sandbox.opsramp
    emulator.expire_tokens()
    checks: dict[str, Callable[[], str]] = {}
    for lane in matrix.with_scenario("drift-uninstall"):
        old = live(matrix, lane, "main")["status"]["integrationId"]
        assert emulator.uninstall(lane.tenant, old)
        checks[f"{lane.variant.key}/drift-uninstall"] = partial(reinstalled, matrix, lane, old)
    for lane in matrix.with_scenario("drift-disable"):
        integration_id = live(matrix, lane, "drifter")["status"]["integrationId"]
        assert emulator.set_enabled(lane.tenant, integration_id, False)
        checks[f"{lane.variant.key}/drift-disable"] = partial(enabled_again, matrix, lane, integration_id)
    wait_all("drift undone", checks)

    checks = {}
    for lane in matrix.with_scenario("rename"):
        obj = live(matrix, lane, "main")
        lane.before["role"] = role_name_of(obj)
        lane.before["integration"] = obj["status"]["integrationId"]
        new = f"mx-{lane.variant.key}-renamed-{secrets.token_hex(3)}"
        kube.patch_spec(lane.namespace, "main", {"role": {"name": new}})
        checks[f"{lane.variant.key}/rename"] = partial(renamed, matrix, lane, new)
    for lane in matrix.with_scenario("regions"):
        kube.patch_spec(lane.namespace, "main", {"regions": ["us-east-1", "eu-central-1"]})
        checks[f"{lane.variant.key}/regions"] = partial(regions_moved, matrix, lane)
    wait_all("renames and region changes", checks)
    # Where updates cannot change credentials, the rename went by uninstall + install (a new id); else in place.
    for lane in matrix.with_scenario("rename"):
        moved = live(matrix, lane, "main")["status"]["integrationId"] != lane.before["integration"]
        reinstalls = lane.variant.switches.get("credential_updates") in ("ignored", "rejected") or lane.variant.key in (
            "asyncimm",
            "norole",
            "openapi",
        )
        assert moved == reinstalls, f"{lane.variant.key}: integration id moved={moved}, expected {reinstalls}"


def applied_behind_a_502(matrix: Matrix, lane: Lane) -> str:
    return "" if ours_in_opsramp(matrix, lane, "crash") else "none yet"


def test_lost_install_answer_then_crash_leaves_exactly_one(matrix: Matrix) -> None:
    """OpsRamp applies installs but their answers are lost (502), and the operator is SIGKILLed meanwhile: after a
    restart each variant holds exactly one integration for the resource, adopted rather than installed again."""
    kube, emulator = matrix.kube, matrix.sandbox.opsramp
    lanes = matrix.with_scenario("crash")
    emulator.set_faults(
        error_next=1_000_000, error_method="POST", error_route="/install/AWS", error_status=502, error_after_apply=True
    )
    try:
        for lane in lanes:
            kube.create(resource(matrix, lane, "crash"))
        wait_all(
            "installs applied behind a 502",
            {lane.variant.key: partial(applied_behind_a_502, matrix, lane) for lane in lanes},
        )
        matrix.operator.kill()
    finally:
        emulator.clear_faults()
    matrix.operator.start()
    wait_all(
        "one integration each after the crash",
        {lane.variant.key: partial(ready_problem, matrix, lane, "crash") for lane in lanes},
    )


def gone(matrix: Matrix, lane: Lane, status: dict[str, Any]) -> str:
    if matrix.kube.get(lane.namespace, "main") is not None:
        return "resource still there"
    if ours_in_opsramp(matrix, lane, "main"):
        return "integration still installed"
    profiles = matrix.sandbox.opsramp.discovery_profiles(lane.tenant)
    if any(p["id"] == status.get("discoveryProfileId") for p in profiles):
        return "discovery profile still there"
    if get_role(matrix.sandbox, str(status["roleArn"]).rsplit("/", 1)[-1]) is not None:
        return "role still there"
    return ""


def test_delete_removes_integration_profile_and_role(matrix: Matrix) -> None:
    """Deleting uninstalls the integration, removes its discovery profile and deletes the role, in every variant."""
    checks: dict[str, Callable[[], str]] = {}
    for lane in matrix.with_scenario("delete"):
        status = live(matrix, lane, "main")["status"]
        matrix.kube.delete(lane.namespace, "main")
        checks[lane.variant.key] = partial(gone, matrix, lane, status)
    wait_all("deleted", checks, timeout=90)


def test_the_matrix_covers_every_switch() -> None:
    """Each contract switch with more than one answer has a variant in the matrix (or a contract test, listed)."""
    covered = {key for v in VARIANTS for key in v.switches} | {"profile"}
    covered |= {k for name in ("openapi-examples", "strict", "async-immutable") for k in _profile_switches(name)}
    contract_tests_only = {"retry_after", "foreign_tenant", "role_check_delay_seconds"}
    missing = {f for f in Contract.__dataclass_fields__} - covered - contract_tests_only
    assert not missing, f"switches without a variant: {sorted(missing)}"
    assert set(OPENAPI_ECHO) < FULL_ECHO


def _profile_switches(name: str) -> set[str]:
    from opsramp_aws_operator.opsramp.variants import profile

    return set(profile(name).differences())
