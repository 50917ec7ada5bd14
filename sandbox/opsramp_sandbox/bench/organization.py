"""The benchmark's organization phase (issue 15): one AWSIntegration over an AWS Organization of N member accounts
in moto, the OpsRamp emulator at its documented write limit (window scaled down), IAM at the operator's own
budget. Figures: time to all accounts Ready against the write-limit floor, calls per account against the floor,
429s drawn, the operator's peak RSS; then delete -> nothing left in any account.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from ..aws import MEMBER_ROLE, create_organization, member_iam
from .fleet import GROUP, PLURAL, VERSION, Fleet

if TYPE_CHECKING:
    from .__main__ import Bench

UNITS = 4
# The minimal calls per account to onboard it by hand (the floor): enter it (STS AssumeRole), create the role with
# its tags, create the permission policy and attach it (IAM), install the integration and create its discovery
# profile (OpsRamp: an account is Ready once OpsRamp monitors it).
FLOOR_PER_ACCOUNT = {"sts": 1, "iam_writes": 3, "opsramp_writes": 2}


def run(bench: Bench, n: int, window: float, iam_per_second: int) -> dict[str, Any]:
    from .__main__ import DOCUMENTED_LIMITS, UNLIMITED, say

    limits = DOCUMENTED_LIMITS
    say(f"\n== organization: one AWSIntegration over {n} member accounts in {UNITS} OUs")
    say(f"   OpsRamp at {limits['writes']} writes per {window:.0f}s window, IAM/STS at {iam_per_second} calls/s")
    sizes = {f"bench{i}": n // UNITS + (1 if i < n % UNITS else 0) for i in range(UNITS)}
    org = create_organization(bench.env["AWS_ENDPOINT_URL"], sizes, prefix="bench")
    bench.configure_opsramp(rate_window_seconds=window, rate_limits=limits)
    op = bench.start_operator(
        "organization",
        OPERATOR_ROLE_SETTLE_SECONDS="1",
        OPERATOR_RESYNC_INTERVAL_SECONDS="3600",
        OPERATOR_ORGANIZATION_SCAN_SECONDS="3600",
        OPERATOR_OPSRAMP_RATE_WINDOW_SECONDS=str(window),
        OPERATOR_OPSRAMP_GETS_PER_WINDOW=str(limits["gets"]),
        OPERATOR_OPSRAMP_PAGED_GETS_PER_WINDOW=str(limits["paged_gets"]),
        OPERATOR_OPSRAMP_WRITES_PER_WINDOW=str(limits["writes"]),
        OPERATOR_IAM_CALLS_PER_SECOND=str(iam_per_second),
        OPERATOR_AWS_SESSION_CACHE_SIZE=str(n + 1),
        OPERATOR_NAMESPACE_TARGETS='{"*": ["default", "arn:aws:iam::*:role/' + MEMBER_ROLE + '"]}',
        OPERATOR_NAMESPACE_ORGANIZATIONS='{"*": ["*"]}',
    )
    fleet = Fleet(bench.kube, "bench-organization", bench.client_env)
    fleet.prepare()
    body = fleet.body("organization")
    body["spec"]["organization"] = {"organizationalUnits": list(org.units.values())}
    url = f"{bench.kube}/apis/{GROUP}/{VERSION}/namespaces/{fleet.namespace}/{PLURAL}"
    try:
        mark = bench.meter.mark()
        started = time.monotonic()
        fleet.http.post(url, json=body, timeout=60).raise_for_status()
        status: dict[str, Any] = {}
        deadline = started + max(600.0, n * 3.0)
        seen = ""
        while time.monotonic() < deadline:
            status = fleet.http.get(f"{url}/organization", timeout=60).json().get("status") or {}
            ready: dict[str, Any] = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
            if status.get("accountsReady") != seen:
                seen = status.get("accountsReady") or ""
                say(f"   {time.monotonic() - started:6.1f}s  ACCOUNTS {seen}")
            if ready.get("status") == "True":
                break
            time.sleep(1.0)
        else:
            raise RuntimeError(f"not all accounts Ready: {status.get('accountsReady')}\n{op.tail()}")
        seconds = time.monotonic() - started
        calls = bench.meter.since(mark)
        rss = op.rss_peak_mb()
        # First window's writes go at once; each further window allows `writes` more.
        floor = max(0.0, (math.ceil(n * FLOOR_PER_ACCOUNT["opsramp_writes"] / limits["writes"]) - 1) * window)
        iam_floor = n * (FLOOR_PER_ACCOUNT["sts"] + FLOOR_PER_ACCOUNT["iam_writes"]) / iam_per_second
        result: dict[str, Any] = {
            "accounts": n,
            "window_seconds": window,
            "writes_limit_per_window": limits["writes"],
            "iam_calls_per_second": iam_per_second,
            # Every member account's session kept (0.65 to 3 MiB each): fewer STS calls, more memory.
            "aws_session_cache_size": n + 1,
            "seconds_to_all_ready": round(seconds, 1),
            "write_limit_floor_seconds": round(floor, 1),
            "iam_floor_seconds": round(iam_floor, 1),
            "calls_per_account": calls.per(n),
            "floor_calls_per_account": FLOOR_PER_ACCOUNT,
            "opsramp_429": calls.opsramp_429,
            "operator_peak_rss_mb": round(rss, 1),
            "calls": calls.as_dict(),
        }
        say(
            f"   all {n} Ready in {seconds:.1f}s (write-limit floor {floor:.0f}s, IAM floor {iam_floor:.0f}s); "
            f"429s {calls.opsramp_429}; peak RSS {rss:.0f} MiB"
        )
        say(f"   calls per account {calls.per(n)} (floor {FLOOR_PER_ACCOUNT})")
        started = time.monotonic()
        fleet.http.delete(f"{url}/organization", timeout=60).raise_for_status()
        while time.monotonic() < deadline + 600:
            if fleet.http.get(f"{url}/organization", timeout=60).status_code == 404:
                break
            time.sleep(1.0)
        result["seconds_to_deleted"] = round(time.monotonic() - started, 1)
        left = sum(1 for account in org.all_accounts if _opsramp_roles(bench, account))
        result["accounts_with_a_role_left"] = left
        say(f"   deleted in {result['seconds_to_deleted']:.1f}s; accounts with an OpsRamp role left: {left}")
        return result
    finally:
        op.stop()
        bench.configure_opsramp(rate_window_seconds=60, rate_limits={k: UNLIMITED for k in limits})


def _opsramp_roles(bench: Bench, account_id: str) -> list[str]:
    listed = member_iam(bench.env["AWS_ENDPOINT_URL"], account_id).list_roles(PathPrefix="/opsramp/")["Roles"]
    return [str(r["RoleName"]) for r in listed]
