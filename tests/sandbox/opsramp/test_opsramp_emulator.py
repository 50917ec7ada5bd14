"""Behaviour of the OpsRamp emulator over HTTP: role check, validation, paging, uninstall, limits, tokens, faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from opsramp_sandbox.opsramp import OpsRampEmulator

from opsramp_emulator_support import (  # isort: skip
    CLIENT_ID,
    CLIENT_SECRET,
    CUSTOMER_ACCOUNT,
    OPSRAMP_ACCOUNT,
    TENANT,
    Api,
    aws_body,
    trust_policy,
)

RoleMaker = Callable[..., str]
REPO = Path(__file__).resolve().parents[3]

# -- the role check --------------------------------------------------------------------------------------


def test_role_check_accepts_the_right_role(api: Api, make_role: RoleMaker) -> None:
    """A role trusting OpsRamp's account with exactly the install's External ID installs (200, id)."""
    arn = make_role(external_id="right-external-id-1234")
    response = api.install(aws_body(arn, "right-external-id-1234"))
    assert response.status_code == 200, response.text
    assert response.json()["id"].startswith("INTG-")


def test_role_check_refuses_a_wrong_external_id(api: Api, make_role: RoleMaker) -> None:
    """The same role with another External ID → 400 saying the role cannot be assumed, without the ID."""
    arn = make_role(external_id="right-external-id-1234")
    response = api.install(aws_body(arn, "wrong-external-id-9999"))
    assert response.status_code == 400
    message = response.json()["message"]
    assert "Unable to assume role" in message
    assert arn in message
    assert "wrong-external-id-9999" not in response.text


def test_role_check_refuses_a_wrong_principal(api: Api, make_role: RoleMaker) -> None:
    """A role trusting another AWS account (not OpsRamp's) → 400."""
    arn = make_role(trust_policy("ext-id-abcdef", principal="arn:aws:iam::111122223333:root"))
    assert api.install(aws_body(arn, "ext-id-abcdef")).status_code == 400


def test_role_check_accepts_the_bare_account_principal(api: Api, make_role: RoleMaker) -> None:
    """The principal may name OpsRamp's account by its bare id, as IAM allows."""
    arn = make_role(trust_policy("ext-id-abcdef", principal=OPSRAMP_ACCOUNT))
    assert api.install(aws_body(arn, "ext-id-abcdef")).status_code == 200


def test_role_check_refuses_a_missing_role(api: Api) -> None:
    """A well-formed ARN of a role that does not exist → 400."""
    arn = f"arn:aws:iam::{CUSTOMER_ACCOUNT}:role/opsramp/never-created"
    response = api.install(aws_body(arn, "ext-id-abcdef"))
    assert response.status_code == 400
    assert "Unable to assume role" in response.json()["message"]


def test_role_check_refuses_a_role_without_external_id_condition(api: Api, make_role: RoleMaker) -> None:
    """A trust policy with no sts:ExternalId condition is refused (the confused-deputy hole)."""
    arn = make_role(trust_policy(None))
    assert api.install(aws_body(arn, "ext-id-abcdef")).status_code == 400


def test_role_check_refuses_a_role_inside_its_propagation_delay(
    api: Api, emulator: OpsRampEmulator, make_role: RoleMaker
) -> None:
    """A role younger than the propagation delay fails the check; the same role passes once the delay is 0."""
    emulator.configure(propagation_delay_seconds=120)
    arn = make_role(external_id="ext-id-abcdef")
    assert api.install(aws_body(arn, "ext-id-abcdef")).status_code == 400
    emulator.configure(propagation_delay_seconds=0)
    assert api.install(aws_body(arn, "ext-id-abcdef")).status_code == 200
    reasons = [c["reason"] for c in emulator.state()["role_checks"]]
    assert reasons == ["the role is inside its propagation delay", ""]


def test_update_rechecks_the_role_when_credentials_change(api: Api, make_role: RoleMaker) -> None:
    """Updating to a role OpsRamp cannot assume → 400 and the stored integration keeps its old role."""
    arn = make_role(external_id="ext-id-abcdef")
    intg = api.install(aws_body(arn, "ext-id-abcdef")).json()
    bad = make_role(external_id="another-id-123")
    response = api.call("POST", f"/installed/{intg['id']}", json=aws_body(bad, "ext-id-abcdef"))
    assert response.status_code == 400
    assert api.call("GET", f"/installed/{intg['id']}").json()["credential"]["AssumeRoleARN"] == arn


# -- validation ------------------------------------------------------------------------------------------

ROLE = f"arn:aws:iam::{CUSTOMER_ACCOUNT}:role/opsramp/x"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"credential": aws_body(ROLE, "e" * 20)["credential"]}, "displayName"),
        (aws_body(ROLE, "e" * 20, name=""), "displayName"),
        ({"displayName": "x"}, "credential"),
        (aws_body(ROLE, "e" * 20, AccountNumber="12345678901"), "AccountNumber"),
        (aws_body(ROLE, "e" * 20, AssumeRoleARN="arn:aws:iam::123456789012:user/bob"), "AssumeRoleARN"),
        (aws_body("arn:aws:iam::210987654321:role/x", "e" * 20), "AssumeRoleARN"),
        (aws_body(ROLE, "e" * 20, Regions="us-east-1,narnia"), "Regions"),
        (aws_body(ROLE, "e" * 20, Regions=""), "Regions"),
        (aws_body(ROLE, ""), "ExternalId"),
        (aws_body(ROLE, "e" * 20, AWSType="Magic"), "AWSType"),
        (aws_body(ROLE, "e" * 20, credentialType="AZURE"), "credentialType"),
        (aws_body(ROLE, "e" * 20, InstallAllLinkedAccounts="maybe"), "InstallAllLinkedAccounts"),
        ([], "JSON object"),
    ],
)
def test_install_validation(api: Api, body: Any, field: str) -> None:
    """Each malformed install body gets a 400 whose message names the offending field."""
    response = api.install(body)
    assert response.status_code == 400
    assert field in response.json()["message"]


def test_malformed_json_is_400(api: Api) -> None:
    """A body that is not JSON → 400."""
    response = api.call("POST", "/install/AWS", data=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400


# -- get, search and paging ------------------------------------------------------------------------------


def seed(emulator: OpsRampEmulator, n: int, intg: str = "AWS") -> list[str]:
    return [
        emulator.seed_integration(
            TENANT, {"displayName": f"name-{i:02d}", "integration": {"id": intg, "name": intg}, "credential": {}}
        )["id"]
        for i in range(n)
    ]


def test_get_unknown_integration_is_404(api: Api) -> None:
    """GET installed/{id} of an unknown id → 404."""
    assert api.call("GET", "/installed/INTG-nope").status_code == 404


def test_search_paging_envelope(api: Api, emulator: OpsRampEmulator) -> None:
    """7 matches with pageSize 3 → 3 pages with the documented envelope fields, nextPageNo only when needed."""
    seed(emulator, 7)
    seed(emulator, 2, intg="SLACK")
    pages = []
    for page_no in (1, 2, 3):
        response = api.call(
            "GET",
            "/installed/search",
            params={"queryString": "category:CLOUD_INTEGRATION+uId:AWS", "pageNo": page_no, "pageSize": 3},
        )
        assert response.status_code == 200
        pages.append(response.json())
    assert [len(p["results"]) for p in pages] == [3, 3, 1]
    assert {p["totalResults"] for p in pages} == {7}
    assert {p["totalPages"] for p in pages} == {3}
    assert [p["nextPage"] for p in pages] == [True, True, False]
    assert [p.get("nextPageNo") for p in pages] == [2, 3, None]
    assert [p["previousPageNo"] for p in pages] == [0, 1, 2]
    assert [p["pageNo"] for p in pages] == [1, 2, 3]
    names = [r["displayName"] for p in pages for r in p["results"]]
    assert names == sorted(names)


def test_search_filters_and_caps_page_size(api: Api, emulator: OpsRampEmulator) -> None:
    """uId filters by type, an unencoded '+' (a space) matches nothing, and pageSize is capped at 100."""
    seed(emulator, 3)
    seed(emulator, 2, intg="SLACK")
    slack = api.call("GET", "/installed/search", params={"queryString": "uId:SLACK"}).json()
    assert slack["totalResults"] == 2
    everything = api.call("GET", "/installed/search", params={"pageSize": 500}).json()
    assert (everything["totalResults"], everything["pageSize"]) == (5, 100)
    raw = api.http.get(
        api.path("/installed/search?queryString=category:CLOUD_INTEGRATION+uId:AWS"),
        headers={"Authorization": f"Bearer {api.token}"},
        timeout=10,
    )
    assert raw.json()["totalResults"] == 0


def test_search_rejects_non_numeric_paging(api: Api) -> None:
    """pageNo that is not an integer → 400."""
    assert api.call("GET", "/installed/search", params={"pageNo": "two"}).status_code == 400


# -- update and uninstall --------------------------------------------------------------------------------


def test_update_is_partial(api: Api, make_role: RoleMaker) -> None:
    """An update with only displayName keeps the credential; Name follows the display name."""
    arn = make_role(external_id="ext-id-abcdef")
    intg = api.install(aws_body(arn, "ext-id-abcdef", Regions="us-east-1,eu-west-1")).json()
    response = api.call("POST", f"/installed/{intg['id']}", json={"displayName": "renamed"})
    assert response.status_code == 200
    body = response.json()
    assert body["displayName"] == "renamed"
    assert body["credential"]["Regions"] == "us-east-1,eu-west-1"
    assert body["credential"]["Name"] == "renamed AWS Integration"
    assert "ExternalId" not in body["credential"]


def test_uninstall_requires_a_reason(api: Api, make_role: RoleMaker) -> None:
    """DELETE without uninstallReason → 400 and nothing removed; with one → 200; again → 404."""
    arn = make_role(external_id="ext-id-abcdef")
    intg = api.install(aws_body(arn, "ext-id-abcdef")).json()
    assert api.call("DELETE", f"/installed/{intg['id']}").status_code == 400
    assert api.call("DELETE", f"/installed/{intg['id']}", json={"uninstallReason": ""}).status_code == 400
    assert api.call("GET", f"/installed/{intg['id']}").status_code == 200
    assert api.call("DELETE", f"/installed/{intg['id']}", json={"uninstallReason": "done"}).status_code == 200
    assert api.call("DELETE", f"/installed/{intg['id']}", json={"uninstallReason": "done"}).status_code == 404


# -- rate limits -----------------------------------------------------------------------------------------


def test_rate_limit_headers_and_429_body(api: Api, emulator: OpsRampEmulator) -> None:
    """Each answer carries X-RateLimit-*; past the writes limit the 429 has the documented body."""
    emulator.configure(rate_limits={"writes": 3}, rate_window_seconds=600)
    statuses = []
    for _ in range(4):
        response = api.call("DELETE", "/installed/INTG-x", json={"uninstallReason": "r"})
        statuses.append(response.status_code)
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert int(response.headers["X-RateLimit-Reset"]) >= time.time()
    assert statuses == [404, 404, 404, 429]
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert response.json() == {"error": "throttled", "error_description": "Too Many Requests"}
    # Categories are separate: GETs are still allowed.
    get = api.call("GET", "/installed/INTG-x")
    assert get.status_code == 404
    assert get.headers["X-RateLimit-Limit"] == "500"
    assert emulator.state()["throttled"] == 1


def test_rate_limits_are_per_tenant(emulator: OpsRampEmulator) -> None:
    """One tenant's exhausted budget does not throttle another tenant."""
    emulator.configure(rate_limits={"paged_gets": 1}, rate_window_seconds=600)
    one, two = Api(emulator.url), Api(emulator.url, "client_2", "key-2", "secret-2")
    assert one.call("GET", "/installed/search").status_code == 200
    assert one.call("GET", "/installed/search").status_code == 429
    assert two.call("GET", "/installed/search").status_code == 200


# -- tokens ----------------------------------------------------------------------------------------------


def test_token_endpoint(emulator: OpsRampEmulator) -> None:
    """Good credentials get a bearer token with a string expires_in; bad ones 401; bad grant 400."""
    api = Api(emulator.url)
    good = api.fetch_token(CLIENT_ID, CLIENT_SECRET).json()
    assert good["token_type"] == "bearer"
    assert good["expires_in"] == "3599"
    assert good["scope"] == "global:manage"
    bad = api.fetch_token(CLIENT_ID, "nope")
    assert (bad.status_code, bad.json()) == (401, {"error": "unauthorized", "error_description": "Bad API credentials"})
    grant = api.http.post(emulator.url + "/tenancy/auth/oauth/token", data={"grant_type": "password"}, timeout=5)
    assert grant.status_code == 400
    legacy = api.http.post(
        emulator.url + "/auth/oauth/token",
        data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        timeout=5,
    )
    assert legacy.status_code == 200


def test_missing_unknown_expired_and_foreign_tokens(api: Api, emulator: OpsRampEmulator) -> None:
    """No token, an unknown one or an expired one → 401; a token on another tenant's path → 403."""
    assert api.http.get(api.path("/installed/INTG-x"), timeout=5).status_code == 401
    assert api.call("GET", "/installed/INTG-x", token="made-up").status_code == 401
    assert api.call("GET", "/installed/INTG-x", tenant="client_2").status_code == 403
    emulator.expire_tokens()
    expired = api.call("GET", "/installed/INTG-x")
    assert expired.status_code == 401
    assert expired.json()["error"] == "invalid_token"


# -- faults and admin API --------------------------------------------------------------------------------


def test_fault_switches_over_the_admin_api(api: Api, emulator: OpsRampEmulator) -> None:
    """POST /_emulator/faults turns on 5xx, 429 bursts and drops; DELETE turns them off; state counts them."""
    admin = emulator.admin_url
    assert requests.get(admin + "/health", timeout=5).json() == {"ok": True}
    assert requests.post(admin + "/faults", json={"error_next": 1, "error_status": 503}, timeout=5).ok
    assert api.call("GET", "/installed/INTG-x").status_code == 503
    assert requests.post(admin + "/faults", json={"throttle_next": 2}, timeout=5).ok
    assert [api.call("GET", "/installed/INTG-x").status_code for _ in range(3)] == [429, 429, 404]
    assert requests.post(admin + "/faults", json={"drop_next": 1}, timeout=5).ok
    with pytest.raises(requests.ConnectionError):
        api.call("GET", "/installed/INTG-x")
    assert requests.post(admin + "/faults", json={"error_rate": 1.0}, timeout=5).ok
    assert api.call("GET", "/installed/INTG-x").status_code == 503  # error_status is still 503
    assert requests.delete(admin + "/faults", timeout=5).ok
    assert api.call("GET", "/installed/INTG-x").status_code == 404
    assert requests.post(admin + "/faults", json={"bogus": 1}, timeout=5).status_code == 400
    state = requests.get(admin + "/state", timeout=5).json()
    assert state["throttled"] == 2
    assert state["requests"]["GET /api/v2/tenants/{tenantId}/integrations/installed/{installedIntgId}"] == 7


def test_admin_state_has_no_secrets(api: Api, emulator: OpsRampEmulator, make_role: RoleMaker) -> None:
    """The admin state lists integrations per tenant but no External ID, client secret or token."""
    arn = make_role(external_id="very-secret-external-id")
    api.install(aws_body(arn, "very-secret-external-id"))
    text = requests.get(emulator.admin_url + "/state", timeout=5).text
    state = json.loads(text)
    assert len(state["tenants"][TENANT]["integrations"]) == 1
    for secret in ("very-secret-external-id", CLIENT_SECRET, api.token):
        assert secret not in text


def test_expire_tokens_and_config_over_http(api: Api, emulator: OpsRampEmulator) -> None:
    """POST /_emulator/expire-tokens invalidates issued tokens; /_emulator/config changes settings."""
    assert requests.post(emulator.admin_url + "/expire-tokens", timeout=5).json()["expired"] == 1
    assert api.call("GET", "/installed/INTG-x").status_code == 401
    config = requests.post(emulator.admin_url + "/config", json={"token_lifetime": 10}, timeout=5).json()
    assert config["token_lifetime"] == 10
    assert Api(emulator.url).fetch_token(CLIENT_ID, CLIENT_SECRET).json()["expires_in"] == "9"
    assert requests.post(emulator.admin_url + "/config", json={"nope": 1}, timeout=5).status_code == 400


def test_latency_fault_delays_answers(api: Api, emulator: OpsRampEmulator) -> None:
    """With latency_seconds set, a client with a shorter read timeout times out."""
    emulator.set_faults(latency_seconds=0.5)
    with pytest.raises(requests.Timeout):
        api.http.get(api.path("/installed/INTG-x"), headers={"Authorization": f"Bearer {api.token}"}, timeout=0.1)


# -- standalone ------------------------------------------------------------------------------------------


def test_standalone_process_prints_ready_and_stops_on_sigterm(tmp_path: Path, moto_url: str) -> None:
    """`python -m opsramp_sandbox.opsramp --port 0 --config ...` prints READY <url>, serves, exits 0 on SIGTERM."""
    config = tmp_path / "clients.json"
    config.write_text(json.dumps({"clients": [{"tenant_id": "client_9", "client_id": "k", "client_secret": "s"}]}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "operator"), str(REPO / "sandbox")]))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opsramp_sandbox.opsramp",
            "--port",
            "0",
            "--config",
            str(config),
            "--opsramp-aws-account-id",
            OPSRAMP_ACCOUNT,
            "--iam-endpoint",
            moto_url,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("READY http://127.0.0.1:")
        url = line.split()[1]
        api = Api(url, "client_9", "k", "s")
        assert api.call("GET", "/installed/INTG-x").status_code == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
