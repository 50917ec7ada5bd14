"""Proof the fidelity suite can fail: run it against stock kmock 0.8 and check exactly the expected tests fail."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SUITE = Path(__file__).with_name("test_kube_fidelity.py")

# What stock kmock 0.8 gets right; every other fidelity test must fail against it. Each failure is a kmock
# defect the suite catches: e.g. create answers 200 not 201, no resourceVersion/uid/generation, POSTed CRDs
# register nothing, /api/v1/namespaces is a 500, no label or field selectors, JSON-patch `test` failure is a
# 500, status is not separated, no schema validation, no 410, no bookmarks, watch is octet-stream, events
# slip between list and watch, no namespace cascade, no garbage collection, no
# validation of Event namespaces or generateName prefixes; the chart's built-in kinds (declared
# to it like the rest) get no defaults, no validation, no ClusterIP, and strategic-merge directives
# (`$retainKeys`, `$setElementOrder/...`) are stored as data.
KMOCK_PASSES = {
    "test_discovery_lists_crd_group_with_status_subresource",
    "test_finalizer_keeps_object_until_removed",
    "test_kopf_peering_crd_works_as_plain_crd",
    "test_merge_patch_null_removes_a_key",
    "test_version_endpoint",
    "test_watch_without_resource_version_starts_with_existing_objects",
}


# The inner run takes about 25 s here. Its limits sit well inside this test's own (pytest-timeout) limit, so a
# slow or hung run fails with its output rather than being cut off with none: each inner test may take
# INNER_TEST_SECONDS (a kmock defect that hangs a test is a failure, as expected), the whole run INNER_RUN_SECONDS.
INNER_TEST_SECONDS = 60
INNER_RUN_SECONDS = 450
OUTER_SECONDS = 600


@pytest.mark.timeout(OUTER_SECONDS)
@pytest.mark.skipif(os.environ.get("KUBE_EMULATOR") == "kmock", reason="already running against kmock")
def test_fidelity_suite_fails_against_stock_kmock_where_kmock_is_wrong(tmp_path: Path) -> None:
    """Against stock kmock 0.8 every fidelity test fails except those kmock gets right (listed above)."""
    report = tmp_path / "kmock.xml"
    env = {**os.environ, "KUBE_EMULATOR": "kmock"}
    try:
        subprocess.run(
            [sys.executable, "-m", "pytest", str(SUITE), "-q", "-p", "no:cacheprovider",
             f"--timeout={INNER_TEST_SECONDS}", f"--junitxml={report}"],
            env=env, capture_output=True, text=True, timeout=INNER_RUN_SECONDS, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or b""  # bytes whatever `text` says (subprocess documents it)
        tail = (out.decode(errors="replace") if isinstance(out, bytes) else out)[-3000:]
        pytest.fail(f"the fidelity suite against kmock ran longer than {INNER_RUN_SECONDS}s; its output:\n{tail}")
    cases = ET.parse(report).getroot().iter("testcase")  # noqa: S314 - our own pytest wrote it
    # Each test runs once, as `name[kmock]`.
    outcome = {
        case.get("name", "").removesuffix("[kmock]"): not any(child.tag in ("failure", "error") for child in case)
        for case in cases
    }
    assert len(outcome) >= 50, f"the kmock run collected only {len(outcome)} tests"
    passed = {name for name, ok in outcome.items() if ok}
    assert passed == KMOCK_PASSES, f"unexpected against kmock: passed {sorted(passed ^ KMOCK_PASSES)}"
