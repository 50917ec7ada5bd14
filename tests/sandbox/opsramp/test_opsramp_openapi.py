"""The emulator's answers (and the client's install body) conform to OpsRamp's own OpenAPI schemas."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

import opsramp_sandbox
from opsramp_aws_operator.opsramp import AwsIntegrationRequest, install_body
from opsramp_sandbox.opsramp import OpsRampEmulator

from opsramp_emulator_support import CLIENT_ID, CLIENT_SECRET, CUSTOMER_ACCOUNT, Api, aws_body  # isort: skip

SPEC_DIR = Path(opsramp_sandbox.__file__).parent / "data" / "opsramp-openapi"
BASE = "/api/v2/tenants/{tenantId}/integrations"

# OpsRamp's own OpenAPI files ship as package data of the sandbox (copied from reference/opsramp-openapi); a
# missing one fails the tests that read it (FileNotFoundError), never skips them.


@cache
def load(name: str) -> dict[str, Any]:
    with open(SPEC_DIR / name, encoding="utf-8") as handle:
        doc = yaml.safe_load(handle)
    assert isinstance(doc, dict)
    return doc


def deref(node: Any, root: dict[str, Any], depth: int = 0) -> Any:
    """Inline local $refs (OpsRamp's schemas are not recursive; the depth bound guards anyway)."""
    assert depth < 30
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = root
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return deref(target, root, depth + 1)
        return {k: deref(v, root, depth + 1) for k, v in node.items() if k not in ("example", "examples")}
    if isinstance(node, list):
        return [deref(v, root, depth + 1) for v in node]
    return node


def operation(doc_name: str, path: str, method: str) -> dict[str, Any]:
    doc = load(doc_name)
    op = doc["paths"][path][method]
    assert isinstance(op, dict)
    return op


def response_schema(doc_name: str, path: str, method: str, status: str = "200") -> dict[str, Any]:
    op = operation(doc_name, path, method)
    schema = op["responses"][status]["content"]["application/json"]["schema"]
    return dict(deref(schema, load(doc_name)))


def example_keys(doc_name: str, path: str, method: str) -> set[str]:
    """Top-level keys used in the documented response examples (OpsRamp's schemas omit some, e.g. credential)."""
    op = operation(doc_name, path, method)
    examples = op["responses"]["200"]["content"]["application/json"].get("examples", {})
    keys: set[str] = set()
    for example in examples.values():
        value = example.get("value", {})
        items = value.get("results", [value]) if isinstance(value, dict) else []
        for item in items:
            keys |= set(item)
    return keys


def check(instance: Any, schema: dict[str, Any], allowed_extra: set[str] | None = None) -> None:
    jsonschema.Draft4Validator(schema).validate(instance)
    if isinstance(instance, dict) and "properties" in schema:
        unknown = set(instance) - set(schema["properties"]) - (allowed_extra or set())
        assert not unknown, f"keys neither in the schema nor in OpsRamp's examples: {sorted(unknown)}"


def check_integration(body: dict[str, Any], path: str, method: str, *, in_page: bool = False) -> None:
    schema = response_schema("opsramp-integrations.v2.yaml", path, method)
    if in_page:
        schema = schema["properties"]["results"]["items"]
    check(body, schema, example_keys("opsramp-integrations.v2.yaml", path, method) | {"credential"})
    credential_schema = deref(load("opsramp-integrations.v2.yaml")["components"]["schemas"]["credential"], {})
    # InstallAllLinkedAccounts is our documented guess (docs/opsramp-api-assumptions.md), not in the schema.
    check(body["credential"], credential_schema, {"InstallAllLinkedAccounts"})


@pytest.fixture
def installed(api: Api, make_role: Callable[..., str]) -> dict[str, Any]:
    arn = make_role(external_id="ext-id-abcdef")
    response = api.install(aws_body(arn, "ext-id-abcdef", Regions="us-east-1,eu-west-1"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


def test_token_responses_conform(emulator: OpsRampEmulator) -> None:
    """Token 200 matches OAuthResponse (expires_in a string) and 401 matches the documented error object."""
    api = Api(emulator.url)
    ok = api.fetch_token(CLIENT_ID, CLIENT_SECRET).json()
    check(ok, response_schema("opsramp-auth.v2.yaml", "/auth/oauth/token", "post"))
    bad = api.fetch_token(CLIENT_ID, "wrong").json()
    check(bad, response_schema("opsramp-auth.v2.yaml", "/auth/oauth/token", "post", "401"))


def test_install_response_conforms(installed: dict[str, Any]) -> None:
    """POST install/AWS answers an integrationInstall with the documented AWS credential fields."""
    check_integration(installed, BASE + "/install/AWS", "post")
    assert installed["integration"] == {"id": "AWS", "name": "AWS"}


def test_get_and_update_responses_conform(api: Api, installed: dict[str, Any]) -> None:
    """GET and POST installed/{id} answer integrationInstall objects."""
    got = api.call("GET", f"/installed/{installed['id']}").json()
    check_integration(got, BASE + "/installed/{installedIntgId}", "get")
    updated = api.call("POST", f"/installed/{installed['id']}", json={"displayName": "renamed"}).json()
    check_integration(updated, BASE + "/installed/{installedIntgId}", "post")


def test_search_response_conforms(api: Api, installed: dict[str, Any]) -> None:
    """installed/search answers the documented page envelope with integrationInstall results."""
    body = api.call("GET", "/installed/search", params={"queryString": "category:CLOUD_INTEGRATION+uId:AWS"}).json()
    path = BASE + "/installed/search"
    schema = response_schema("opsramp-integrations.v2.yaml", path, "get")
    # previousPageNo and nextPageNo appear in OpsRamp's examples and docs but not in the schema.
    check(body, schema, {"previousPageNo", "nextPageNo"})
    assert body["totalResults"] == 1
    check_integration(body["results"][0], path, "get", in_page=True)


def test_uninstall_request_and_response_follow_the_spec(api: Api, installed: dict[str, Any]) -> None:
    """DELETE with the documented body (uninstallReason required) answers 200."""
    op = operation("opsramp-integrations.v2.yaml", BASE + "/installed/{installedIntgId}", "delete")
    body_schema = op["requestBody"]["content"]["application/json"]["schema"]
    request = {"uninstallReason": "done"}
    check(request, body_schema)
    with pytest.raises(jsonschema.ValidationError):
        check({}, body_schema)
    assert api.call("DELETE", f"/installed/{installed['id']}", json=request).status_code == 200
    assert "200" in op["responses"]


def test_client_install_body_conforms_to_the_request_schema() -> None:
    """The client's install body is a valid integrationInstall with the documented AWS credential keys."""
    spec = AwsIntegrationRequest(
        display_name="team-a",
        account_number=CUSTOMER_ACCOUNT,
        role_arn=f"arn:aws:iam::{CUSTOMER_ACCOUNT}:role/opsramp/team-a",
        external_id="e" * 32,
        regions=("us-east-1",),
        install_all_linked_accounts=True,
    )
    body = install_body(spec)
    op = operation("opsramp-integrations.v2.yaml", BASE + "/install/AWS", "post")
    schema = dict(
        deref(op["requestBody"]["content"]["application/json"]["schema"], load("opsramp-integrations.v2.yaml"))
    )
    check(body, schema, {"credential"})
    credential_schema = deref(load("opsramp-integrations.v2.yaml")["components"]["schemas"]["credential"], {})
    check(body["credential"], credential_schema, {"InstallAllLinkedAccounts"})


def test_paths_used_exist_in_the_spec() -> None:
    """The client's paths are OpsRamp's documented ones (the contract has not drifted)."""
    from opsramp_aws_operator.opsramp import WireFormat

    paths = load("opsramp-integrations.v2.yaml")["paths"]
    ours = (WireFormat.INSTALL_AWS_PATH, WireFormat.INSTALLED_PATH, WireFormat.SEARCH_PATH)
    for path in ours:
        spec_path = path.replace("{tenant_id}", "{tenantId}").replace("{integration_id}", "{installedIntgId}")
        assert spec_path in paths
