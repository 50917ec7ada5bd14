"""The emulator's contract switches: each open question answered each way, switchable at start and at run time,
for every tenant or one."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from opsramp_sandbox.opsramp import OpsRampEmulator
from opsramp_sandbox.opsramp_emulator.contract import OPENAPI_ECHO, PROFILES, Contract, name_of

from opsramp_emulator_support import CLIENT_ID, CLIENT_SECRET, OPSRAMP_ACCOUNT, Api, aws_body  # isort: skip

RoleMaker = Callable[..., str]


def body_for(role: str, external_id: str = "x" * 20, **credential: Any) -> dict[str, Any]:
    """The operator's install body: no linked-accounts key unless given."""
    body = aws_body(role, external_id)
    body["credential"].pop("InstallAllLinkedAccounts")
    body["credential"].update(credential)
    return body


def test_contract_switches_validate_and_profiles_have_names() -> None:
    """Unknown switches and values are refused; each profile names itself, other contracts list their switches."""
    with pytest.raises(ValueError, match="unknown contract switches"):
        Contract().with_changes({"no_such": 1})
    with pytest.raises(ValueError, match="role_check"):
        Contract().with_changes({"role_check": "sometimes"})
    for name, contract in PROFILES.items():
        assert name_of(contract) == name
    assert name_of(Contract(role_check="never", unknown_id=500)) == "role_check=never,unknown_id=500"


def test_openapi_examples_profile_answers_like_the_examples(
    api: Api, emulator: OpsRampEmulator, make_role: RoleMaker
) -> None:
    """The openapi-examples profile answers install and GET with id, integration and the four credential keys only."""
    emulator.set_contract(profile="openapi-examples")
    external_id = "e" * 24
    answer = api.install(body_for(make_role(external_id=external_id), external_id)).json()
    assert set(answer) == {"id", "integration", "credential"}
    assert {f"credential.{k}" for k in answer["credential"]} == set(OPENAPI_ECHO)
    got = api.call("GET", f"/installed/{answer['id']}").json()
    assert got == answer
    listed = api.call("GET", "/installed/search").json()["results"]
    assert listed == [answer]


@pytest.mark.parametrize(
    ("switches", "credential", "status", "message"),
    [
        ({"aws_type": "ExternalId"}, {}, 400, "AWSType"),
        ({"aws_type": "ExternalId"}, {"AWSType": "ExternalId"}, 200, ""),
        ({"access_keys": "empty"}, {}, 400, "AccessKey"),
        ({"access_keys": "empty"}, {"AccessKey": "", "SecurityKey": ""}, 200, ""),
        ({}, {"AccessKey": "", "SecurityKey": ""}, 400, "not allowed"),
        ({"linked_accounts": "rejected"}, {"InstallAllLinkedAccounts": "true"}, 400, "InstallAllLinkedAccounts"),
    ],
    ids=["type-refused", "type-accepted", "keys-needed", "keys-empty", "keys-not-allowed", "linked-refused"],
)
def test_install_body_variants(
    switches: dict[str, Any],
    credential: dict[str, Any],
    status: int,
    message: str,
    api: Api,
    emulator: OpsRampEmulator,
    make_role: RoleMaker,
) -> None:
    """Q1-Q3: the AWSType string, the key fields and the linked-accounts key, accepted or refused per contract."""
    emulator.set_contract(**switches)
    external_id = "e" * 24
    response = api.install(body_for(make_role(external_id=external_id), external_id, **credential))
    assert response.status_code == status, response.text
    assert message in response.text


def test_linked_accounts_ignored_is_dropped_silently(api: Api, emulator: OpsRampEmulator, make_role: RoleMaker) -> None:
    """Q3 ignored: 200, and the key is neither kept nor shown."""
    emulator.set_contract(linked_accounts="ignored")
    external_id = "e" * 24
    answer = api.install(body_for(make_role(external_id=external_id), external_id, InstallAllLinkedAccounts="true"))
    assert answer.status_code == 200
    assert "InstallAllLinkedAccounts" not in answer.json()["credential"]


def test_async_role_check_records_its_verdict_in_activity(
    api: Api, emulator: OpsRampEmulator, make_role: RoleMaker
) -> None:
    """Q8 async: a role OpsRamp cannot assume is installed (200); a moment later activity records FAILED, with the
    message a synchronous tenant would have answered; a good role gets SUCCESS."""
    emulator.set_contract(role_check="async", role_check_delay_seconds=0.1)
    external_id = "e" * 24
    good = api.install(body_for(make_role(external_id=external_id), external_id)).json()["id"]
    bad = api.install(body_for(make_role(external_id="other" * 5), external_id)).json()["id"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(emulator.activity("client_1")) < 2:
        time.sleep(0.05)
    records = api.call("GET", "/activity", params={"queryString": f"installedintgId:{bad}"}).json()["results"]
    assert [(r["installedintgId"], r["status"]) for r in records] == [(bad, "FAILED")]
    assert "Unable to assume role" in records[0]["statusMessage"]
    records = api.call("GET", "/activity", params={"queryString": f"installedintgId:{good}"}).json()["results"]
    assert [r["status"] for r in records] == ["SUCCESS"]


def test_role_check_never_records_nothing(api: Api, emulator: OpsRampEmulator, make_role: RoleMaker) -> None:
    """Q8 never: any role is installed and no verdict ever appears."""
    emulator.set_contract(role_check="never")
    response = api.install(body_for(make_role(external_id="other" * 5), "e" * 24))
    assert response.status_code == 200
    assert api.call("GET", "/activity").json()["results"] == []


def test_generated_external_id_ignores_the_clients(api: Api, emulator: OpsRampEmulator, make_role: RoleMaker) -> None:
    """Q15 generated: a role trusting the client's External ID is refused; one trusting the console's is installed."""
    emulator.set_contract(external_id="generated")
    ours = "mine-" + "e" * 20
    refused = api.install(body_for(make_role(external_id=ours), ours))
    assert refused.status_code == 400
    assert "Unable to assume role" in refused.text
    console = requests.get(f"{emulator.admin_url}/tenants/client_1/console", timeout=10).json()
    assert console["awsAccountId"] == OPSRAMP_ACCOUNT
    accepted = api.install(body_for(make_role(external_id=console["externalId"]), ours))
    assert accepted.status_code == 200


@pytest.mark.parametrize("mode", ["applied", "ignored", "rejected"])
def test_credential_update_variants(mode: str, api: Api, emulator: OpsRampEmulator, make_role: RoleMaker) -> None:
    """Q7: a new role ARN on update is applied, silently kept old (200), or refused; the display name always moves."""
    emulator.set_contract(credential_updates=mode)
    external_id = "e" * 24
    first, second = make_role(external_id=external_id), make_role(external_id=external_id)
    installed = api.install(body_for(first, external_id)).json()["id"]
    body = body_for(second, external_id)
    body["displayName"] = "renamed"
    response = api.call("POST", f"/installed/{installed}", json=body)
    got = api.call("GET", f"/installed/{installed}").json()
    if mode == "rejected":
        assert response.status_code == 400
        assert "cannot be changed" in response.text
        return
    assert response.status_code == 200
    assert got["displayName"] == "renamed"
    assert got["credential"]["AssumeRoleARN"] == (second if mode == "applied" else first)


@pytest.mark.parametrize("status", [404, 400, 500])
def test_unknown_id_status_and_body(status: int, api: Api, emulator: OpsRampEmulator) -> None:
    """Q17: an unknown id answered 404, 400 or 500, each with OpsRamp's {"code", "message"} body."""
    emulator.set_contract(unknown_id=status)
    for method in ("GET", "DELETE", "POST"):
        kwargs: dict[str, Any] = {"json": {"uninstallReason": "x"}} if method == "DELETE" else {}
        if method == "POST":
            kwargs = {"json": {"displayName": "x"}}
        response = api.call(method, "/installed/INTG-nope", **kwargs)
        assert response.status_code == status
        assert set(response.json()) == {"code", "message"}
        assert "No installed integration found" in response.json()["message"]


def test_search_page_and_duplicate_variants(api: Api, emulator: OpsRampEmulator, make_role: RoleMaker) -> None:
    """Q12-Q14: a refused queryString, a refused oversized page, a refused duplicate name."""
    emulator.set_contract(search_query="refused", oversized_page="refuse", duplicate_names="refused")
    assert api.call("GET", "/installed/search", params={"queryString": "category:CLOUD_INTEGRATION"}).status_code == 400
    assert api.call("GET", "/installed/search", params={"pageSize": "500"}).status_code == 400
    assert api.call("GET", "/installed/search", params={"pageSize": "100"}).status_code == 200
    external_id = "e" * 24
    role = make_role(external_id=external_id)
    assert api.install(body_for(role, external_id)).status_code == 200
    again = api.install(body_for(role, external_id))
    assert again.status_code == 400
    assert "already exists" in again.text


def test_per_tenant_contracts_and_runtime_switching_over_http(emulator: OpsRampEmulator) -> None:
    """The admin API sets a contract for one tenant while the others keep the default; DELETE clears it."""
    admin = emulator.admin_url
    other = Api(emulator.url, tenant="client_2", client_id="key-2", secret="secret-2")
    mine = Api(emulator.url)
    answer = requests.post(f"{admin}/contract", json={"tenant": "client_2", "unknown_id": 500}, timeout=10).json()
    assert answer["tenants"]["client_2"]["name"] == "unknown_id=500"
    assert answer["default"]["name"] == "default"
    assert other.call("GET", "/installed/INTG-x").status_code == 500
    assert mine.call("GET", "/installed/INTG-x").status_code == 404
    assert requests.post(f"{admin}/contract", json={"role_check": "maybe"}, timeout=10).status_code == 400
    requests.delete(f"{admin}/contract", timeout=10)
    assert other.call("GET", "/installed/INTG-x").status_code == 404


def test_enable_disable_and_discovery_profiles(api: Api, emulator: OpsRampEmulator, make_role: RoleMaker) -> None:
    """enable/disable flip status; a discovery profile needs a real integration and goes with its uninstall."""
    external_id = "e" * 24
    installed = api.install(body_for(make_role(external_id=external_id), external_id)).json()["id"]
    assert api.call("POST", f"/installed/{installed}/disable").status_code == 200
    assert api.call("GET", f"/installed/{installed}").json()["status"] == "disabled"
    assert api.call("POST", f"/installed/{installed}/enable").status_code == 200
    discovery = emulator.url + f"/api/v2/tenants/{api.tenant}/policies/discovery"
    headers = {"Authorization": f"Bearer {api.token}"}
    profile = {"name": "p", "installedIntegrationId": installed, "policy": {"rules": [{"filterType": "EC2"}]}}
    created = requests.post(discovery, json=[profile], headers=headers, timeout=10).json()[0]
    bad = requests.post(
        discovery, json=[{**profile, "installedIntegrationId": "INTG-nope"}], headers=headers, timeout=10
    )
    assert bad.status_code == 400
    assert requests.get(f"{discovery}/{created['id']}", headers=headers, timeout=10).json()["name"] == "p"
    api.call("DELETE", f"/installed/{installed}", json={"uninstallReason": "test"})
    assert requests.get(f"{discovery}/{created['id']}", headers=headers, timeout=10).status_code == 404


def test_contract_at_start_from_the_command_line(tmp_path: Path) -> None:
    """`--contract PROFILE` and `--contract-json` set the default contract of a standalone emulator."""
    process = subprocess.Popen(
        [
            sys.executable, "-m", "opsramp_sandbox.opsramp", "--tenant-id", "client_1", "--client-id", CLIENT_ID,
            "--client-secret", CLIENT_SECRET, "--opsramp-aws-account-id", OPSRAMP_ACCOUNT, "--contract",
            "openapi-examples", "--contract-json", '{"unknown_id": 400}',
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[1]
        contract = requests.get(f"{url}/_emulator/contract", timeout=10).json()["default"]
        assert contract["unknown_id"] == 400
        assert contract["echo"] == sorted(OPENAPI_ECHO)
    finally:
        process.terminate()
        process.wait(10)
