"""The rotate-external-id annotation on a generated External ID, against the sandbox over HTTP (service passes).

The annotation asks the operator for a new generated External ID. The pass that first sees a new value replaces the
one in the Secret the operator owns, once (every later resync sees the same value and leaves it alone), and the
rotation then moves the role's trust and OpsRamp to it: after every pass OpsRamp's integration can assume the role,
and once the rotation is Completed the trust accepts only the new one. The pass is driven by hand, each handed the
status the previous one wrote, as kopf would. That no moment exists where neither External ID works while IAM
propagates is sampled end to end in tests/e2e/test_lifecycle_controls.py (a Secret changed by hand takes the same
path once the value is in the Secret).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from typing import Any

import requests
import test_recorded_integration as recorded
from test_recorded_integration import NS, World, new_resource, new_service, run, written_status

from opsramp_aws_operator.service import ResourceRef, Service, generated_secret_name

# The recorded-integration tests' fixture: the sandbox in this process, the operator's clients pointed at it.
world = recorded.world
MAX_PASSES = 12


def merged(status: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """The status after a pass's merge patch (None removes a key), as the API server keeps it."""
    out = dict(status)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def secret_value(world: World, resource: str) -> str:
    url = f"{world.sandbox.kube.url}/api/v1/namespaces/{NS}/secrets/{generated_secret_name(resource)}"
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    return base64.b64decode(response.json()["data"]["externalId"]).decode()


def held_by_opsramp(world: World, display_name: str) -> dict[str, Any]:
    """OpsRamp's assume attempt with what its integration holds now (and a hash of the External ID it holds)."""
    response = requests.post(
        f"{world.sandbox.OPSRAMP_ADMIN_URL}/assume",
        json={"tenant": world.sandbox.OPSRAMP_TENANT_ID, "displayName": display_name},
        timeout=10,
    )
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


def condition_status(status: dict[str, Any], kind: str) -> str | None:
    return next((str(c.get("status")) for c in status.get("conditions") or [] if c.get("type") == kind), None)


def until_ready(service: Service, world: World, ref: ResourceRef, status: dict[str, Any]) -> dict[str, Any]:
    for _ in range(MAX_PASSES):
        result, _sent = run(service, world, ref, status)
        assert result.error is None, result.error
        status = merged(status, written_status(result))
        if condition_status(status, "Ready") == "True":
            return status
    raise AssertionError(f"not Ready after {MAX_PASSES} passes: {status.get('conditions')}")


def test_the_annotation_replaces_a_generated_external_id_once_and_rotates_to_it_without_a_gap(world: World) -> None:
    """A new annotation value: a new value in the generated Secret (once), every pass leaves OpsRamp's integration
    able to assume the role, the trust accepts both meanwhile, and only the new one once Completed."""
    service = new_service(world)
    ref = new_resource(world, "rotate-on-request")
    display = f"{NS}/{ref.name}"
    status = until_ready(service, world, ref, {})
    arn = str(status["roleArn"])
    old = secret_value(world, ref.name)
    assert world.sandbox.opsramp.assume(arn, old)
    assert held_by_opsramp(world, display)["externalIdSha256"] == hashlib.sha256(old.encode()).hexdigest()

    asked = replace(ref, rotate_request="2026-11-30 new id please")
    new: str | None = None
    generated = 0
    phases: list[str] = []
    for _ in range(MAX_PASSES):
        result, _sent = run(service, world, asked, status)
        assert result.error is None, result.error
        status = merged(status, written_status(result))
        generated += sum("generated a new External ID" in change for change in result.changes)
        new = secret_value(world, ref.name)
        phase = str((status.get("externalIdRotation") or {}).get("phase"))
        phases.append(phase)
        held = held_by_opsramp(world, display)
        assert held["ok"], f"OpsRamp's integration could not assume the role after a pass in phase {phase}"
        if phase != "Completed":
            assert world.sandbox.opsramp.assume(arn, old) and world.sandbox.opsramp.assume(arn, new), phase
        if phase == "Completed" and condition_status(status, "Ready") == "True":
            break
    else:
        raise AssertionError(f"the rotation did not complete in {MAX_PASSES} passes: {phases}")
    assert new is not None and new != old
    assert generated == 1
    assert status["handledRotationRequest"] == asked.rotate_request
    assert status["externalIdRotation"]["count"] == 1
    assert status["externalIdRotation"]["request"] == asked.rotate_request
    assert world.sandbox.opsramp.assume(arn, new) and not world.sandbox.opsramp.assume(arn, old)
    assert held_by_opsramp(world, display)["externalIdSha256"] == hashlib.sha256(new.encode()).hexdigest()
    assert old not in repr(status) and new not in repr(status)

    # The same annotation value again (every resync sees it): nothing more is generated or changed.
    result, _sent = run(service, world, asked, status)
    assert result.error is None and result.changes == []
    assert secret_value(world, ref.name) == new
