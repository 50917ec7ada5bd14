"""A tiny run of `make bench`: every phase runs end to end and the counts it reports are the ones on the wire.

No timing is asserted (figures are the benchmark's output, not a test's). What is asserted is what the counts
must be whatever the machine: the floor sends exactly its minimal sequence, a resync of an unchanged fleet
writes nothing and reads what the floor's verification reads, the rate-limited run never meets a 429, kopf
finishes each resource's creation once, and deleting the fleet (and the organization phase's resource) leaves nothing
behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opsramp_sandbox.bench.__main__ import main

pytestmark = pytest.mark.timeout(300)


def test_bench_smoke_run_reports_every_figure(tmp_path: Path) -> None:
    code = main(
        [
            "--n", "6",
            "--latency-samples", "2",
            "--resync-interval", "4",
            "--resync-cycles", "1",
            "--ratelimited-n", "12",
            "--rate-window", "2",
            "--burst-n", "3",
            "--burst-idle-samples", "1",
            "--org-n", "6",
            "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert code == 0
    results = json.loads((tmp_path / "latest.json").read_text())
    for key in (
        "n",
        "seconds_to_all_ready",
        "floor_seconds",
        "overhead_ratio",
        "calls_per_resource",
        "floor_calls_per_resource",
        "opsramp_429",
        "resync_writes",
        "resync_reads_per_resource",
        "operator_rss_mb_peak",
        "operator_cpu_seconds",
        "apply_to_ready_p50_s",
        "apply_to_ready_p95_s",
        "after_burst_apply_to_ready_s",
        "handler_runs_per_resource",
    ):
        assert key in results, key
    assert results["n"] == 6
    org = results["organization"]
    # One resource over 6 member accounts: every account onboarded once, no 429, nothing left after delete.
    assert org["accounts"] == 6 and org["opsramp_429"] == 0 and org["accounts_with_a_role_left"] == 0
    assert org["calls"]["opsramp_writes"] >= 6
    floor = results["floor_calls_per_resource"]
    # OpsRamp: the install and the discovery profile; a drift check reads both.
    assert (floor["iam_writes"], floor["opsramp_writes"], floor["iam_reads"]) == (3, 2, 0)
    verify = results["floor_verification_reads_per_resource"]
    assert (verify["iam_reads"], verify["opsramp_gets"]) == (4, 2)

    ours = results["calls_per_resource"]
    assert (ours["iam_writes"], ours["opsramp_writes"]) == (3, 2)
    assert results["opsramp_429"] == 0
    assert results["resync_passes"] >= 6
    assert results["resync_writes"] == 0
    resync = results["resync_reads_per_resource"]
    assert (resync["iam_reads"], resync["opsramp_gets"]) == (verify["iam_reads"], verify["opsramp_gets"])
    assert results["left_behind"] == {"roles": 0, "integrations": 0}
    assert results["ratelimited"]["opsramp_429"] == 0
    # kopf finished each resource's creation once, in the main run and with the sandbox's settings alike.
    assert (results["creations_per_resource"], results["resources_created_more_than_once"]) == (1, 0)
    burst = results["burst"]
    assert (burst["n"], burst["creations_per_resource"], burst["resources_created_more_than_once"]) == (3, 1, 0)
    assert burst["handler_runs_per_resource"] >= 1
    assert {"idle_apply_to_ready_p50_s", "after_burst_apply_to_ready_s"} <= burst.keys()
    assert "| `overhead_ratio` |" in (tmp_path / "latest.md").read_text()
