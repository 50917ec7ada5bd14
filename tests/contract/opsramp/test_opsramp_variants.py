"""The OpsRamp client against every answer the emulator can give to the open questions (its contract switches).

Each test switches the emulator to one variant and checks the client is right under it, over HTTP.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests
from opsramp_contract_support import CLIENT_ID, CLIENT_SECRET, CUSTOMER_ACCOUNT, FAST, TENANT, RoleMaker

from opsramp_aws_operator.errors import NeedsAttention
from opsramp_aws_operator.opsramp import (
    AwsIntegrationRequest,
    DiscoveryRequest,
    OpsRampClient,
    OpsRampLimits,
    get_client,
    profile_differences,
)
from opsramp_aws_operator.opsramp.auth import Bearer
from opsramp_aws_operator.opsramp.wire import WireFormat
from opsramp_sandbox.opsramp import OpsRampEmulator

INSTALL = "/api/v2/tenants/{tenantId}/integrations/install/AWS"
INSTALLED = "/api/v2/tenants/{tenantId}/integrations/installed/{installedIntgId}"
SEARCH = "/api/v2/tenants/{tenantId}/integrations/installed/search"
ACTIVITY = "/api/v2/tenants/{tenantId}/integrations/activity"
TOKEN = "/tenancy/auth/oauth/token"


def spec_for(role_arn: str, external_id: str, name: str = "team-a-prod", **kw: Any) -> AwsIntegrationRequest:
    return AwsIntegrationRequest(
        display_name=name,
        account_number=CUSTOMER_ACCOUNT,
        role_arn=role_arn,
        external_id=external_id,
        regions=kw.pop("regions", ("us-east-1",)),
        install_all_linked_accounts=kw.pop("install_all_linked_accounts", False),
    )


def statuses(emulator: OpsRampEmulator, route: str, method: str = "GET") -> list[int]:
    return [r["status"] for r in emulator.state()["request_log"] if r["route"] == route and r["method"] == method]


def stored_credential(emulator: OpsRampEmulator, integration_id: str) -> dict[str, Any]:
    (record,) = [r for r in emulator.state()["tenants"][TENANT]["integrations"] if r["id"] == integration_id]
    return dict(record["credential"])


# -- the token revocation race (issue 13) --------------------------------------------------------------------


def test_token_another_thread_fetched_before_a_revocation_is_not_taken_for_fresh(
    client: OpsRampClient, emulator: OpsRampEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call's token is refused because OpsRamp revoked every token; another worker had fetched a newer one just
    before the revocation. The re-auth must not spend itself on that (revoked) token: it fetches one requested
    after the refusal, and the call succeeds instead of ending as OpsRampAuthFailed."""
    client._access_token()
    original = Bearer.__call__
    fired: list[bool] = []

    def send(self: Bearer, request: requests.PreparedRequest) -> requests.PreparedRequest:
        prepared = original(self, request)
        if not fired:
            fired.append(True)
            # Another worker refreshes the shared token after this request took the old one...
            other = threading.Thread(target=lambda: client._access_token(force=True))
            other.start()
            other.join()
            # ...then OpsRamp revokes every token it issued, before it reads this request.
            emulator.expire_tokens()
        return prepared

    monkeypatch.setattr(Bearer, "__call__", send)
    assert client.get("INTG-race") is None
    assert statuses(emulator, INSTALLED) == [401, 404]
    # One grant for the other worker, one for the re-auth: requested after the refusal, so issued after the revocation.
    assert emulator.request_count("POST", TOKEN) == 3


def test_a_token_requested_after_the_refusal_is_reused_not_fetched_again(
    client: OpsRampClient, emulator: OpsRampEmulator
) -> None:
    """Many workers refused at once share one new token: a token requested after a refusal counts as fresh."""
    client._access_token()
    emulator.expire_tokens()
    results: list[object] = []

    def call() -> None:
        results.append(client.get("INTG-many"))

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [None] * 6
    # The grants after the refusals: far fewer than one per worker.
    assert emulator.request_count("POST", TOKEN) - 1 < 6


@pytest.mark.parametrize("status", [401, 407, 400])
def test_each_way_of_refusing_a_token_is_recognised(status: int, emulator: OpsRampEmulator) -> None:
    """Q9: 401, 407 "Token expired" or 400 "Unable to authenticate": the client re-authenticates and goes on."""
    emulator.set_contract(token_rejected=status)
    client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=FAST)
    client._access_token()
    emulator.expire_tokens()
    assert client.get("INTG-x") is None
    assert statuses(emulator, INSTALLED) == [status, 404]


def test_legacy_token_path_and_token_reuse_and_integer_expiry(emulator: OpsRampEmulator) -> None:
    """Q10, Q11: an older pod serving only /auth/oauth/token, reusing its token, with expires_in as an integer."""
    emulator.set_contract(token_path="legacy", token_reuse=True, expires_in="integer")
    client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=FAST)
    assert client.get("INTG-x") is None
    emulator.expire_tokens()
    assert client.get("INTG-x") is None
    log = emulator.state()["request_log"]
    assert [(r["route"], r["status"]) for r in log if "oauth" in r["route"]][:2] == [
        ("/tenancy/auth/oauth/token", 404),
        ("/auth/oauth/token", 200),
    ]


def test_a_foreign_tenant_answered_401_is_still_auth_failed(emulator: OpsRampEmulator) -> None:
    """Q19: a token used on another tenant's path, refused with 401 instead of 403: OpsRampAuthFailed, bounded."""
    emulator.set_contract(foreign_tenant=401)
    client = get_client(emulator.url, "client_7", CLIENT_ID, CLIENT_SECRET, timeouts=FAST)
    with pytest.raises(NeedsAttention) as err:
        client.get("INTG-x")
    assert err.value.reason == "OpsRampAuthFailed"


def test_retry_after_on_a_real_rate_limit_is_honoured(emulator: OpsRampEmulator) -> None:
    """Q16: a tenant that sends Retry-After on its own 429s: the client waits and the call goes through."""
    emulator.set_contract(retry_after=True)
    emulator.configure(rate_window_seconds=1.0, rate_limits={"gets": 2})
    client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=FAST)
    for _ in range(3):
        assert client.get("INTG-x") is None
    assert 429 in statuses(emulator, INSTALLED)


# -- the install body's dialect (Q1, Q2, Q3) ------------------------------------------------------------------


@pytest.mark.parametrize("aws_type", WireFormat.AWS_TYPE_CHOICES)
@pytest.mark.parametrize("access_keys", ["absent", "empty"])
def test_install_finds_the_tenants_aws_type_and_key_form_and_keeps_it(
    aws_type: str, access_keys: str, emulator: OpsRampEmulator, make_role: RoleMaker
) -> None:
    """Q1/Q2: whatever AWSType string and key form the tenant wants, the install succeeds, and the second install
    goes out in that form at once (no refused attempt)."""
    emulator.set_contract(aws_type=aws_type, access_keys=access_keys)
    client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=FAST)
    arn, ext = make_role()
    client.install_aws(spec_for(arn, ext, name="first"))
    refused = statuses(emulator, INSTALL, "POST").count(400)
    client.install_aws(spec_for(arn, ext, name="second"))
    assert statuses(emulator, INSTALL, "POST").count(400) == refused
    assert statuses(emulator, INSTALL, "POST")[-1] == 200
    assert client.dialect.aws_type == aws_type
    assert client.dialect.empty_keys == (access_keys == "empty")


def test_linked_accounts_key_is_sent_only_when_asked(
    client: OpsRampClient, emulator: OpsRampEmulator, make_role: RoleMaker
) -> None:
    """Q3: without installAllLinkedAccounts the key is not sent at all; with it, it is."""
    arn, ext = make_role()
    plain = client.install_aws(spec_for(arn, ext, name="plain"))
    linked = client.install_aws(spec_for(arn, ext, name="linked", install_all_linked_accounts=True))
    assert WireFormat.LINKED_ACCOUNTS_KEY not in stored_credential(emulator, plain.id)
    assert stored_credential(emulator, linked.id)[WireFormat.LINKED_ACCOUNTS_KEY] == "true"


def test_a_strict_tenant_refuses_linked_accounts_with_a_clear_reason(
    emulator: OpsRampEmulator, make_role: RoleMaker
) -> None:
    """Q3: a tenant that refuses the unknown key: installs without it work; one asking for it says why it cannot."""
    emulator.set_contract(linked_accounts="rejected")
    client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=FAST)
    arn, ext = make_role()
    client.install_aws(spec_for(arn, ext, name="plain"))
    with pytest.raises(NeedsAttention) as err:
        client.install_aws(spec_for(arn, ext, name="linked", install_all_linked_accounts=True))
    assert err.value.reason == "LinkedAccountsUnsupported"
    assert "installAllLinkedAccounts" in err.value.message


def test_duplicate_names_refused_is_reported_as_such(emulator: OpsRampEmulator, make_role: RoleMaker) -> None:
    """Q14: a tenant refusing a second integration of a name: the client says so (the reconciler then adopts)."""
    emulator.set_contract(duplicate_names="refused")
    client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=FAST)
    arn, ext = make_role()
    client.install_aws(spec_for(arn, ext))
    with pytest.raises(NeedsAttention) as err:
        client.install_aws(spec_for(arn, ext))
    assert err.value.reason == "DuplicateRefused"
    assert len(emulator.integrations(TENANT)) == 1


# -- reading what OpsRamp leaves out (Q4, Q5, Q6, Q20) -----------------------------------------------------------


def test_openapi_examples_shape_reads_as_unknown_not_as_empty(emulator: OpsRampEmulator, make_role: RoleMaker) -> None:
    """Q5: with only credential{Name, AccountNumber, AWSType, Regions} in answers, the name comes from the credential
    set, and role ARN, status and displayName read as unknown (None), never as empty values to "fix"."""
    emulator.set_contract(profile="openapi-examples")
    client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=FAST)
    arn, ext = make_role()
    installed = client.install_aws(spec_for(arn, ext, regions=("us-east-1", "eu-west-1")))
    got = client.get(installed.id)
    assert got is not None
    assert (got.display_name, got.role_arn, got.status, got.enabled) == (None, None, None, None)
    assert got.name == "team-a-prod"
    assert got.regions == ("us-east-1", "eu-west-1")
    assert [i.id for i in client.find_by_display_name("team-a-prod")] == [installed.id]


def test_external_id_echoed_never_reaches_raw_or_errors(emulator: OpsRampEmulator, make_role: RoleMaker) -> None:
    """Q6: a tenant that echoes ExternalId: the client's record of the integration never holds it."""
    from opsramp_aws_operator.opsramp.variants import FULL_ECHO

    emulator.set_contract(echo=sorted(FULL_ECHO | {"credential.ExternalId"}))
    client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=FAST)
    arn, ext = make_role()
    installed = client.install_aws(spec_for(arn, ext))
    got = client.get(installed.id)
    assert got is not None
    assert ext not in repr(got.raw)
    assert ext not in repr(installed.raw)


def test_regions_as_a_list_and_upper_case_status(emulator: OpsRampEmulator, make_role: RoleMaker) -> None:
    """Q4/Q20: Regions answered as a JSON list and status as ENABLED/DISABLED read the same."""
    emulator.set_contract(regions_echo="list", status_values="ENABLED/DISABLED")
    client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=FAST)
    arn, ext = make_role()
    installed = client.install_aws(spec_for(arn, ext, regions=("us-east-1", "eu-west-1")))
    client.set_enabled(installed.id, False)
    got = client.get(installed.id)
    assert got is not None
    assert (got.regions, got.status, got.enabled) == (("us-east-1", "eu-west-1"), "DISABLED", False)
    client.set_enabled(installed.id, True)
    again = client.get(installed.id)
    assert again is not None
    assert again.enabled is True


# -- unknown ids (Q17) -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 400, 500])
def test_unknown_id_in_any_form_is_absent_once_the_listing_agrees(
    status: int, emulator: OpsRampEmulator, make_role: RoleMaker
) -> None:
    """Q17: 404, 400 or 500-with-"not found" for an unknown id: GET is None, uninstall is done, update is NotFound;
    a listing confirms the 400/500 answers, so a flaky 500 never makes a live integration look gone."""
    emulator.set_contract(unknown_id=status)
    client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=FAST)
    arn, ext = make_role()
    live = client.install_aws(spec_for(arn, ext))
    gone = "INTG-00000000-0000-0000-0000-000000000000"
    assert client.get(gone) is None
    client.uninstall(gone, "cleanup")
    with pytest.raises(NeedsAttention) as err:
        client.update(gone, spec_for(arn, ext))
    assert err.value.reason == "NotFound"
    assert client.get(live.id) is not None
    assert statuses(emulator, INSTALLED)[0] == status


# -- listing (Q12, Q13) -------------------------------------------------------------------------------------------


def _seed_many(emulator: OpsRampEmulator, count: int) -> None:
    for n in range(count):
        emulator.seed_integration(
            TENANT,
            {
                "displayName": "wanted" if n % 40 == 3 else f"other-{n:03d}",
                "integration": {"id": "AWS", "name": "AWS"},
                "credential": {"AccountNumber": CUSTOMER_ACCOUNT, "Regions": "All", "AWSType": "External ID"},
            },
        )
    emulator.seed_integration(TENANT, {"displayName": "wanted", "integration": {"id": "AZURE", "name": "Azure"}})


@pytest.mark.parametrize(
    "switches",
    [
        {"search_query": "ignored"},
        {"search_query": "refused"},
        {"oversized_page": "refuse", "max_page_size": 50},
        {"max_page_size": 30},
    ],
    ids=["query-ignored", "query-refused", "page-refused", "page-clamped"],
)
def test_listing_is_complete_under_every_search_variant(switches: dict[str, Any], emulator: OpsRampEmulator) -> None:
    """Q12/Q13: a query ignored or refused, a page size refused or clamped: every AWS integration named "wanted" is
    found, across pages, and the Azure one of the same name is not."""
    emulator.set_contract(**switches)
    _seed_many(emulator, 130)
    client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=FAST)
    assert len(client.find_by_display_name("wanted")) == 4


# -- updates (Q7) ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("updates", ["applied", "ignored", "rejected"])
def test_update_shows_what_opsramp_kept(updates: str, emulator: OpsRampEmulator, make_role: RoleMaker) -> None:
    """Q7: applied, the read-back shows the new role; ignored, the old one (the reconciler then reinstalls);
    rejected, CredentialImmutable, learned for the tenant."""
    emulator.set_contract(credential_updates=updates)
    client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=FAST)
    arn, ext = make_role()
    arn2, ext2 = make_role()
    installed = client.install_aws(spec_for(arn, ext))
    if updates == "rejected":
        with pytest.raises(NeedsAttention) as err:
            client.update(installed.id, spec_for(arn2, ext2))
        assert err.value.reason == "CredentialImmutable"
        assert client.dialect.credential_updates == "rejected"
        return
    after = client.update(installed.id, spec_for(arn2, ext2, name="renamed"))
    assert after.role_arn == (arn2 if updates == "applied" else arn)
    assert after.display_name == "renamed"


# -- activity and discovery -------------------------------------------------------------------------------------


def test_async_verdicts_come_from_one_shared_activity_page(emulator: OpsRampEmulator, make_role: RoleMaker) -> None:
    """Q8 async: OpsRamp accepts both installs, then records SUCCESS for the good role and FAILED for the missing
    one; lookups for several integrations read one shared activity page, not one each."""
    emulator.set_contract(role_check="async", role_check_delay_seconds=0.2)
    client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=FAST)
    arn, ext = make_role()
    since = time.time() - 1
    good = client.install_aws(spec_for(arn, ext, name="good"))
    bad = client.install_aws(spec_for(f"arn:aws:iam::{CUSTOMER_ACCOUNT}:role/missing", ext, name="bad"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(emulator.activity(TENANT)) < 2:
        time.sleep(0.05)
    client._activity.fetched_at = None  # as if the shared page were older than its freshness bound
    verdicts = {name: client.verdict(i.id, since) for name, i in (("good", good), ("bad", bad))}
    assert verdicts["good"] is not None and verdicts["good"].ok
    assert verdicts["bad"] is not None and not verdicts["bad"].ok
    assert "Unable to assume role" in verdicts["bad"].message
    assert emulator.request_count("GET", ACTIVITY) == 1
    assert client.verdict(good.id, time.time() + 60) is None  # nothing newer than a later write


def test_verdicts_further_back_come_from_shared_pages_not_one_read_each(
    emulator: OpsRampEmulator, make_role: RoleMaker
) -> None:
    """Many accounts installed one after another push each other's records off the newest page: lookups further back
    read the next shared pages (two here), not one activity read per integration."""
    emulator.set_contract(role_check="never")  # the records below are the only ones
    client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=FAST)
    arn, ext = make_role()
    since = time.time() - 1
    old = [client.install_aws(spec_for(arn, ext, name=f"old-{n}")) for n in range(5)]
    state = emulator._state
    for installed in old:
        state.add_activity(TENANT, installed.id, True, "Processed successfully")
    stamped = int(time.time() * 1000)
    while int(time.time() * 1000) <= stamped:
        pass  # the next millisecond (records carry milliseconds): the records below sort after these
    for n in range(150):
        state.add_activity(TENANT, f"someone-else-{n}", True, "Processed successfully")
    before = emulator.request_count("GET", ACTIVITY)
    client._activity.fetched_at = None  # as if the shared page were older than its freshness bound
    verdicts = [client.verdict(i.id, since) for i in old]
    assert all(v is not None and v.ok for v in verdicts), verdicts
    assert emulator.request_count("GET", ACTIVITY) - before == 2
    assert client.verdict(old[0].id, time.time() + 60) is None  # the pages reach back past it: nothing newer


def test_discovery_profile_round_trip_reads_back_without_differences(
    client: OpsRampClient, emulator: OpsRampEmulator, make_role: RoleMaker
) -> None:
    """A profile created from the spec reads back equal (nothing to update on resync); a changed spec differs."""
    arn, ext = make_role()
    installed = client.install_aws(spec_for(arn, ext))
    request = DiscoveryRequest(
        name="team-a-prod discovery",
        integration_id=installed.id,
        credential_set="team-a-prod AWS Integration",
        resource_types=("EC2",),
        tags=(("env", "prod"),),
    )
    created = client.create_profile(request)
    got = client.get_profile(int(created["id"]))
    assert got is not None
    assert profile_differences(got, request) == []
    assert [p["id"] for p in client.find_profiles(request.name)] == [created["id"]]
    changed = DiscoveryRequest(**{**request.__dict__, "pattern_type": "DAILY", "manage_devices": False})
    assert profile_differences(got, changed) == ["actions", "schedule"]
    client.update_profile(int(created["id"]), changed)
    again = client.get_profile(int(created["id"]))
    assert again is not None
    assert profile_differences(again, changed) == []
    client.delete_profile(int(created["id"]))
    client.delete_profile(int(created["id"]))  # already gone: done
    assert client.get_profile(int(created["id"])) is None


def test_verdicts_deeper_than_one_page_come_from_the_shared_listing(
    emulator: OpsRampEmulator, make_role: RoleMaker
) -> None:
    """More waiters than one page holds (a fleet's creation): the oldest integrations' verdicts are found on the
    listing's second page, read once for every waiter, without a query per integration."""
    emulator.set_contract(role_check="async", role_check_delay_seconds=0.1)
    emulator.configure(rate_limits={"writes": 1000, "gets": 1000, "paged_gets": 1000})
    limits = OpsRampLimits(writes_per_window=1000, gets_per_window=1000, paged_gets_per_window=1000)
    client = get_client(emulator.url, TENANT, CLIENT_ID, CLIENT_SECRET, timeouts=FAST, limits=limits)
    arn, ext = make_role()
    since = time.time() - 1
    installed = [client.install_aws(spec_for(arn, ext, name=f"deep-{i:03d}")) for i in range(130)]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(emulator.activity(TENANT)) < 130:
        time.sleep(0.05)
    client._activity.fetched_at = None  # as if the shared listing were older than its freshness bound
    before = [r for r in emulator.state()["request_log"] if r["route"].endswith("/activity")]
    # The 30 oldest are past the first page of 100: each found on the shared second page.
    for integration in [*installed[:30], installed[-1]]:
        assert client.verdict(integration.id, since) is not None, integration.id
    reads = [r for r in emulator.state()["request_log"] if r["route"].endswith("/activity")][len(before) :]
    # Pages 1 and 2 of the listing, shared by both lookups: no query for either integration alone.
    assert len(reads) == 2, reads
