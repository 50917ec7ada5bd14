"""Contract tests of the OpsRamp client against the OpsRamp emulator over HTTP."""

from __future__ import annotations

import math
import threading
import time
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from opsramp_contract_support import CLIENT_ID, CLIENT_SECRET, CUSTOMER_ACCOUNT, FAST, TENANT, RoleMaker
from prometheus_client import REGISTRY

from opsramp_aws_operator.errors import NeedsAttention, OperatorError, TransientError
from opsramp_aws_operator.opsramp import (
    AwsIntegrationRequest,
    OpsRampClient,
    OpsRampLimits,
    OpsRampTimeouts,
    get_client,
)
from opsramp_sandbox.opsramp import OpsRampEmulator

INSTALL = "/api/v2/tenants/{tenantId}/integrations/install/AWS"
INSTALLED = "/api/v2/tenants/{tenantId}/integrations/installed/{installedIntgId}"
SEARCH = "/api/v2/tenants/{tenantId}/integrations/installed/search"
TOKEN = "/tenancy/auth/oauth/token"


def spec_for(role_arn: str, external_id: str, name: str = "team-a-prod", **kw: Any) -> AwsIntegrationRequest:
    return AwsIntegrationRequest(
        display_name=name,
        account_number=CUSTOMER_ACCOUNT,
        role_arn=role_arn,
        external_id=external_id,
        regions=kw.pop("regions", ("us-east-1", "eu-west-1")),
        install_all_linked_accounts=kw.pop("install_all_linked_accounts", False),
        send_linked_accounts=kw.pop("send_linked_accounts", False),
    )


def assert_clean(exc: BaseException, *secrets: str) -> None:
    text = f"{exc} {exc!r} {getattr(exc, 'message', '')}"
    for secret in secrets:
        assert secret not in text


class ShiftedClock:
    """time.monotonic plus an offset the test advances: the client's view of time moves without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


def shift_monotonic(monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> ShiftedClock:
    """Give `modules` a `time` whose monotonic() is a ShiftedClock (everything else is the real time module)."""
    clock = ShiftedClock()
    for module in modules:
        fake = SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("_")})
        fake.monotonic = clock.monotonic
        monkeypatch.setattr(module, "time", fake)
    return clock


# -- every operation -------------------------------------------------------------------------------------


def test_install_get_find_update_uninstall_round_trip(
    client: OpsRampClient, emulator: OpsRampEmulator, make_role: RoleMaker
) -> None:
    """Each operation works against the emulator and returns what OpsRamp stores (no secrets in raw)."""
    arn, ext = make_role()
    installed = client.install_aws(spec_for(arn, ext, install_all_linked_accounts=True))
    assert installed.id.startswith("INTG-")
    assert installed.role_arn == arn
    assert installed.regions == ("us-east-1", "eu-west-1")
    assert installed.install_all_linked_accounts is True
    assert installed.account_number == CUSTOMER_ACCOUNT
    assert ext not in repr(installed.raw)

    fetched = client.get(installed.id)
    assert fetched is not None
    assert (fetched.id, fetched.display_name, fetched.role_arn) == (installed.id, "team-a-prod", arn)

    assert [i.id for i in client.find_by_display_name("team-a-prod")] == [installed.id]
    assert client.find_by_display_name("someone-else") == []

    arn2, ext2 = make_role()
    # Linked accounts were asked for before: switching them off sends the key as "false".
    updated = client.update(installed.id, spec_for(arn2, ext2, regions=("All",), send_linked_accounts=True))
    assert (updated.role_arn, updated.regions, updated.install_all_linked_accounts) == (arn2, ("All",), False)
    again = client.get(installed.id)
    assert again is not None
    assert again.role_arn == arn2

    client.uninstall(installed.id, "AWSIntegration deleted")
    assert client.get(installed.id) is None
    assert emulator.integrations(TENANT) == []


def test_absent_integration_reads_as_none_and_uninstall_is_idempotent(client: OpsRampClient) -> None:
    """get() of an unknown id is None, uninstall of one succeeds, update of one is NotFound."""
    assert client.get("INTG-00000000-0000-0000-0000-000000000000") is None
    client.uninstall("INTG-00000000-0000-0000-0000-000000000000", "cleanup")
    with pytest.raises(NeedsAttention) as err:
        client.update("INTG-00000000-0000-0000-0000-000000000000", spec_for("arn:aws:iam::1:role/x", "e" * 32))
    assert err.value.reason == "NotFound"


def test_find_by_display_name_reads_every_page_and_only_aws(client: OpsRampClient, emulator: OpsRampEmulator) -> None:
    """With 230 integrations (3 pages of 100) the matches on every page are found; other types are skipped."""
    wanted: list[str] = []
    for n in range(230):
        name = "shared-name" if n % 50 == 7 else f"other-{n:03d}"
        rec = emulator.seed_integration(
            TENANT,
            {
                "displayName": name,
                "integration": {"id": "AWS", "name": "AWS"},
                "credential": {"AccountNumber": CUSTOMER_ACCOUNT, "Regions": "All", "AWSType": "External ID"},
            },
        )
        if name == "shared-name":
            wanted.append(rec["id"])
    emulator.seed_integration(TENANT, {"displayName": "shared-name", "integration": {"id": "AZURE", "name": "Azure"}})
    found = client.find_by_display_name("shared-name")
    assert sorted(i.id for i in found) == sorted(wanted)
    assert len(wanted) == 5
    # 231 cloud integrations match the query (230 AWS + 1 Azure filtered client-side) → 3 pages.
    assert emulator.request_count("GET", SEARCH) == 3


# -- tokens ----------------------------------------------------------------------------------------------


def test_token_expiring_mid_run_is_renewed_transparently(
    client: OpsRampClient, emulator: OpsRampEmulator, make_role: RoleMaker
) -> None:
    """After the server expires every token, the next call re-authenticates once and succeeds."""
    arn, ext = make_role()
    installed = client.install_aws(spec_for(arn, ext))
    assert emulator.request_count("POST", TOKEN) == 1
    emulator.expire_tokens()
    assert client.get(installed.id) is not None
    assert emulator.request_count("POST", TOKEN) == 2
    statuses = [r["status"] for r in emulator.state()["request_log"] if r["route"] == INSTALLED]
    assert statuses == [401, 200]


def test_short_lived_token_is_refreshed_ahead_of_expiry(
    emulator: OpsRampEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token past its announced lifetime (on the client's clock) is replaced before use: no call meets a 401."""
    from opsramp_aws_operator.opsramp import auth, transport

    emulator.configure(token_lifetime=60.0, expires_in_as_string=False)  # announces expires_in=59
    clock = shift_monotonic(monkeypatch, auth, transport)
    client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=FAST)
    assert client.get("INTG-x") is None
    clock.advance(59.0)  # for the client, past the announced lifetime; for the server, still well inside it
    assert client.get("INTG-x") is None
    assert emulator.request_count("POST", TOKEN) == 2
    statuses = [r["status"] for r in emulator.state()["request_log"] if r["route"] == INSTALLED]
    assert statuses == [404, 404]


def test_expires_in_as_string_or_integer_both_work(emulator: OpsRampEmulator) -> None:
    """The client parses expires_in whether OpsRamp sends "7199" or 7199."""
    for as_string in (True, False):
        emulator.configure(expires_in_as_string=as_string)
        get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=FAST)._access_token(force=True)
    assert emulator.request_count("POST", TOKEN) == 2


def test_bad_credentials_need_attention_without_the_secret(emulator: OpsRampEmulator) -> None:
    """Wrong client secret → NeedsAttention(OpsRampAuthFailed) whose text has neither secret."""
    wrong = "wrong-secret-" + "w" * 30
    client = get_client(emulator.url, TENANT, CLIENT_ID, wrong, timeouts=FAST)
    with pytest.raises(NeedsAttention) as err:
        client.get("INTG-1")
    assert err.value.reason == "OpsRampAuthFailed"
    assert_clean(err.value, wrong, CLIENT_SECRET)
    assert wrong not in repr(client)


def test_token_for_another_tenant_is_refused(emulator: OpsRampEmulator) -> None:
    """Credentials of one tenant used on another tenant's path → NeedsAttention(OpsRampAuthFailed)."""
    client = get_client(emulator.url, "client_7", CLIENT_ID, CLIENT_SECRET, timeouts=FAST)
    with pytest.raises(NeedsAttention) as err:
        client.find_by_display_name("x")
    assert err.value.reason == "OpsRampAuthFailed"


def test_fresh_tokens_refused_as_expired_are_retried_not_bad_credentials(emulator: OpsRampEmulator) -> None:
    """Every token OpsRamp issues is called expired, even ones requested after the refusal: the client stops after
    MAX_REAUTHS re-auths (a bounded loop, not a hot one) with a temporary reason, since the grants prove the
    credentials good and a revoked token must never look like bad credentials."""
    from opsramp_aws_operator.opsramp.transport import MAX_REAUTHS

    client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=FAST)
    emulator.configure(token_lifetime=0)  # every token is born expired
    with pytest.raises(TransientError) as err:
        client.get("INTG-1")
    assert err.value.reason == "OpsRampTokenRejected"
    assert emulator.request_count("POST", TOKEN) == 1 + MAX_REAUTHS
    assert emulator.request_count("GET", INSTALLED) == 1 + MAX_REAUTHS


# -- throttling ------------------------------------------------------------------------------------------


def test_429_waits_until_rate_limit_reset(client: OpsRampClient, emulator: OpsRampEmulator) -> None:
    """A 429 with X-RateLimit-Reset makes the client wait until that instant, then the retry succeeds."""
    assert client.get("INTG-warm") is None  # token fetched, so the log below has only the two GETs
    emulator.set_faults(throttle_next=1, throttle_reset_seconds=0.4)
    assert client.get("INTG-1") is None
    log = [r for r in emulator.state()["request_log"] if r["route"] == INSTALLED][1:]
    assert [r["status"] for r in log] == [429, 404]
    reset = math.ceil(log[0]["at"] + 0.4)  # what the emulator put in X-RateLimit-Reset
    assert log[1]["at"] >= reset - 0.01
    waited = REGISTRY.get_sample_value(
        "opsramp_operator_rate_limit_wait_seconds_total", {"service": "opsramp", "category": "gets"}
    )
    assert waited is not None
    assert waited > 0


def test_429_prefers_retry_after_over_reset(emulator: OpsRampEmulator) -> None:
    """Retry-After (0.2 s) wins over a far X-RateLimit-Reset (60 s) that the client may not wait for."""
    timeouts = OpsRampTimeouts(backoff_base_seconds=0.01, max_server_wait_seconds=5)
    client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=timeouts)
    emulator.set_faults(throttle_next=1, throttle_reset_seconds=60, throttle_retry_after=0.2)
    assert client.get("INTG-1") is None
    log = [r for r in emulator.state()["request_log"] if r["route"] == INSTALLED]
    assert [r["status"] for r in log] == [429, 404]
    assert log[1]["at"] - log[0]["at"] >= 0.19


def test_429_longer_than_allowed_wait_is_transient(emulator: OpsRampEmulator) -> None:
    """A reset further away than max_server_wait_seconds comes back as TransientError with that delay."""
    timeouts = OpsRampTimeouts(backoff_base_seconds=0.01, max_server_wait_seconds=1)
    client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=timeouts)
    emulator.set_faults(throttle_next=1, throttle_reset_seconds=30)
    with pytest.raises(TransientError) as err:
        client.get("INTG-1")
    assert err.value.reason == "OpsRampRateLimited"
    assert 20 <= err.value.retry_after <= 31


def test_writes_from_four_threads_stay_under_the_window_limit(emulator: OpsRampEmulator, make_role: RoleMaker) -> None:
    """Four threads make 60 writes through the shared limiter of 30 a window: every one succeeds, and the server
    (which counts per window and refuses the 31st with a 429) refuses none."""
    emulator.configure(rate_window_seconds=1.0, rate_limits={"writes": 30})
    # Our limiter counts when we send, the server when the request arrives: the margin (here a whole window)
    # absorbs the difference, so only a request held up for more than a second between the two could land in
    # the server's next window.
    limits = OpsRampLimits(writes_per_window=30, window_seconds=1.0, window_margin_seconds=1.0)
    arn, ext = make_role()
    seed = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, limits=limits, timeouts=FAST)
    ids = [seed.install_aws(spec_for(arn, ext, name=f"w-{n}")).id for n in range(4)]
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, limits=limits, timeouts=FAST)
        try:
            for k in range(14):
                client.update(ids[n], spec_for(arn, ext, name=f"w-{n}-{k}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    state = emulator.state()
    writes = [r for r in state["request_log"] if r["category"] == "writes"]
    assert len(writes) == 4 + 4 * 14 == 60
    assert state["throttled"] == 0
    assert all(r["status"] == 200 for r in writes)


# -- server errors and dropped connections ----------------------------------------------------------------


def test_5xx_on_get_is_retried(client: OpsRampClient, emulator: OpsRampEmulator, make_role: RoleMaker) -> None:
    """Two 503s on GET are retried and the third attempt returns the integration."""
    arn, ext = make_role()
    installed = client.install_aws(spec_for(arn, ext))
    emulator.set_faults(error_next=2, error_status=503, error_method="GET")
    assert client.get(installed.id) is not None
    assert emulator.request_count("GET", INSTALLED) == 3


def test_persistent_5xx_on_get_becomes_transient(client: OpsRampClient, emulator: OpsRampEmulator) -> None:
    """A GET that keeps failing gives TransientError(OpsRampUnavailable) after max_attempts tries."""
    emulator.set_faults(error_rate=1.0, error_status=502)
    with pytest.raises(TransientError) as err:
        client.get("INTG-1")
    assert err.value.reason == "OpsRampUnavailable"
    assert emulator.request_count("GET", INSTALLED) == FAST.max_attempts


def test_5xx_on_install_is_not_retried(client: OpsRampClient, emulator: OpsRampEmulator, make_role: RoleMaker) -> None:
    """A 500 after OpsRamp applied the install is not re-sent, so there is one integration and a lookup finds it."""
    arn, ext = make_role()
    emulator.set_faults(error_next=1, error_status=500, error_method="POST", error_after_apply=True)
    with pytest.raises(TransientError) as err:
        client.install_aws(spec_for(arn, ext))
    assert err.value.reason == "OpsRampUnavailable"
    assert emulator.request_count("POST", INSTALL) == 1
    assert len(emulator.integrations(TENANT)) == 1
    assert len(client.find_by_display_name("team-a-prod")) == 1


def test_dropped_connection_on_install_is_not_retried(
    client: OpsRampClient, emulator: OpsRampEmulator, make_role: RoleMaker
) -> None:
    """A connection closed mid-install is TransientError, sent once; a dropped GET is simply retried."""
    arn, ext = make_role()
    client.get("INTG-warm")
    emulator.set_faults(drop_next=1)
    with pytest.raises(TransientError):
        client.install_aws(spec_for(arn, ext))
    assert emulator.request_count("POST", INSTALL) == 1
    emulator.set_faults(drop_next=1)
    assert client.get("INTG-1") is None
    assert emulator.request_count("GET", INSTALLED) == 3


def test_429_on_install_is_retried_since_nothing_happened(
    client: OpsRampClient, emulator: OpsRampEmulator, make_role: RoleMaker
) -> None:
    """A throttled install was refused before any work, so it is re-sent after the wait: one integration."""
    arn, ext = make_role()
    emulator.set_faults(throttle_next=1, throttle_retry_after=0.05)
    client.install_aws(spec_for(arn, ext))
    assert emulator.request_count("POST", INSTALL) == 2
    assert len(emulator.integrations(TENANT)) == 1


# -- refusals --------------------------------------------------------------------------------------------


def test_role_opsramp_cannot_assume_is_transient_without_external_id(
    client: OpsRampClient, make_role: RoleMaker
) -> None:
    """A role whose trust policy names another External ID → TransientError(OpsRampCannotAssumeRole), no secret."""
    arn, _ = make_role()
    wrong = "not-the-right-external-id-" + "z" * 20
    with pytest.raises(TransientError) as err:
        client.install_aws(spec_for(arn, wrong))
    assert err.value.reason == "OpsRampCannotAssumeRole"
    assert arn in err.value.message
    assert_clean(err.value, wrong, CLIENT_SECRET)


def test_invalid_spec_is_rejected_as_needs_attention(client: OpsRampClient, make_role: RoleMaker) -> None:
    """A body OpsRamp refuses (bad region) → NeedsAttention(OpsRampRejected) naming the field."""
    arn, ext = make_role()
    with pytest.raises(NeedsAttention) as err:
        client.install_aws(spec_for(arn, ext, regions=("mars-north-1",)))
    assert err.value.reason == "OpsRampRejected"
    assert "Regions" in err.value.message
    assert_clean(err.value, ext)


def test_expired_token_body_echo_never_reaches_errors(emulator: OpsRampEmulator) -> None:
    """The emulator echoes tokens in 401 bodies; the client's errors never contain an issued token."""
    client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=FAST)
    emulator.configure(token_lifetime=0)
    with pytest.raises(OperatorError) as err:
        client.get("INTG-1")
    token = client._tokens.token.value
    assert token
    assert_clean(err.value, token, CLIENT_SECRET)


def test_api_calls_are_counted(client: OpsRampClient) -> None:
    """Every HTTP attempt increments opsramp_operator_api_calls_total for service=opsramp."""

    def count() -> float:
        return (
            REGISTRY.get_sample_value("opsramp_operator_api_calls_total", {"service": "opsramp", "operation": "get"})
            or 0.0
        )

    before = count()
    client.get("INTG-1")
    client.get("INTG-2")
    assert count() - before == 2


# -- the shared display-name listing (a fleet being created lists the tenant once, not once per resource) -------


def _seed(emulator: OpsRampEmulator, name: str, role_arn: str) -> dict[str, Any]:
    return emulator.seed_integration(
        TENANT,
        {
            "displayName": name,
            "integration": {"id": "AWS", "name": "AWS"},
            "credential": {"credentialType": "AWS", "AssumeRoleARN": role_arn, "Regions": "All"},
        },
    )


def test_named_lookups_share_one_listing_and_see_our_own_writes(
    client: OpsRampClient, emulator: OpsRampEmulator, make_role: RoleMaker
) -> None:
    """Many lookups while the listing is fresh send one search; our install and uninstall show without another."""
    _seed(emulator, "foreign", "arn:aws:iam::111122223333:role/theirs")
    assert [i.display_name for i in client.named("foreign")] == ["foreign"]
    for name in ("a", "b", "c", "foreign"):
        client.named(name)
    assert emulator.request_count("GET", SEARCH) == 1

    arn, ext = make_role()
    installed = client.install_aws(spec_for(arn, ext, name="ours"))
    assert [i.id for i in client.named("ours")] == [installed.id]
    client.update(installed.id, spec_for(arn, ext, name="ours-renamed"))
    assert client.named("ours") == []
    assert [i.id for i in client.named("ours-renamed")] == [installed.id]
    client.uninstall(installed.id, "test")
    assert client.named("ours-renamed") == []
    assert emulator.request_count("GET", SEARCH) == 1


def test_named_lists_again_after_an_install_whose_outcome_is_unknown(
    client: OpsRampClient, emulator: OpsRampEmulator, make_role: RoleMaker
) -> None:
    """A 500 after OpsRamp applied the install: the next lookup lists anew and finds it (adopted, not duplicated)."""
    assert client.named("team-a-prod") == []
    arn, ext = make_role()
    emulator.set_faults(error_next=1, error_status=500, error_method="POST", error_after_apply=True)
    with pytest.raises(TransientError):
        client.install_aws(spec_for(arn, ext))
    assert [i.role_arn for i in client.named("team-a-prod")] == [arn]
    assert emulator.request_count("GET", SEARCH) == 2


def test_named_listing_expires(
    client: OpsRampClient, emulator: OpsRampEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone else's install shows once the listing is older than its freshness bound."""
    from opsramp_aws_operator import opsramp as client_mod
    from opsramp_aws_operator.opsramp import inventory as inventory_mod

    clock = shift_monotonic(monkeypatch, inventory_mod)
    fresh = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=FAST)
    assert fresh.named("late") == []
    _seed(emulator, "late", "arn:aws:iam::111122223333:role/theirs")
    clock.advance(client_mod.Inventory.MIN_AGE_SECONDS - 0.5)
    assert fresh.named("late") == []  # still fresh: not listed again
    clock.advance(1.0)
    assert [i.display_name for i in fresh.named("late")] == ["late"]
    assert emulator.request_count("GET", SEARCH) == 2


def test_named_checks_the_credentials_even_when_the_listing_is_fresh(
    client: OpsRampClient, emulator: OpsRampEmulator
) -> None:
    """A wrong secret for the same client id cannot ride on a listing made with good credentials: it fails at once.
    Listings are kept per API client, so another client (here of another tenant) lists for itself."""
    assert client.named("anything") == []
    wrong = get_client(emulator.url, TENANT, CLIENT_ID, "not-the-secret", limits=OpsRampLimits(), timeouts=FAST)
    with pytest.raises(NeedsAttention) as err:
        wrong.named("anything")
    assert err.value.reason == "OpsRampAuthFailed"
    other = get_client(emulator.url, "client_7", "other-key", "other-secret", limits=OpsRampLimits(), timeouts=FAST)
    assert other.named("anything") == []
    assert emulator.request_count("GET", SEARCH) == 2


def test_concurrent_lookups_share_one_listing_and_its_failure(client: OpsRampClient, emulator: OpsRampEmulator) -> None:
    """Eight threads look up at once: one listing is sent. When it fails (5xx throughout), each waiter lists on
    its own, in parallel (as without sharing), and fails or succeeds by itself; nobody waits in line."""
    fresh = client
    fresh._access_token()  # a token first, so the threads below only list
    searches_before = emulator.request_count("GET", SEARCH)
    emulator.set_faults(latency_seconds=0.3)
    outcomes: list[object] = []

    def look() -> None:
        try:
            outcomes.append(fresh.named("nobody"))
        except OperatorError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=look) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcomes == [[]] * 8
    assert emulator.request_count("GET", SEARCH) - searches_before == 1

    fresh._inventory.invalidate()
    emulator.set_faults(error_rate=1.0, error_status=503, error_method="GET", latency_seconds=0.1)
    outcomes.clear()
    searches_before = emulator.request_count("GET", SEARCH)
    threads = [threading.Thread(target=look) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(outcomes) == 8
    assert all(isinstance(o, TransientError) and o.reason == "OpsRampUnavailable" for o in outcomes), outcomes
    # The shared listing's attempts, then each waiter's own: all of them tried (in parallel, not one by one).
    assert emulator.request_count("GET", SEARCH) - searches_before == 8 * FAST.max_attempts
