"""Many accounts' verdict reads against the sandbox over HTTP: every account of a fleet waits for OpsRamp's verdict,
and the verdicts come from the tenant's one shared page of integrations/activity (a paged GET, 50 a minute), not
one read per account, both while a fleet is onboarded and when a new process takes over a settled fleet.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from test_recorded_integration import ACTIVITY, World, new_resource, new_service, world, written_status

from opsramp_aws_operator import opsramp as opsramp_mod
from opsramp_aws_operator.conditions import PassResult
from opsramp_aws_operator.errors import OperatorError
from opsramp_aws_operator.fleet import RECHECKS_PER_PASS
from opsramp_aws_operator.handlers import parse_spec
from opsramp_aws_operator.opsramp import ActivityFeed
from opsramp_aws_operator.ratelimit import _reset_registry_for_tests
from opsramp_aws_operator.service import ResourceRef, Service
from opsramp_sandbox.aws import MEMBER_ROLE, create_organization

__all__ = ["world"]  # the fixture, shared with the one-account tests

ACCOUNTS = RECHECKS_PER_PASS + 15  # more than one pass may re-read verdicts of


def fleet_service(world: World) -> Service:
    return new_service(
        world,
        OPERATOR_NAMESPACE_TARGETS=json.dumps({"*": ["default", f"arn:aws:iam::*:role/{MEMBER_ROLE}"]}),
        OPERATOR_IAM_CALLS_PER_SECOND="1000",
        # A few rows in status: the others are Ready rows a new process knows only as counted.
        OPERATOR_ACCOUNTS_STATUS_ROWS="5",
    )


def one_pass(
    service: Service, world: World, ref: ResourceRef, status: dict[str, Any], sent: list[tuple[str, str]] | None = None
) -> tuple[PassResult, int]:
    """A pass and the integrations/activity reads it sent beyond the shared page's budget (0: within it)."""
    before = len(world.sandbox.opsramp.state()["request_log"])
    result = PassResult()
    started = time.monotonic()
    try:
        service.reconcile(parse_spec(world.spec), ref, status, result)
    except OperatorError as exc:
        result.error = exc
    took = time.monotonic() - started
    sent = sent if sent is not None else []
    sent.extend((r["method"], r["route"]) for r in world.sandbox.opsramp.state()["request_log"][before:])
    # The shared page is read again once it is older than a quarter of the paged-GET budget allows (activity.py).
    limits = service.limits
    max_age = max(ActivityFeed.MIN_AGE_SECONDS, 4.0 * limits.window_seconds / limits.paged_gets_per_window)
    return result, max(0, sent.count(ACTIVITY) - (1 + math.floor(took / max_age)))


def test_a_fleet_reads_verdicts_from_the_shared_activity_page(world: World) -> None:
    """25 accounts: each is Ready only on OpsRamp's verdict, and no pass reads the activity more often than the one
    shared page is refreshed (not a read per account); nor does a new process over the settled fleet."""
    org = create_organization(world.sandbox.AWS_ENDPOINT_URL, {"verdicts": ACCOUNTS}, prefix="verdict")
    world.spec["accounts"] = sorted(org.accounts["verdicts"])
    world.spec["role"] = {"name": "fleet-verdicts"}
    tenant = world.sandbox.OPSRAMP_TENANT_ID
    world.sandbox.opsramp.set_contract(tenant, role_check="async", role_check_delay_seconds=0.05)
    service = fleet_service(world)
    ref = new_resource(world, "verdicts")

    status: dict[str, Any] = {}
    excess: list[int] = []
    states: set[str] = set()
    deadline = time.monotonic() + 120
    while True:
        result, beyond = one_pass(service, world, ref, status)
        excess.append(beyond)
        status = written_status(result)
        assert result.fleet is not None
        states |= {m.state for m in result.fleet.members.values()}
        if result.error is None:
            break
        assert result.error.reason == "AccountsPending", result.error
        assert time.monotonic() < deadline, f"not all Ready: {result.error.message}"
        time.sleep(0.5)  # the next pass, as the operator's retry would run it
    assert "Installed" in states, "no account waited for OpsRamp's verdict"
    assert {m.reason for m in result.fleet.members.values()} == {"RoleAssumed"}
    assert excess == [0] * len(excess), excess
    records = world.sandbox.opsramp.activity(tenant)
    assert len(records) >= ACCOUNTS, "OpsRamp recorded fewer verdicts than accounts: the test proves nothing"

    # A new process (no memory, no shared page) over the settled fleet, most of whose rows status leaves out.
    assert status["accountsOmitted"] > RECHECKS_PER_PASS // 2
    opsramp_mod._reset_caches_for_tests()
    _reset_registry_for_tests()
    sent: list[tuple[str, str]] = []
    result, beyond = one_pass(fleet_service(world), world, ref, status, sent)
    assert result.error is None, result.error
    assert result.fleet is not None and result.fleet.ready == ACCOUNTS
    assert beyond == 0
    # The accounts it knows only as counted rows are checked fully a share per pass: a profile lookup by name
    # (a paged GET) for at most RECHECKS_PER_PASS of them, not for every one.
    searches = sum(1 for _, route in sent if route.endswith("/policies/discovery/search"))
    assert 0 < searches <= RECHECKS_PER_PASS, searches
