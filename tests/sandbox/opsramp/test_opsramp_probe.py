"""`opsramp-aws-operator probe` against the sandbox's OpsRamp in each variant: it names the variant, secret-free."""

from __future__ import annotations

import io
import re
import secrets
from collections.abc import Callable
from typing import Any

import pytest

from opsramp_aws_operator.opsramp import probe
from opsramp_aws_operator.opsramp.variants import FULL_ECHO, Contract, name_of
from opsramp_sandbox.opsramp import ApiClient, OpsRampEmulator

from opsramp_emulator_support import CUSTOMER_ACCOUNT  # isort: skip

RoleMaker = Callable[..., str]
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

VARIANTS: list[dict[str, Any]] = [
    {"profile": "default"},
    {"profile": "openapi-examples"},
    {"profile": "strict"},
    {"profile": "async-immutable", "role_check_delay_seconds": 0.1},
    {"aws_type": "ExternalId"},
    {"aws_type": "IAM with AssumeRole", "access_keys": "empty"},
    {"access_keys": "empty"},
    {"linked_accounts": "ignored"},
    {"linked_accounts": "rejected"},
    {"regions_echo": "list"},
    {"credential_updates": "ignored"},
    {"credential_updates": "rejected"},
    {"role_check": "async", "role_check_delay_seconds": 0.1},
    {"role_check": "never"},
    {"token_rejected": 407},
    {"token_rejected": 400},
    {"expires_in": "integer"},
    {"token_path": "legacy"},
    {"token_reuse": True},
    {"search_query": "ignored"},
    {"search_query": "refused"},
    {"oversized_page": "refuse"},
    {"duplicate_names": "refused"},
    {"external_id": "generated"},
    {"unknown_id": 400},
    {"unknown_id": 500},
    {"foreign_tenant": 401},
    {"status_values": "ENABLED/DISABLED"},
    {"echo": sorted(FULL_ECHO - {"credential.AssumeRoleARN"})},
]


def _id(switches: dict[str, Any]) -> str:
    return str(switches.get("profile") or name_of(Contract().with_changes(switches)))[:60]


@pytest.mark.parametrize("switches", VARIANTS, ids=[_id(v) for v in VARIANTS])
def test_probe_names_the_variant(switches: dict[str, Any], emulator: OpsRampEmulator, make_role: RoleMaker) -> None:
    """With --scratch, the probe's answers fit exactly the variant the emulator plays (a profile by its name, else
    the switches that differ from the defaults), it leaves nothing installed, and prints no secret or token."""
    tenant, client_id, secret = "client_77", "probe-key", "probe-secret-" + secrets.token_hex(12)
    emulator.add_client(ApiClient(tenant, client_id, secret))
    contract = emulator.set_contract(tenant=tenant, **switches)
    # Something that is not AWS, so the probe can tell whether installed/search honours its queryString.
    emulator.seed_integration(tenant, {"displayName": "azure-one", "integration": {"id": "AZURE", "name": "Azure"}})
    external_id = "probe-" + secrets.token_hex(16)
    role_arn = make_role(external_id=external_id)
    out = io.StringIO()
    env = {"OPSRAMP_CLIENT_ID": client_id, "OPSRAMP_CLIENT_SECRET": secret, "OPSRAMP_PROBE_EXTERNAL_ID": external_id}
    args = ["--endpoint", emulator.url, "--tenant-id", tenant, "--scratch", "--account-number", CUSTOMER_ACCOUNT]
    code = probe.main([*args, "--role-arn", role_arn, "--wait", "3"], env=env, out=out)
    text = out.getvalue()
    assert code == 0, text
    assert text.splitlines()[-1] == f"Variant: {name_of(contract)}", text
    assert secret not in text
    assert external_id not in text
    assert not UUID.search(text), text
    aws = [i for i in emulator.integrations(tenant) if (i.get("integration") or {}).get("id") == "AWS"]
    assert aws == [], "the probe left scratch integrations behind"


def test_probe_read_only_installs_nothing(emulator: OpsRampEmulator) -> None:
    """Without --scratch the probe only reads: no write reaches OpsRamp, and it still answers the read questions."""
    tenant, client_id, secret = "client_78", "probe-ro", "probe-ro-secret-" + secrets.token_hex(8)
    emulator.add_client(ApiClient(tenant, client_id, secret))
    emulator.set_contract(tenant=tenant, unknown_id=500, token_path="legacy")
    out = io.StringIO()
    env = {"OPSRAMP_CLIENT_ID": client_id, "OPSRAMP_CLIENT_SECRET": secret}
    assert probe.main(["--endpoint", emulator.url, "--tenant-id", tenant], env=env, out=out) == 0
    text = out.getvalue()
    writes = [r for r in emulator.state()["request_log"] if r["category"] == "writes"]
    assert writes == []
    assert "[unknown_id]" in text and "500" in text
    assert "Variant: token_path=legacy,unknown_id=500" in text
    assert secret not in text
