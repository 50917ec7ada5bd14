"""One tenant's throttling slows only that tenant's client, and never holds a worker thread for long.

Against the OpsRamp emulator over HTTP: a 429 with `Retry-After: 86400` (what a broken or hostile server sends)
must neither park the tenant's client for a day nor make the calling thread sleep beyond the in-pass bound, and
another tenant's calls go on meanwhile.
"""

from __future__ import annotations

import threading
from typing import Any

from opsramp_contract_support import CLIENT_ID, CLIENT_SECRET, TENANT

from opsramp_aws_operator.errors import TransientError
from opsramp_aws_operator.opsramp import OpsRampTimeouts, get_client
from opsramp_aws_operator.ratelimit import shared_limiter
from opsramp_sandbox.opsramp import OpsRampEmulator

INSTALLED = "/api/v2/tenants/{tenantId}/integrations/installed/{installedIntgId}"
OTHER_TENANT, OTHER_ID, OTHER_SECRET = "client_7", "other-key", "other-secret"
BOUNDED = OpsRampTimeouts(backoff_base_seconds=0.01, backoff_max_seconds=0.05, max_server_wait_seconds=2)
# Generous deadlines: a thread still inside the call after this long is sleeping out the server's day.
DEADLINE = 30.0


def in_thread(call: Any) -> tuple[threading.Thread, list[BaseException | object]]:
    """Run `call` in a thread (as kopf's worker would); the list gets its result or exception."""
    out: list[BaseException | object] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_a_day_long_retry_after_neither_sleeps_nor_parks_the_tenant_for_a_day(emulator: OpsRampEmulator) -> None:
    """Retry-After 86400: the call ends at once with a temporary error capped at the setting, and so does the next."""
    client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=BOUNDED)
    emulator.set_faults(throttle_next=1, throttle_retry_after=86400, throttle_tenant=TENANT)
    thread, out = in_thread(lambda: client.get("INTG-1"))
    thread.join(DEADLINE)
    assert not thread.is_alive(), "the worker thread is sleeping out the server's Retry-After"
    error = out[0]
    assert isinstance(error, TransientError)
    assert error.reason == "OpsRampRateLimited"
    assert error.retry_after <= 300
    # The tenant's budget is paused for the capped wait, not for a day.
    limiter = shared_limiter(f"opsramp|{emulator.url}|{TENANT}|gets", 500, 61.0)
    assert 0 < limiter._delay_locked(limiter._clock()) <= 300
    # The next call of that tenant ends at once too, without sending anything (its client is paused).
    before = emulator.request_count("GET", INSTALLED)
    thread, out = in_thread(lambda: client.get("INTG-1"))
    thread.join(DEADLINE)
    assert not thread.is_alive()
    assert isinstance(out[0], TransientError)
    assert emulator.request_count("GET", INSTALLED) == before


def test_another_tenant_goes_on_while_one_is_throttled(emulator: OpsRampEmulator) -> None:
    """Tenant A answered 429s with Retry-After 86400 for every call; tenant B's calls are served meanwhile."""
    emulator.set_faults(throttle_next=1000, throttle_retry_after=86400, throttle_tenant=TENANT)
    throttled = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=BOUNDED)
    other = get_client(emulator.url, OTHER_TENANT, OTHER_ID, OTHER_SECRET, timeouts=BOUNDED)
    workers = [in_thread(lambda: throttled.get("INTG-1")) for _ in range(8)]
    thread, out = in_thread(lambda: other.get("INTG-404"))
    thread.join(DEADLINE)
    assert not thread.is_alive()
    assert out == [None]  # served: "no such integration" from the other tenant's own API
    for worker, result in workers:
        worker.join(DEADLINE)
        assert not worker.is_alive()
        assert isinstance(result[0], TransientError)
