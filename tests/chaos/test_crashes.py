"""Chaos: the operator SIGKILLed right after each external write, restarted, converges with no duplicate or orphan.

Every write point of the create path (External ID Secret, role, policy, attachment, install), the update path
(a region change → OpsRamp update; a new External ID → trust policy update; new tags → TagRole) and the delete
path (uninstall, detach, policy delete, role delete) is armed through OPERATOR_FAILPOINTS, each at least twice:
`point@1` with one resource, `point@2` with two resources acting at once (so the second one dies mid-way).
After the kill an operator without failpoints must bring everything to the expected end state.

Each point is a lane in its own namespace with operators scoped to it (OPERATOR_NAMESPACES), so a few lanes run
side by side without two operators ever acting on the same resource.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from chaos_support import (
    SECRETS,
    SUMMARY,
    ChaosOperator,
    Figure,
    chaos_operator,
    check_world,
    credentials_secret,
    delete_all,
    is_ready,
    list_resources,
    nothing_left,
    remember_external_ids,
    slug,
    wait_all_ready,
)
from e2e_harness import (
    TENANT,
    Kube,
    Sandbox,
    get_role,
    integration_by_id,
    integration_resource,
    regions_of,
    trust_document,
    wait_for,
)
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.chaos

# How many lanes run at once (2 cores: more mostly adds operator start-up time).
PARALLEL = max(1, int(os.environ.get("CHAOS_PARALLEL", "3")))
TRIES = (1, 2)  # `point@1` with one resource, `point@2` with two at once
KILLED = -9


@dataclass
class Lane:
    """One write point's namespace, its resources and what the lane saw."""

    sandbox: Sandbox
    kube: Kube
    point: str
    namespace: str = ""
    counter: int = 0
    kills: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.namespace = self.kube.namespace(f"chaos-crash-{slug(self.point)}"[:40])
        credentials_secret(self.kube, self.sandbox, self.namespace)

    @property
    def role_prefix(self) -> str:
        return f"opsramp-{self.namespace}_"

    @property
    def display_prefix(self) -> str:
        return f"{self.namespace}/"

    def operator(self, label: str, failpoint: str | None = None) -> ChaosOperator:
        env = {"OPERATOR_NAMESPACES": self.namespace}
        if failpoint:
            env["OPERATOR_FAILPOINTS"] = failpoint
        return chaos_operator(self.sandbox, f"{slug(self.point)}-{label}", **env)

    def new_names(self, count: int) -> list[str]:
        names = [f"r{self.counter + i}" for i in range(count)]
        self.counter += count
        return names

    def create(self, names: list[str]) -> None:
        for name in names:
            self.kube.create(integration_resource(self.namespace, name, self.sandbox.opsramp.url))

    def ready_names(self) -> list[str]:
        return sorted(o["metadata"]["name"] for o in list_resources(self.kube, self.namespace))

    def crash_and_recover(self, n: int, act: Callable[[], None], converged: Callable[[], bool]) -> None:
        """Arm `point@n`, act, wait for the kill, restart without failpoints, wait for `converged`, check."""
        armed = self.operator(f"armed{n}", f"{self.point}@{n}")
        armed.start()
        act()
        try:
            code = armed.wait_exit(timeout=90)
        except Exception:
            armed.kill()
            self.problems.append(f"{self.point}@{n}: the failpoint was never reached")
            return
        if code != KILLED:
            self.problems.append(f"{self.point}@{n}: operator exited {code}, not by the failpoint's SIGKILL")
        self.kills += 1
        restarted = self.operator(f"restart{n}")
        restarted.start()
        try:
            wait_for(f"{self.point}@{n} converged", converged, 120, interval=0.5)
            self.problems.extend(
                f"{self.point}@{n}: {p}"
                for p in check_world(
                    self.sandbox,
                    self.kube,
                    self.namespace,
                    role_prefix=self.role_prefix,
                    display_prefix=self.display_prefix,
                )
            )
        except AssertionError as exc:
            self.problems.append(f"{self.point}@{n}: {exc}")
        finally:
            # A SIGKILL of a settled operator is one more crash it must shrug off; it is also quicker.
            restarted.kill()

    def all_ready(self) -> bool:
        return all(is_ready(o) for o in list_resources(self.kube, self.namespace))

    def setup_ready(self, count: int) -> list[str]:
        """Resources made Ready by an operator without failpoints (the subjects of update and delete points)."""
        names = self.new_names(count)
        op = self.operator("setup")
        op.start()
        try:
            self.create(names)
            wait_all_ready(self.kube, self.namespace, names, timeout=120)
        finally:
            op.kill()
        return names

    def finish(self) -> None:
        """Delete what is left with a plain operator; nothing may stay behind in IAM or OpsRamp."""
        remember_external_ids(self.kube, self.namespace)
        op = self.operator("finish")
        op.start()
        try:
            delete_all(self.kube, self.namespace, timeout=90)
            self.problems.extend(
                f"{self.point} final delete: {p}"
                for p in nothing_left(self.sandbox, role_prefix=self.role_prefix, display_prefix=self.display_prefix)
            )
        except AssertionError as exc:
            self.problems.append(f"{self.point} final delete: {exc}")
        finally:
            op.stop()


def create_lane(lane: Lane) -> None:
    for n in TRIES:
        names = lane.new_names(n)

        def act(names: list[str] = names) -> None:
            lane.create(names)

        lane.crash_and_recover(n, act, lane.all_ready)


def update_lane(lane: Lane, change: Callable[[Lane, str], Callable[[], bool]]) -> None:
    subjects = lane.setup_ready(sum(TRIES))
    for n in TRIES:
        targets, subjects = subjects[:n], subjects[n:]
        checks: list[Callable[[], bool]] = []

        def act(targets: list[str] = targets, checks: list[Callable[[], bool]] = checks) -> None:
            checks.extend(change(lane, name) for name in targets)

        def converged(checks: list[Callable[[], bool]] = checks) -> bool:
            return lane.all_ready() and all(check() for check in checks)

        lane.crash_and_recover(n, act, converged)


def delete_lane(lane: Lane) -> None:
    subjects = lane.setup_ready(sum(TRIES) + 1)  # one stays, to prove its neighbours' crashes leave it alone
    for n in TRIES:
        targets, subjects = subjects[:n], subjects[n:]
        uids = [lane.kube.get(lane.namespace, t)["metadata"]["uid"] for t in targets]  # type: ignore[index]

        def act(targets: list[str] = targets) -> None:
            for name in targets:
                lane.kube.delete(lane.namespace, name)

        def gone(targets: list[str] = targets, uids: list[str] = uids) -> bool:
            if any(lane.kube.get(lane.namespace, t) is not None for t in targets):
                return False
            left = [
                name for name in (f"{lane.role_prefix}{t}" for t in targets) if get_role(lane.sandbox, name) is not None
            ]
            names = {f"{lane.display_prefix}{t}" for t in targets}
            installed = [i for i in lane.sandbox.opsramp.integrations(TENANT) if i.get("displayName") in names]
            return not left and not installed and lane.all_ready()

        lane.crash_and_recover(n, act, gone)


# --- the update changes: each returns a check that the change has converged ---------------------------------


def change_regions(lane: Lane, name: str) -> Callable[[], bool]:
    regions = ["eu-west-1", "ap-south-1"]
    lane.kube.patch_spec(lane.namespace, name, {"regions": regions})

    def done() -> bool:
        obj = lane.kube.get(lane.namespace, name)
        integration = obj and integration_by_id(lane.sandbox, obj["status"]["integrationId"])
        return bool(is_ready(obj) and integration and regions_of(integration) == set(regions))

    return done


def change_external_id(lane: Lane, name: str) -> Callable[[], bool]:
    value = "chaos" + secrets.token_hex(16)
    SECRETS.add(value)
    secret = f"{name}-own-external-id"
    lane.kube.apply_secret(lane.namespace, secret, {"externalId": value})
    lane.kube.patch_spec(lane.namespace, name, {"externalIdSecretRef": {"name": secret}, "generateExternalId": False})

    def done() -> bool:
        obj = lane.kube.get(lane.namespace, name)
        role = get_role(lane.sandbox, f"{lane.role_prefix}{name}")
        return bool(is_ready(obj) and role and value in str(trust_document(role)))

    return done


def change_tags(lane: Lane, name: str) -> Callable[[], bool]:
    tag = uuid.uuid4().hex[:8]
    lane.kube.patch_spec(lane.namespace, name, {"role": {"tags": {"chaos": tag}}})

    def done() -> bool:
        obj = lane.kube.get(lane.namespace, name)
        role = get_role(lane.sandbox, f"{lane.role_prefix}{name}")
        tags = {t["Key"]: t["Value"] for t in (role or {}).get("Tags") or []}
        return bool(is_ready(obj) and tags.get("chaos") == tag)

    return done


def run_lanes(sandbox: Sandbox, kube: Kube, path: str, lanes: dict[str, Callable[[Lane], None]]) -> None:
    started = time.monotonic()
    made: list[Lane] = []

    def run(point: str) -> Lane:
        lane = Lane(sandbox, kube, point)
        made.append(lane)
        began = time.monotonic()
        try:
            lanes[point](lane)
        except (AssertionError, ApiException) as exc:
            lane.problems.append(f"{point}: {type(exc).__name__}: {exc}")
        finally:
            lane.finish()
            lane.seconds = time.monotonic() - began
        return lane

    with ThreadPoolExecutor(PARALLEL) as pool:
        done = list(pool.map(run, lanes))
    problems = [p for lane in done for p in lane.problems]
    for lane in done:
        SUMMARY.append(
            Figure(f"crash {path}: {lane.point}", lane.counter, lane.seconds, f"{lane.kills} kills, restarts converged")
        )
    print(f"crash {path}: {len(done)} points in {time.monotonic() - started:.1f}s")
    assert not problems, "\n".join(problems)


@pytest.mark.timeout(600)
def test_crash_at_every_create_write_converges(sandbox: Sandbox, kube: Kube) -> None:
    """Killed after the Secret, role, policy, attachment, install or discovery profile: restart → one of each, all
    Ready."""
    points = [
        "kube:create_secret",
        "iam:CreateRole",
        "iam:CreatePolicy",
        "iam:AttachRolePolicy",
        "opsramp:install",
        "opsramp:create_profile",
    ]
    run_lanes(sandbox, kube, "create", dict.fromkeys(points, create_lane))


@pytest.mark.timeout(600)
def test_crash_at_every_update_write_converges(sandbox: Sandbox, kube: Kube) -> None:
    """Killed after an OpsRamp update, a trust policy update or TagRole: restart → the change lands, no duplicate."""
    lanes: dict[str, Callable[[Lane], None]] = {
        "opsramp:update": lambda lane: update_lane(lane, change_regions),
        "iam:UpdateAssumeRolePolicy": lambda lane: update_lane(lane, change_external_id),
        "iam:TagRole": lambda lane: update_lane(lane, change_tags),
    }
    run_lanes(sandbox, kube, "update", lanes)


@pytest.mark.timeout(600)
def test_crash_at_every_delete_write_converges(sandbox: Sandbox, kube: Kube) -> None:
    """Killed after the profile delete, uninstall, detach, policy or role delete: restart → the resource goes,
    nothing left behind."""
    points = [
        "opsramp:delete_profile",
        "opsramp:uninstall",
        "iam:DetachRolePolicy",
        "iam:DeletePolicy",
        "iam:DeleteRole",
    ]
    run_lanes(sandbox, kube, "delete", dict.fromkeys(points, delete_lane))
