"""The reconcile service against the sandbox over HTTP: a pass uses the integration id it recorded, never a listing.

kopf can hand a handler a body older than the status the previous pass wrote (issue 18: a watch event queued
before the operator's own patch). Such a pass must still read the recorded integration by id: one GET, not a
search of the tenant by display name (a paged listing, 50 a minute). A new process knows only the status, so
there a stale status still costs the lookup by name that crash safety relies on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes
import pytest
import requests

from opsramp_aws_operator import kube as kube_mod
from opsramp_aws_operator import opsramp as opsramp_mod
from opsramp_aws_operator.conditions import PassResult, build_status
from opsramp_aws_operator.errors import TransientError
from opsramp_aws_operator.handlers import parse_spec
from opsramp_aws_operator.kube import Secrets
from opsramp_aws_operator.monitoring import CLOCK_SKEW_SECONDS
from opsramp_aws_operator.ratelimit import _reset_registry_for_tests
from opsramp_aws_operator.service import ResourceRef, Service
from opsramp_aws_operator.settings import Settings
from opsramp_sandbox.testing import Sandbox, isolate_aws_env, running_sandbox

NS = "default"
GROUP, VERSION, PLURAL = "integrations.opsramp.com", "v1alpha1", "awsintegrations"
SEARCH = ("GET", "/api/v2/tenants/{tenantId}/integrations/installed/search")
GET = ("GET", "/api/v2/tenants/{tenantId}/integrations/installed/{installedIntgId}")
ACTIVITY = ("GET", "/api/v2/tenants/{tenantId}/integrations/activity")


@dataclass
class World:
    sandbox: Sandbox
    spec: dict[str, Any]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """The sandbox in this process, the operator's clients pointed at it, and the credentials Secret."""
    with running_sandbox(directory=tmp_path / "sandbox") as sandbox:
        isolate_aws_env(monkeypatch, tmp_path)
        monkeypatch.setenv("AWS_ENDPOINT_URL", sandbox.AWS_ENDPOINT_URL)
        # The client reads KUBECONFIG once, at import: point its default at the emulator's file instead.
        monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(sandbox.kubeconfig))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        kube_mod.reset_client()
        opsramp_mod._reset_caches_for_tests()
        _reset_registry_for_tests()
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "opsramp-api-client"},
            "stringData": {"clientId": sandbox.OPSRAMP_CLIENT_ID, "clientSecret": sandbox.OPSRAMP_CLIENT_SECRET},
        }
        response = requests.post(f"{sandbox.kube.url}/api/v1/namespaces/{NS}/secrets", json=secret, timeout=10)
        assert response.status_code == 201, response.text
        spec = {
            "regions": ["us-east-1"],
            "generateExternalId": True,
            "opsramp": {
                "endpoint": sandbox.OPSRAMP_ENDPOINT,
                "tenantId": sandbox.OPSRAMP_TENANT_ID,
                "credentialsSecretRef": {"name": "opsramp-api-client"},
            },
        }
        try:
            yield World(sandbox, spec)
        finally:
            kube_mod.reset_client()
            opsramp_mod._reset_caches_for_tests()
            _reset_registry_for_tests()


def new_resource(world: World, name: str) -> ResourceRef:
    """The AWSIntegration in the Kubernetes emulator (its uid owns the External ID Secret the pass creates)."""
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AWSIntegration", "metadata": {"name": name}}
    body["spec"] = world.spec
    url = f"{world.sandbox.kube.url}/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}"
    response = requests.post(url, json=body, timeout=10)
    assert response.status_code == 201, response.text
    return ResourceRef(namespace=NS, name=name, uid=response.json()["metadata"]["uid"])


def new_service(world: World, **env: str) -> Service:
    # As the sandbox's operator runs: the emulator's loopback host is allowed explicitly (the guardrails).
    settings = Settings.from_env(
        {
            "OPERATOR_OPSRAMP_AWS_ACCOUNT_ID": world.sandbox.OPSRAMP_AWS_ACCOUNT_ID,
            "OPERATOR_ROLE_SETTLE_SECONDS": "0",
            "OPERATOR_ALLOWED_OPSRAMP_HOSTS": f"*.opsramp.com,{urlsplit(world.sandbox.OPSRAMP_ENDPOINT).netloc}",
            **env,
        }
    )
    return Service(settings, secrets_api=Secrets(cache_seconds=0))


def run(service: Service, world: World, ref: ResourceRef, status: dict[str, Any]) -> tuple[PassResult, list[Any]]:
    """One pass with `status` as kopf handed it over: what it achieved and the OpsRamp requests it sent."""
    # The tenant listing this process shares between lookups would hide a lookup from the request log.
    opsramp_mod._reset_caches_for_tests()
    before = len(world.sandbox.opsramp.state()["request_log"])
    result = PassResult()
    service.reconcile(parse_spec(world.spec), ref, status, result)
    sent = [(r["method"], r["route"]) for r in world.sandbox.opsramp.state()["request_log"][before:]]
    return result, sent


def written_status(result: PassResult) -> dict[str, Any]:
    """The status the pass's handler would have written."""
    status, _ = build_status(result, {}, 1, datetime.now(UTC))
    return dict(status)


def test_a_repeated_pass_on_a_stale_status_costs_what_one_on_the_current_status_does(world: World) -> None:
    """In the same process, a pass handed its current status and one handed a stale one (no ids) read the recorded
    integration and discovery profile by id: one GET each, no search."""
    service = new_service(world)
    ref = new_resource(world, "repeat")
    first, _ = run(service, world, ref, {})
    assert first.integration_id and first.changes
    current = written_status(first)

    on_current, sent_current = run(service, world, ref, current)
    on_stale, sent_stale = run(service, world, ref, {})

    for result in (on_current, on_stale):
        assert result.error is None
        assert result.integration_id == first.integration_id
        assert result.discovery_profile_id == first.discovery_profile_id
        assert result.changes == []
    assert sent_current.count(GET) == 1, sent_current
    assert SEARCH not in sent_current, sent_current
    # Nothing is looked up by name: neither the integration nor its discovery profile. Without the Monitoring
    # condition in the status handed over, the stale pass reads OpsRamp's verdict again (one more GET).
    assert not [route for _, route in sent_stale if route.endswith("/search")], sent_stale
    assert set(sent_stale) - set(sent_current) <= {ACTIVITY}, sent_stale
    assert sent_stale.count(GET) == 1, sent_stale
    assert len(world.sandbox.opsramp.integrations(world.sandbox.OPSRAMP_TENANT_ID)) == 1


def test_a_new_process_with_a_stale_status_finds_the_integration_by_name(world: World) -> None:
    """Another process (after a crash) has only the status: without an id it looks up by name and adopts."""
    ref = new_resource(world, "restarted")
    first, _ = run(new_service(world), world, ref, {})

    second, sent = run(new_service(world), world, ref, {})

    assert second.integration_id == first.integration_id
    assert "adopted existing integration" in second.changes
    assert SEARCH in sent
    assert len(world.sandbox.opsramp.integrations(world.sandbox.OPSRAMP_TENANT_ID)) == 1


def test_a_verdict_given_before_the_install_answer_arrived_counts(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpsRamp may judge the role before its answer to the install reaches the operator (a slow network, a loaded
    operator). That verdict is on these very credentials: Monitoring rests on it at once, instead of ignoring it as
    older than the pass and, once the grace is over, settling for "no failure reported"."""
    tenant = world.sandbox.OPSRAMP_TENANT_ID
    world.sandbox.opsramp.set_contract(tenant, role_check="async", role_check_delay_seconds=0.05)
    late = CLOCK_SKEW_SECONDS + 2.0
    install_aws = opsramp_mod.OpsRampClient.install_aws

    def answer_arrives_late(self: opsramp_mod.OpsRampClient, *args: Any, **kwargs: Any) -> Any:
        installed = install_aws(self, *args, **kwargs)
        deadline = time.monotonic() + 10
        while not world.sandbox.opsramp.activity(tenant) and time.monotonic() < deadline:
            time.sleep(0.05)  # OpsRamp's verdict is recorded while the answer is still on its way
        time.sleep(late)
        return installed

    monkeypatch.setattr(opsramp_mod.OpsRampClient, "install_aws", answer_arrives_late)
    service = new_service(world, OPERATOR_MONITORING_GRACE_SECONDS="600")
    ref = new_resource(world, "late-answer")

    result, _ = run(service, world, ref, {})

    assert world.sandbox.opsramp.activity(tenant), "OpsRamp recorded no verdict: the test proves nothing"
    assert result.error is None, result.error
    assert result.monitoring == "done", (result.monitoring, result.monitoring_reason, result.monitoring_message)
    assert result.monitoring_reason == "RoleAssumed", result.monitoring_message


def test_a_pass_on_a_stale_status_still_waits_for_the_verdict(world: World) -> None:
    """Found by the contract matrix under load: the pass after an install, handed a body older than the install
    pass's own status (no credentialsAppliedTime), found no verdict yet and, with no write of its own to start a
    grace from, settled at once on "no failure reported" (Ready; for a role OpsRamp was about to fail too). It must
    wait out the grace from the install's credential write, as a pass on the current status does."""
    tenant = world.sandbox.OPSRAMP_TENANT_ID
    world.sandbox.opsramp.set_contract(tenant, role_check="never")  # no verdict comes: only the grace decides
    service = new_service(world, OPERATOR_MONITORING_GRACE_SECONDS="600")
    ref = new_resource(world, "stale-verdict")

    def awaiting(status: dict[str, Any]) -> PassResult:
        """One pass, which must end waiting for OpsRamp's verdict (a retry), not settled."""
        result = PassResult()
        with pytest.raises(TransientError) as raised:
            service.reconcile(parse_spec(world.spec), ref, status, result)
        assert raised.value.reason == "AwaitingOpsRampVerdict", raised.value
        assert result.monitoring != "done", (result.monitoring_reason, result.monitoring_message)
        return result

    first = awaiting({})
    assert first.credentials_applied_time is not None
    awaiting(written_status(first))
    awaiting({})


def test_the_pass_after_one_that_awaited_only_the_verdict_asks_for_the_verdict_alone(world: World) -> None:
    """A tenant that checks the role a moment after the install: the first pass makes everything and stops for
    OpsRamp's verdict; the next one (same spec, moments later) reads neither the integration nor the role again,
    only the verdict, and reports Ready with the same ids. A pass after a Secret changed verifies everything."""
    world.sandbox.opsramp.set_contract(role_check="async", role_check_delay_seconds=0.3)
    service = new_service(world)
    ref = new_resource(world, "verdict")
    first = PassResult()
    with pytest.raises(TransientError) as waiting:
        service.reconcile(parse_spec(world.spec), ref, {}, first)
    assert waiting.value.reason == "AwaitingOpsRampVerdict"
    status = written_status(first)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not world.sandbox.opsramp.activity(world.sandbox.OPSRAMP_TENANT_ID):
        time.sleep(0.05)
    # As if the shared activity page were older than its freshness bound (the retry comes seconds later).
    service._awaiting[ref.uid].client._activity.fetched_at = None

    follow_up, sent = run(service, world, ref, status)
    assert follow_up.error is None and follow_up.monitoring == "done", follow_up
    assert (follow_up.integration_id, follow_up.role_arn) == (first.integration_id, first.role_arn)
    assert GET not in sent and SEARCH not in sent, sent  # the integration was not read again

    service.nudge(ref.uid)  # as the Secret watch does when a Secret the resource reads changed
    full, sent_full = run(service, world, ref, written_status(follow_up))
    assert full.error is None
    assert sent_full.count(GET) == 1, sent_full
