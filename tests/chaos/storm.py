"""The fault storm: CHAOS_SIZE resources reconciled against a misbehaving OpsRamp and IAM, on a background thread.

It has its own OpsRamp emulator (the rest of the suite keeps a well-behaved one), IAM behind the fault proxy,
and an operator scoped to its own namespace, so it runs while the other scenarios run: its time is mostly
spent waiting out latency and backoff, not on the CPU. `test_faults.py` joins it and asserts on what it saw.
"""

from __future__ import annotations

import itertools
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from chaos_support import (
    CHAOS_SIZE,
    Ticker,
    chaos_operator,
    check_world,
    credentials_secret,
    delete_all,
    is_ready,
    list_resources,
    nothing_left,
    remember_external_ids,
    wait_metrics,
)
from e2e_harness import (
    CLIENT_ID,
    OPSRAMP_ACCOUNT,
    RETRY_LINE,
    TENANT,
    Kube,
    Sandbox,
    integration_resource,
    wait_for,
)

from opsramp_aws_operator.guardrails import endpoint_hostport
from opsramp_sandbox.faultproxy import FaultProxy
from opsramp_sandbox.opsramp import ApiClient, OpsRampEmulator

TOKEN_LIFETIME = 30.0  # seconds, as the issue asks; the expiry ticker revokes tokens more often on top
ERROR_RATE = 0.2  # OpsRamp 5xx share
IAM_THROTTLE, IAM_5XX = 0.1, 0.1  # together 20% of IAM calls
LATENCY = 2.0  # seconds on every OpsRamp call
DROP_RATE = 0.05  # connections closed without an answer


@dataclass
class StormResult:
    """What the storm saw; the test asserts on it."""

    error: str | None = None
    first_ready: dict[str, float] = field(default_factory=dict)  # seconds after creation
    all_ready_once: float | None = None
    flips: int = 0  # Ready → not Ready transitions seen while faults were on
    settled: float | None = None  # seconds after faults stopped until all were Ready together
    world_problems: list[str] = field(default_factory=list)
    left_after_delete: list[str] = field(default_factory=list)
    deleted_seconds: float = 0.0
    proxy: dict[str, int] = field(default_factory=dict)
    opsramp_injected: dict[int, int] = field(default_factory=dict)
    opsramp_requests: int = 0
    token_requests: int = 0
    throttled: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    retry_reasons: dict[str, int] = field(default_factory=dict)
    operator_alive: bool = False
    operator_output_bytes: int = 0


class FaultStorm:
    """Start with `start()`, collect with `result()` (joins the thread)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.kube = Kube(sandbox.kubeconfig)
        self.size = CHAOS_SIZE
        self.namespace = ""
        self._result = StormResult()
        self._thread = threading.Thread(target=self._run_safely, name="chaos-fault-storm", daemon=True)

    def start(self) -> FaultStorm:
        self._thread.start()
        return self

    def result(self, timeout: float) -> StormResult:
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._result.error = self._result.error or f"the storm did not finish within {timeout:.0f}s"
        return self._result

    def _run_safely(self) -> None:
        try:
            self._run()
        except BaseException:
            self._result.error = traceback.format_exc()

    def _run(self) -> None:
        res = self._result
        kube, sandbox = self.kube, self.sandbox
        self.namespace = kube.namespace("chaos-faults")
        ns = self.namespace
        credentials_secret(kube, sandbox, ns)
        emulator = OpsRampEmulator(
            clients=[ApiClient(TENANT, CLIENT_ID, sandbox.client_secret)],
            opsramp_aws_account_id=OPSRAMP_ACCOUNT,
            iam_endpoint_url=sandbox.moto.url,
            propagation_delay_seconds=0.5,
            token_lifetime=TOKEN_LIFETIME,
        )
        emulator.start()
        proxy = FaultProxy(upstream=sandbox.moto.url, seed=8).start()
        # A short resync: a pass that failed under faults is repaired soon after they stop.
        op = chaos_operator(
            sandbox,
            "faults",
            AWS_ENDPOINT_URL=proxy.url,
            OPERATOR_NAMESPACES=ns,
            OPERATOR_RESYNC_INTERVAL_SECONDS="15",
            # This scenario's own emulator, allowed by its loopback address as the sandbox's is.
            OPERATOR_ALLOWED_OPSRAMP_HOSTS=endpoint_hostport(emulator.url),
        )
        statuses = itertools.cycle([500, 502, 503, 504])
        tickers: list[Ticker] = []
        try:
            proxy.set_faults(throttle=IAM_THROTTLE, server_error=IAM_5XX)
            emulator.set_faults(
                error_rate=ERROR_RATE, error_status=503, latency_seconds=LATENCY, drop_rate=DROP_RATE, seed=8
            )
            tickers = [
                # A burst of 429s (with Retry-After) every few seconds, on whatever calls are in flight.
                Ticker(7.0, lambda: emulator.set_faults(throttle_next=4, throttle_retry_after=1), "chaos-429"),
                # Tokens revoked long before their lifetime ends, as after a credential rotation.
                Ticker(15.0, emulator.expire_tokens, "chaos-expire"),
                # Every 5xx flavour.
                Ticker(5.0, lambda: emulator.set_faults(error_status=next(statuses)), "chaos-5xx"),
            ]
            for ticker in tickers:
                ticker.start()
            op.start()
            wait_metrics(op)
            names = [f"f{i:03d}" for i in range(self.size)]
            created = time.monotonic()
            for name in names:
                kube.create(integration_resource(ns, name, emulator.url))
            self._watch_until_all_ready_once(names, created, timeout=600)
        finally:
            for ticker in tickers:
                ticker.stop()
            emulator.clear_faults()
            proxy.clear()

        try:
            stopped = time.monotonic()
            wait_for(
                "all Ready together after the faults stopped",
                lambda: all(is_ready(o) for o in list_resources(kube, ns)),
                90,
                interval=1.0,
            )
            res.settled = time.monotonic() - stopped
            remember_external_ids(kube, ns)
            res.world_problems = check_world(
                sandbox, kube, ns, role_prefix=f"opsramp-{ns}_", display_prefix=f"{ns}/", emulator=emulator
            )
            counters = proxy.counters
            res.proxy = {
                "requests": counters.requests,
                "throttled": counters.throttled,
                "server_errors": counters.server_errors,
            }
            state = emulator.state()
            log = state["request_log"]
            res.opsramp_requests = len(log)
            res.opsramp_injected = dict(Counter(r["status"] for r in log if r["status"] in (0, 429, *range(500, 505))))
            res.token_requests = sum(1 for r in log if r["route"].endswith("/oauth/token"))
            res.throttled = int(state["throttled"])
            res.metrics = {
                "opsramp_errors": op.metric_sum("opsramp_operator_api_errors_total", service="opsramp"),
                "opsramp_429": op.metric_sum("opsramp_operator_api_errors_total", service="opsramp", code="429"),
                "iam_throttling": op.metric_sum("opsramp_operator_api_errors_total", service="iam", code="Throttling"),
                "iam_unavailable": op.metric_sum(
                    "opsramp_operator_api_errors_total", service="iam", code="ServiceUnavailable"
                ),
                "limiter_wait_seconds": op.metric_sum("opsramp_operator_rate_limit_wait_seconds_total"),
                "reconciles_transient": op.metric_sum("opsramp_operator_reconciles_total", result="transient"),
            }
            reasons: Counter[str] = Counter()
            for record in op.log_records():
                if RETRY_LINE in record["message"]:
                    reasons[record["message"].split(RETRY_LINE + ": ", 1)[-1].split(":", 1)[0]] += 1
            res.retry_reasons = dict(reasons)
            res.operator_alive = op.alive()

            res.deleted_seconds = delete_all(kube, ns, timeout=60 + 3 * self.size)
            res.left_after_delete = nothing_left(
                sandbox, role_prefix=f"opsramp-{ns}_", display_prefix=f"{ns}/", emulator=emulator
            )
        finally:
            op.stop()
            res.operator_output_bytes = len(op.raw_output())
            proxy.stop()
            emulator.stop()

    def _watch_until_all_ready_once(self, names: list[str], created: float, timeout: float) -> None:
        """Poll the resources; note when each is first Ready and every Ready → not-Ready flip."""
        res = self._result
        was_ready: dict[str, bool] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            objects: dict[str, Any] = {o["metadata"]["name"]: o for o in list_resources(self.kube, self.namespace)}
            now = time.monotonic() - created
            for name in names:
                ready = is_ready(objects.get(name))
                if ready and name not in res.first_ready:
                    res.first_ready[name] = now
                if was_ready.get(name) and not ready:
                    res.flips += 1
                was_ready[name] = ready
            if len(res.first_ready) == len(names):
                res.all_ready_once = max(res.first_ready.values())
                return
            time.sleep(1.0)
        missing = sorted(set(names) - set(res.first_ready))
        raise AssertionError(f"never Ready within {timeout}s under faults: {missing}")
