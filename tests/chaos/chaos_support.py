"""Shared pieces of the chaos suite: its size, operator processes with metrics, fault loops, checks and figures.

The e2e harness (tests/e2e/e2e_harness.py) provides the sandbox, the Kube helpers and the IAM/OpsRamp lookups;
this module adds only what the chaos scenarios need on top, so the two suites cannot drift apart.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from e2e_harness import (
    GROUP,
    PLURAL,
    TENANT,
    VERSION,
    Kube,
    Operator,
    Sandbox,
    WatchRecorder,
    handler_failures,
    wait_for,
)
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from opsramp_sandbox.opsramp import OpsRampEmulator

# Resources of the fault scenario (and the scale of a few others); `make chaos CHAOS_SIZE=5` for a quick run.
CHAOS_SIZE = max(1, int(os.environ.get("CHAOS_SIZE", "20")))

OWNER_UID_TAG = "opsramp.com/owner-uid"

# Every secret value the suite handed out or read back (client secrets, External IDs): the leak scan looks
# for each of them in every byte the operators wrote, every Event and every recorded object version.
SECRETS: set[str] = set()
# Every operator process the suite started, for the leak scan at the end.
OPERATORS: list[ChaosOperator] = []


@dataclass
class Figure:
    """One row of the summary table printed at the end of the run."""

    scenario: str
    resources: int
    seconds: float
    retries: str
    note: str = ""


SUMMARY: list[Figure] = []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ChaosOperator:
    """A real operator process (the e2e harness's `Operator`) with its own log directory and metrics port."""

    inner: Operator
    metrics_port: int
    label: str

    @property
    def process(self) -> Any:
        return self.inner.process

    def start(self) -> None:
        self.inner.start()

    def stop(self) -> None:
        self.inner.stop()

    def kill(self) -> None:
        self.inner.kill()

    def alive(self) -> bool:
        return self.inner.process is not None and self.inner.process.poll() is None

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to end on its own (a failpoint's SIGKILL); its return code."""
        assert self.inner.process is not None
        return int(self.inner.process.wait(timeout))

    def output(self) -> str:
        return str(self.inner.output())

    def raw_output(self) -> bytes:
        return b"".join(p.read_bytes() for p in self.inner.logs if p.exists())

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, keyed by (sample name, sorted labels)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
        return samples

    def metric_sum(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        total = 0.0
        for (sample, sample_labels), value in self.metrics().items():
            have = dict(sample_labels)
            if sample == name and all(have.get(k) == v for k, v in labels.items()):
                total += value
        return total

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines (the operator logs JSON in the sandbox); other lines are skipped."""
        records = []
        for line in self.output().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def retry_times(self, namespace: str, name: str) -> list[float]:
        """Epoch seconds of each failed attempt of the change handler for one resource (kopf logs each)."""
        return handler_failures(self.output(), namespace, name)


def chaos_operator(sandbox: Sandbox, label: str, **env: str) -> ChaosOperator:
    """An operator with its own log directory (so no run overwrites another's log) and a free metrics port."""
    workdir = sandbox.workdir / f"operator-{label}-{len(OPERATORS)}"
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = {
        "OPERATOR_METRICS_PORT": str(port),
        # Resyncs every few seconds would blur the retry counts and the crash points; drift is e2e's subject.
        "OPERATOR_RESYNC_INTERVAL_SECONDS": "60",
        **env,
    }
    op = ChaosOperator(Operator(dataclasses.replace(sandbox, workdir=workdir), extra_env=settings), port, label)
    OPERATORS.append(op)
    return op


def wait_metrics(op: ChaosOperator, timeout: float = 30.0) -> None:
    """Wait until the operator's metrics endpoint answers (it starts before kopf's loop)."""

    def up() -> bool:
        try:
            op.metrics()
        except OSError:
            return False
        return True

    wait_for("metrics endpoint", up, timeout)


# --- the cluster and the external systems --------------------------------------------------------------


def credentials_secret(kube: Kube, sandbox: Sandbox, namespace: str, name: str = "opsramp-api-client") -> None:
    from e2e_harness import CLIENT_ID

    kube.apply_secret(namespace, name, {"clientId": CLIENT_ID, "clientSecret": sandbox.client_secret})
    SECRETS.add(sandbox.client_secret)


def ready_status(obj: dict[str, Any] | None) -> tuple[str | None, str | None]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == "Ready":
            return cond["status"], cond.get("reason")
    return None, None


def is_ready(obj: dict[str, Any] | None) -> bool:
    """Ready=True computed for the object's current generation."""
    if obj is None:
        return False
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == "Ready":
            return bool(
                cond["status"] == "True" and cond.get("observedGeneration") == obj["metadata"].get("generation")
            )
    return False


def list_resources(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    listed: Any = kube.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    return list(listed["items"])


def wait_all_ready(kube: Kube, namespace: str, names: Iterable[str], timeout: float) -> float:
    """Wait until every named resource is Ready; seconds it took."""
    wanted = set(names)
    started = time.monotonic()

    def not_ready() -> set[str]:
        ready = {o["metadata"]["name"] for o in list_resources(kube, namespace) if is_ready(o)}
        return wanted - ready

    last: set[str] = set()

    def done() -> bool:
        nonlocal last
        last = not_ready()
        return not last

    try:
        wait_for(f"{len(wanted)} resources Ready in {namespace}", done, timeout, interval=1.0)
    except AssertionError:
        states = {o["metadata"]["name"]: ready_status(o) for o in list_resources(kube, namespace)}
        raise AssertionError(
            f"not Ready after {timeout}s: {sorted(last)}; states: {[(n, states.get(n)) for n in sorted(last)]}"
        ) from None
    return time.monotonic() - started


def remember_external_ids(kube: Kube, namespace: str) -> int:
    """Read every External ID the operator generated in `namespace` into the leak scan's list; how many."""
    count = 0
    for secret in kube.core.list_namespaced_secret(namespace).items:
        data = secret.data or {}
        if "externalId" in data:
            SECRETS.add(base64.b64decode(data["externalId"]).decode())
            count += 1
    return count


def iam_roles(sandbox: Sandbox, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every IAM role whose name starts with `prefix`, with its tags, attached policies and inline policies."""
    iam = sandbox.iam()
    found: dict[str, dict[str, Any]] = {}
    for page in iam.get_paginator("list_roles").paginate():
        for role in page["Roles"]:
            name = role["RoleName"]
            if not name.startswith(prefix):
                continue
            tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=name)["Tags"]}
            attached = [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]]
            found[name] = {
                "arn": role["Arn"],
                "tags": tags,
                "attached": attached,
                "inline": iam.list_role_policies(RoleName=name)["PolicyNames"],
            }
    return found


def iam_policies(sandbox: Sandbox, prefix: str = "") -> dict[str, dict[str, str]]:
    """Customer-managed policies whose name starts with `prefix`: ARN → tags."""
    iam = sandbox.iam()
    found: dict[str, dict[str, str]] = {}
    for page in iam.get_paginator("list_policies").paginate(Scope="Local"):
        for policy in page["Policies"]:
            if str(policy["PolicyName"]).startswith(prefix):
                tags = iam.list_policy_tags(PolicyArn=policy["Arn"])["Tags"]
                found[policy["Arn"]] = {t["Key"]: t["Value"] for t in tags}
    return found


def integrations_with_prefix(
    sandbox: Sandbox, prefix: str, emulator: OpsRampEmulator | None = None
) -> list[dict[str, Any]]:
    """Integrations whose display name starts with `prefix`, in `emulator` (default: the sandbox's)."""
    source = emulator or sandbox.opsramp
    return [i for i in source.integrations(TENANT) if str(i.get("displayName", "")).startswith(prefix)]


@dataclass
class WorldCheck:
    """What IAM and OpsRamp hold for one namespace's resources, compared with the cluster."""

    problems: list[str] = field(default_factory=list)

    def expect(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)


def check_world(
    sandbox: Sandbox,
    kube: Kube,
    namespace: str,
    *,
    role_prefix: str,
    display_prefix: str,
    emulator: OpsRampEmulator | None = None,
) -> list[str]:
    """Problems (empty when none) between the namespace's Ready resources and what IAM and OpsRamp hold.

    Exactly one role per resource, owned by it, with exactly our policies attached (each owned by the resource);
    exactly one integration per resource, the recorded one, pointing at the recorded role; nothing else under
    the namespace's prefixes (no duplicate, no orphan).
    """
    check = WorldCheck()
    objects = {o["metadata"]["name"]: o for o in list_resources(kube, namespace)}
    roles = iam_roles(sandbox, role_prefix)
    policies = iam_policies(sandbox, role_prefix)
    integrations = integrations_with_prefix(sandbox, display_prefix, emulator)
    by_uid = {o["metadata"]["uid"]: name for name, o in objects.items()}

    check.expect(len(roles) == len(objects), f"{len(roles)} roles for {len(objects)} resources: {sorted(roles)}")
    check.expect(
        len(integrations) == len(objects),
        f"{len(integrations)} integrations for {len(objects)} resources: "
        f"{sorted(i['displayName'] for i in integrations)}",
    )
    role_owners = [by_uid.get(r["tags"].get(OWNER_UID_TAG, "")) for r in roles.values()]
    check.expect(None not in role_owners, f"a role owned by no live resource: {sorted(roles)}")
    check.expect(len(set(role_owners)) == len(role_owners), f"a resource owns two roles: {role_owners}")
    for arn, tags in policies.items():
        check.expect(tags.get(OWNER_UID_TAG) in by_uid, f"orphan policy {arn}")
    ids = [i["id"] for i in integrations]
    check.expect(len(set(ids)) == len(ids), f"duplicate integration ids {ids}")
    for name, obj in objects.items():
        status = obj.get("status") or {}
        role_arn = status.get("roleArn", "")
        role = next((r for r in roles.values() if r["arn"] == role_arn), None)
        check.expect(role is not None, f"{name}: status.roleArn {role_arn!r} is not in IAM")
        if role is not None:
            ours = sorted(a for a, t in policies.items() if t.get(OWNER_UID_TAG) == obj["metadata"]["uid"])
            check.expect(bool(ours), f"{name}: no policy of its own")
            check.expect(sorted(role["attached"]) == ours, f"{name}: attached {role['attached']} != owned {ours}")
            check.expect(role["inline"] == [], f"{name}: inline policies {role['inline']}")
        mine = [i for i in integrations if i["id"] == status.get("integrationId")]
        check.expect(len(mine) == 1, f"{name}: recorded integration {status.get('integrationId')!r} not found")
        source = emulator or sandbox.opsramp
        profiles = [
            p["id"]
            for p in source.discovery_profiles(TENANT)
            if p.get("installedIntegrationId") == status.get("integrationId")
        ]
        recorded = status.get("discoveryProfileId")
        check.expect(profiles == [recorded], f"{name}: discovery profiles {profiles}, status says {recorded}")
        if mine:
            check.expect(
                mine[0]["credential"]["AssumeRoleARN"] == role_arn,
                f"{name}: integration assumes {mine[0]['credential']['AssumeRoleARN']}, status says {role_arn}",
            )
    return check.problems


def nothing_left(
    sandbox: Sandbox,
    *,
    role_prefix: str,
    display_prefix: str,
    uids: Iterable[str] = (),
    emulator: OpsRampEmulator | None = None,
) -> list[str]:
    """Problems (empty when none): roles, policies or integrations left under the prefixes or owned by `uids`."""
    problems = []
    roles = iam_roles(sandbox, role_prefix)
    if roles:
        problems.append(f"roles left: {sorted(roles)}")
    policies = iam_policies(sandbox, role_prefix)
    if policies:
        problems.append(f"policies left: {sorted(policies)}")
    uid_set = set(uids)
    if uid_set:
        owned = [n for n, r in iam_roles(sandbox).items() if r["tags"].get(OWNER_UID_TAG) in uid_set]
        if owned:
            problems.append(f"roles owned by deleted resources: {owned}")
    left = integrations_with_prefix(sandbox, display_prefix, emulator)
    if left:
        problems.append(f"integrations left: {sorted(i['displayName'] for i in left)}")
    return problems


def delete_all(kube: Kube, namespace: str, timeout: float) -> float:
    """Delete every AWSIntegration of the namespace and wait until they are gone; seconds it took."""
    started = time.monotonic()
    for obj in list_resources(kube, namespace):
        try:
            kube.delete(namespace, obj["metadata"]["name"])
        except ApiException as exc:
            if exc.status != 404:
                raise
    wait_for(f"{namespace} emptied", lambda: not list_resources(kube, namespace), timeout, interval=0.5)
    return time.monotonic() - started


# --- fault loops ----------------------------------------------------------------------------------------


class Ticker:
    """Runs `action` every `every` seconds on a daemon thread until stopped (fault bursts, token expiry)."""

    def __init__(self, every: float, action: Callable[[], object], name: str) -> None:
        self.every = every
        self.action = action
        self.ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.action()
            self.ticks += 1


class EventRecorder(WatchRecorder):
    """Keeps the text of every Event in the cluster (namespaces deleted later take theirs with them)."""

    def __init__(self, kube: Kube) -> None:
        super().__init__(
            "chaos-event-recorder",
            kube.core.list_event_for_all_namespaces,
            render=lambda obj: f"{obj.reason} {obj.message} {obj.involved_object.name}",
        )


def leaks(haystacks: Iterable[tuple[str, bytes]], secrets: Iterable[str]) -> list[str]:
    """(where, which secret's first 4 characters) for every secret found in any haystack."""
    found = []
    needles = [s for s in secrets if len(s) >= 8]
    for where, data in haystacks:
        for secret in needles:
            if secret.encode() in data:
                found.append(f"{where}: {secret[:4]}...")
    return found


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
