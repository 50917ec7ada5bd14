"""Chaos: one tenant cannot starve the others — a day-long Retry-After, and hundreds of distinct AWS targets.

- A second OpsRamp tenant answers every call with 429 and `Retry-After: 86400`. Its resources wait (temporary
  `OpsRampRateLimited`); the other tenant's resources, created at the same time, reach Ready on time. Before
  the fix each throttled pass slept out the server's day in one of kopf's 16 worker threads, and a few dozen
  throttled resources stopped the operator for everyone.
- 300 resources, each with its own `spec.aws.assumeRoleArn`: every one is assumed (and stalls on a deliberate
  account mismatch), yet the operator keeps at most OPERATOR_AWS_SESSION_CACHE_SIZE sessions and its memory stays
  bounded (the figure is printed; each session cost ~650 KiB, and 200 of them used to OOM a 256 Mi pod).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from chaos_support import (
    CHAOS_SIZE,
    SECRETS,
    SUMMARY,
    Figure,
    chaos_operator,
    credentials_secret,
    delete_all,
    list_resources,
    nothing_left,
    ready_status,
    remember_external_ids,
    wait_all_ready,
    wait_metrics,
)
from e2e_harness import AWS_ACCOUNT, GROUP, Kube, Sandbox, integration_resource, wait_for

from opsramp_sandbox.opsramp import ApiClient

pytestmark = pytest.mark.chaos

NOISY_TENANT, NOISY_CLIENT = "client_666", "noisy-client"
TARGETS = 300
SESSION_CACHE = 16
# Generous: what "on time" means for the quiet tenant's resources on a loaded 2-core machine.
QUIET_DEADLINE = 120.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.timeout(600)
def test_a_day_long_retry_after_on_one_tenant_leaves_the_others_on_time(sandbox: Sandbox, kube: Kube) -> None:
    """Tenant A throttled with Retry-After 86400; tenant B's resources still reach Ready within the deadline."""
    noisy_secret = "noisy-secret-" + "Xy7" * 8
    SECRETS.add(noisy_secret)
    sandbox.opsramp.add_client(ApiClient(NOISY_TENANT, NOISY_CLIENT, noisy_secret))
    noisy, quiet = kube.namespace("chaos-noisy"), kube.namespace("chaos-quiet")
    kube.apply_secret(noisy, "opsramp-api-client", {"clientId": NOISY_CLIENT, "clientSecret": noisy_secret})
    credentials_secret(kube, sandbox, quiet)
    op = chaos_operator(sandbox, "tenants-429", OPERATOR_NAMESPACES=f"{noisy},{quiet}")
    sandbox.opsramp.set_faults(throttle_tenant=NOISY_TENANT, throttle_next=10**6, throttle_retry_after=86400)
    op.start()
    size = max(CHAOS_SIZE, 20)  # more than kopf's 16 worker threads
    try:
        wait_metrics(op)
        for n in range(size):
            body = integration_resource(noisy, f"noisy-{n}", sandbox.opsramp.url)
            body["spec"]["opsramp"]["tenantId"] = NOISY_TENANT
            kube.create(body)
        # The throttled tenant's passes are under way before the quiet tenant's resources arrive.
        wait_for(
            "the noisy tenant throttled",
            lambda: sandbox.opsramp.state()["throttled"] >= 1,
            timeout=60,
        )
        quiet_names = [f"quiet-{n}" for n in range(5)]
        for name in quiet_names:
            kube.create(integration_resource(quiet, name, sandbox.opsramp.url))
        seconds = wait_all_ready(kube, quiet, quiet_names, timeout=QUIET_DEADLINE)
        states = {ready_status(o) for o in list_resources(kube, noisy)}
        assert ("True", "Reconciled") not in states, states
        assert any(reason == "OpsRampRateLimited" for _, reason in states), states
        assert op.alive()
        SUMMARY.append(Figure("429 86400s on one tenant: others", len(quiet_names), seconds, f"{size} throttled"))
    finally:
        sandbox.opsramp.clear_faults()
        try:
            remember_external_ids(kube, quiet)
            remember_external_ids(kube, noisy)
            delete_all(kube, quiet, timeout=120)
            # The noisy tenant's client stays paused for the capped wait (5 minutes), and no pass of it got past
            # the display-name lookup: nothing of it exists, so its resources are released without cleanup.
            left = nothing_left(sandbox, role_prefix=f"opsramp-{noisy}_", display_prefix=f"{noisy}/")
            assert not left, left
            for obj in list_resources(kube, noisy):
                kube.patch_meta(noisy, obj["metadata"]["name"], {"annotations": {f"{GROUP}/skip-cleanup": "true"}})
            delete_all(kube, noisy, timeout=120)
        finally:
            op.stop()


@pytest.mark.timeout(900)
def test_three_hundred_assume_role_targets_keep_memory_bounded(sandbox: Sandbox, kube: Kube) -> None:
    """Every target is assumed once; at most the cache size stay in memory; RSS printed and loosely bounded."""
    namespace = kube.namespace("chaos-targets")
    credentials_secret(kube, sandbox, namespace)
    targets = {namespace: [f"arn:aws:iam::{AWS_ACCOUNT}:role/target-*"]}
    op = chaos_operator(
        sandbox,
        "targets",
        OPERATOR_NAMESPACES=namespace,
        OPERATOR_NAMESPACE_TARGETS=json.dumps(targets),
        OPERATOR_AWS_SESSION_CACHE_SIZE=str(SESSION_CACHE),
        OPERATOR_ATTENTION_BACKOFF_SECONDS="600",
        OPERATOR_ATTENTION_BACKOFF_MAX_SECONDS="600",
    )
    op.start()
    started = time.monotonic()
    try:
        wait_metrics(op)
        baseline = rss_mib(op.process.pid)
        for n in range(TARGETS):
            body = integration_resource(namespace, f"t-{n}", sandbox.opsramp.url)
            # Each its own target; a deliberate account mismatch stalls it right after STS said who it is.
            body["spec"]["aws"] = {
                "assumeRoleArn": f"arn:aws:iam::{AWS_ACCOUNT}:role/target-{n}",
                "accountId": "1" * 12,
            }
            kube.create(body)

        def all_assumed() -> bool:
            return sum(ready_status(o)[1] == "AccountMismatch" for o in list_resources(kube, namespace)) == TARGETS

        wait_for(f"{TARGETS} targets assumed", all_assumed, timeout=600, interval=2.0)
        seconds = time.monotonic() - started
        sessions = op.metric_sum("opsramp_operator_aws_sessions")
        rss = rss_mib(op.process.pid)
        print(f"{TARGETS} assume-role targets: {sessions:.0f} sessions held, RSS {baseline:.0f} -> {rss:.0f} MiB")
        assert 0 < sessions <= SESSION_CACHE
        assert rss < 768, f"operator RSS {rss:.0f} MiB after {TARGETS} targets"
        SUMMARY.append(Figure("300 assume-role targets", TARGETS, seconds, "-", f"RSS {baseline:.0f} -> {rss:.0f} MiB"))
    finally:
        try:
            delete_all(kube, namespace, timeout=300)
        finally:
            op.stop()
