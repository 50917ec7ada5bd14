"""Chaos: CHAOS_SIZE resources converge while OpsRamp and IAM misbehave, with nothing duplicated or leaked.

OpsRamp answers 5xx to 20% of calls, bursts of 429, 2 s latency on every call, tokens that expire after 30 s
(and are revoked every 15 s on top), and drops 5% of connections; IAM sits behind the fault proxy answering
Throttling or ServiceUnavailable to 20% of calls. The storm (storm.py) runs in the background from the start of
the session; this test waits for it and checks what it saw.
"""

from __future__ import annotations

import pytest
from chaos_support import SUMMARY, Figure
from storm import FaultStorm

pytestmark = pytest.mark.chaos


@pytest.mark.timeout(900)
def test_faults_everywhere_all_converge_exactly_once(fault_storm: FaultStorm) -> None:
    """All Ready under faults; then one role (with its policies) and one integration each; retries counted."""
    res = fault_storm.result(timeout=840)
    assert res.error is None, res.error
    size = fault_storm.size
    m = res.metrics
    SUMMARY.append(
        Figure(
            "faults: all Ready at least once",
            size,
            res.all_ready_once or 0.0,
            f"opsramp errors {m['opsramp_errors']:.0f} (429: {m['opsramp_429']:.0f}), iam throttling "
            f"{m['iam_throttling']:.0f} / 5xx {m['iam_unavailable']:.0f}, handler retries "
            f"{sum(res.retry_reasons.values())}",
            f"injected: IAM proxy {res.proxy}; OpsRamp {res.opsramp_injected} of {res.opsramp_requests} "
            f"(0 = dropped); token requests {res.token_requests}; limiter waits {m['limiter_wait_seconds']:.1f}s; "
            f"Ready flips under faults {res.flips}; retry reasons {res.retry_reasons}",
        )
    )
    SUMMARY.append(Figure("faults: all Ready together (after)", size, res.settled or 0.0, "-"))
    SUMMARY.append(Figure("faults: delete all", size, res.deleted_seconds, "-"))

    assert len(res.first_ready) == size
    assert not res.world_problems, res.world_problems
    assert not res.left_after_delete, res.left_after_delete
    # The faults really happened...
    assert res.proxy["throttled"] > 0 and res.proxy["server_errors"] > 0, res.proxy
    assert res.opsramp_injected.get(0, 0) > 0, res.opsramp_injected  # dropped connections
    assert res.opsramp_injected.get(429, 0) > 0, res.opsramp_injected
    assert sum(res.opsramp_injected.get(s, 0) for s in range(500, 505)) > 0, res.opsramp_injected
    # ...and the operator saw them, counted them and logged its retries, without dying.
    assert m["opsramp_errors"] > 0 and m["opsramp_429"] > 0, m
    assert sum(res.retry_reasons.values()) > 0, "no retry in the operator's log"
    assert m["limiter_wait_seconds"] > 0, m
    assert res.operator_alive


@pytest.mark.timeout(900)
def test_iam_faults_retried_by_botocore_show_in_metrics(fault_storm: FaultStorm) -> None:
    """IAM Throttling and 5xx answers (injected by the proxy) are counted in api_errors_total, retried or not."""
    res = fault_storm.result(timeout=840)
    assert res.error is None, res.error
    assert res.proxy["throttled"] > 0 and res.proxy["server_errors"] > 0, res.proxy
    assert res.metrics["iam_throttling"] > 0 and res.metrics["iam_unavailable"] > 0, res.metrics
